"""A real ``jupyter lab`` subprocess and a headless Debian chromium, for the browser tests.

The server runs on a free port with a random token, with its own root, data, runtime, config,
settings and workspaces directories (so nothing of the user's leaks in, and JupyterLab's news
prompt is off); the labextension comes from the environment (``share/jupyter/labextensions``).
Session kernels stop with the server; whatever is left of its processes is killed on stop.
"""

from __future__ import annotations

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
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT = 90.0  # seconds: imports and the first warm kernel on a loaded 2-core machine
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` with the kernel_sessions extension, in a directory of its own."""

    def __init__(self, base: Path, pool_size: int = 1) -> None:
        self.base = base
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        dirs = {d: base / d for d in ("root", "data", "runtime", "config", "settings",
                                       "workspaces", "sessions")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self.root = dirs["root"]
        self.runtime = dirs["runtime"]
        (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
            "ServerApp": {"jpserver_extensions": {"kernel_sessions": True}},
            "PoolMixin": {"pool_sizes": {"python3": pool_size}},
            "KernelSessionsApp": {"session_data_dir": str(dirs["sessions"])},
            "KernelSessionManager": {"keep_kernels_on_stop": False},
        }))
        notification = dirs["settings"] / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = {**os.environ, "JUPYTER_DATA_DIR": str(dirs["data"]),
               "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
               "JUPYTER_CONFIG_DIR": str(dirs["config"])}
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.open_browser=False",
                f"--LabApp.user_settings_dir={dirs['settings']}",
                f"--LabApp.workspaces_dir={dirs['workspaces']}"]
        if os.getuid() == 0:
            args.append("--allow-root")
        self.log_path = base / "lab.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=self.root)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.call("GET", "api/kernel-sessions/pool")[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("jupyter lab did not start:\n" + self.output())
            time.sleep(0.25)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-6000:]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
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

    def stop(self) -> None:
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
        self._log.close()
