"""Notebooks attach to named sessions by kernelspec name, through a real jupyter_server.

Two server starts: the whole attach/detach/restart/rename/delete life of one session, then the
error paths and concurrent attaches.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import pytest

from kernel_sessions.server.kernel_manager import SessionMappingKernelManager
from kernel_sessions.server.kernelspecs import SessionKernelSpecManager
from kernel_sessions.server.session_rows import ROW_TYPE
from tests.support.kernels import value

WS_TIMEOUT = 30.0


@pytest.fixture
def jp_server_config(jp_server_config: Any) -> Any:
    """conftest's server, with the session-aware kernel and kernelspec managers."""
    jp_server_config.ServerApp.kernel_manager_class = (
        "kernel_sessions.server.kernel_manager.SessionMappingKernelManager"
    )
    jp_server_config.ServerApp.kernel_spec_manager_class = (
        "kernel_sessions.server.kernelspecs.SessionKernelSpecManager"
    )
    return jp_server_config


@pytest.fixture
async def ks(jp_serverapp: Any) -> Any:
    """The extension's session manager, started (pytest-jupyter never starts extensions)."""
    return await jp_serverapp.web_app.settings["kernel_sessions_app"].ensure_started()


async def call(
    jp_fetch: Any, *parts: str, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    """(status, decoded JSON body or None), without raising on 4xx/5xx."""
    kwargs: dict[str, Any] = {"method": method, "raise_error": False}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    elif method == "POST":
        kwargs["body"] = ""
    r = await jp_fetch(*parts, **kwargs)
    return r.code, (json.loads(r.body) if r.body else None)


async def new_notebook(jp_fetch: Any, path: str, kernel_name: str) -> dict:
    code, model = await call(
        jp_fetch,
        "api",
        "sessions",
        method="POST",
        body={"path": path, "name": path, "type": "notebook", "kernel": {"name": kernel_name}},
    )
    assert code == 201, model
    return model


async def picker_rows(jp_fetch: Any) -> list[dict]:
    code, sessions = await call(jp_fetch, "api", "sessions")
    assert code == 200
    return [s for s in sessions if s["type"] == ROW_TYPE]


async def ws_execute(ws: Any, code: str, expressions: dict[str, str] | None = None) -> dict:
    """Run ``code`` over a kernel websocket (jupyter_server's JSON protocol); the reply content."""
    msg_id = uuid.uuid4().hex
    ws.write_message(
        json.dumps(
            {
                "channel": "shell",
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": datetime.now(timezone.utc).isoformat(),
                },
                "parent_header": {},
                "metadata": {},
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": True,
                    "user_expressions": expressions or {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    while True:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), WS_TIMEOUT))
        if msg["channel"] == "shell" and msg["parent_header"].get("msg_id") == msg_id:
            return msg["content"]


async def test_a_session_is_a_shared_kernel_notebooks_attach_to_by_name(
    jp_fetch: Any, jp_ws_fetch: Any, jp_serverapp: Any, ks: Any
) -> None:
    km = jp_serverapp.kernel_manager
    assert isinstance(km, SessionMappingKernelManager)
    assert isinstance(jp_serverapp.kernel_spec_manager, SessionKernelSpecManager)

    # a notebook asking for kernelspec session.etl creates the session, from the pool
    a = await new_notebook(jp_fetch, "a.ipynb", "session.etl")
    kid = ks.kernel_id("etl")
    assert a["kernel"]["id"] == kid
    assert a["kernel"]["name"] == "session.etl"  # what JupyterLab writes into the notebook
    assert (await ks.get("etl")).state == "idle"
    assert km.pool_stats()["python3"]["hits"] == 1

    # ... and the session is offered as a kernelspec beside the real ones, with the real logo
    code, specs = await call(jp_fetch, "api", "kernelspecs")
    assert code == 200 and "python3" in specs["kernelspecs"]
    spec = specs["kernelspecs"]["session.etl"]
    assert spec["spec"]["display_name"] == "etl (session)"
    assert spec["spec"]["language"] == "python"
    assert spec["spec"]["metadata"]["kernel_sessions"] == {
        "session": "etl",
        "kernel_name": "python3",
    }
    assert "kernelspecs/session.etl/logo-64x64.png" in spec["resources"]["logo-64x64"]
    assert (await jp_fetch("kernelspecs", "session.etl", "logo-64x64.png")).code == 200

    # a second notebook and a bare kernel start attach to the same kernel
    b = await new_notebook(jp_fetch, "sub/b.ipynb", "session.etl")
    assert b["kernel"]["id"] == kid
    code, k = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "session.etl"})
    assert (code, k["id"], k["name"]) == (201, kid, "session.etl")
    assert [s.name for s in await ks.list()] == ["etl"]

    # one namespace: set through a notebook's websocket, seen by a client, and back
    ws = await jp_ws_fetch(
        "api", "kernels", kid, "channels", params={"session_id": uuid.uuid4().hex}
    )
    kc = ks.client("etl")
    try:
        assert (await ws_execute(ws, "x = 41"))["status"] == "ok"
        assert await value(kc, "x") == 41
        assert (await value(kc, "globals().update(x=x + 1) or x")) == 42
        reply = await ws_execute(ws, "", {"x": "x"})
        assert reply["user_expressions"]["x"]["data"]["text/plain"] == "42"
    finally:
        ws.close()
        kc.stop_channels()

    # the picker row: a jupyter_server session named after the session
    rows = await picker_rows(jp_fetch)
    assert [(r["name"], r["path"], r["kernel"]["id"]) for r in rows] == [
        ("etl", ".kernel-sessions/etl", kid)
    ]

    # closing a notebook, or shutting its kernel down, only detaches
    assert (await call(jp_fetch, "api", "sessions", a["id"], method="DELETE"))[0] == 204
    assert (await new_notebook(jp_fetch, "a.ipynb", "session.etl"))["kernel"][
        "id"
    ] == kid  # reopened
    assert (await call(jp_fetch, "api", "kernels", kid, method="DELETE"))[0] == 204
    assert kid in km and (await ks.get("etl")).state == "idle"
    assert (await call(jp_fetch, "api", "kernels", kid))[0] == 200
    kc = ks.client("etl")
    try:
        assert await value(kc, "x") == 42
    finally:
        kc.stop_channels()
    # deleting the picker row itself: it comes back, the kernel stays
    rows = await picker_rows(jp_fetch)
    assert (await call(jp_fetch, "api", "sessions", rows[0]["id"], method="DELETE"))[0] == 204
    rows = await picker_rows(jp_fetch)
    assert [(r["name"], r["kernel"]["id"]) for r in rows] == [("etl", kid)]
    assert kid in km

    # the culler leaves session kernels alone (an ordinary idle kernel goes)
    code, plain = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "python3"})
    assert code == 201 and plain["name"] == "python3"
    assert km.cull_idle_timeout == 0  # so every idle, unconnected kernel qualifies
    await km.cull_kernel_if_idle(plain["id"])
    await km.cull_kernel_if_idle(kid)
    assert plain["id"] not in km and kid in km

    # restarting from JupyterLab goes through the session manager and keeps the kernel id
    code, k = await call(jp_fetch, "api", "kernels", kid, "restart", method="POST")
    assert (code, k["id"], k["name"]) == (200, kid, "session.etl")
    model = await ks.get("etl")
    assert (model.state, model.restarts, model.kernel_id) == ("idle", 1, kid)
    kc = ks.client("etl")
    try:
        assert await value(kc, "'x' in globals()") is False
    finally:
        kc.stop_channels()

    # a rename follows into the kernel model, the kernelspec and the picker row
    await ks.rename("etl", "etl2")
    code, k = await call(jp_fetch, "api", "kernels", kid)
    assert k["name"] == "session.etl2"
    rows = await picker_rows(jp_fetch)
    assert [(r["name"], r["path"], r["kernel"]["id"]) for r in rows] == [
        ("etl2", ".kernel-sessions/etl2", kid)
    ]
    code, specs = await call(jp_fetch, "api", "kernelspecs")
    assert sorted(n for n in specs["kernelspecs"] if n.startswith("session.")) == ["session.etl2"]

    # only the sessions API ends a session: kernel, picker row and kernelspec go
    await ks.delete("etl2")
    assert kid not in km
    code, sessions = await call(jp_fetch, "api", "sessions")
    assert [s for s in sessions if s["kernel"]["id"] == kid] == []
    code, specs = await call(jp_fetch, "api", "kernelspecs")
    assert not [n for n in specs["kernelspecs"] if n.startswith("session.")]


