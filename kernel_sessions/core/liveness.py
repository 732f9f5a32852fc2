"""Watching session kernels: busy/idle, death, automatic restarts, leases and idle expiry.

A mixin of ``KernelSessionManager`` (it uses the manager's sessions, registry and state
machine); kept apart because it is the part that runs on its own, from timers and callbacks.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from kernel_sessions.core import models as M
from kernel_sessions.core.models import SessionModel

if TYPE_CHECKING:
    from kernel_sessions.core.manager import KernelSessionManager

READY_TIMEOUT = 60.0  # seconds a (cold or restarted) session kernel may take to answer
BEATING = (M.IDLE, M.BUSY, M.CHECKPOINTING, M.RESTORING, M.UNRESPONSIVE)  # heartbeats sent


class SweepsMixin:
    """Callbacks and loops that keep each session's state true to its kernel."""

    def responsive(self: KernelSessionManager, kernel_id: str) -> bool:
        """False once the kernel has missed ``heartbeat_misses`` heartbeats in a row."""
        return self._hb_misses.get(kernel_id, 0) < self.heartbeat_misses

    def _on_status(self: KernelSessionManager, kernel_id: str, state: str) -> None:
        model = self.by_kernel(kernel_id)
        if model is not None and model.state == M.CHECKPOINTING and state in (M.IDLE, M.BUSY):
            self.checkpointing.saw_status(model, state)
        if model is not None and model.state in (M.IDLE, M.BUSY) and state in (M.IDLE, M.BUSY):
            if model.state == M.BUSY and state == M.IDLE:
                self.checkpointing.note_activity(model)
            self.transition(model, state, "execution")

    def _on_auto_restart(self: KernelSessionManager, kernel_id: str) -> None:
        """jupyter_client's restarter is bringing a dead kernel back: the namespace is gone."""
        model = self.by_kernel(kernel_id)
        if model is None or self.exit_expected(kernel_id):
            return
        if model.state != M.DEAD:
            self.transition(model, M.DEAD, "kernel died")
        self.transition(model, M.STARTING, "restarting after death")
        asyncio.ensure_future(self._finish_auto_restart(model, kernel_id))

    async def _finish_auto_restart(
        self: KernelSessionManager, model: SessionModel, kernel_id: str
    ) -> None:
        with self.expecting_exit(kernel_id):
            async with self.operation(model.name):
                if self.is_current(model):
                    await self._until_restarted(model, kernel_id)

    async def _until_restarted(
        self: KernelSessionManager, model: SessionModel, kernel_id: str
    ) -> None:
        try:
            km = self.kernel_manager.get_kernel(kernel_id)
            deadline = time.monotonic() + READY_TIMEOUT
            while not (km.has_kernel and await km.is_alive()):
                if time.monotonic() > deadline:
                    raise TimeoutError("kernel did not come back")
                await asyncio.sleep(0.1)
            await self.attach_kernel(model)
            model.restarts += 1
            await self.checkpointing.after_restart(model)
        except Exception as e:
            if model.state != M.DEAD and self.is_current(model):
                self.transition(model, M.DEAD, f"automatic restart failed: {e}")

    async def _death_loop(self: KernelSessionManager) -> None:
        """Notice an unexpected kernel exit within ``death_check_interval`` seconds."""
        while True:
            await asyncio.sleep(self.death_check_interval)
            for model in list(self._sessions.values()):
                if model.state in (M.DEAD, M.HIBERNATED, M.DELETED, M.STARTING):
                    continue
                kid = model.kernel_id
                if self.exit_expected(kid) or self.operation_running(model.name):
                    continue
                if kid not in self.kernel_manager:  # e.g. jupyter_server gave up restarting it
                    self.transition(model, M.DEAD, "kernel gone: its restarts failed")
                    self.checkpointing.revive_later(model)
                    continue
                km = self.kernel_manager.get_kernel(kid)
                if await km.is_alive():
                    continue
                code = await km.provisioner.poll() if km.provisioner else None
                if not self.exit_expected(kid) and self.is_current(model):
                    self.transition(model, M.DEAD, f"kernel died (exit code {code})")

    async def _heartbeat_loop(self: KernelSessionManager) -> None:
        """Notice a kernel that is there but does not answer (SIGSTOP, frozen): after
        ``heartbeat_misses`` missed beats its session is ``unresponsive``, and back to the
        state it had when it answers again. All sessions are pinged at once, so one hung
        kernel never slows the others' checks."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            models = [
                m
                for m in list(self._sessions.values())
                if m.state in BEATING
                and m.name in self._watchers
                and not self.exit_expected(m.kernel_id)
            ]
            beats = await asyncio.gather(
                *(self._watchers[m.name].beat(self.heartbeat_interval) for m in models),
                return_exceptions=True,
            )
            for model, ok in zip(models, beats):
                if self.is_current(model) and not self.exit_expected(model.kernel_id):
                    self._heard(model, ok is True)

    def _heard(self: KernelSessionManager, model: SessionModel, ok: bool) -> None:
        kid = model.kernel_id
        if ok:
            self._hb_misses.pop(kid, None)
            if model.state == M.UNRESPONSIVE:
                self.transition(
                    model, self._before_hang.pop(kid, M.IDLE), "answering heartbeats again"
                )
            return
        misses = self._hb_misses[kid] = self._hb_misses.get(kid, 0) + 1
        if misses >= self.heartbeat_misses and model.state in (M.IDLE, M.BUSY):
            self._before_hang[kid] = model.state
            self.transition(
                model,
                M.UNRESPONSIVE,
                (
                    f"kernel missed {misses} heartbeats: stopped or frozen; restart or delete "
                    "the session (a stopped process resumes with SIGCONT)"
                ),
            )

    async def _reap_loop(self: KernelSessionManager) -> None:
        """End sessions whose owner's lease lapsed; expire idle ones past their TTL; now and then
        collect checkpoint blobs nothing uses any more."""
        while True:
            await asyncio.sleep(self.reap_interval)
            await self.checkpointing.collect_garbage()
            now = time.time()
            for model in list(self._sessions.values()):
                try:
                    if model.state == M.STARTING:
                        continue
                    if model.owner and model.lease_expires and model.lease_expires < now:
                        self.log.info("session %s: lease of %s lapsed", model.name, model.owner)
                        await self.delete(model.name)
                    elif (
                        model.ttl
                        and model.state == M.IDLE
                        and now - model.last_activity > model.ttl
                    ):
                        await self._expire(model)
                except Exception:
                    self.log.exception("sweep of session %s failed", model.name)

    async def _expire(self: KernelSessionManager, model: SessionModel) -> None:
        """An idle session past its TTL hibernates (checkpoint, then its kernel stops)."""
        await self.checkpointing.expire(model)
