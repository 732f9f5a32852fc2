"""Variables benchmark: our listing vs the naive full-repr listing, idle and busy kernels.

Same run, same kernel: p50 list latency with 1,000 and 10,000 variables for both ways (the naive
one — repr of everything, as jupyterlab-variableinspector does — is the baseline of the ratio),
and how long a listing takes to answer while a cell runs. Goals: 1k <= 30 ms, 10k <= 300 ms,
busy <= 1 s.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kernel_sessions import KernelSessionManager
from kernel_sessions.core.kernel_rpc import source_install_expr

RUNS = 7
SIZES = (1_000, 10_000)
BUSY_CELL = "import time; time.sleep(6)"
NAIVE_KEY = "_kernel_sessions_bench_naive"
# a mixed namespace: small lists, dicts, strings, numpy arrays and plain numbers
MAKE_VARS = (
    "import numpy as _np\n"
    "for _i in range({n}):\n"
    "    _k = _i % 5\n"
    "    globals()[f'v{{_i}}'] = (list(range(200)) if _k == 0 else {{'a': _i, 'b': [1.5] * 50}}"
    " if _k == 1 else 'text ' * 40 if _k == 2 else _np.arange(300.0) if _k == 3 else _i * 1.5)\n"
)
CLEAR_VARS = (
    "for _n in [n for n in globals() if n.startswith('v') and n[1:].isdigit()]: del globals()[_n]"
)


async def timed(coro_factory, runs: int = RUNS) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await coro_factory()
        out.append(time.perf_counter() - t0)
    return out


async def main() -> int:
    naive_src = (Path(__file__).parent / "naive_inspector.py").read_text()
    naive_code = (
        f"{source_install_expr(NAIVE_KEY, naive_src)}"
        ".naive_listing(__import__('IPython').get_ipython().user_ns)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        async with KernelSessionManager(data_dir=d, pool_sizes={"python3": 1}, root_dir=d) as ks:
            await ks.create("bench")
            kc = ks.client("bench")
            watcher = ks._watchers["bench"]
            await ks.variables("bench")  # ship the inspector once
            await watcher.evaluate(naive_code, 60)
            for n in SIZES:
                await kc.execute_interactive(CLEAR_VARS + "\n" + MAKE_VARS.format(n=n), timeout=120)
                ours = await timed(lambda: ks.vars.list("bench"))
                naive = await timed(lambda: watcher.evaluate(naive_code, 120))
                count = (await ks.vars.list("bench"))["count"]
                rows.append((n, count, ours, naive))
            kc.execute(BUSY_CELL)
            while (await ks.get("bench")).state != "busy":
                await asyncio.sleep(0.01)
            t0 = time.perf_counter()
            busy = await ks.vars.list("bench")
            busy_s = time.perf_counter() - t0
            await kc.get_shell_msg(timeout=30)
            kc.stop_channels()
            await ks.delete("bench")
    print(f"kernel-sessions variables benchmark (p50 of {RUNS} listings, same kernel)")
    print(f"  {'variables':>9}  {'ours':>10}  {'naive repr':>11}  {'naive/ours':>10}  goal")
    for n, count, ours, naive in rows:
        o, nv = statistics.median(ours) * 1000, statistics.median(naive) * 1000
        goal = "<= 30 ms" if n == 1_000 else "<= 300 ms"
        print(f"  {n:>9}  {o:>7.1f} ms  {nv:>8.1f} ms  {nv / o:>9.1f}x  {goal} (listed {count})")
    print(
        f"  busy kernel (cell running): answered in {busy_s * 1000:.1f} ms, "
        f"stale={busy['stale']}, {busy['count']} variables  (goal <= 1 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
