"""Checkpoint a session (x = 1, label "first"), then start a large second checkpoint and say
so; the test kills this process while the kernel writes (used by the crash-safety test)."""

from __future__ import annotations

import asyncio
import sys

from kernel_sessions import KernelSessionManager


async def main(data_dir: str) -> None:
    ks = KernelSessionManager(
        data_dir=data_dir, pool_sizes={"python3": 0}, keep_kernels_on_stop=True
    )
    ks.checkpointing.auto_checkpoint = False
    await ks.start()
    model = await ks.create("w")
    kc = ks.client("w")
    for code in (
        "x = 1",
        None,
        "import numpy as np\nx = 2\nbig = np.random.default_rng(0).random(60_000_000)",
    ):
        if code is None:
            await ks.checkpoint("w", label="first")
            continue
        reply = await kc.execute_interactive(code, timeout=60)
        assert reply["content"]["status"] == "ok"
    task = asyncio.ensure_future(ks.checkpoint("w", label="second"))
    while model.state != "checkpointing":
        await asyncio.sleep(0.01)
    print("dumping", model.pid, flush=True)
    await task
    print("finished (too early for the test)", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
