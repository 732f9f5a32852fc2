"""The Python client: REST (sync and async), ``connect(name)``, and auto sessions with leases.

Auto sessions need process lifetimes, so their owners are real subprocesses; the server runs
with a 3 s lease so a SIGKILLed owner's session is reaped quickly.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.blocking.client import BlockingKernelClient

from kernel_sessions.client import (
    AsyncKernelSessionsClient,
    ClientError,
    KernelSessionsClient,
    connect,
    connect_async,
)
from tests.support.cli_server import LiveServer

LEASE = 3.0  # seconds
REAP_SLACK = 5.0  # the bound: reaped within lease + 5 s of the owner's death


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("client"), lease_seconds=LEASE, reap_interval=0.25)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(autouse=True)
def no_leftovers(server: LiveServer) -> Iterator[None]:
    """A test that failed half-way must not leave its sessions to the next one."""
    yield
    for name in server.names():
        server.api("DELETE", f"sessions/{name}")


def require_lease_endpoint(server: LiveServer) -> None:
    r = server.api("DELETE", "sessions/no-such-session/lease", params={"owner": "x"})
    if r.status_code == 404 and r.json()["message"].startswith("no endpoint"):
        pytest.fail(
            "the lease endpoint is not routed: handlers.default_handlers needs "
            "*handlers_leases.routes(API_ROOT, NAME)"
        )


def quiet(kc: Any, code: str) -> tuple[dict, str]:
    """Execute and collect stdout (the first execute after connect must not lose any)."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, timeout=30, output_hook=hook)
    return reply["content"], "".join(out)


def idle(kc: Any, msg_id: str) -> None:
    """Wait for the iopub ``idle`` that ends request ``msg_id``."""
    while True:
        msg = kc.get_iopub_msg(timeout=30)
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            return


def test_rest_client_mirrors_the_api(server: LiveServer) -> None:
    with KernelSessionsClient(server.url, server.token) as api:
        s = api.create_session("r1", tags={"k": "v"})
        assert (s["name"], s["state"], s["tags"]) == ("r1", "idle", {"k": "v"})
        assert [x["name"] for x in api.list_sessions()] == ["r1"]
        assert api.update_session("r1", ttl=100.0)["ttl"] == 100.0
        r = api.execute("r1", "a = 2\na * 21")
        assert r["status"] == "ok" and r["outputs"][0]["data"]["text/plain"] == "42"

        # push/pull move real objects (dill): functions too
        api.push("r1", double=lambda v: 2 * v, data={"x": [1, 2]})
        assert api.pull("r1", "double")(4) == 8
        assert api.execute("r1", "b = double(a) + len(data['x'])")["status"] == "ok"
        assert api.pull("r1", "b") == 6
        api.set_variable("r1", "j", {"a": [1]})
        assert api.get_variable("r1", "j")["value"] == {"a": [1]}
        assert api.get_variable("r1", "j", "repr")["value"] == "{'a': [1]}"
        assert {"a", "b", "data", "double", "j"} <= {
            v["name"] for v in api.variables("r1")["variables"]
        }
        api.delete_variable("r1", "j")
        with pytest.raises(ClientError) as e:
            api.get_variable("r1", "j")
        assert (e.value.status, e.value.reason, str(e.value)) == (
            404,
            "not_found",
            "no variable named 'j'",
        )

        info = api.connection_info("r1")
        assert info["kernel_id"] == s["kernel"]["id"] and info["key"]
        assert "python3" in api.pool()["pools"]
        assert api.spec().startswith("openapi:")

        # leases: a named session is never taken over
        require_lease_endpoint(server)
        with pytest.raises(ClientError) as e:
            api.acquire_lease("r1", "someone")
        assert (e.value.status, e.value.reason) == (409, "lease_conflict")

        assert api.rename_session("r1", "r2")["name"] == "r2"
        assert api.restart("r2")["restarts"] == 1
        assert api.interrupt("r2")["name"] == "r2"
        with pytest.raises(ClientError) as e:
            api.get_session("Bad")
        assert (e.value.status, e.value.reason) == (400, "invalid_name")
        api.delete_session("r2")
        assert api.list_sessions() == []


