"""The REST API against a real jupyter_server with the extension: lifecycle, execute, pool,
concurrency, connection info, events, metrics and the TCP_NODELAY kernel websocket.

Every response is checked against kernel_sessions/server/api.yaml by the ``ks_api`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import yaml
from jupyter_client import AsyncKernelClient
from jupyter_client.session import Session
from jupyter_server.utils import url_path_join
from openapi_spec_validator import validate as validate_openapi
from traitlets.utils.importstring import import_item

from kernel_sessions.core.manager import KernelSessionManager
from kernel_sessions.pool.managers import PoolMixin
from kernel_sessions.server.extension import KERNEL_MANAGER_CLASS
from kernel_sessions.server.nodelay import NoDelayWebsocketConnection

WS_ROUND_TRIPS = 20
WS_MEDIAN_LIMIT_MS = 25.0  # stock (Nagle + delayed ACK) is >= 40 ms; with NODELAY ~3 ms


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def texts(result: dict, output_type: str = "stream") -> str:
    return "".join(o.get("text", "") for o in result["outputs"] if o["output_type"] == output_type)


async def test_lifecycle_create_get_list_rename_tags_notebooks_delete(
    ks_api, jp_fetch, jp_serverapp
):
    ks = jp_serverapp.web_app.settings["kernel_sessions"]
    assert isinstance(ks, KernelSessionManager)
    assert isinstance(jp_serverapp.kernel_manager, import_item(KERNEL_MANAGER_CLASS))
    assert jp_serverapp.kernel_manager.kernel_sessions is ks
    assert jp_serverapp.kernel_spec_manager.kernel_sessions is ks
    code, spec_text, resp = await ks_api("GET", "spec.yaml")
    assert code == 200 and resp.headers["Content-Type"].startswith("text/x-yaml")
    validate_openapi(yaml.safe_load(resp.body))

    code, s, resp = await ks_api(
        "POST", "sessions", {"name": "etl", "ttl": 3600, "tags": {"team": "data"}}
    )
    assert code == 201, s
    assert resp.headers["Location"] == url_path_join(
        jp_serverapp.base_url, "api/kernel-sessions/sessions/etl"
    )
    assert resp.headers["Location"].startswith("/a%40b/")
    assert (s["name"], s["state"], s["ttl"], s["tags"]) == ("etl", "idle", 3600, {"team": "data"})
    assert s["kernel"]["name"] == "python3" and s["memory_rss"] > 10 * 2**20
    kid = s["kernel"]["id"]
    assert jp_serverapp.kernel_manager.get_kernel(kid).has_kernel

    code, listed, _ = await ks_api("GET", "sessions")
    assert code == 200 and [x["name"] for x in listed] == ["etl"]

    # a notebook attached to the session's kernel shows up on the session
    r = await jp_fetch(
        "api",
        "sessions",
        method="POST",
        body=json.dumps(
            {"path": "work/a.ipynb", "type": "notebook", "name": "a.ipynb", "kernel": {"id": kid}}
        ),
    )
    assert json.loads(r.body)["kernel"]["id"] == kid

    code, s, _ = await ks_api(
        "PATCH", "sessions/etl", {"name": "etl-2", "ttl": None, "tags": {"v": "2"}}
    )
    assert code == 200 and (s["name"], s["ttl"], s["tags"]) == ("etl-2", None, {"v": "2"})
    assert s["kernel"]["id"] == kid
    assert [(n["path"], n["type"]) for n in s["notebooks"]] == [("work/a.ipynb", "notebook")]
    code, err, _ = await ks_api("GET", "sessions/etl")
    assert (code, err["reason"]) == (404, "not_found")

    code, _, _ = await ks_api("POST", "sessions", {"name": "other"})
    assert code == 201
    code, err, _ = await ks_api("PATCH", "sessions/other", {"name": "etl-2"})
    assert (code, err["reason"]) == (409, "exists")
    code, err, _ = await ks_api("POST", "sessions", {"name": "other"})
    assert (code, err["reason"]) == (409, "exists")

    code, body, resp = await ks_api("DELETE", "sessions/etl-2")
    assert code == 204 and not resp.body
    assert kid not in jp_serverapp.kernel_manager
    code, _, _ = await ks_api("GET", "sessions/etl-2")
    assert code == 404
    code, listed, _ = await ks_api("GET", "sessions")
    assert [x["name"] for x in listed] == ["other"]


async def test_execute_restart_interrupt_timeout(ks_api):
    code, s, _ = await ks_api("POST", "sessions", {"name": "calc"})
    assert code == 201
    kid = s["kernel"]["id"]

    code, r, _ = await ks_api(
        "POST",
        "sessions/calc/execute",
        {
            "code": (
                "import sys\nfrom IPython.display import display, HTML\nx = 41\nprint('hi')\n"
                "print('oops', file=sys.stderr)\ndisplay(HTML('<b>b</b>'))\nx + 1"
            )
        },
    )
    assert code == 200 and (r["status"], r["execution_count"], r["truncated"]) == ("ok", 1, False)
    kinds = [(o["output_type"], o.get("name")) for o in r["outputs"]]
    # ipykernel flushes stdout and stderr separately: their order is the kernel's choice
    assert sorted(kinds[:2]) == [("stream", "stderr"), ("stream", "stdout")]
    assert kinds[2:] == [("display_data", None), ("execute_result", None)]
    assert {o["name"]: o["text"] for o in r["outputs"][:2]} == {
        "stdout": "hi\n",
        "stderr": "oops\n",
    }
    assert r["outputs"][2]["data"]["text/html"] == "<b>b</b>"
    assert r["outputs"][3]["data"]["text/plain"] == "42"

    code, r, _ = await ks_api("POST", "sessions/calc/execute", {"code": "1/0"})
    assert code == 200 and r["status"] == "error"
    assert [o["ename"] for o in r["outputs"] if o["output_type"] == "error"] == [
        "ZeroDivisionError"
    ]

    # a timeout interrupts the cell and answers with what was printed so far
    t0 = time.monotonic()
    code, r, _ = await ks_api(
        "POST",
        "sessions/calc/execute",
        {"code": "import time\nprint('started', flush=True)\ntime.sleep(60)", "timeout": 1},
    )
    assert code == 200 and r["status"] == "timeout" and time.monotonic() - t0 < 10
    assert texts(r) == "started\n"
    assert any(o.get("ename") == "KeyboardInterrupt" for o in r["outputs"])

    # an explicit interrupt stops a running cell; the namespace survives
    running = asyncio.ensure_future(
        ks_api("POST", "sessions/calc/execute", {"code": "time.sleep(60)", "timeout": 30})
    )
    await asyncio.sleep(1.0)
    code, s, _ = await ks_api("POST", "sessions/calc/interrupt")
    assert code == 200 and s["name"] == "calc"
    code, r, _ = await asyncio.wait_for(running, 20)
    assert r["status"] == "error" and r["outputs"][-1]["ename"] == "KeyboardInterrupt"
    code, r, _ = await ks_api("POST", "sessions/calc/execute", {"code": "x"})
    assert r["outputs"][0]["data"]["text/plain"] == "41"

    # restart: same kernel id, empty namespace
    code, s, _ = await ks_api("POST", "sessions/calc/restart", {})
    assert code == 200 and (s["kernel"]["id"], s["restarts"], s["state"]) == (kid, 1, "idle")
    code, r, _ = await ks_api("POST", "sessions/calc/execute", {"code": "x"})
    assert r["status"] == "error" and r["outputs"][0]["ename"] == "NameError"
    assert r["execution_count"] == 1


async def test_connection_info_gives_a_working_client_and_never_logs_the_key(ks_api, caplog):
    caplog.set_level("DEBUG")
    code, _, _ = await ks_api("POST", "sessions", {"name": "conn"})
    assert code == 201
    code, info, resp = await ks_api("GET", "sessions/conn/connection")
    assert code == 200 and info["key"] and resp.headers["Cache-Control"] == "no-store"
    kc = AsyncKernelClient()
    kc.load_connection_info(info)
    kc.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
    kc.start_channels()
    try:
        reply = await kc.execute_interactive("y = 5", timeout=30)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    code, r, _ = await ks_api("POST", "sessions/conn/execute", {"code": "y * 2"})
    assert r["outputs"][0]["data"]["text/plain"] == "10"
    assert info["key"] not in caplog.text


async def test_pool_stats_and_live_resize(ks_api, jp_serverapp):
    km = jp_serverapp.kernel_manager
    assert isinstance(km, PoolMixin)
    code, pool, _ = await ks_api("GET", "pool")
    assert code == 200 and pool["pools"]["python3"]["target"] == 1 and pool["max_kernels"] is None

    code, pool, _ = await ks_api("PATCH", "pool", {"sizes": {"python3": 2}})
    assert (
        code == 200 and pool["pools"]["python3"]["target"] == 2 and km.pool_sizes == {"python3": 2}
    )

    async def ready(n: int) -> bool:
        return (await ks_api("GET", "pool"))[1]["pools"]["python3"]["ready"] == n

    await wait_until(lambda: ready(2), 60)
    for bad in (
        {"python3": -1},
        {"python3": 33},
        {"python3": "2"},
        {"python3": True},
        {"python3": 1.5},
        {"nope": 1},
        {"session.x": 1},
        [],
        None,
    ):
        code, err, _ = await ks_api("PATCH", "pool", {"sizes": bad})
        assert code == 400, bad
    assert km.pool_sizes == {"python3": 2}
    code, pool, _ = await ks_api("PATCH", "pool", {"sizes": {"python3": 0}})
    assert code == 200 and pool["pools"]["python3"]["target"] == 0
    await wait_until(lambda: ready(0), 30)


async def test_fifty_concurrent_creates_of_one_name_make_one_session(ks_api, jp_fetch):
    results = await asyncio.gather(
        *(ks_api("POST", "sessions", {"name": "race"}) for _ in range(50))
    )
    codes = sorted(code for code, _, _ in results)
    assert codes == [201] + [409] * 49
    assert {body["reason"] for code, body, _ in results if code == 409} == {"exists"}
    kernels = json.loads((await jp_fetch("api", "kernels")).body)
    assert len(kernels) == 1


async def test_events_stream_and_metrics(ks_api, jp_fetch, jp_ws_fetch):
    ws = await jp_ws_fetch("api", "events", "subscribe")
    code, _, _ = await ks_api("POST", "sessions", {"name": "watched"})
    assert code == 201
    seen: list[tuple[str, Any]] = []
    deadline = time.monotonic() + 20
    while ("session_state", "idle") not in seen or not any(k == "pool" for k, _ in seen):
        msg = json.loads(await asyncio.wait_for(ws.read_message(), deadline - time.monotonic()))
        if (
            msg["schema_id"].endswith("kernel_sessions/session_state/v1")
            and msg["name"] == "watched"
        ):
            seen.append(("session_state", msg["to"]))
        elif msg["schema_id"].endswith("kernel_sessions/pool/v1"):
            seen.append(("pool", msg["kind"]))
    ws.close()
    states = [v for k, v in seen if k == "session_state"]
    assert states[:2] == ["starting", "idle"]
    assert ("pool", "hit") in seen or ("pool", "miss") in seen

    text = (await jp_fetch("metrics")).body.decode()
    assert 'kernel_sessions_sessions{state="idle"} 1.0' in text
    assert 'kernel_sessions_pool_target{kernel_name="python3"} 1.0' in text
    assert 'kernel_sessions_pool_ready{kernel_name="python3"}' in text
    hits = [ln for ln in text.splitlines() if ln.startswith("kernel_sessions_pool_hits_total")]
    misses = [ln for ln in text.splitlines() if ln.startswith("kernel_sessions_pool_misses_total")]
    assert hits and misses
    assert sum(float(ln.split()[-1]) for ln in hits + misses) >= 1
    count = [
        ln
        for ln in text.splitlines()
        if ln.startswith('kernel_sessions_create_seconds_count{kernel_name="python3"}')
    ]
    assert count and float(count[0].split()[-1]) >= 1


async def test_kernel_websocket_round_trip_has_no_nagle_delay(ks_api, jp_ws_fetch, jp_serverapp):
    assert jp_serverapp.kernel_websocket_connection_class is NoDelayWebsocketConnection
    code, s, _ = await ks_api("POST", "sessions", {"name": "ws"})
    kid = s["kernel"]["id"]
    ws = await jp_ws_fetch("api", "kernels", kid, "channels", params={"session_id": "t"})
    ws.protocol.stream.set_nodelay(True)  # as browsers do; the server side is what we test
    session = Session(key=b"", username="t")
    times = []
    for i in range(WS_ROUND_TRIPS + 2):
        msg = session.msg(
            "execute_request",
            {"code": f"{i}", "silent": False, "store_history": False, "allow_stdin": False},
        )
        msg["channel"] = "shell"
        t0 = time.perf_counter()
        await ws.write_message(json.dumps(msg, default=str))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.read_message(), 30))
            if (
                reply["msg_type"] == "execute_reply"
                and reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
            ):
                break
        times.append((time.perf_counter() - t0) * 1000)
    ws.close()
    median = statistics.median(times[2:])
    assert median < WS_MEDIAN_LIMIT_MS, f"median websocket round trip {median:.1f} ms"
