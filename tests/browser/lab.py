"""A real ``jupyter lab`` (or ``jupyter server``) subprocess and a headless Debian chromium,
for the browser and notebook tests.

The server runs on a free port with a random token, with its own root, data, runtime, config,
settings and workspaces directories (so nothing of the user's leaks in, and JupyterLab's news
prompt is off); the labextension comes from the environment (``share/jupyter/labextensions``).
Session kernels stop with the server; whatever is left of its processes is killed on stop.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
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

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT = 90.0  # seconds: imports and the first warm kernel on a loaded 2-core machine
STOP_TIMEOUT = 20.0
START_ATTEMPTS = 3  # a free port can be taken before the server binds it (kernels bind ports too)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` (``lab=False``: ``jupyter server``) with the kernel_sessions extension, in
    a directory of its own."""

    def __init__(self, base: Path, pool_size: int = 1, lab: bool = True) -> None:
        self.base = base
        self.token = secrets.token_hex(16)
        dirs = {
            d: base / d
            for d in ("root", "data", "runtime", "config", "settings", "workspaces", "sessions")
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self.root = dirs["root"]
        self.runtime = dirs["runtime"]
        (dirs["config"] / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {"jpserver_extensions": {"kernel_sessions": True}},
                    "PoolMixin": {"pool_sizes": {"python3": pool_size}},
                    "KernelSessionsApp": {"session_data_dir": str(dirs["sessions"])},
                    "KernelSessionManager": {"keep_kernels_on_stop": False},
                }
            )
        )
        notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        self._env = {
            **os.environ,
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        }
        self._args = [
            sys.executable,
            "-m",
            "jupyterlab" if lab else "jupyter_server",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False",
        ]
        if lab:
            self._args += [
                f"--LabApp.user_settings_dir={dirs['settings']}",
                f"--LabApp.workspaces_dir={dirs['workspaces']}",
            ]
        if os.getuid() == 0:
            self._args.append("--allow-root")
        self.log_path = base / "lab.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115
        for attempt in range(START_ATTEMPTS):
            if self._start():
                return
            exited = self.proc.poll() is not None  # e.g. its port was taken meanwhile
            self.stop(close_log=False)
            if attempt == START_ATTEMPTS - 1 or not exited:
                self._log.close()
                raise RuntimeError("the server did not start:\n" + self.output())

    def _start(self) -> bool:
        """Start on a free port; False when the server exits or never answers."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [*self._args, f"--port={self.port}"],
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                if self.call("GET", "api/kernel-sessions/pool")[0] == 200:
                    return True
            except (OSError, http.client.HTTPException, ValueError):
                pass  # not listening yet, or someone else's port
            time.sleep(0.25)
        return False

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-6000:]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        if data is None and method == "POST":
            data = b""
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def kernel_pid(self, kernel_id: str) -> int:
        """The pid of a kernel of this server, found by its connection file."""
        marker = f"kernel-{kernel_id}.json"
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(marker in part for part in proc.info["cmdline"] or ()):
                return proc.info["pid"]
        raise LookupError(f"no process for kernel {kernel_id}")

    def _leftovers(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        try:
            procs += psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            pass
        runtime = str(self.runtime)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if any(runtime in part for part in proc.info["cmdline"] or ()):
                procs.append(proc)
        return procs

    def stop(self, close_log: bool = True) -> None:
        """Stop the server (gracefully first), then anything it left running."""
        kids = self._leftovers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        for proc in kids + self._leftovers():
            try:
                proc.kill()
            except psutil.Error:
                pass
        if close_log:
            self._log.close()
