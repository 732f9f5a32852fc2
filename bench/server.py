"""Benchmark the kernel_sessions server extension against a stock jupyter_server (not a test).

Starts two real ``jupyter server`` processes on loopback in one run: one with the extension,
one stock (explicit stock kernel manager and websocket classes, extension disabled), and
measures:

1. create -> kernel answers: ``POST api/kernel-sessions/sessions`` (warm pool) vs stock
   ``POST api/kernels`` (cold start), each followed by a ZMQ kernel_info round trip;
2. execute round trip over the kernel websocket: extension vs stock vs raw ZMQ to the kernel;
3. load: N sessions, C concurrent clients looping on the GET endpoints for D seconds
   (p50/p99 latency, throughput, errors).

    .venv/bin/python bench/server.py [--duration 30] [--sessions 32] [--clients 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from jupyter_client import AsyncKernelClient
from jupyter_client.session import Session
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

REPO = Path(__file__).resolve().parent.parent
TOKEN = uuid.uuid4().hex
CREATE_ROUNDS = 8
RTT_ROUNDS = 200
RTT_WARMUP = 10
SINGLE_CLIENT_ROUNDS = 300
START_TIMEOUT = 120.0
POOL_SIZE = 2
STOCK_CONFIG = {
    "ServerApp": {
        "jpserver_extensions": {"kernel_sessions": False},
        "kernel_manager_class": "jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager",
        "kernel_websocket_connection_class": "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection",
    },
}
EXTENSION_CONFIG = {
    "ServerApp": {"jpserver_extensions": {"kernel_sessions": True}},
    "PoolMixin": {"pool_sizes": {"python3": POOL_SIZE}},
    "KernelSessionManager": {"keep_kernels_on_stop": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    """A ``jupyter server`` subprocess with its own config/data/runtime dirs."""

    def __init__(self, name: str, config: dict, base: Path) -> None:
        self.name = name
        self.port = free_port()
        root = base / name
        for d in ("config", "data", "runtime", "root"):
            (root / d).mkdir(parents=True)
        (root / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
        self.runtime = root / "runtime"
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(root / "config"),
            "JUPYTER_DATA_DIR": str(root / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.log = open(root / "server.log", "w")  # noqa: SIM115
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
                f"--ServerApp.root_dir={root / 'root'}",
                "--ServerApp.log_level=WARN",
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=root / "root",
        )
        self.http = AsyncHTTPClient(max_clients=200)
        self.kids: set[int] = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def wait_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if (await self.call("GET", "api/status"))[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start; see {self.log.name}")
            await asyncio.sleep(0.2)

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        req = HTTPRequest(
            self.base + path,
            method=method,
            body=json.dumps(body)
            if body is not None
            else (b"" if method in ("POST", "PATCH") else None),
            headers={"Authorization": f"token {TOKEN}"},
            request_timeout=120,
        )
        resp = await self.http.fetch(req, raise_error=False)
        if resp.code == 599 and resp.error:
            raise OSError(str(resp.error))
        return resp.code, (json.loads(resp.body) if resp.body else None)

    def stop(self) -> None:
        try:
            self.kids |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.Error:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for pid in self.kids:  # nothing outlives the benchmark
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        self.log.close()


async def kernel_info_rtt(info: dict) -> float:
    """Connect a client to a kernel and time one kernel_info round trip (seconds)."""
    kc = AsyncKernelClient()
    kc.load_connection_info(info)
    key = info["key"].encode() if isinstance(info["key"], str) else info["key"]
    kc.session = Session(key=key, signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    t0 = time.perf_counter()
    try:
        await kc._async_recv_reply(kc.kernel_info(), timeout=60)
        return time.perf_counter() - t0
    finally:
        kc.stop_channels()


async def wait_pool_ready(ext: Server) -> None:
    while True:
        _, pool = await ext.call("GET", "api/kernel-sessions/pool")
        st = pool["pools"].get("python3", {})
        if st.get("ready", 0) >= st.get("target", 0):
            return
        await asyncio.sleep(0.1)


async def bench_create(ext: Server, stock: Server) -> dict[str, list[float]]:
    """Create -> kernel answers, alternating extension (warm) and stock (cold)."""
    out: dict[str, list[float]] = {"extension": [], "stock": []}
    for i in range(CREATE_ROUNDS):
        await wait_pool_ready(ext)
        t0 = time.perf_counter()
        code, s = await ext.call("POST", "api/kernel-sessions/sessions", {"name": f"c{i}"})
        assert code == 201, s
        _, info = await ext.call("GET", f"api/kernel-sessions/sessions/c{i}/connection")
        await kernel_info_rtt(info)
        out["extension"].append(time.perf_counter() - t0)
        await ext.call("DELETE", f"api/kernel-sessions/sessions/c{i}")

        t0 = time.perf_counter()
        code, k = await stock.call("POST", "api/kernels", {"name": "python3"})
        assert code == 201, k
        info = json.loads((stock.runtime / f"kernel-{k['id']}.json").read_text())
        await kernel_info_rtt(info)
        out["stock"].append(time.perf_counter() - t0)
        await stock.call("DELETE", f"api/kernels/{k['id']}")
    return out


async def ws_rtts(server: Server, kernel_id: str) -> list[float]:
    """Execute round trips over the kernel websocket (client side NODELAY, as browsers)."""
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id=bench"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {TOKEN}"}))
    ws.protocol.stream.set_nodelay(True)
    session = Session(key=b"", username="bench")
    times = []
    try:
        for i in range(RTT_ROUNDS + RTT_WARMUP):
            msg = session.msg(
                "execute_request",
                {"code": "1", "silent": False, "store_history": False, "allow_stdin": False},
            )
            msg["channel"] = "shell"
            t0 = time.perf_counter()
            await ws.write_message(json.dumps(msg, default=str))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.read_message(), 60))
                if (
                    reply.get("msg_type") == "execute_reply"
                    and reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]
                ):
                    break
            if i >= RTT_WARMUP:
                times.append(time.perf_counter() - t0)
    finally:
        ws.close()
    return times


async def zmq_rtts(info: dict) -> list[float]:
    kc = AsyncKernelClient()
    kc.load_connection_info(info)
    kc.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    times = []
    try:
        for i in range(RTT_ROUNDS + RTT_WARMUP):
            t0 = time.perf_counter()
            msg_id = kc.execute("1", store_history=False)
            await kc._async_recv_reply(msg_id, timeout=60)
            if i >= RTT_WARMUP:
                times.append(time.perf_counter() - t0)
    finally:
        kc.stop_channels()
    return times


async def bench_rtt(ext: Server, stock: Server) -> dict[str, list[float]]:
    code, s = await ext.call("POST", "api/kernel-sessions/sessions", {"name": "rtt"})
    assert code == 201, s
    _, info = await ext.call("GET", "api/kernel-sessions/sessions/rtt/connection")
    code, k = await stock.call("POST", "api/kernels", {"name": "python3"})
    out = {
        "extension websocket": await ws_rtts(ext, s["kernel"]["id"]),
        "stock websocket": await ws_rtts(stock, k["id"]),
        "raw ZMQ": await zmq_rtts(info),
    }
    await ext.call("DELETE", "api/kernel-sessions/sessions/rtt")
    await stock.call("DELETE", f"api/kernels/{k['id']}")
    return out


async def bench_load(ext: Server, n_sessions: int, n_clients: int, duration: float) -> dict:
    names = [f"load-{i:02d}" for i in range(n_sessions)]
    for chunk in range(0, n_sessions, 8):  # 8 at a time: a 2-core box starts kernels slowly
        results = await asyncio.gather(
            *(
                ext.call("POST", "api/kernel-sessions/sessions", {"name": n})
                for n in names[chunk : chunk + 8]
            )
        )
        assert all(code == 201 for code, _ in results), results
    paths = ["api/kernel-sessions/sessions", "api/kernel-sessions/pool"] + [
        f"api/kernel-sessions/sessions/{n}" for n in names
    ]
    lat: dict[str, list[float]] = {"list": [], "get": [], "pool": []}
    errors: dict[str, int] = {}
    deadline = 0.0  # set just before the clients start

    async def client(i: int) -> None:
        j = i
        while time.monotonic() < deadline:  # bounded: stops at the deadline
            path = paths[j % len(paths)]
            j += 7
            kind = (
                "list" if path.endswith("sessions") else "pool" if path.endswith("pool") else "get"
            )
            t0 = time.perf_counter()
            try:
                code, _ = await ext.call("GET", path)
            except OSError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                continue
            if code != 200:
                errors[str(code)] = errors.get(str(code), 0) + 1
            else:
                lat[kind].append(time.perf_counter() - t0)

    single: dict[str, list[float]] = {}
    for label, path in (
        ("api/status (floor)", "api/status"),
        ("sessions/{name}", paths[2]),
        ("sessions (list)", paths[0]),
    ):
        single[label] = []
        for _ in range(SINGLE_CLIENT_ROUNDS):
            t0 = time.perf_counter()
            code, _ = await ext.call("GET", path)
            single[label].append(time.perf_counter() - t0)
    deadline = time.monotonic() + duration
    t0 = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(n_clients)))
    elapsed = time.monotonic() - t0
    for n in names:
        await ext.call("DELETE", f"api/kernel-sessions/sessions/{n}")
    return {"lat": lat, "errors": errors, "elapsed": elapsed, "single": single}


def row(label: str, values: list[float], unit: float = 1000.0) -> str:
    return (
        f"  {label:<22} n={len(values):<5} p50={statistics.median(values) * unit:9.2f}  "
        f"p99={pct(values, 0.99) * unit:9.2f}  mean={statistics.fmean(values) * unit:9.2f}"
    )


async def main(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="ks-bench-"))
    ext = Server("extension", EXTENSION_CONFIG, base)
    stock = Server("stock", STOCK_CONFIG, base)
    try:
        await asyncio.gather(ext.wait_up(), stock.wait_up())
        print(
            f"kernel_sessions server benchmark  ({os.cpu_count()} cores, loopback, "
            f"pool size {POOL_SIZE})\n"
        )

        create = await bench_create(ext, stock)
        c_ext, c_stock = statistics.median(create["extension"]), statistics.median(create["stock"])
        print("1. create -> kernel answers kernel_info (ms)")
        print(row("POST sessions (pool)", create["extension"]))
        print(row("POST api/kernels", create["stock"]))
        print(f"  ratio stock/extension (p50): {c_stock / c_ext:.1f}x faster with the extension\n")

        rtt = await bench_rtt(ext, stock)
        raw = statistics.median(rtt["raw ZMQ"])
        print("2. execute round trip (ms)")
        for label, values in rtt.items():
            print(row(label, values) + f"  ratio/raw={statistics.median(values) / raw:5.2f}x")
        print(
            f"  target: extension websocket within 1.3x of raw ZMQ -> "
            f"{'OK' if statistics.median(rtt['extension websocket']) <= 1.3 * raw else 'MISSED'}\n"
        )

        load = await bench_load(ext, args.sessions, args.clients, args.duration)
        total = sum(len(v) for v in load["lat"].values())
        print(f"3a. GET, one client, {args.sessions} sessions (ms)")
        for label, values in load["single"].items():
            print(row(label, values))
        print(
            f"3b. GET load: {args.sessions} sessions, {args.clients} concurrent clients, "
            f"{load['elapsed']:.0f} s (ms)"
        )
        for kind, values in load["lat"].items():
            if values:
                print(row(f"GET {kind}", values))
        every = [v for vs in load["lat"].values() for v in vs]
        print(row("all", every))
        print(
            f"  throughput {total / load['elapsed']:.0f} req/s, errors: "
            f"{sum(load['errors'].values())} {load['errors'] or ''}"
        )
    finally:
        ext.stop()
        stock.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="load phase seconds")
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--clients", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
