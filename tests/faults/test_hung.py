"""Kernels that hang, with a real server: SIGSTOP (noticed by heartbeat), a ``__reduce__`` that
never returns (a checkpoint stuck in the kernel), and a server stop with two hung kernels.

Nothing here waits on speed: every wait is a bounded poll for a condition. The measured times
are printed for the fault figures.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.cli_server import LiveServer, run_cli
from tests.support.faults import EventLog, api, registry_rows, wait_until

DETECT_BOUND = 60.0  # seconds: a hang must be noticed well within this (default: ~3-6 s)
ACTION_BOUND = 60.0  # seconds a restart/delete of a hung session may take at most
CHECKPOINT_TIMEOUT = 20.0  # the server's checkpoint_timeout here: a stuck dump is cut off
HANG_CLASS = "class Hang:\n    def __reduce__(self):\n        while True:\n            pass\n"


def pid_of(server: LiveServer, name: str) -> int:
    return next(r["pid"] for r in registry_rows(server.base) if r["name"] == name)


def state_of(server: LiveServer, name: str) -> str:
    return api(server, "GET", f"sessions/{name}").json()["state"]


def run(server: LiveServer, name: str, code: str, timeout: float = 60) -> dict[str, Any]:
    r = api(server, "POST", f"sessions/{name}/execute", {"code": code, "timeout": timeout})
    assert r.status_code == 200, r.text
    return r.json()


def value(server: LiveServer, name: str, expr: str) -> Any:
    """The expression's execute_result: a resumed kernel may print IPython's own notice (its
    history database was moved aside meanwhile) into stdout, even in the middle of a line."""
    out = run(server, name, expr)
    assert out["status"] == "ok", out
    results = [o for o in out["outputs"] if o["output_type"] == "execute_result"]
    assert len(results) == 1, out
    return results[0]["data"]["text/plain"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(
        tmp_path_factory.mktemp("hung"),
        config={
            "CheckpointService": {
                "auto_checkpoint": False,
                "checkpoint_timeout": CHECKPOINT_TIMEOUT,
            }
        },
    )
    yield live
    live.stop()


@pytest.fixture
def stopped() -> Iterator[list[int]]:
    """Pids this test SIGSTOPs; resumed afterwards whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


def test_a_stopped_kernel_is_unresponsive_and_others_are_not_slowed(
    server: LiveServer, stopped: list[int]
) -> None:
    for name in ("h1", "ok1"):
        assert api(server, "POST", "sessions", {"name": name}).status_code == 201
    run(server, "h1", "x = 42")
    pid = pid_of(server, "h1")
    assert api(server, "GET", "sessions/h1").json()["kernel"]["pid"] == pid  # shown to users
    events = EventLog(server)
    os.kill(pid, signal.SIGSTOP)
    stopped.append(pid)
    t0 = time.monotonic()
    wait_until(
        lambda: state_of(server, "h1") == "unresponsive",
        DETECT_BOUND,
        "the stopped kernel to show as unresponsive",
    )
    print(f"\nhang detection (SIGSTOP -> unresponsive): {time.monotonic() - t0:.1f} s")
    got = api(server, "GET", "sessions/h1").json()
    assert "heartbeat" in got["reason"]
    wait_until(lambda: "unresponsive" in events.states("h1"), DETECT_BOUND, "the event")
    with server.environment():  # the CLI shows it too
        code, out, _ = run_cli("list")
    assert code == 0 and "unresponsive" in out, out
    # execute with a timeout answers "timeout"; a checkpoint and a read refuse with JSON
    out = run(server, "h1", "y = 1", timeout=2)
    assert out["status"] == "timeout"
    r = api(server, "POST", "sessions/h1/checkpoints", {})
    assert r.status_code == 409 and r.json()["reason"] == "invalid_state"
    r = api(server, "GET", "sessions/h1/variables")  # the listing: the last one, marked stale
    assert r.status_code == 200 and r.json()["stale"] and r.json()["busy"], r.text
    r = api(server, "GET", "sessions/h1/variables/x")  # a value: refused at once
    assert r.status_code in (409, 504) and {"message", "reason"} <= set(r.json()), r.text
    assert value(server, "ok1", "6 * 7") == "42"  # other sessions answer meanwhile
    os.kill(pid, signal.SIGCONT)  # resumed: answering again, namespace intact
    wait_until(lambda: state_of(server, "h1") == "idle", DETECT_BOUND, "the kernel to answer")
    assert value(server, "h1", "x") == "42"
    wait_until(lambda: events.states("h1")[-1:] == ["idle"], DETECT_BOUND, "the idle event")
    events.close()


