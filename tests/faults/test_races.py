"""Races with a real server and real kernels: a storm of create/delete/rename/execute/checkpoint
on three names, and concurrent creates against ``max_kernels``.

The short storm runs in CI; the 10 s one is marked slow (``make test-faults``). Each prints its
counts, which the fault figures quote.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from tests.support.cli_server import LiveServer
from tests.support.faults import (
    STORM_THREADS,
    api,
    kernel_pids,
    orphan_kernels,
    registry_rows,
    storm,
    storm_report,
    wait_until,
)

FAST_STORM_SECONDS = 3.0
SLOW_STORM_SECONDS = 10.0
SETTLE_TIMEOUT = 90.0  # seconds for spares and stopped kernels to go after the storm
MAX_KERNELS = 4
CONCURRENT_CREATES = 12


def _check_after_storm(server: LiveServer, seconds: float) -> None:
    counts, problems = storm(server, seconds)
    print(f"\nstorm {STORM_THREADS} threads x {seconds:g} s: {storm_report(counts)}")
    assert not problems, problems[:10]
    assert sum(counts.values()) > STORM_THREADS  # the storm did run
    listed = [s["name"] for s in api(server, "GET", "sessions").json()]
    for name in listed:  # every listed session answers
        assert api(server, "GET", f"sessions/{name}").status_code == 200
    rows = registry_rows(server.base)
    assert sorted(r["name"] for r in rows) == sorted(listed)
    assert not [r for r in rows if r["state"] == "deleted"]
    # empty the pool: then every kernel process left must be a session's
    assert api(server, "PATCH", "pool", {"sizes": {"python3": 0}}).status_code == 200
    wait_until(
        lambda: not orphan_kernels(server), SETTLE_TIMEOUT, "no kernel process outside a session"
    )
    print(f"orphan kernels: {len(orphan_kernels(server))}; sessions left: {listed}")
    server.stop()
    again = LiveServer(server.base)  # restarts cleanly on the same data dir
    try:
        assert sorted(s["name"] for s in api(again, "GET", "sessions").json()) == sorted(listed)
        for name in listed:
            r = api(again, "POST", f"sessions/{name}/execute", {"code": "1", "timeout": 60})
            assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        print("restart after the storm: clean (0 wedged)")
    finally:
        again.stop()


def test_storm_of_lifecycle_calls(tmp_path: Path) -> None:
    server = LiveServer(tmp_path)
    try:
        _check_after_storm(server, FAST_STORM_SECONDS)
    finally:
        server.stop()


@pytest.mark.slow
def test_long_storm_of_lifecycle_calls(tmp_path: Path) -> None:
    server = LiveServer(tmp_path)
    try:
        _check_after_storm(server, SLOW_STORM_SECONDS)
    finally:
        server.stop()


def test_concurrent_creates_respect_max_kernels(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, config={"PoolMixin": {"max_kernels": MAX_KERNELS}})
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], len(kernel_pids(server)))
            done.wait(0.05)

    statuses: list[int] = []

    def create(i: int) -> None:
        r = api(server, "POST", "sessions", {"name": f"s{i}"})
        statuses.append(r.status_code)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        threads = [threading.Thread(target=create, args=(i,)) for i in range(CONCURRENT_CREATES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        done.set()
        sampler.join()
        print(
            f"\n{CONCURRENT_CREATES} concurrent creates, max_kernels={MAX_KERNELS}: "
            f"statuses {sorted(statuses)}; peak kernel processes {peak[0]}"
        )
        assert len(statuses) == CONCURRENT_CREATES
        assert set(statuses) <= {201, 429}, statuses
        assert 1 <= statuses.count(201) <= MAX_KERNELS
        assert peak[0] <= MAX_KERNELS
        assert len(kernel_pids(server)) <= MAX_KERNELS
        with httpx.Client() as client:  # the sessions made are whole
            for s in api(server, "GET", "sessions", client=client).json():
                r = api(
                    server,
                    "POST",
                    f"sessions/{s['name']}/execute",
                    {"code": "1", "timeout": 60},
                    client,
                )
                assert r.json()["status"] == "ok"
    finally:
        done.set()
        server.stop()
