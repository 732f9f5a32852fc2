"""Benchmark the Python client and the command line (not a test).

Starts one server with ``jupyter kernel-sessions serve`` and measures, in the same run:

1. execute round trip through ``connect(name)`` vs a raw jupyter_client ``BlockingKernelClient``
   on the same kernel (alternating rounds; ratio of medians, goal <= 1.05), and the time to get
   a ready client either way;
2. ``jupyter kernel-sessions list`` wall time with 50 sessions, as a fresh process (server from
   the environment, or found through the runtime files), next to the time Python needs just to
   import the package and to run the command in-process.

    .venv/bin/python bench/client.py [--rounds 300] [--sessions 50]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from jupyter_client.blocking.client import BlockingKernelClient

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kernel_sessions.cli.app import main as cli_main
from kernel_sessions.client import KernelSessionsClient

WARMUP = 20
START_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(v: float) -> str:
    return f"{v * 1000:8.2f} ms"


class Server:
    def __init__(self, base: Path) -> None:
        for d in ("config", "data", "runtime", "root"):
            (base / d).mkdir()
        (base / "config" / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "PoolMixin": {"pool_sizes": {"python3": 2}},
                    "KernelSessionManager": {"keep_kernels_on_stop": False},
                }
            )
        )
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        for var in ("JUPYTER_KERNEL_SESSIONS_URL", "JUPYTER_TOKEN"):
            self.env.pop(var, None)
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
            "--ServerApp.log_level=WARN",
        ]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        self.log = open(base / "server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=base / "root", stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if (
                    httpx.get(
                        self.url + "api/kernel-sessions/pool",
                        timeout=5,
                        headers={"Authorization": f"token {self.token}"},
                    ).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {self.log.name}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            kids = {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            kids = set()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for pid in kids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self.log.close()


def noop(msg: dict) -> None:
    pass


def round_trip(kc: BlockingKernelClient) -> float:
    t0 = time.perf_counter()
    reply = kc.execute_interactive("1", timeout=30, output_hook=noop)
    elapsed = time.perf_counter() - t0
    assert reply["content"]["status"] == "ok"
    return elapsed


def bench_rtt(api: KernelSessionsClient, rounds: int) -> None:
    api.create_session("bench")
    ready_connect, ready_raw = [], []
    for _ in range(10):
        t0 = time.perf_counter()
        kc = api.connect("bench")
        ready_connect.append(time.perf_counter() - t0)
        kc.stop_channels()
        t0 = time.perf_counter()
        raw = BlockingKernelClient()
        raw.load_connection_info(api.connection_info("bench"))
        raw.start_channels(hb=False)
        raw.wait_for_ready(timeout=30)
        ready_raw.append(time.perf_counter() - t0)
        raw.stop_channels()

    kc = api.connect("bench")
    raw = BlockingKernelClient()
    raw.load_connection_info(api.connection_info("bench"))
    raw.start_channels(hb=False)
    raw.wait_for_ready(timeout=30)
    for _ in range(WARMUP):
        round_trip(kc)
        round_trip(raw)
    ours, theirs = [], []
    for i in range(rounds):  # alternate, so drift in machine load hits both alike
        if i % 2:
            ours.append(round_trip(kc))
            theirs.append(round_trip(raw))
        else:
            theirs.append(round_trip(raw))
            ours.append(round_trip(kc))
    kc.stop_channels()
    raw.stop_channels()
    api.delete_session("bench")

    print(f"\n1. execute round trip, {rounds} rounds each, same kernel (ZMQ, loopback)")
    print(f"   {'':28} {'p50':>11} {'p90':>11} {'mean':>11}")
    for label, xs in (("connect('bench')", ours), ("raw BlockingKernelClient", theirs)):
        print(f"   {label:28} {ms(pct(xs, 0.5))} {ms(pct(xs, 0.9))} {ms(statistics.fmean(xs))}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"   ratio (p50 connect / p50 raw): {ratio:.3f}  (goal <= 1.05: "
        f"{'met' if ratio <= 1.05 else 'NOT met'})"
    )
    print(
        f"   a ready client: connect() {ms(statistics.median(ready_connect))} (REST lookup + "
        f"iopub handshake) vs raw start_channels + wait_for_ready "
        f"{ms(statistics.median(ready_raw))}"
    )


def timed_process(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return elapsed


def bench_list(server: Server, api: KernelSessionsClient, sessions: int, repeat: int) -> None:
    with ThreadPoolExecutor(4) as pool:  # a few at a time: the pool refills behind them
        list(pool.map(lambda i: api.create_session(f"s{i:02d}"), range(sessions)))
    assert len(api.list_sessions()) == sessions
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    env_url = {
        **server.env,
        "JUPYTER_KERNEL_SESSIONS_URL": server.url,
        "JUPYTER_TOKEN": server.token,
    }
    rows = []
    for label, cmd, env in (
        ("list, server from env", [jupyter, "kernel-sessions", "list"], env_url),
        ("list --json, server from env", [jupyter, "kernel-sessions", "list", "--json"], env_url),
        ("list, server from runtime files", [jupyter, "kernel-sessions", "list"], server.env),
        (
            "python -c 'import kernel_sessions'",
            [sys.executable, "-c", "import kernel_sessions"],
            server.env,
        ),
        ("python -c 'pass'", [sys.executable, "-c", "pass"], server.env),
    ):
        rows.append((label, [timed_process(cmd, env) for _ in range(repeat)]))

    saved = dict(os.environ)
    os.environ.update(env_url)
    try:
        inproc = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli_main(["list"]) == 0
            inproc.append(time.perf_counter() - t0)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rows.append(("main(['list']) in-process, imported", inproc))

    print(
        f"\n2. `jupyter kernel-sessions list` with {sessions} sessions, wall time "
        f"(median of {repeat})"
    )
    for label, xs in rows:
        print(f"   {label:40} {ms(statistics.median(xs))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"kernel-sessions client benchmark ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        try:
            api = KernelSessionsClient(server.url, server.token)
            bench_rtt(api, args.rounds)
            bench_list(server, api, args.sessions, args.repeat)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
