"""The warm pool with real kernels: hits, misses, hand-out fix-ups, dead spares, limits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from kernel_sessions import KernelLimitError, PooledMultiKernelManager
from tests.support.kernels import run, started_client, value, wait_for


def ready(mkm: PooledMultiKernelManager, spec: str = "python3") -> int:
    return mkm.pool_stats()[spec]["ready"]


@pytest.fixture
async def make_mkm(tmp_path):
    """Pool managers that are shut down after the test, leaking no zmq socket."""
    made: list[PooledMultiKernelManager] = []

    async def make(**kw) -> PooledMultiKernelManager:
        kw.setdefault("pool_sizes", {"python3": 1})
        m = PooledMultiKernelManager(connection_dir=str(tmp_path), **kw)
        made.append(m)
        await m.start_pool()
        return m

    yield make
    for m in made:
        await m.shutdown_all(now=True)
        leaked = [s for s in m.context._sockets if not s.closed]
        assert not leaked, f"zmq sockets left open: {leaked}"


@pytest.fixture
async def mkm(make_mkm):
    return await make_mkm()


async def test_hit_hands_out_a_warm_kernel_and_refills(mkm):
    await wait_for(lambda: ready(mkm) == 1, 30)
    assert mkm.list_kernel_ids() == []  # spares are invisible
    kid = await mkm.start_kernel(kernel_name="python3")
    assert mkm.list_kernel_ids() == [kid]
    stats = mkm.pool_stats()["python3"]
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 0, 1.0)
    assert stats["acquire_p50_ms"] is not None
    await wait_for(lambda: ready(mkm) == 1, 30)  # refilled
    assert kid not in [s.kernel_id for s in mkm._pool["python3"]]  # never goes back


async def test_handout_fixes_cwd_env_and_leaves_no_trace(mkm, tmp_path):
    await wait_for(lambda: ready(mkm) == 1, 30)
    work = tmp_path / "nb dir"
    work.mkdir()
    kid = await mkm.start_kernel(kernel_name="python3", cwd=str(work), env={"KS_TEST_VAR": "v1"})
    assert mkm.pool_stats()["python3"]["hits"] == 1
    kc = started_client(mkm.get_kernel(kid))
    try:
        first = await run(kc, "import os, sys\nprint(os.getcwd())")
        assert first["execution_count"] == 1  # the fix-up did not count
        assert first["stdout"].strip() == str(work)
        assert await value(kc, "os.environ.get('KS_TEST_VAR')") == "v1"
        names = await value(kc, "sorted(k for k in globals() if not k.startswith('_'))")
        assert names == ["In", "Out", "exit", "get_ipython", "open", "os", "quit", "sys"]
        assert await value(kc, "len(Out)") == 0
        assert await value(kc, "In[:2]") == ["", "import os, sys\nprint(os.getcwd())"]
        # a notebook kernel (not independent) must die with its server: it got a parent poller
        assert await value(
            kc,
            "any(t.name == 'kernel-sessions-parent-poller' "
            "for t in __import__('threading').enumerate())",
        )
    finally:
        kc.stop_channels()


async def test_restart_of_a_pooled_kernel_keeps_callers_arguments(mkm, tmp_path):
    await wait_for(lambda: ready(mkm) == 1, 30)
    kid = await mkm.start_kernel(kernel_name="python3", cwd=str(tmp_path))
    await mkm.restart_kernel(kid)
    kc = started_client(mkm.get_kernel(kid))
    try:
        await kc.wait_for_ready(timeout=30)
        assert await value(kc, "__import__('os').getcwd()") == str(tmp_path)
    finally:
        kc.stop_channels()


async def test_independent_handout_has_no_parent_poller(mkm):
    await wait_for(lambda: ready(mkm) == 1, 30)
    kid = await mkm.start_kernel(kernel_name="python3", independent=True)
    kc = started_client(mkm.get_kernel(kid))
    try:
        assert not await value(
            kc,
            "any(t.name == 'kernel-sessions-parent-poller' "
            "for t in __import__('threading').enumerate())",
        )
        assert await value(kc, "'JPY_PARENT_PID' in __import__('os').environ") is False
    finally:
        kc.stop_channels()


async def test_spares_start_quietly_with_a_short_command_line(make_mkm, capfd):
    """No console banner in the server's output, and ``ps`` shows a readable command line
    (the start-up line names an installer file instead of carrying the module source)."""
    import psutil

    mkm = await make_mkm()  # its spares start while capfd holds this process's stdout
    await wait_for(lambda: ready(mkm) == 1, 30)
    kid = await mkm.start_kernel(kernel_name="python3")
    kc = started_client(mkm.get_kernel(kid))
    try:
        assert await value(kc, "6 * 7") == 42
    finally:
        kc.stop_channels()
    cmdline = psutil.Process(mkm.get_kernel(kid).provisioner.pid).cmdline()
    assert sum(len(a) for a in cmdline) < 1000, cmdline
    assert any("kernel-sessions-fixup-" in a for a in cmdline)
    out, err = capfd.readouterr()
    assert "NOTE: When using the `ipython kernel` entry point" not in out + err
    assert "--existing" not in out + err


async def test_miss_falls_back_to_a_cold_start(make_mkm):
    m = await make_mkm(pool_fill_delay=60)
    a = await m.start_kernel(kernel_name="python3")  # the spare
    b = await m.start_kernel(kernel_name="python3")  # refill is delayed: a miss
    stats = m.pool_stats()["python3"]
    assert (stats["hits"], stats["misses"]) == (1, 1)
    assert stats["hit_rate"] == 0.5
    assert sorted(m.list_kernel_ids()) == sorted([a, b])


async def test_dead_spare_is_replaced(mkm):
    await wait_for(lambda: ready(mkm) == 1, 30)
    spare = mkm._pool["python3"][0]
    os.kill(spare.km.provisioner.pid, signal.SIGKILL)
    await wait_for(lambda: mkm.pool_stats()["python3"]["replaced"] == 1, 10)
    await wait_for(lambda: ready(mkm) == 1, 30)
    kid = await mkm.start_kernel(kernel_name="python3")
    assert await mkm.get_kernel(kid).is_alive()


async def test_live_resize(mkm):
    await wait_for(lambda: ready(mkm) == 1, 30)
    mkm.pool_sizes = {"python3": 2}
    await wait_for(lambda: ready(mkm) == 2, 30)
    mkm.pool_sizes = {"python3": 0}
    await wait_for(lambda: mkm.pool_stats()["python3"]["ready"] == 0, 10)
    # retired spares count until their processes are gone (a limit counts processes)
    await wait_for(lambda: mkm.kernel_count() == 0, 30)


async def test_limit_counts_spares_and_raises_clearly(make_mkm):
    m = await make_mkm(max_kernels=2)
    await wait_for(lambda: ready(m) == 1, 30)
    await m.start_kernel(kernel_name="python3")  # spare -> running; refill to 2 kernels
    await wait_for(lambda: ready(m) == 1, 30)
    await m.start_kernel(kernel_name="python3")  # the second spare; no room to refill
    assert m.kernel_count() == 2
    with pytest.raises(KernelLimitError, match="max_kernels"):
        await m.start_kernel(kernel_name="python3")


async def test_warmup_code_warms_modules_without_binding_names(make_mkm):
    m = await make_mkm(pool_warmup_code={"python3": "import colorsys"})
    kid = await m.start_kernel(kernel_name="python3", independent=True)
    kc = started_client(m.get_kernel(kid))
    try:
        assert await value(kc, "'colorsys' in __import__('sys').modules") is True
        assert await value(kc, "'colorsys' in globals()") is False
    finally:
        kc.stop_channels()


async def test_shutdown_all_stops_spares(make_mkm):
    m = await make_mkm()
    await wait_for(lambda: ready(m) == 1, 30)
    pid = m._pool["python3"][0].km.provisioner.pid
    await m.shutdown_all(now=True)
    await wait_for(lambda: not _alive(pid), 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child still answers kill(0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return sys.platform != "linux"


async def test_spares_die_with_their_manager_but_session_kernels_do_not(tmp_path):
    """A SIGKILLed manager leaves no spare behind (not even one still starting); a kernel
    handed to a session lives on."""
    import subprocess
    import textwrap

    script = tmp_path / "holder.py"
    script.write_text(
        textwrap.dedent("""
        import asyncio, sys
        from kernel_sessions import PooledMultiKernelManager

        async def main():
            m = PooledMultiKernelManager(pool_sizes={"python3": 2}, connection_dir=sys.argv[1])
            await m.start_pool()
            while m.pool_stats()["python3"]["ready"] < 2:
                await asyncio.sleep(0.05)
            kid = await m.start_kernel(kernel_name="python3", independent=True)
            await asyncio.sleep(0.5)  # the untie message is not awaited
            while m.pool_stats()["python3"]["ready"] < 2:  # refilled spares are tied once ready
                await asyncio.sleep(0.05)
            spares = [s.km.provisioner.pid for s in m._pool["python3"]]
            m.pool_sizes = {"python3": 3}  # one more spare, killed while it is still starting
            while True:
                young = [s for s in m._pool["python3"] if not s.task.done()]
                prov = young[0].km.provisioner if young else None
                if prov is not None and getattr(prov, "pid", None):
                    spares.append(prov.pid)
                    break
                await asyncio.sleep(0.005)
            with open(sys.argv[2], "w") as f:
                f.write(" ".join(map(str, [m.get_kernel(kid).provisioner.pid, *spares])))
            await asyncio.sleep(3600)

        asyncio.run(main())
    """)
    )
    log = tmp_path / "pids.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for(lambda: log.exists() or proc.poll() is not None, 60)
        pids = [int(p) for p in log.read_text().split()]
    finally:
        proc.kill()
        proc.wait()
    session_pid, spares = pids[0], pids[1:]
    assert len(spares) == 3
    try:
        await wait_for(lambda: not any(_alive(p) for p in spares), 10)
        await asyncio.sleep(1.5)
        assert _alive(session_pid)
    finally:
        os.kill(session_pid, signal.SIGKILL)