async def test_bad_names_are_400s_and_concurrent_attaches_create_one_session(
    jp_fetch: Any, jp_serverapp: Any, ks: Any
) -> None:
    km = jp_serverapp.kernel_manager

    for parts, body in [
        (
            ("api", "sessions"),
            {"path": "x.ipynb", "type": "notebook", "kernel": {"name": "session.Bad/.."}},
        ),
        (("api", "kernels"), {"name": "session.Bad/.."}),
        (("api", "kernels"), {"name": "session."}),
        (("api", "sessions"), ["not", "an", "object"]),
    ]:
        code, err = await call(jp_fetch, *parts, method="POST", body=body)
        assert code == 400, (parts, body, code, err)
        assert err["message"] and "reason" in err
    code, err = await call(
        jp_fetch,
        "api",
        "sessions",
        method="POST",
        body={"path": "x.ipynb", "type": "notebook", "kernel": {"name": "session.Bad"}},
    )
    assert code == 400 and "must match" in err["message"] and err["reason"] == "invalid_name"
    assert (await call(jp_fetch, "api", "kernelspecs", "session.Bad"))[0] == 404
    assert (await call(jp_fetch, "api", "kernelspecs", "session.nope"))[0] == 404
    assert await ks.list() == [] and km.list_kernel_ids() == []

    # four attaches to a missing session at once: one session, one kernel
    events: list[dict] = []
    ks.observe(events.append)
    results = await asyncio.gather(
        *(new_notebook(jp_fetch, f"c{i}.ipynb", "session.conc") for i in range(3)),
        call(jp_fetch, "api", "kernels", method="POST", body={"name": "session.conc"}),
    )
    kid = ks.kernel_id("conc")
    assert [r["kernel"]["id"] for r in results[:3]] == [kid] * 3
    assert results[3][1]["id"] == kid
    assert [s.name for s in await ks.list()] == ["conc"]
    assert km.list_kernel_ids() == [kid]
    assert [e["to"] for e in events if e["name"] == "conc" and e["from"] is None] == ["starting"]

    # switching a notebook to another session: bad names are 400s; the old session survives
    sid = results[0]["id"]
    code, err = await call(
        jp_fetch,
        "api",
        "sessions",
        sid,
        method="PATCH",
        body={"kernel": {"name": "session.Bad/.."}},
    )
    assert code == 400 and err["reason"] == "invalid_name"
    code, model = await call(
        jp_fetch, "api", "sessions", sid, method="PATCH", body={"kernel": {"name": "session.other"}}
    )
    assert code == 200 and model["kernel"]["id"] == ks.kernel_id("other") != kid
    assert model["kernel"]["name"] == "session.other"
    assert kid in km and (await ks.get("conc")).state == "idle"


