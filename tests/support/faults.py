"""Shared tools of the fault tests: kernel processes of a live server, its registry rows, a
storm of concurrent REST calls checked against the OpenAPI document, and bounded waits."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import KsApi
from tests.support.cli_server import LiveServer

STORM_NAMES = ("a", "b", "c")
STORM_THREADS = 12
REQUEST_TIMEOUT = 120.0  # seconds; a storm request that takes longer is a wedge, not slowness


def wait_until(check: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    """``check()``'s first truthy value, polled; AssertionError naming ``what`` after
    ``timeout`` seconds (a bound on a hang, not a speed expectation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def kernel_pids(server: LiveServer) -> set[int]:
    """Every ipykernel process the server started (spares and session kernels)."""
    out = set()
    try:
        kids = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.Error:
        return out
    for proc in kids:
        try:
            if any("ipykernel" in part for part in proc.cmdline()) and proc.status() != "zombie":
                out.add(proc.pid)
        except psutil.Error:
            continue
    return out


def registry_path(base: Path) -> Path:
    return base / "data" / "kernel_sessions" / "registry.sqlite3"


def registry_rows(base: Path) -> list[dict[str, Any]]:
    """The registry's session rows, read as another process would (read-only)."""
    conn = sqlite3.connect(f"file:{registry_path(base)}?mode=ro", uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM sessions")]
    finally:
        conn.close()


def api(
    server: LiveServer, method: str, path: str, body: Any = None, client: httpx.Client | None = None
) -> httpx.Response:
    """One call, checked against api.yaml (documented status, schema of the JSON body)."""
    headers = {"Authorization": f"token {server.token}"}
    url = server.url + "api/kernel-sessions/" + path
    if client is None:
        r = httpx.request(method, url, json=body, headers=headers, timeout=REQUEST_TIMEOUT)
    else:
        r = client.request(method, url, json=body, headers=headers)
    KsApi.check(
        method,
        "/" + path.split("?")[0],
        r.status_code,
        r.content,
        r.headers.get("content-type", ""),
    )
    return r


def _storm_call(rng: random.Random) -> tuple[str, str, str, Any]:
    name = rng.choice(STORM_NAMES)
    op = rng.choice(
        ("create", "create", "delete", "rename", "execute", "execute", "checkpoint", "get")
    )
    if op == "create":
        return op, "POST", "sessions", {"name": name}
    if op == "delete":
        return op, "DELETE", f"sessions/{name}", None
    if op == "rename":
        return op, "PATCH", f"sessions/{name}", {"name": rng.choice(STORM_NAMES)}
    if op == "execute":
        return op, "POST", f"sessions/{name}/execute", {"code": "x = 42", "timeout": 30}
    if op == "checkpoint":
        return op, "POST", f"sessions/{name}/checkpoints", {}
    return op, "GET", f"sessions/{name}", None


def storm(server: LiveServer, seconds: float, seed: int = 11) -> tuple[Counter, list[str]]:
    """``STORM_THREADS`` threads calling create/delete/rename/execute/checkpoint on
    ``STORM_NAMES`` for ``seconds``: (count per (op, status), problems found)."""
    counts: Counter = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        rng = random.Random(seed * 100 + i)
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            while time.monotonic() < deadline:
                op, method, path, body = _storm_call(rng)
                try:
                    r = api(server, method, path, body, client)
                    status = r.status_code
                    bad = f"{op} {path}: {status} {r.text[:200]}" if status >= 500 else None
                except (AssertionError, Exception) as exc:  # a schema breach or a wedge
                    status, bad = -1, f"{op} {path}: {type(exc).__name__}: {exc}"[:400]
                with lock:
                    counts[(op, status)] += 1
                    if bad:
                        problems.append(bad)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(STORM_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + REQUEST_TIMEOUT * 2)
    problems += [f"thread {i} still running" for i, t in enumerate(threads) if t.is_alive()]
    return counts, problems


def orphan_kernels(server: LiveServer) -> set[int]:
    """Kernel processes that belong to no session (run with the pool emptied first)."""
    rows = registry_rows(server.base)
    owned = {r["pid"] for r in rows if r["pid"] and r["state"] not in ("hibernated", "dead")}
    return kernel_pids(server) - owned


def storm_report(counts: Counter) -> str:
    by_status: Counter = Counter()
    for (_, status), n in counts.items():
        by_status[status] += n
    return f"{sum(counts.values())} requests; by status " + ", ".join(
        f"{s}: {n}" for s, n in sorted(by_status.items())
    )


class EventLog:
    """The server's ``session_state`` events, read from ``api/events/subscribe`` by a thread of
    its own (a real websocket client, as the panel is)."""

    SCHEMA = "kernel_sessions/session_state/v1"

    def __init__(self, server: LiveServer) -> None:
        self.url = (
            server.url.replace("http://", "ws://") + "api/events/subscribe?token=" + server.token
        )
        self.events: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(60), "the events websocket did not open"

    def _run(self) -> None:
        import asyncio
        import json

        from tornado.websocket import websocket_connect

        async def read() -> None:
            ws = await websocket_connect(self.url)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.read_message(), 0.5)
                except asyncio.TimeoutError:
                    continue
                if msg is None:
                    return
                event = json.loads(msg)
                if str(event.get("schema_id", "")).endswith(self.SCHEMA):
                    self.events.append(event)
            ws.close()

        asyncio.run(read())

    def states(self, name: str) -> list[str]:
        return [e["to"] for e in list(self.events) if e.get("name") == name]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
