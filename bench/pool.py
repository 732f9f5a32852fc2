"""Pool benchmark: cold kernel starts vs session creates from a warm pool, in one run.

Prints the medians and their ratio (goal >= 40x), the hit rate of 30 creates at 2/s with a pool
of 2 (goal >= 99 % after warm-up) and the RSS of an idle session kernel (goal <= 55 MiB).
Not a test: numbers on a shared 2-core machine are noisy, so compare within one run only.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time

import psutil
from jupyter_client.manager import AsyncKernelManager

from kernel_sessions import KernelSessionManager
from kernel_sessions.core.watch import fresh_client

RUNS = 10
CREATES = 30
CREATE_INTERVAL = 0.5  # 2 creates per second
POOL = 2
IDLE_SETTLE = 2.0  # seconds before reading an idle kernel's RSS
MIB = 1024 * 1024


async def kernel_info_answered(km: AsyncKernelManager) -> None:
    kc = fresh_client(km)
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    try:
        while True:
            msg_id = kc.kernel_info()
            try:
                await kc._async_recv_reply(msg_id, timeout=1.0)
                return
            except TimeoutError:
                continue
    finally:
        kc.stop_channels()


async def cold_starts() -> list[float]:
    times = []
    for _ in range(RUNS):
        km = AsyncKernelManager(kernel_name="python3")
        t0 = time.perf_counter()
        await km.start_kernel()
        await kernel_info_answered(km)
        times.append(time.perf_counter() - t0)
        await km.shutdown_kernel(now=True)
    return times


async def wait_pool_full(ks: KernelSessionManager) -> None:
    while ks.pool_stats()["python3"]["ready"] < POOL:
        await asyncio.sleep(0.02)


async def warm_creates(ks: KernelSessionManager) -> list[float]:
    times = []
    for i in range(RUNS):
        await wait_pool_full(ks)
        t0 = time.perf_counter()
        await ks.create(f"warm-{i}")
        times.append(time.perf_counter() - t0)
        await ks.delete(f"warm-{i}")
    return times


async def hit_rate(ks: KernelSessionManager) -> tuple[float, int, int]:
    await wait_pool_full(ks)
    before = ks.pool_stats()["python3"]
    start = time.perf_counter()
    for i in range(CREATES):
        await asyncio.sleep(max(0.0, start + i * CREATE_INTERVAL - time.perf_counter()))
        await ks.create(f"rate-{i}")
    after = ks.pool_stats()["python3"]
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    for i in range(CREATES):
        await ks.delete(f"rate-{i}")
    return hits / (hits + misses), hits, misses


async def idle_rss(ks: KernelSessionManager) -> float:
    await wait_pool_full(ks)
    model = await ks.create("idle-rss")
    await asyncio.sleep(IDLE_SETTLE)
    rss = psutil.Process(model.pid).memory_info().rss / MIB
    await ks.delete("idle-rss")
    return rss


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:8.1f} ms  (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"


async def main() -> int:
    cold = await cold_starts()
    with tempfile.TemporaryDirectory() as d:
        async with KernelSessionManager(data_dir=d, pool_sizes={"python3": POOL}, root_dir=d) as ks:
            warm = await warm_creates(ks)
            rate, hits, misses = await hit_rate(ks)
            rss = await idle_rss(ks)
    ratio = statistics.median(cold) / statistics.median(warm)
    print(
        f"kernel-sessions pool benchmark  (python {sys.version.split()[0]}, "
        f"{psutil.cpu_count()} cores)"
    )
    print(f"  cold start -> kernel_info answered, median of {RUNS}: {ms(cold)}")
    print(f"  session create from warm pool,   median of {RUNS}: {ms(warm)}")
    print(f"  ratio cold / warm: {ratio:.1f}x   (goal >= 40x)")
    print(
        f"  hit rate, {CREATES} creates at {1 / CREATE_INTERVAL:g}/s, pool {POOL}: "
        f"{rate * 100:.1f} %  ({hits} hits, {misses} misses; goal >= 99 %)"
    )
    print(f"  idle session kernel RSS: {rss:.1f} MiB   (goal <= 55 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
