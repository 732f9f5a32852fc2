"""Run one cell in a kernel and collect its outputs as nbformat output dicts.

Used by the REST ``execute`` endpoint (scripts, the CLI). Each call uses a client with its own
ZMQ identity (``watch.fresh_client``). A fresh IOPub subscription takes a moment to reach the
kernel, and anything published before that is lost, so the client first nudges the kernel with
``kernel_info`` requests on the *control* channel (answered even while a cell runs) until their
IOPub status arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from queue import Empty
from typing import Any

from nbformat.v4 import output_from_msg

from kernel_sessions.core.watch import fresh_client

NUDGE_INTERVAL = 0.25  # seconds between kernel_info nudges while IOPub subscribes
INTERRUPT_GRACE = 5.0  # seconds to wait for the interrupted cell to finish after a timeout
MAX_OUTPUT_BYTES = 8 << 20  # outputs kept per execution (8 MiB of JSON); the rest is dropped
OUTPUT_TYPES = frozenset({"stream", "display_data", "execute_result", "error"})


class OutputCollector:
    """Applies IOPub output messages the way a notebook would (streams merge, clears apply)."""

    def __init__(self) -> None:
        self.outputs: list[dict] = []
        self.size = 0
        self.truncated = False
        self._clear_pending = False
        self._display_ids: dict[str, list[int]] = {}

    def feed(self, msg: dict) -> None:
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            return
        if kind == "update_display_data":
            did = (content.get("transient") or {}).get("display_id")
            for i in self._display_ids.get(did, []):
                out = output_from_msg({**msg, "msg_type": "display_data"})
                self.outputs[i].update(data=out["data"], metadata=out["metadata"])
            return
        if kind not in OUTPUT_TYPES:
            return
        if self._clear_pending:
            self._clear()
        out = dict(output_from_msg(msg))
        if (
            kind == "stream"
            and self.outputs
            and self.outputs[-1].get("output_type") == "stream"
            and self.outputs[-1]["name"] == out["name"]
        ):
            grow = len(out["text"])
            if self._fits(grow):
                self.outputs[-1]["text"] += out["text"]
            return
        if self._fits(len(json.dumps(out))):
            did = (content.get("transient") or {}).get("display_id")
            if did:
                self._display_ids.setdefault(did, []).append(len(self.outputs))
            self.outputs.append(out)

    def _fits(self, n: int) -> bool:
        if self.truncated or self.size + n > MAX_OUTPUT_BYTES:
            self.truncated = True
            return False
        self.size += n
        return True

    def _clear(self) -> None:
        self.outputs.clear()
        self._display_ids.clear()
        self.size = 0
        self._clear_pending = False


async def _sync_iopub(kc: Any, deadline: float) -> None:
    """Return once IOPub delivers: a control kernel_info's status message has arrived."""
    while True:
        msg = kc.session.msg("kernel_info_request")
        kc.control_channel.send(msg)
        until = min(deadline, time.monotonic() + NUDGE_INTERVAL)
        while (left := until - time.monotonic()) > 0:
            try:
                got = await kc.get_iopub_msg(timeout=left)
            except Empty:
                break
            if got.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"]:
                return  # (the control reply is left unread: the client is closed after use)
        if time.monotonic() >= deadline:
            raise TimeoutError("the kernel's IOPub channel did not respond")


async def execute(
    km: Any, code: str, timeout: float, interrupt: Callable[[], Awaitable[None]]
) -> dict[str, Any]:
    """Run ``code``; on timeout interrupt the kernel and report status ``"timeout"``.

    Returns ``{status, execution_count, outputs, truncated}`` where status is the
    execute_reply's (``ok``, ``error``, ``aborted``) or ``timeout``.
    """
    kc = fresh_client(km)
    kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
    collector = OutputCollector()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        try:
            await _sync_iopub(kc, deadline)
        except TimeoutError:  # a hung (stopped, frozen) or vanishing kernel: nothing ran
            return {"status": "timeout", "execution_count": None, "outputs": [], "truncated": False}
        msg_id = kc.execute(code, silent=False, store_history=True, allow_stdin=False)
        idle = False
        while not idle:
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:
                    break  # the grace period after the interrupt is over too
                timed_out = True
                with contextlib.suppress(Exception):  # the session may be gone meanwhile
                    await interrupt()
                deadline = time.monotonic() + INTERRUPT_GRACE
                continue
            try:
                msg = await kc.get_iopub_msg(timeout=left)
            except Empty:  # re-check the deadline
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status":
                idle = msg["content"].get("execution_state") == "idle"
            else:
                collector.feed(msg)
        reply: dict[str, Any] = {}
        if idle:
            try:
                reply = (await kc._async_recv_reply(msg_id, timeout=INTERRUPT_GRACE))["content"]
            except (asyncio.TimeoutError, TimeoutError):
                reply = {}
        return {
            "status": "timeout" if timed_out else reply.get("status", "error"),
            "execution_count": reply.get("execution_count"),
            "outputs": collector.outputs,
            "truncated": collector.truncated,
        }
    finally:
        kc.stop_channels()
