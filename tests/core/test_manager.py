"""KernelSessionManager with real kernels: the contract, death, re-adoption, leases, limits."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel_sessions import (
    InvalidSessionName,
    InvalidTransition,
    KernelSessionManager,
    SessionExists,
    SessionNotFound,
)
from kernel_sessions.core.models import NAME_RULE
from tests.support import SCRIPTS
from tests.support.kernels import run, started_client, value, wait_for


@pytest.fixture
async def make_ks(tmp_path):
    """Session managers on a temporary data dir, stopped (sessions ended) after the test."""
    made: list[KernelSessionManager] = []

    async def make(**kw) -> KernelSessionManager:
        kw.setdefault("data_dir", str(tmp_path / "data"))
        kw.setdefault("pool_sizes", {"python3": 1})
        kw.setdefault("root_dir", str(tmp_path))
        ks = KernelSessionManager(**kw)
        await ks.start()
        made.append(ks)
        return ks

    yield make
    for ks in reversed(made):
        await ks.stop(keep_sessions=False)


@pytest.fixture
async def ks(make_ks):
    return await make_ks()


def pid_of(ks: KernelSessionManager, name: str) -> int:
    return ks.model(name).pid


async def test_contract_script(tmp_path):
    d = str(tmp_path / "data")
    events: list[dict] = []
    async with KernelSessionManager(data_dir=d, pool_sizes={"python3": 2}) as ks:
        ks.observe(events.append)
        s = await ks.create("etl")
        assert (s.name, s.kernel_name, s.state) == ("etl", "python3", "idle")
        kid = s.kernel_id
        kc = ks.client("etl")
        try:
            reply = await kc.execute_interactive("x = 42", timeout=30)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        assert (await ks.get("etl")).state == "idle"
        assert [m.name for m in await ks.list()] == ["etl"]
        await ks.rename("etl", "etl2")
        await ks.restart("etl2")
        await ks.interrupt("etl2")
        assert ks.kernel_id("etl2") == kid  # stable across restart
        stats = ks.pool_stats()
        assert stats["python3"]["target"] == 2 and stats["python3"]["hits"] >= 1
        await ks.delete("etl2")
        assert await ks.list() == []
    to_states = [(e["name"], e["to"]) for e in events]
    assert ("etl", "busy") in to_states and ("etl", "idle") in to_states
    assert to_states[-3:] == [("etl2", "starting"), ("etl2", "idle"), ("etl2", "deleted")]
    assert all({"name", "from", "to", "reason"} <= set(e) for e in events)


@pytest.mark.parametrize(
    "bad",
    ["", "Etl", "..", ".", "a/b", "%2e", "a\x00b", "x" * 64, "<script>", "-x", "etl\n", 7, None],
)
def test_bad_names_show_the_rule(bad):
    from kernel_sessions.core.models import validate_name

    with pytest.raises(InvalidSessionName) as e:
        validate_name(bad)
    assert NAME_RULE in str(e.value)


async def test_exists_notfound_and_bad_name(ks):
    await ks.create("a")
    with pytest.raises(SessionExists):
        await ks.create("a")
    with pytest.raises(SessionNotFound):
        await ks.get("nope")
    with pytest.raises(InvalidSessionName):
        await ks.create("../etc")
    await ks.create("b")
    with pytest.raises(SessionExists):
        await ks.rename("b", "a")
    assert sorted(m.name for m in await ks.list()) == ["a", "b"]


async def test_fifty_concurrent_creates_make_one_kernel(ks):
    results = await asyncio.gather(*(ks.create("same") for _ in range(50)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 1
    assert all(isinstance(r, SessionExists) for r in results if r not in ok)
    assert ks.kernel_manager.list_kernel_ids() == [ok[0].kernel_id]


async def test_death_is_noticed_within_a_second_and_auto_restart_is_reported(ks):
    await ks.create("victim")
    await ks.create("bystander")
    kc = started_client(ks.kernel_manager.get_kernel(ks.kernel_id("victim")))
    try:
        await run(kc, "x = 1")
    finally:
        kc.stop_channels()
    dead_at: list[float] = []
    ks.observe(
        lambda e: e["to"] == "dead" and e["name"] == "victim" and dead_at.append(time.monotonic())
    )
    killed_at = time.monotonic()
    os.kill(pid_of(ks, "victim"), signal.SIGKILL)
    await wait_for(lambda: dead_at, 5)
    assert dead_at[0] - killed_at <= 1.0
    model = await ks.get("victim")
    assert "died" in model.reason
    # jupyter_client's restarter brings the kernel back: the session says the namespace is gone
    await wait_for(lambda: model.state == "idle" and model.restarts == 1, 30)
    assert model.reason == "restarted: namespace lost"
    kc = ks.client("victim")
    try:
        assert (await run(kc, "x"))["ename"] == "NameError"
    finally:
        kc.stop_channels()
    # the other session never noticed
    kc = ks.client("bystander")
    try:
        assert await value(kc, "1 + 1") == 2
    finally:
        kc.stop_channels()
    assert (await ks.get("bystander")).restarts == 0


async def test_readopted_by_a_new_manager_after_sigkill(tmp_path, make_ks):
    data = str(tmp_path / "data")
    log = tmp_path / "hold.log"
    with open(log, "w") as out:  # a file, not a pipe: the kernel outlives the process
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "hold_session.py"), data, "keep"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
        )
    try:
        await wait_for(lambda: "ready " in log.read_text() or proc.poll() is not None, 60)
        text = log.read_text()
        assert "ready " in text, text
        kernel_id = text.split("ready ", 1)[1].split()[0]
    finally:
        proc.kill()  # SIGKILL: no chance to clean up
        proc.wait()
    ks = await make_ks(data_dir=data)
    model = await ks.get("keep")
    assert (model.state, model.kernel_id) == ("idle", kernel_id)
    kc = ks.client("keep")
    try:
        assert await value(kc, "x") == 42
    finally:
        kc.stop_channels()


async def test_gone_kernel_is_dead_on_recovery_and_survivors_readopted(tmp_path, make_ks):
    data = str(tmp_path / "data")
    first = KernelSessionManager(data_dir=data, pool_sizes={"python3": 0}, root_dir=str(tmp_path))
    await first.start()
    await first.create("lives")
    await first.create("dies")
    pid = pid_of(first, "dies")
    await first.stop(keep_sessions=True)  # both kernels keep running
    os.kill(pid, signal.SIGKILL)
    ks = await make_ks(data_dir=data)
    dies = await ks.get("dies")
    assert (dies.state, dies.reason) == ("dead", "kernel gone")
    assert (await ks.get("lives")).state == "idle"
    with pytest.raises(InvalidTransition):
        ks.client("dies")
    await ks.delete("dies")  # a tombstone can be deleted
    assert [m.name for m in await ks.list()] == ["lives"]


async def test_restart_of_a_readopted_kernel_keeps_its_id(tmp_path, make_ks):
    data = str(tmp_path / "data")
    first = KernelSessionManager(data_dir=data, pool_sizes={"python3": 0}, root_dir=str(tmp_path))
    await first.start()
    kid = (await first.create("r")).kernel_id
    await first.stop(keep_sessions=True)
    ks = await make_ks(data_dir=data, pool_sizes={"python3": 0})
    await ks.restart("r")
    model = await ks.get("r")
    assert (model.kernel_id, model.state, model.restarts) == (kid, "idle", 1)
    kc = ks.client("r")
    try:
        assert await value(kc, "2 * 21") == 42
    finally:
        kc.stop_channels()


async def test_lapsed_lease_is_reaped_and_renewal_keeps_it(make_ks):
    ks = await make_ks(reap_interval=0.1)
    leased = await ks.create("leased", owner="proc-1", lease_seconds=0.6)
    assert leased.ttl == ks.leased_ttl  # 24 h for leased sessions
    await ks.create("renewed", owner="proc-2", lease_seconds=3)
    for _ in range(8):
        await asyncio.sleep(0.2)
        await ks.renew_lease("renewed", 0.6)
    names = [m.name for m in await ks.list()]
    assert names == ["renewed"]


async def test_idle_ttl_expires_the_session(make_ks):
    ks = await make_ks(reap_interval=0.1)
    model = await ks.create("short", ttl=1.0)
    await ks.push("short", x=41)
    assert (await ks.create("named")).ttl is None  # no TTL for named sessions by default
    await wait_for(lambda: model.state == "hibernated", 10)
    assert model.reason.startswith("expired") and "checkpoint" in model.reason
    assert model.kernel_id not in ks.kernel_manager  # stopped before the state said so
    assert (await ks.get("named")).state == "idle"
    kid = model.kernel_id
    assert await ks.pull("short", "x") == 41  # any attach wakes it, same kernel id
    assert (model.state, model.kernel_id) == ("idle", kid)


async def test_transitions_reach_an_event_logger(make_ks):
    from jupyter_events import EventLogger

    records: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = EventLogger(handlers=[Capture()])
    ks = await make_ks(event_logger=logger)
    await ks.create("ev")
    await ks.delete("ev")
    msgs = [r.msg for r in records]
    states = [m["to"] for m in msgs if m.get("__schema__", "").endswith("session_state/v1")]
    assert states[:2] == ["starting", "idle"] and states[-1] == "deleted"
    pool_kinds = {m["kind"] for m in msgs if m.get("__schema__", "").endswith("pool/v1")}
    assert "hit" in pool_kinds or "miss" in pool_kinds


async def test_invalid_transition_raises(ks):
    model = await ks.create("t")
    ks.transition(model, "hibernated", "test")  # idle -> hibernated is allowed ...
    with pytest.raises(InvalidTransition):
        ks.transition(model, "busy", "test")  # ... but hibernated -> busy is not
    assert model.state == "hibernated"


async def test_stop_hibernates_sessions_and_the_next_manager_wakes_them(tmp_path):
    data = str(tmp_path / "data")
    ks = KernelSessionManager(data_dir=data, pool_sizes={"python3": 0}, root_dir=str(tmp_path))
    await ks.start()
    kid = (await ks.create("sleepy")).kernel_id
    await ks.push("sleepy", x=[1, 2])
    pid = pid_of(ks, "sleepy")
    await ks.stop()  # default: checkpoint, then the kernel stops
    await wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10)
    again = KernelSessionManager(data_dir=data, pool_sizes={"python3": 1})
    await again.start()
    try:
        [model] = await again.list()
        assert (model.name, model.state, model.kernel_id) == ("sleepy", "hibernated", kid)
        assert model.reason.startswith("server stopped; checkpoint ")
        assert await again.pull("sleepy", "x") == [1, 2]
        assert (model.state, model.kernel_id) == ("idle", kid)
        assert model.reason.startswith("woken: restored checkpoint")
    finally:
        await again.stop(keep_sessions=False)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
