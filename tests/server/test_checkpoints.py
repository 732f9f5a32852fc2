"""Checkpoints over REST against a real server; every response is checked against api.yaml."""

from __future__ import annotations

import json
from pathlib import Path


async def test_checkpoints_rest(ks_api, jp_serverapp, ks_data_dir):
    assert (await ks_api("POST", "sessions", {"name": "c"}))[0] == 201
    code, res, _ = await ks_api(
        "POST", "sessions/c/execute", {"code": "x = 41 + 1\ngen = (i for i in range(2))"}
    )
    assert code == 200 and res["status"] == "ok", res

    code, ckpt, _ = await ks_api("POST", "sessions/c/checkpoints", {"label": "answer"})
    assert code == 201, ckpt
    assert ckpt["label"] == "answer" and ckpt["variable_count"] == 1 and ckpt["skipped_count"] == 1
    assert ckpt["skipped"][0]["name"] == "gen" and "generator" in ckpt["skipped"][0]["reason"]
    assert [v["name"] for v in ckpt["variables"]] == ["x"]
    cid = ckpt["id"]
    code, session, _ = await ks_api("GET", "sessions/c")
    assert session["last_checkpoint"] == cid

    code, listed, _ = await ks_api("GET", "sessions/c/checkpoints")
    assert code == 200 and [c["id"] for c in listed] == [cid] and listed[0]["valid"]
    code, detail, _ = await ks_api("GET", f"sessions/c/checkpoints/{cid}")
    assert code == 200 and detail["versions"]["python"]

    await ks_api("POST", "sessions/c/execute", {"code": "x = 0\ny = 1"})
    code, report, _ = await ks_api("POST", f"sessions/c/checkpoints/{cid}/restore", {})
    assert code == 200, report
    assert report["restored"] == ["x"] and report["removed"] == ["y"]
    assert report["session"]["name"] == "c" and report["session"]["state"] == "idle"
    code, res, _ = await ks_api("GET", "sessions/c/variables/x")
    assert res["value"] == 42

    # fork, two ways
    code, report, _ = await ks_api("POST", f"sessions/c/checkpoints/{cid}/restore", {"into": "c2"})
    assert code == 200 and report["session"]["name"] == "c2", report
    code, forked, _ = await ks_api("POST", "sessions", {"name": "c3", "from": {"session": "c"}})
    assert code == 201 and forked["name"] == "c3", forked
    for name in ("c2", "c3"):
        assert (await ks_api("GET", f"sessions/{name}/variables/x"))[1]["value"] == 42

    # errors: clear, 4xx, and nothing half-made
    bad_id = "20260101T000000.000000Z-00000000"
    assert (await ks_api("GET", f"sessions/c/checkpoints/{bad_id}"))[0] == 404
    assert (await ks_api("GET", "sessions/c/checkpoints/..%2Fkey"))[0] in (400, 404)
    code, err, _ = await ks_api("GET", "sessions/c/checkpoints/not-an-id")
    assert code == 400 and err["reason"] == "invalid_checkpoint_id"
    assert (await ks_api("GET", "sessions/nope/checkpoints"))[0] == 404
    for body in (
        {"label": 5},
        {"variables": "x"},
        {"variables": ["__import__('os')"]},
        {"timeout": -1},
        {"what": 1},
        [],
        7,
    ):
        code, err, _ = await ks_api("POST", "sessions/c/checkpoints", body)
        assert code == 400 and err["message"], (body, err)
    code, err, _ = await ks_api(
        "POST", f"sessions/c/checkpoints/{cid}/restore", {"into": "Bad Name"}
    )
    assert code == 400 and "must match" in err["message"]
    code, err, _ = await ks_api("POST", f"sessions/c/checkpoints/{cid}/restore", {"into": "c2"})
    assert code == 409 and err["reason"] == "exists"
    code, err, _ = await ks_api("POST", "sessions", {"name": "c4", "from": {"session": "nope"}})
    assert code == 404, err
    assert (await ks_api("GET", "sessions/c4"))[0] == 404

    # a tampered manifest: 409 "signature mismatch", nothing restored
    manifest = Path(ks_data_dir) / "checkpoints" / "manifests" / "c" / f"{cid}.json"
    doc = json.loads(manifest.read_text())
    doc["manifest"]["label"] = "edited"
    manifest.write_text(json.dumps(doc))
    code, err, _ = await ks_api("POST", f"sessions/c/checkpoints/{cid}/restore", {})
    assert code == 409 and err["reason"] == "tampered" and "signature mismatch" in err["message"]
    code, listed, _ = await ks_api("GET", "sessions/c/checkpoints")
    assert listed[0]["valid"] is False and listed[0]["reason"] == "tampered"

    assert (await ks_api("DELETE", f"sessions/c/checkpoints/{cid}"))[0] == 204
    assert (await ks_api("GET", "sessions/c/checkpoints"))[1] == []
    await ks_api("POST", "sessions/c2/checkpoints", {})
    assert (await ks_api("DELETE", "sessions/c2", params={"purge": "1"}))[0] == 204
    assert not (Path(ks_data_dir) / "checkpoints" / "manifests" / "c2").exists()
    for name in ("c", "c3"):
        assert (await ks_api("DELETE", f"sessions/{name}"))[0] == 204
