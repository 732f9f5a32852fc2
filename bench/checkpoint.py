"""Checkpoint benchmark: ours vs dill.dump_module and plain pickle protocol 5, same run.

One session holds the namespace: 1 GiB of numpy arrays (8 x 128 MiB of random floats), a
10M-row DataFrame (int64, float64, float64) and a list of 10k small objects. Measured, median
of RUNS each, all durable (fsync'ed) so that the comparison is fair:

- a full checkpoint (empty store each time) vs ``dill.dump_module`` and ``pickle.dump``
  (protocol 5) of the same variables, both run inside the same kernel;
- a restore into a fresh kernel (a fork into a kernel from the warm pool) vs
  ``dill.load_module`` in a fresh kernel; and the 1 GiB of arrays alone;
- an incremental checkpoint after changing 1 MiB (a 1 MiB array modified in place);
- a full checkpoint taken in a fork of the kernel (``background_checkpoints``): how long the
  kernel pauses, and how fast a cell answers while the fork writes.

Goals: >= 8x faster than dill.dump_module, <= 1.2x plain pickle-5, restore of 1 GiB <= 0.5 s,
incremental <= 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernel_sessions import KernelSessionManager

RUNS = 3
MAKE = """
import numpy as np, pandas as pd
rng = np.random.default_rng(0)
arrays = {f"a{i}": rng.random(16 * 1024 * 1024) for i in range(8)}
globals().update(arrays)
del arrays
df = pd.DataFrame({"id": np.arange(10_000_000), "x": rng.random(10_000_000),
                   "y": rng.random(10_000_000)})
small = [{"i": i, "name": f"item{i}", "tags": ("a", "b")} for i in range(10_000)]
delta = rng.random(131072)  # 1 MiB, changed in place for the incremental checkpoint
"""
NAMES = [f"a{i}" for i in range(8)] + ["df", "small", "delta"]
BASELINES = """
import os, pickle, time, dill
def _ks_bench_dump(path, how):
    ns = {{k: globals()[k] for k in {names!r}}}
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        if how == "pickle5":
            pickle.dump(ns, f, protocol=5)
        else:
            dill.dump_module(f, module=__import__("__main__"), refimported=True)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0
