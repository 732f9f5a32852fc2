"""A session and its namespace outlive the server: graceful stop (SIGTERM) and a crash (SIGKILL).

Real ``jupyter server`` subprocesses, since this needs process death. Session kernels are
independent and recorded in the registry; the next server re-adopts them under the same id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from tests.support import REPO

SERVER_START_TIMEOUT = 90.0  # seconds (imports plus the first spare on a loaded 2-core box)
SERVER_STOP_TIMEOUT = 30.0
TOKEN = "restart-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One ``jupyter server`` process on a fresh port, sharing data/config dirs with its peers."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.log = open(base / f"server-{self.port}.log", "w")  # noqa: SIM115
        env = {
            **os.environ,
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.token={TOKEN}",
                f"--ServerApp.root_dir={base / 'root'}",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=base / "root",
        )
        self.kids: set[int] = set()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            try:
                if self.call("GET", "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "server did not start\n" + self.output()
            time.sleep(0.2)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = (
            json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        )
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {TOKEN}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def execute(self, name: str, code: str) -> dict:
        status, result = self.call(
            "POST", f"/api/kernel-sessions/sessions/{name}/execute", {"code": code}
        )
        assert status == 200 and result["status"] == "ok", (status, result)
        return result

    def descendants(self) -> set[int]:
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            return set()

    def stop(self, sig: int) -> None:
        self.kids = self.descendants()  # a SIGKILLed server's spares outlive it: remember them
        self.proc.send_signal(sig)
        self.proc.wait(SERVER_STOP_TIMEOUT)
        self.log.close()


def value_of_x(server: Server, name: str) -> str:
    return server.execute(name, "x")["outputs"][0]["data"]["text/plain"]


class Fleet:
    """Servers one after another on the same data and config dirs (under ``base``), with the
    extension and a pool of one; ``close`` leaves nothing running, whatever failed."""

    def __init__(self, base: Path, **manager: Any) -> None:
        self.base = base
        for d in ("data", "runtime", "config", "root"):
            (base / d).mkdir()
        config: dict[str, Any] = {
            "ServerApp": {"jpserver_extensions": {"kernel_sessions": True}},
            "PoolMixin": {"pool_sizes": {"python3": 1}},
        }
        if manager:
            config["KernelSessionManager"] = manager
        (base / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.servers: list[Server] = []
        self.pids: set[int] = set()  # session kernels to kill on the way out

    def start(self) -> Server:
        server = Server(self.base)
        self.servers.append(server)
        return server

    def close(self) -> None:
        leftovers = {pid for server in self.servers for pid in server.kids | server.descendants()}
        for server in self.servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(SERVER_STOP_TIMEOUT)
        for pid in leftovers | self.pids:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass


def test_session_survives_sigterm_and_sigkill_of_the_server(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, keep_kernels_on_stop=True)
    try:
        first = fleet.start()
        status, s = first.call("POST", "/api/kernel-sessions/sessions", {"name": "keep"})
        assert status == 201, s
        kid = s["kernel"]["id"]
        first.execute("keep", "x = 42\nimport os\npid = os.getpid()")
        session_pid = int(first.execute("keep", "pid")["outputs"][0]["data"]["text/plain"])
        fleet.pids.add(session_pid)
        first.stop(signal.SIGTERM)
        assert psutil.pid_exists(session_pid), "graceful stop killed the session kernel"

        second = fleet.start()
        status, listed = second.call("GET", "/api/kernel-sessions/sessions")
        assert status == 200 and [(x["name"], x["state"], x["kernel"]["id"]) for x in listed] == [
            ("keep", "idle", kid)
        ], listed
        assert value_of_x(second, "keep") == "42"
        status, kernels = second.call("GET", "/api/kernels")  # the stock API still works
        assert status == 200 and kid in [k["id"] for k in kernels], kernels
        second.stop(signal.SIGKILL)

        third = fleet.start()
        status, s = third.call("GET", "/api/kernel-sessions/sessions/keep")
        assert status == 200 and (s["state"], s["kernel"]["id"]) == ("idle", kid), s
        assert value_of_x(third, "keep") == "42"
        status, _ = third.call("DELETE", "/api/kernel-sessions/sessions/keep")
        assert status == 204
        third.stop(signal.SIGTERM)
        assert (
            not psutil.pid_exists(session_pid)
            or psutil.Process(session_pid).status() == psutil.STATUS_ZOMBIE
        )
    finally:
        fleet.close()


def test_graceful_stop_hibernates_and_a_crash_restores_the_latest_checkpoint(
    tmp_path: Path,
) -> None:
    """Default policy: SIGTERM checkpoints and stops session kernels; the next server wakes a
    session on its first use. After a SIGKILL of the server *and* the kernel, the next server
    restores the latest checkpoint into a new kernel with the same id."""
    fleet = Fleet(tmp_path)
    try:
        first = fleet.start()
        status, s = first.call("POST", "/api/kernel-sessions/sessions", {"name": "sleepy"})
        assert status == 201, s
        kid = s["kernel"]["id"]
        first.execute("sleepy", "x = 42\nimport os\npid = os.getpid()")
        pid = int(first.execute("sleepy", "pid")["outputs"][0]["data"]["text/plain"])
        first.stop(signal.SIGTERM)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

        second = fleet.start()
        status, s = second.call("GET", "/api/kernel-sessions/sessions/sleepy")
        assert (s["state"], s["kernel"]["id"]) == ("hibernated", kid), s
        assert s["reason"].startswith("server stopped; checkpoint ")
        assert value_of_x(second, "sleepy") == "42"  # execute wakes it
        status, s = second.call("GET", "/api/kernel-sessions/sessions/sleepy")
        assert (s["state"], s["kernel"]["id"]) == ("idle", kid), s
        second.execute("sleepy", "x = 43\npid = os.getpid()")
        pid = int(second.execute("sleepy", "pid")["outputs"][0]["data"]["text/plain"])
        status, ckpt = second.call("POST", "/api/kernel-sessions/sessions/sleepy/checkpoints", {})
        assert status == 201, ckpt
        fleet.pids.add(pid)
        second.stop(signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)

        third = fleet.start()
        deadline = time.monotonic() + 60
        while True:
            status, s = third.call("GET", "/api/kernel-sessions/sessions/sleepy")
            if s["state"] == "idle" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (s["state"], s["kernel"]["id"]) == ("idle", kid), s
        assert s["reason"] == f"auto-restored checkpoint {ckpt['id']} taken {ckpt['created']}" or s[
            "reason"
        ].startswith(f"auto-restored checkpoint {ckpt['id']}"), s
        assert value_of_x(third, "sleepy") == "43"
        third.stop(signal.SIGTERM)
    finally:
        fleet.close()
