"""Watching session kernels: busy/idle, death, automatic restarts, leases and idle expiry.

A mixin of ``KernelSessionManager`` (it uses the manager's sessions, registry and state
machine); kept apart because it is the part that runs on its own, from timers and callbacks.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from . import models as M
from .models import SessionModel

if TYPE_CHECKING:
    from .manager import KernelSessionManager

READY_TIMEOUT = 60.0  # seconds a (cold or restarted) session kernel may take to answer


class SweepsMixin:
    """Callbacks and loops that keep each session's state true to its kernel."""

    def _by_kernel(self: KernelSessionManager, kernel_id: str) -> SessionModel | None:
        return next((m for m in self._sessions.values() if m.kernel_id == kernel_id), None)

    def _on_status(self: KernelSessionManager, kernel_id: str, state: str) -> None:
        model = self._by_kernel(kernel_id)
        if model is not None and model.state == M.CHECKPOINTING and state in (M.IDLE, M.BUSY):
            self.checkpointing.saw_status(model, state)
        if model is not None and model.state in (M.IDLE, M.BUSY) and state in (M.IDLE, M.BUSY):
            if model.state == M.BUSY and state == M.IDLE:
                self.checkpointing.note_activity(model)
            self._transition(model, state, "execution")

    def _on_auto_restart(self: KernelSessionManager, kernel_id: str) -> None:
        """jupyter_client's restarter is bringing a dead kernel back: the namespace is gone."""
        model = self._by_kernel(kernel_id)
        if model is None or kernel_id in self._expected_exit:
            return
        if model.state != M.DEAD:
            self._transition(model, M.DEAD, "kernel died")
        self._transition(model, M.STARTING, "restarting after death")
        self._expected_exit.add(kernel_id)
        asyncio.ensure_future(self._finish_auto_restart(model, kernel_id))

    async def _finish_auto_restart(self: KernelSessionManager, model: SessionModel, kernel_id: str) -> None:
        try:
            km = self.kernel_manager.get_kernel(kernel_id)
            deadline = time.monotonic() + READY_TIMEOUT
            while not (km.has_kernel and await km.is_alive()):
                if time.monotonic() > deadline:
                    raise TimeoutError("kernel did not come back")
                await asyncio.sleep(0.1)
            await self._attach_kernel(model)
            model.restarts += 1
            await self.checkpointing.after_restart(model)
        except Exception as e:
            if model.state != M.DEAD:
                self._transition(model, M.DEAD, f"automatic restart failed: {e}")
        finally:
            self._expected_exit.discard(kernel_id)

    async def _death_loop(self: KernelSessionManager) -> None:
        """Notice an unexpected kernel exit within ``death_check_interval`` seconds."""
        while True:
            await asyncio.sleep(self.death_check_interval)
            for model in list(self._sessions.values()):
                if model.state in (M.DEAD, M.HIBERNATED, M.DELETED, M.STARTING):
                    continue
                kid = model.kernel_id
                if kid in self._expected_exit:
                    continue
                if kid not in self.kernel_manager:  # e.g. jupyter_server gave up restarting it
                    self._transition(model, M.DEAD, "kernel gone: its restarts failed")
                    self.checkpointing.revive_later(model)
                    continue
                km = self.kernel_manager.get_kernel(kid)
                if await km.is_alive():
                    continue
                code = await km.provisioner.poll() if km.provisioner else None
                self._transition(model, M.DEAD, f"kernel died (exit code {code})")

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
                    elif (model.ttl and model.state == M.IDLE
                          and now - model.last_activity > model.ttl):
                        await self._expire(model)
                except Exception:
                    self.log.exception("sweep of session %s failed", model.name)

    async def _expire(self: KernelSessionManager, model: SessionModel) -> None:
        """An idle session past its TTL hibernates (checkpoint, then its kernel stops)."""
        await self.checkpointing.expire(model)
