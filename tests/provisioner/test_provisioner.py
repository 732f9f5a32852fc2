"""The ``kernel-sessions`` provisioner: stock jupyter_client tools on a session by kernel name.

``install-kernelspec`` writes ``session.<name>``; a ``KernelManager`` (and nbclient, which uses
one) then attaches to the session, and everything it does to end "its kernel" only detaches.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from kernel_sessions.client import connect
from tests.support import REPO
from tests.support.cli_server import LiveServer, run_cli

NOTEBOOK = REPO / "notebooks" / "sessions" / "session-demo.ipynb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("provisioner"))
    try:
        with live.environment():  # kernelspecs go to the server's data dir, found from there
            for name in ("etl", "demo"):
                assert run_cli("install-kernelspec", name)[0] == 0
        yield live
    finally:
        live.stop()


def session(server: LiveServer, name: str) -> dict:
    r = server.api("GET", f"sessions/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def value(server: LiveServer, name: str, expr: str) -> str:
    r = server.api("POST", f"sessions/{name}/execute", json={"code": expr}).json()
    assert r["status"] == "ok", r
    return r["outputs"][0]["data"]["text/plain"]


def started(km: KernelManager) -> Any:
    km.start_kernel()
    kc = km.client()
    kc.start_channels(hb=False)
    kc.wait_for_ready(timeout=30)
    return kc


def test_kernel_manager_attaches_and_only_detaches(server: LiveServer) -> None:
    with server.environment():
        km = KernelManager(kernel_name="session.etl")
        kc = started(km)  # the session is created from the pool on first attach
        try:
            kid = session(server, "etl")["kernel"]["id"]
            assert kc.execute_interactive("x = 5", timeout=30)["content"]["status"] == "ok"
            assert value(server, "etl", "x") == "5"

            # an interrupt reaches the session's kernel
            msg_id = kc.execute("import time; time.sleep(60)")
            deadline = time.monotonic() + 30
            while session(server, "etl")["state"] != "busy":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            km.interrupt_kernel()
            reply = kc.get_shell_msg(timeout=30)
            assert reply["parent_header"]["msg_id"] == msg_id
            assert reply["content"]["ename"] == "KeyboardInterrupt"

            # a client's shutdown_request is answered, never delivered
            kc.shutdown()
            assert kc.control_channel.get_msg(timeout=30)["msg_type"] == "shutdown_reply"
            assert value(server, "etl", "x") == "5"
        finally:
            kc.stop_channels()
        km.shutdown_kernel()  # graceful: interrupt + shutdown_request + wait, all detaching
        assert not km.is_alive()
        s = session(server, "etl")
        assert (s["state"], s["kernel"]["id"], s["restarts"]) == ("idle", kid, 0)
        assert value(server, "etl", "x") == "5"

        km = KernelManager(kernel_name="session.etl")
        kc = started(km)
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # kill: detaches too
        assert value(server, "etl", "x") == "5"

        # restarting "the kernel" restarts the session: same kernel, empty namespace
        km = KernelManager(kernel_name="session.etl")
        kc = started(km)
        try:
            km.restart_kernel()
            kc.wait_for_ready(timeout=30)
            s = session(server, "etl")
            assert (s["kernel"]["id"], s["restarts"]) == (kid, 1)
            assert (
                kc.execute_interactive("'x' in globals()", timeout=30)["content"]["status"] == "ok"
            )
            assert value(server, "etl", "'x' in globals()") == "False"

            # the session ending under it is noticed (poll asks the server)
            assert km.is_alive()
            assert server.api("DELETE", "sessions/etl").status_code == 204
            deadline = time.monotonic() + 10
            while km.is_alive():
                assert time.monotonic() < deadline, "the provisioner did not notice"
                time.sleep(0.2)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


async def test_nbclient_runs_a_notebook_in_session_demo(server: LiveServer, tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata.kernelspec.name == "session.demo"
    with server.environment():
        client = NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(tmp_path)}})
        await client.async_execute()
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert outputs[-1]["data"]["text/plain"] == "('cairo', 79.7)"

        # the notebook is done and its kernel "shut down": the session and its variables stay
        assert session(server, "demo")["state"] == "idle"
        kc = connect("demo")
        try:
            assert kc.pull("summary") == {"cairo": 26.5, "lima": 19.0, "oslo": 5.0}
            assert kc.pull("fahrenheit")(100) == 212
            reply = kc.execute_interactive("warmest", timeout=30, output_hook=lambda m: None)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
    assert server.api("DELETE", "sessions/demo").status_code == 204
