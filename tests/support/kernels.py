"""Small helpers the tests share for talking to real kernels."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from tests.support import KERNEL_DIR


@contextlib.contextmanager
def kernel_module(module: str, alias: str) -> Iterator[types.ModuleType]:
    """Load ``kernel_sessions/kernel/<module>.py`` as plain Python under a private name.

    The kernel-side modules import only the standard library, as they do inside a kernel.
    """
    spec = importlib.util.spec_from_file_location(alias, KERNEL_DIR / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[alias] = loaded
    try:
        spec.loader.exec_module(loaded)
        yield loaded
    finally:
        sys.modules.pop(alias, None)


def started_client(km: Any) -> Any:
    """A client with its own session, channels started except the heartbeat thread.

    The heartbeat channel is a thread of its own; tests need none and leaving one behind would
    block the zmq context's termination at interpreter exit.
    """
    from kernel_sessions.core.watch import fresh_client

    kc = fresh_client(km)
    kc.start_channels(hb=False)
    return kc


async def run(kc: Any, code: str, timeout: float = 30) -> dict:
    """Execute ``code`` and return the reply content, with the stream text under ``stdout``."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = await kc.execute_interactive(code, timeout=timeout, output_hook=hook)
    content = dict(reply["content"])
    content["stdout"] = "".join(out)
    return content


async def value(kc: Any, expr: str) -> Any:
    """Evaluate ``expr`` in the kernel and return it decoded from JSON."""
    content = await run(kc, f"import json as _j; print(_j.dumps({expr})); del _j")
    assert content["status"] == "ok", content
    return json.loads(content["stdout"])


async def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``pred`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
