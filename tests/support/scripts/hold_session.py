"""Create a session, set x = 42, say so, then wait to be killed (used by re-adoption tests)."""

from __future__ import annotations

import asyncio
import sys

from kernel_sessions import KernelSessionManager


async def main(data_dir: str, name: str) -> None:
    ks = KernelSessionManager(data_dir=data_dir, pool_sizes={"python3": 0})  # no spare to orphan
    await ks.start()
    await ks.create(name)
    kc = ks.client(name)
    reply = await kc.execute_interactive("x = 42", timeout=30)
    assert reply["content"]["status"] == "ok"
    print("ready", ks.kernel_id(name), flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