def test_connect_by_name(server: LiveServer) -> None:
    with server.environment():  # the server is found through its runtime file
        kc = connect("n1")  # created from the pool on demand
        try:
            assert isinstance(kc, BlockingKernelClient) and kc.channels_running
            content, out = quiet(kc, "print('first')")
            assert (content["status"], out) == ("ok", "first\n")
            kc.push(msg="hi")
            kc2 = connect("n1")
            try:
                assert quiet(kc2, "x = msg * 2; print(x)")[1] == "hihi\n"
            finally:
                kc2.stop_channels()
            assert kc.pull("x") == "hihi"
            assert {v["name"] for v in kc.variables()} == {"msg", "x"}

            # a session busy with someone else's cell can still be attached to at once
            running = kc.execute("import time; time.sleep(60)")
            deadline = time.monotonic() + 30
            while server.api("GET", "sessions/n1").json()["state"] != "busy":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            kc3 = connect("n1")
            try:
                assert server.api("GET", "sessions/n1").json()["state"] == "busy"
                server.api("POST", "sessions/n1/interrupt")
                reply = kc.get_shell_msg(timeout=30)
                assert reply["parent_header"]["msg_id"] == running
                # the kernel aborts requests that reach it while it handles the error (Jupyter's
                # stop_on_error); its idle says that is over
                idle(kc, running)
                content, out = quiet(kc3, "print(x)")
                assert (content["status"], out) == ("ok", "hihi\n")  # and it sees its outputs
            finally:
                kc3.stop_channels()
        finally:
            kc.stop_channels()
        with pytest.raises(ClientError) as e:
            connect("n2", create=False)
        assert e.value.reason == "not_found"
        assert server.names() == ["n1"]  # closing clients never ends a session
        server.api("DELETE", "sessions/n1")


async def test_async_client_and_connect_async(server: LiveServer) -> None:
    async with AsyncKernelSessionsClient(server.url, server.token) as api:
        await api.create_session("as1")
        await api.push("as1", v=5)
        assert await api.pull("as1", "v") == 5
        kc = await api.connect("as1")
        try:
            assert isinstance(kc, AsyncKernelClient)
            reply = await kc.execute_interactive("w = v + 1", timeout=30)
            assert reply["content"]["status"] == "ok"
            assert await kc.pull("w") == 6
        finally:
            kc.stop_channels()
        await api.delete_session("as1")
    with server.environment():
        kc = await connect_async("as2")
        try:
            assert (await kc.execute_interactive("1", timeout=30))["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
    server.api("DELETE", "sessions/as2")


OWNER = """
import json, sys
from kernel_sessions.client import connect, release
a = connect()
b = connect()
named = connect("named-a")
first = a.session_name
assert a.execute_interactive("x = 1", timeout=30)["content"]["status"] == "ok"
release()
c = connect()
print(json.dumps({"first": first, "again": b.session_name, "named": named.session_name,
                  "second": c.session_name}), flush=True)
sys.stdin.readline()
"""
OTHER = """
import json, sys
from kernel_sessions.client import connect
print(json.dumps({"second": connect().session_name}), flush=True)
sys.stdin.readline()
"""


def test_auto_sessions(server: LiveServer) -> None:
    require_lease_endpoint(server)
    env = server.env
    owner_a = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    owner_b = subprocess.Popen(
        [sys.executable, "-c", OTHER],
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        a = json.loads(owner_a.stdout.readline())
        b = json.loads(owner_b.stdout.readline())
        seen = time.monotonic()
        # one session per process, reused by later calls; an explicit name wins
        assert a["again"] == a["first"] and a["named"] == "named-a"
        assert re.fullmatch(rf"auto-[a-z0-9-]+-{owner_a.pid}-\d{{13}}", a["first"]), a
        # release() ended the first; the next connect() made a new one
        assert a["second"] != a["first"]
        names = server.names()
        assert a["first"] not in names
        assert {a["second"], b["second"], "named-a"} <= set(names)
        assert a["second"] != b["second"]  # two processes, two sessions
        owners = {s["name"]: s["owner"] for s in server.api("GET", "sessions").json()}
        assert owners[a["second"]] != owners[b["second"]] and owners["named-a"] is None

        # the leases are renewed: both sessions outlive their 3 s lease
        while time.monotonic() - seen < LEASE + 1:
            time.sleep(0.25)
            assert {a["second"], b["second"]} <= set(server.names())

        # a normal exit releases at once
        owner_b.communicate("\n", timeout=60)
        assert b["second"] not in server.names()

        # a SIGKILLed owner stops renewing: reaped within lease + 5 s
        owner_a.send_signal(signal.SIGKILL)
        owner_a.wait(30)
        killed = time.monotonic()
        while a["second"] in server.names():
            assert time.monotonic() - killed < LEASE + REAP_SLACK, "not reaped in time"
            time.sleep(0.1)
        assert server.names() == ["named-a"]  # named sessions have no lease
    finally:
        for proc in (owner_a, owner_b):
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        server.api("DELETE", "sessions/named-a")


def test_client_calls_do_not_log_a_line_each(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Under papermill or nbclient (logging at INFO) the API calls stay quiet."""
    import logging

    from kernel_sessions.client.rest import RestClient

    caplog.set_level(logging.INFO)
    with RestClient(server.url, server.token) as api:
        api.list_sessions()
        api.pool()
    assert not [r for r in caplog.records if r.name.startswith("httpx")], caplog.text
