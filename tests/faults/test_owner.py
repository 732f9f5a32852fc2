"""One data dir, one owner: a second server on the same data dir manages none of the first
one's sessions, stopping it touches nothing of theirs, and it takes over once the first is gone.

The lock itself is tested in-process and against a SIGKILLed holder process; the servers are
real ``jupyter kernel-sessions serve`` processes sharing one ``JUPYTER_DATA_DIR``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kernel_sessions.core.ownership import LOCK_NAME, OwnershipLock
from tests.support.cli_server import LiveServer
from tests.support.faults import registry_rows, wait_until

TAKEOVER_TIMEOUT = 120.0  # seconds: a bound on the take-over, not a speed expectation
HOLDER = textwrap.dedent("""
    import sys, time
    from kernel_sessions.core.ownership import OwnershipLock
    lock = OwnershipLock(sys.argv[1])
    assert lock.acquire()
    print("held", flush=True)
    time.sleep(3600)
""")


def test_the_lock_has_one_holder_and_names_it(tmp_path: Path) -> None:
    first, second = OwnershipLock(tmp_path), OwnershipLock(tmp_path)
    assert first.acquire()
    assert first.acquire()  # holding it again is a no-op
    assert not second.acquire()
    owner = second.owner()
    assert owner is not None and owner.pid == os.getpid() and owner.alive()
    assert "/" not in owner.describe()
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o777 == 0o600
    first.release()
    assert second.owner() is None  # released: the record says nobody
    assert second.acquire()
    with pytest.raises(BlockingIOError, match="another owner"):
        with OwnershipLock(tmp_path):
            pass
    second.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = OwnershipLock(tmp_path)
        assert not lock.acquire()
        owner = lock.owner()
        assert owner is not None and owner.pid == holder.pid and owner.alive()
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        assert owner.alive() is False
        assert lock.acquire()  # the kernel dropped the flock with the process
        assert lock.owner() is not None and lock.owner().pid == os.getpid()  # type: ignore[union-attr]
        lock.release()
    finally:
        holder.kill()
        holder.wait(30)


def kernel_call(server: LiveServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method,
        server.url + path,
        timeout=60,
        headers={"Authorization": f"token {server.token}"},
        **kwargs,
    )


def log_of(server: LiveServer) -> str:
    server.log.flush()
    return Path(server.log.name).read_text()


def x_of(server: LiveServer, name: str) -> str:
    r = server.api("POST", f"sessions/{name}/execute", json={"code": "print(repr(x))"})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    return r.json()["outputs"][0]["text"].strip()


def test_a_second_server_on_the_data_dir_touches_nothing_and_takes_over(tmp_path: Path) -> None:
    first = LiveServer(tmp_path / "first")
    second: LiveServer | None = None
    try:
        r = first.api("POST", "sessions", json={"name": "own"})
        assert r.status_code == 201, r.text
        kernel_pid = next(r["pid"] for r in registry_rows(first.base) if r["name"] == "own")
        assert kernel_pid
        r = first.api("POST", "sessions/own/execute", json={"code": "x = 42"})
        assert r.json()["status"] == "ok", r.text

        second = LiveServer(tmp_path / "second", data=tmp_path / "first" / "data", owner=False)
        for path in ("sessions", "sessions/own", "pool", "registry"):
            r = second.api("GET", path)
            assert r.status_code == 503, (path, r.text)
            body = r.json()
            assert body["reason"] == "not_owner"
            assert f"pid {first.proc.pid}" in body["message"]
            assert str(tmp_path) not in body["message"]
        r = second.api("POST", "sessions", json={"name": "mine"})
        assert r.status_code == 503 and r.json()["reason"] == "not_owner"
        # a session kernelspec is refused cleanly; plain notebooks still get kernels
        r = kernel_call(second, "POST", "api/kernels", json={"name": "session.own"})
        assert r.status_code == 503, r.text
        r = kernel_call(second, "POST", "api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        assert "this server manages none of them" in log_of(second)
        # each refusal is one info line, not an error line with a dump of the request headers
        assert "-> 503 not_owner" in log_of(second)
        assert not [
            ln
            for ln in log_of(second).splitlines()
            if ln.startswith("[E") and "/api/kernel-sessions" in ln
        ]

        second.stop()  # refusing, it stops nothing of the owner's
        second = None
        assert psutil.pid_exists(kernel_pid)
        assert x_of(first, "own") == "42"
        assert [r["pid"] for r in registry_rows(first.base)] == [kernel_pid]

        second = LiveServer(
            tmp_path / "second",
            data=tmp_path / "first" / "data",
            owner=False,
            config={"KernelSessionsApp": {"owner_retry_interval": 0.2}},
        )
        assert second.api("GET", "sessions").status_code == 503
        first.stop(kill_kernels=False)  # hibernates "own" and releases the data dir

        def taken_over() -> bool:
            r = second.api("GET", "sessions/own")  # type: ignore[union-attr]
            return r.status_code == 200

        wait_until(taken_over, TAKEOVER_TIMEOUT, "the second server to take over")
        assert x_of(second, "own") == "42"
        assert "this server now manages its sessions" in log_of(second)
    finally:
        if second is not None:
            second.stop()
        if first.proc.poll() is None:
            first.stop()
