"""Per-session kernel watcher: readiness and busy/idle from the kernel's iopub stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from kernel_sessions.core.errors import InvalidTransition
from kernel_sessions.core.kernel_rpc import HELPER_MSG_PREFIX, helper_execute
from kernel_sessions.kernel.inspector import gc_paused

STATUS_STATES = ("busy", "idle")
KERNEL_INFO_RETRY = 1.0  # seconds before a kernel_info request is sent again
SETTLE_TIMEOUT = 0.02  # seconds a busy-looking session's state read waits for a pending idle


def _unpack(data: bytes) -> Any:
    """jupyter_client's JSON unpacker, without garbage collections in the middle of a big
    reply (a variables listing): see ``gc_paused``."""
    from jupyter_client.session import json_unpacker

    with gc_paused():
        return json_unpacker(data)


def fresh_client(km: Any) -> Any:
    """A client of ``km`` with a session (and so a ZMQ identity) of its own.

    ``km.client()`` shares the manager's ``Session``, and with it the DEALER identity: two such
    clients on one kernel collide on the kernel's ROUTER, and after a restart replies go to
    whichever reconnected first.
    """
    from jupyter_client.session import Session

    session = Session(key=km.session.key, signature_scheme=km.session.signature_scheme)
    session.unpack = _unpack
    # the manager's zmq context: a context per client would be terminated whenever the
    # garbage collector gets to it, which blocks while any of its sockets lingers
    return km.client(session=session, context=km.context)


class SessionWatcher:
    """Follows one kernel's iopub ``status`` messages for user executions.

    Status messages caused by our own silent helpers (their parent msg_id carries
    ``HELPER_MSG_PREFIX``) are ignored, so a variable listing never flips a session to busy.
    """

    def __init__(self, km: Any, on_status: Callable[[str], None]) -> None:
        self.km = km
        self.on_status = on_status
        self.client = fresh_client(km)
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        self._task: asyncio.Task | None = None
        self._calls = asyncio.Lock()  # one helper request in flight: replies are read in order
        self._subshell: str | None = None
        self._subshells_supported: bool | None = None
        self._hb: Any = None  # REQ socket on the kernel's heartbeat port, made on first beat
        self._stopped = False

    async def beat(self, timeout: float) -> bool:
        """Ping the kernel's heartbeat; True if it echoed within ``timeout`` seconds.

        ipykernel answers heartbeats from a thread of libzmq's own, so a kernel busy in a long
        cell still answers: a miss means the process is stopped, frozen or gone.
        ``REQ_RELAXED``/``REQ_CORRELATE`` let the next ping go out after a missed reply and
        drop a late reply to an older one.
        """
        if self._hb is None:
            # not km.connect_hb(): jupyter_server's kernel managers wrap sockets in streams
            sock = zmq.asyncio.Context.shadow(self.km.context.underlying).socket(zmq.REQ)
            sock.connect(self.km._make_url("hb"))
            sock.setsockopt(zmq.REQ_RELAXED, 1)
            sock.setsockopt(zmq.REQ_CORRELATE, 1)
            sock.linger = 0
            self._hb = sock
        await self._hb.send(b"ping")
        if not await self._hb.poll(timeout * 1000):
            return False
        await self._hb.recv()
        return True

    async def wait_ready(self, timeout: float) -> None:
        """Return once the kernel answers kernel_info (a warm kernel: about a millisecond).

        A request that reaches a kernel still binding its sockets can be lost, so it is resent
        every ``KERNEL_INFO_RETRY`` seconds, as jupyter_client's ``wait_for_ready`` does.
        """
        deadline = time.monotonic() + timeout
        while True:
            msg_id = self.client.kernel_info()
            try:
                await self.client._async_recv_reply(msg_id, timeout=KERNEL_INFO_RETRY)
                return
            except (asyncio.TimeoutError, TimeoutError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"kernel did not answer within {timeout:g} s") from None
                if not await self.km.is_alive():
                    raise RuntimeError("kernel died while starting") from None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        sock = self.client.iopub_channel.socket
        while True:
            await sock.poll(flags=zmq.POLLIN)
            self.drain()

    async def settle(self, busy: bool) -> None:
        """Drain; while the session looks busy, give an idle already on its way a moment.

        A client that saw its execution finish on its own iopub socket may get here a little
        before our socket has the same ``idle``: ``SETTLE_TIMEOUT`` covers that gap.
        """
        self.drain()
        if busy and self._task is not None and self.client.iopub_channel is not None:
            if await self.client.iopub_channel.socket.poll(SETTLE_TIMEOUT * 1000):
                self.drain()

    def drain(self) -> None:
        """Handle every iopub message already received, without waiting.

        Called before a session's state is read, so that a client which has just seen its
        execution finish also sees the session idle.
        """
        if self._task is None or self.client.iopub_channel is None:
            return
        sock = zmq.Socket.shadow(self.client.iopub_channel.socket.underlying)
        session = self.client.session
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            _, wire = session.feed_identities(parts)
            msg = session.deserialize(wire, content=True)
            if msg["msg_type"] != "status":
                continue
            parent = msg.get("parent_header") or {}
            if parent.get("msg_type") != "execute_request" or str(
                parent.get("msg_id", "")
            ).startswith(HELPER_MSG_PREFIX):
                continue  # not a user's execution: one of our silent helpers
            state = msg["content"].get("execution_state")
            if state in STATUS_STATES:
                self.on_status(state)

    async def evaluate(
        self, expr: str, timeout: float, *, concurrent: bool = False, mime: str = "text/plain"
    ) -> Any:
        """Evaluate ``expr`` silently in the kernel and return its ``mime`` representation.

        Runs as ``user_expressions`` of a silent, history-less execute from this watcher's own
        session: no execution count, no ``In``/``Out``/``_``, no iopub output, and its
        busy/idle is ignored by the watcher. With ``concurrent`` it goes to a kernel subshell
        (ipykernel >= 7), which answers while a cell runs on the main shell. A result without
        ``mime`` raises KeyError.
        """
        async with self._calls:
            sid = await self._subshell_id(timeout) if concurrent else None
            msg_id = helper_execute(self.client, "", {"r": expr}, subshell_id=sid)
            reply = await self._reply(msg_id, timeout)
        result = reply["content"].get("user_expressions", {}).get("r", {})
        if reply["content"].get("status") != "ok" or result.get("status") != "ok":
            err = result or reply["content"]
            raise RuntimeError(f"{err.get('ename', 'Error')}: {err.get('evalue', '')}")
        return result["data"][mime]

    async def _reply(self, msg_id: str, timeout: float, channel: str = "shell") -> dict:
        try:
            return await self.client._async_recv_reply(msg_id, timeout=timeout, channel=channel)
        except (asyncio.TimeoutError, TimeoutError):
            raise TimeoutError(f"kernel did not answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            # stop() closed the channels under a waiting request (the session was deleted or
            # its kernel replaced): a refusal for the caller, not a cancellation of its task
            if self._stopped:
                raise InvalidTransition(
                    "the session's kernel went away (deleted, restarted "
                    "or replaced) while it was being asked"
                ) from None
            raise

    async def _subshell_id(self, timeout: float) -> str | None:
        """This watcher's subshell, created on first use; None if the kernel has none."""
        if self._subshells_supported is None:  # asked on control: the shell may be busy
            ask = self.client.session.msg("kernel_info_request", {})
            self.client.control_channel.send(ask)
            info = await self._reply(ask["header"]["msg_id"], timeout, channel="control")
            features = info["content"].get("supported_features", [])
            self._subshells_supported = "kernel subshells" in features
        if self._subshells_supported and self._subshell is None:
            msg = self.client.session.msg("create_subshell_request", {})
            self.client.control_channel.send(msg)
            reply = await self._reply(msg["header"]["msg_id"], timeout, channel="control")
            self._subshell = reply["content"].get("subshell_id")
        return self._subshell

    async def answers_while_busy(self, timeout: float) -> bool:
        """True if the kernel has a subshell for us, so requests run beside a busy cell."""
        try:
            return await self._subshell_id(timeout) is not None
        except TimeoutError:
            return False

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._hb is not None:
            self._hb.close(linger=0)
            self._hb = None
        self.client.stop_channels()