"""
LOAD_DILL = """
import time, dill
_t0 = time.perf_counter()
dill.load_module({path!r})
print(time.perf_counter() - _t0)
"""


async def execute(ks: KernelSessionManager, name: str, code: str, timeout: float = 600) -> str:
    kc = ks.client(name)
    out: list[str] = []
    try:
        reply = await kc.execute_interactive(
            code,
            timeout=timeout,
            output_hook=lambda m: (
                out.append(m["content"].get("text", "")) if m["msg_type"] == "stream" else None
            ),
        )
    finally:
        kc.stop_channels()
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}")
    return "".join(out)


def wipe(store_root: Path) -> None:
    for sub in ("blobs", "manifests"):
        for child in (store_root / sub).iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


async def warm_pool(ks: KernelSessionManager, need: int = 2) -> None:
    """Restores go into pooled kernels: time them with the pool refilled, as in steady use."""
    while ks.pool_stats().get("python3", {}).get("ready", 0) < need:
        await asyncio.sleep(0.1)


def med(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> int:
    base = Path(tempfile.mkdtemp(prefix="ks-bench-ckpt-", dir=os.environ.get("BENCH_DIR")))
    try:
        async with KernelSessionManager(
            data_dir=str(base / "data"), root_dir=str(base), pool_sizes={"python3": 2}
        ) as ks:
            ks.checkpointing.auto_checkpoint = False
            await ks.create("bench")
            await execute(ks, "bench", MAKE)
            await execute(ks, "bench", BASELINES.format(names=NAMES))
            root = Path(ks.checkpointing.store.root)
            ours, pickle5, dill_dump = [], [], []
            for i in range(RUNS):
                if i:
                    wipe(root)
                t0 = time.perf_counter()
                manifest = await ks.checkpoint("bench")
                ours.append(time.perf_counter() - t0)
                pickle5.append(
                    float(
                        await execute(
                            ks,
                            "bench",
                            f"print(_ks_bench_dump({str(base / 'p5.pkl')!r}, 'pickle5'))",
                        )
                    )
                )
            for _ in range(RUNS):
                dill_dump.append(
                    float(
                        await execute(
                            ks,
                            "bench",
                            f"print(_ks_bench_dump({str(base / 'dill.pkl')!r}, 'dill'))",
                        )
                    )
                )
            size = manifest["bytes"]

            restore_all, restore_arrays, dill_load = [], [], []
            for i in range(RUNS):
                await warm_pool(ks)
                t0 = time.perf_counter()
                await ks.restore("bench", manifest["id"], into=f"fork{i}")
                restore_all.append(time.perf_counter() - t0)
                await ks.delete(f"fork{i}")
                await warm_pool(ks)
                t0 = time.perf_counter()
                await ks.restore("bench", manifest["id"], into=f"arr{i}", variables=NAMES[:8])
                restore_arrays.append(time.perf_counter() - t0)
                await ks.delete(f"arr{i}")
                await warm_pool(ks)
                await ks.create(f"dl{i}")
                dill_load.append(
                    float(
                        await execute(ks, f"dl{i}", LOAD_DILL.format(path=str(base / "dill.pkl")))
                    )
                )
                await ks.delete(f"dl{i}")

            incremental, written = [], []
            for i in range(RUNS):
                await execute(ks, "bench", f"delta += {i + 1}")
                t0 = time.perf_counter()
                m = await ks.checkpoint("bench")
                incremental.append(time.perf_counter() - t0)
                written.append(m["new_bytes"])
            ks.checkpointing.background_checkpoints = True  # the fork: a pause of the fork only
            bg_total, bg_pause, bg_answer = [], [], []
            for _ in range(RUNS):
                wipe(root)
                ks.checkpointing.last_pause_ms = None
                t0 = time.perf_counter()
                task = asyncio.ensure_future(ks.checkpoint("bench"))
                while ks.checkpointing.last_pause_ms is None and not task.done():
                    await asyncio.sleep(0.001)
                t1 = time.perf_counter()
                await execute(ks, "bench", "1 + 1")
                bg_answer.append(time.perf_counter() - t1)
                await task
                bg_total.append(time.perf_counter() - t0)
                bg_pause.append(ks.checkpointing.last_pause_ms / 1000)
            await ks.delete("bench", purge=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    gib = size / 2**30
    print(
        f"kernel-sessions checkpoint benchmark  (python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores, median of {RUNS})"
    )
    print(f"  namespace: {gib:.2f} GiB (8 x 128 MiB arrays, 10M-row DataFrame, 10k small objects)")
    print(f"  checkpoint (ours, full):      {med(ours) * 1000:8.0f} ms")
    print(
        f"  pickle.dump protocol 5:       {med(pickle5) * 1000:8.0f} ms   "
        f"ours/pickle5 = {med(ours) / med(pickle5):.2f}x   (goal <= 1.2x)"
    )
    print(
        f"  dill.dump_module:             {med(dill_dump) * 1000:8.0f} ms   "
        f"dill/ours = {med(dill_dump) / med(ours):.1f}x faster   (goal >= 8x)"
    )
    print(
        f"  restore into a fresh kernel:  {med(restore_all) * 1000:8.0f} ms   (all {gib:.2f} GiB)"
    )
    print(
        f"  restore 1 GiB of arrays:      {med(restore_arrays) * 1000:8.0f} ms   (goal <= 500 ms)"
    )
    print(
        f"  dill.load_module:             {med(dill_load) * 1000:8.0f} ms   "
        f"dill/ours = {med(dill_load) / med(restore_all):.1f}x"
    )
    print(
        f"  incremental after 1 MiB:      {med(incremental) * 1000:8.0f} ms, "
        f"{statistics.median(written) / 2**20:.2f} MiB written   (goal <= 100 ms)"
    )
    print(
        f"  background (fork) checkpoint: {med(bg_total) * 1000:8.0f} ms in all; kernel paused "
        f"{med(bg_pause) * 1000:.0f} ms (in-kernel: the whole checkpoint); a cell meanwhile "
        f"answered in {med(bg_answer) * 1000:.0f} ms   (moonshot goal: pause <= 20 ms)"
    )
    print(
        json.dumps(
            {
                "ours": ours,
                "pickle5": pickle5,
                "dill": dill_dump,
                "restore": restore_all,
                "restore_arrays": restore_arrays,
                "dill_load": dill_load,
                "incremental": incremental,
                "background": bg_total,
                "background_pause": bg_pause,
                "background_cell": bg_answer,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