async def test_a_notebook_saved_before_a_rename_finds_the_renamed_session(
    jp_fetch: Any, jp_serverapp: Any, ks: Any
) -> None:
    first = await new_notebook(jp_fetch, "old.ipynb", "session.etl")
    kid = first["kernel"]["id"]
    await ks.rename("etl", "etl2")
    await ks.rename("etl2", "etl3")  # a chain of renames still leads to the session
    code, k = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "session.etl"})
    assert code == 201 and k["id"] == kid, k
    code, k = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "session.etl2"})
    assert code == 201 and k["id"] == kid, k
    assert [s.name for s in await ks.list()] == ["etl3"]
    # a new session taking the old name ends the redirect; deleting the target ends it too
    await ks.create("etl")
    assert ks.renamed_to("etl") is None and ks.renamed_to("etl2") == "etl3"
    code, k = await call(jp_fetch, "api", "kernels", method="POST", body={"name": "session.etl"})
    assert k["id"] == ks.kernel_id("etl") != kid
    await ks.delete("etl3")
    assert ks.renamed_to("etl2") is None


async def test_auto_sessions_stay_out_of_the_launcher(jp_fetch: Any, ks: Any) -> None:
    """A leased session (a script's ``connect()``) is not listed as a kernelspec, but its spec
    still resolves by name."""
    code, _ = await call(
        jp_fetch,
        "api",
        "kernel-sessions",
        "sessions",
        "auto-h-1-2",
        "lease",
        method="POST",
        body={"owner": "h:1"},
    )
    assert code in (200, 201)
    await ks.create("named")
    code, specs = await call(jp_fetch, "api", "kernelspecs")
    assert code == 200
    assert "session.named" in specs["kernelspecs"]
    assert "session.auto-h-1-2" not in specs["kernelspecs"]
    code, spec = await call(jp_fetch, "api", "kernelspecs", "session.auto-h-1-2")
    assert code == 200 and spec["spec"]["display_name"] == "auto-h-1-2 (session)"