def test_restart_and_delete_of_a_stopped_kernel_work_at_once(
    server: LiveServer, stopped: list[int]
) -> None:
    for name in ("h2", "h3"):
        assert api(server, "POST", "sessions", {"name": name}).status_code == 201
    pids = {name: pid_of(server, name) for name in ("h2", "h3")}
    for pid in pids.values():
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
    for name in ("h2", "h3"):
        wait_until(
            lambda n=name: state_of(server, n) == "unresponsive",
            DETECT_BOUND,
            f"{name} to show as unresponsive",
        )
    t0 = time.monotonic()
    r = api(server, "POST", "sessions/h2/restart")
    assert r.status_code == 200 and r.json()["state"] == "idle", r.text
    t_restart = time.monotonic() - t0
    assert not psutil.pid_exists(pids["h2"]) or psutil.Process(pids["h2"]).status() == "zombie"
    assert value(server, "h2", "1 + 1") == "2"
    t0 = time.monotonic()
    assert api(server, "DELETE", "sessions/h3").status_code == 204
    t_delete = time.monotonic() - t0
    assert t_restart < ACTION_BOUND and t_delete < ACTION_BOUND
    print(f"\nrestart of a stopped kernel: {t_restart:.2f} s; delete: {t_delete:.2f} s")
    assert api(server, "GET", "sessions/h3").status_code == 404
    api(server, "DELETE", "sessions/h2")


def test_a_checkpoint_stuck_in_reduce_does_not_block_delete(server: LiveServer) -> None:
    assert api(server, "POST", "sessions", {"name": "r1"}).status_code == 201
    run(server, "r1", HANG_CLASS + "h = Hang()")
    result: dict[str, Any] = {}

    def checkpoint() -> None:
        r = api(server, "POST", "sessions/r1/checkpoints", {})
        result.update(status=r.status_code, body=r.json())

    thread = threading.Thread(target=checkpoint)
    thread.start()
    wait_until(
        lambda: state_of(server, "r1") == "checkpointing", DETECT_BOUND, "the checkpoint to start"
    )
    t0 = time.monotonic()
    assert api(server, "DELETE", "sessions/r1").status_code == 204
    print(f"\ndelete during a stuck checkpoint: {time.monotonic() - t0:.2f} s")
    thread.join(ACTION_BOUND)
    assert not thread.is_alive()
    assert 400 <= result["status"] < 500 and {"message", "reason"} <= set(result["body"])


def test_a_reduce_that_never_returns_is_cut_off_and_the_session_lives(server: LiveServer) -> None:
    assert api(server, "POST", "sessions", {"name": "r2"}).status_code == 201
    run(server, "r2", HANG_CLASS + "h = Hang()\nx = 42")
    r = api(server, "POST", "sessions/r2/checkpoints", {})  # cut off at checkpoint_timeout
    assert r.status_code == 409 and r.json()["reason"] in ("checkpoint_failed", "busy"), r.text
    wait_until(lambda: state_of(server, "r2") == "idle", ACTION_BOUND, "the session idle again")
    assert value(server, "r2", "x") == "42"
    api(server, "DELETE", "sessions/r2")


def test_server_stop_with_two_hung_kernels_is_bounded_and_loses_nothing(tmp_path: Path) -> None:
    server = LiveServer(tmp_path)
    pids = []
    try:
        for name in ("s1", "s2"):
            assert api(server, "POST", "sessions", {"name": name}).status_code == 201
            run(server, name, "x = 42")
            pids.append(pid_of(server, name))
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for name in ("s1", "s2"):
            wait_until(
                lambda n=name: state_of(server, n) == "unresponsive",
                DETECT_BOUND,
                f"{name} to show as unresponsive",
            )
        t0 = time.monotonic()
        server.stop(kill_kernels=False)  # SIGTERM; killed only after its STOP_TIMEOUT
        took = time.monotonic() - t0
        print(
            f"\nserver stop with 2 hung kernels: {took:.2f} s (exit code {server.proc.returncode})"
        )
        assert server.proc.returncode == 0
    finally:
        for pid in pids:
            with_cont(pid)
    again = LiveServer(tmp_path)  # the hung kernels were left running: re-adopted, intact
    try:
        for name in ("s1", "s2"):
            wait_until(
                lambda n=name: state_of(again, n) == "idle",
                DETECT_BOUND,
                f"{name} re-adopted and answering",
            )
            assert value(again, name, "x") == "42"
    finally:
        again.stop()


def with_cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass
