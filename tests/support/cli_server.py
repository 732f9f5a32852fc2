"""A real server for the CLI, client and provisioner tests, started with ``jupyter kernel-sessions
serve`` in a subprocess, with its own data, runtime and config dirs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support import REPO

START_TIMEOUT = 120.0  # seconds (imports plus the first spare on a loaded 2-core box)
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``jupyter kernel-sessions serve`` on a free port; ``env`` points clients at its runtime
    dir, where discovery finds it."""

    def __init__(
        self,
        base: Path,
        config: dict[str, dict[str, Any]] | None = None,
        data: Path | None = None,
        owner: bool = True,
        **manager: Any,
    ) -> None:
        """``data``: another server's data dir to share; ``owner=False``: that server owns it,
        so this one is ready when it answers HTTP (its sessions API answers 503)."""
        self.base = base
        for d in ("data", "runtime", "config", "root"):
            (base / d).mkdir(parents=True, exist_ok=True)
        sections: dict[str, dict[str, Any]] = {
            "PoolMixin": {"pool_sizes": {"python3": 1}},
            "KernelSessionManager": {"keep_kernels_on_stop": False, **manager},
        }
        for section, values in (config or {}).items():
            sections[section] = {**sections.get(section, {}), **values}
        (base / "config" / "jupyter_server_config.json").write_text(json.dumps(sections))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {
            **os.environ,
            "JUPYTER_DATA_DIR": str(data or base / "data"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            # kernels of one server share an IPython history of their own: one killed
            # elsewhere cannot get it moved aside under this server's kernels
            "IPYTHONDIR": str(base / "ipython"),
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])),
        }
        for var in ("JUPYTER_KERNEL_SESSIONS_URL", "JUPYTER_TOKEN"):
            self.env.pop(var, None)
        self.log = open(base / "server.log", "w")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "kernel_sessions.cli",
            "serve",
            "--port",
            str(self.port),
            f"--ServerApp.token={self.token}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={base / 'root'}",
        ]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=base / "root", stdout=self.log, stderr=subprocess.STDOUT
        )
        self.kids: set[int] = set()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                r = httpx.get(
                    self.url + ("api/kernel-sessions/pool" if owner else "api/status"),
                    timeout=5,
                    headers={"Authorization": f"token {self.token}"},
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()  # a server that did not start leaves no process behind
                raise AssertionError("server did not start\n" + self.output())
            time.sleep(0.2)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            self.url + "api/kernel-sessions/" + path,
            timeout=60,
            headers={"Authorization": f"token {self.token}"},
            **kwargs,
        )

    def names(self) -> list[str]:
        return [s["name"] for s in self.api("GET", "sessions").json()]

    @contextlib.contextmanager
    def environment(self, **extra: str) -> Iterator[None]:
        """Run in-process code as a client of this server would (discovery via runtime dir)."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.env, **extra)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self, kill_kernels: bool = True) -> None:
        """SIGTERM, then (unless ``kill_kernels`` is False, for a server that must leave
        session kernels running for the next one) kill every process it left behind."""
        try:
            self.kids = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
        self.log.close()
        for pid in self.kids if kill_kernels else ():  # nothing outlives the module
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """``jupyter kernel-sessions ARGV`` in this process: (exit code, stdout, stderr)."""
    from kernel_sessions.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse's usage errors
                code = int(e.code or 0)
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def cli_subprocess(
    *argv: str, env: dict[str, str], timeout: float = 120, stdin: bool = False
) -> subprocess.Popen:
    """``jupyter kernel-sessions ARGV`` as a real process, through the ``jupyter`` launcher
    (``stdin``: a pipe to feed, else none)."""
    bindir = os.path.dirname(sys.executable)
    env = {**env, "PATH": bindir + os.pathsep + env.get("PATH", "")}
    return subprocess.Popen(
        [os.path.join(bindir, "jupyter"), "kernel-sessions", *argv],
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
