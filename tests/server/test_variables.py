"""Variables over REST against a real server: listing, values in three formats, set, delete,
dill round trips, bad names and sizes. Every response is checked against api.yaml."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import dill


async def test_variables_rest(ks_api, jp_serverapp):
    assert (await ks_api("POST", "sessions", {"name": "v"}))[0] == 201
    setup = (
        "import numpy as np\nx = 42\nname = 'etl'\narr = np.arange(6).reshape(2, 3)\n"
        "big = list(range(10**6))\ndef inc(y):\n    return y + 1\n"
    )
    code, res, _ = await ks_api("POST", "sessions/v/execute", {"code": setup})
    assert code == 200 and res["status"] == "ok", res

    code, listing, _ = await ks_api("GET", "sessions/v/variables")
    assert code == 200 and not listing["stale"]
    by = {v["name"]: v for v in listing["variables"]}
    assert set(by) == {"x", "name", "arr", "big", "inc"}  # no np: modules hidden
    assert by["x"]["preview"] == "42" and by["arr"]["shape"] == [2, 3]
    code, listing, _ = await ks_api(
        "GET", "sessions/v/variables", params={"include_modules": "1", "filter": "n*"}
    )
    assert {v["name"] for v in listing["variables"]} == {"name", "np"}

    assert (await ks_api("GET", "sessions/v/variables/arr"))[1]["value"] == [[0, 1, 2], [3, 4, 5]]
    assert (await ks_api("GET", "sessions/v/variables/name", params={"format": "repr"}))[1][
        "value"
    ] == "'etl'"
    code, err, _ = await ks_api("GET", "sessions/v/variables/big", params={"format": "json"})
    assert code == 413 and "format=pickle" in err["message"]
    code, _, resp = await ks_api("GET", "sessions/v/variables/inc", params={"format": "pickle"})
    assert code == 200 and resp.headers["Content-Type"] == "application/octet-stream"
    assert dill.loads(resp.body)(1) == 2

    code, res, _ = await ks_api("PUT", "sessions/v/variables/y", {"a": [1, 2]})
    assert code == 200 and res["ok"] and res["created"]
    raw = dill.dumps(lambda z: z * 10, recurse=True)
    code, res, _ = await ks_api(
        "PUT",
        "sessions/v/variables/times10",
        raw=raw,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert code == 200, res
    code, res, _ = await ks_api("POST", "sessions/v/execute", {"code": "print(times10(y['a'][1]))"})
    assert res["outputs"][0]["text"] == "20\n"
    assert (await ks_api("DELETE", "sessions/v/variables/y"))[0] == 204
    assert (await ks_api("GET", "sessions/v/variables/y"))[0] == 404

    for bad in ("__import__('os').system('id')", "a.b", "1x", "class", "x y"):
        code, err, _ = await ks_api("GET", "sessions/v/variables/" + quote(bad, safe=""))
        assert code == 400 and err["reason"] == "invalid_name", (bad, err)
    assert (await ks_api("PUT", "sessions/v/variables/Out", 1))[0] == 403
    assert (await ks_api("GET", "sessions/v/variables/x", params={"format": "yaml"}))[0] == 400
    assert (await ks_api("PUT", "sessions/v/variables/z", raw=b"{not json"))[0] == 400
    assert (
        await ks_api(
            "PUT",
            "sessions/v/variables/z",
            raw=b"not dill",
            headers={"Content-Type": "application/octet-stream"},
        )
    )[0] == 400
    assert (await ks_api("GET", "sessions/v/variables", params={"include_modules": "maybe"}))[
        0
    ] == 400
    assert (await ks_api("GET", "sessions/nope/variables"))[0] == 404

    # a busy kernel answers within a second
    run = asyncio.ensure_future(
        ks_api("POST", "sessions/v/execute", {"code": "import time; time.sleep(3)"})
    )
    ks = jp_serverapp.web_app.settings["kernel_sessions"]
    deadline = time.monotonic() + 20
    while (await ks.get("v")).state != "busy":
        assert time.monotonic() < deadline, "the session never went busy"
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    code, listing, _ = await ks_api("GET", "sessions/v/variables")
    assert code == 200 and listing["busy"] and time.monotonic() - t0 < 1.5
    assert (await run)[1]["status"] == "ok"
    # nothing we did shows in the user's history
    code, res, _ = await ks_api("POST", "sessions/v/execute", {"code": "print(len(In) - 1)"})
    assert res["outputs"][0]["text"] == "4\n"  # setup, print(times10...), sleep, this one
