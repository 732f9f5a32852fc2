"""The checkpoint policies: automatic checkpoints after activity, hibernation on a graceful
stop and on TTL expiry, automatic restore after a kernel death, and blob garbage collection.

A mixin of ``checkpointing.CheckpointService`` (it uses the service's operations and the
manager's state machine); kept apart because it is what runs on its own, from timers,
callbacks and sweeps, rather than on request.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kernel_sessions.checkpoint.store import failed_names
from kernel_sessions.core import models as M
from kernel_sessions.core.models import SessionModel

if TYPE_CHECKING:
    from kernel_sessions.checkpoint.service import CheckpointService

STOP_BUSY_WAIT = 2.0  # seconds a graceful stop waits for a busy session before leaving it running
AUTO_RESTORE_WINDOW = 300.0  # seconds over which automatic restores of one session are counted
AUTO_RESTORE_LIMIT = 3  # more restores than this in the window: the checkpoint kills the kernel
GC_INTERVAL = 600.0  # seconds between collections of blobs no checkpoint uses


SHOWN_IN_REASON = 5  # ids or names listed in a state reason before "and N more"


def few(items: list[str]) -> str:
    more = len(items) - SHOWN_IN_REASON
    return ", ".join(items[:SHOWN_IN_REASON]) + (f" and {more} more" if more > 0 else "")


def fallback_note(passed: list[dict[str, Any]], missing: list[str]) -> str:
    """ "; passed over <id> (<why>), ...; not restored: a, b" (empty when nothing to say)."""
    parts = []
    if passed:
        parts.append("passed over " + few([f"{p['id']} ({p['reason']})" for p in passed]))
    if missing:
        parts.append("not restored: " + few(missing))
    return "".join("; " + p for p in parts)


def missing_names(
    manifest: dict[str, Any], result: dict[str, Any], passed: list[dict[str, Any]]
) -> list[str]:
    """Variables known to the checkpoint taken or to the newer ones passed over that are not
    in the namespace after the restore."""
    known = set(manifest.get("variables", {})) | set(failed_names(manifest))
    for p in passed:
        known.update(p.get("names") or ())
    return sorted(known - set(result.get("restored", [])))


def public_passed(passed: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"id": p["id"], "reason": p["reason"]} for p in passed]


def taken_at(manifest: dict[str, Any]) -> str:
    """When a checkpoint was taken, as ISO 8601 UTC (for reasons and events)."""
    created = manifest.get("created") or 0
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds")


class PoliciesMixin:
    """What ``CheckpointService`` does without being asked."""

    async def collect_garbage(self: CheckpointService, force: bool = False) -> int:
        """Remove blobs no checkpoint uses (at most every GC_INTERVAL s unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_gc < GC_INTERVAL:
            return 0
        self._last_gc = now
        try:
            return await asyncio.to_thread(self.store.collect_garbage)
        except Exception as exc:  # a sweep must never stop the loop that runs it
            self.log.warning("checkpoint garbage collection failed: %s", exc)
            return 0

    async def on_stop(self: CheckpointService, model: SessionModel) -> bool:
        """Graceful stop: hibernate ``model``; False if it stays running (busy, or failed)."""
        async with self.sessions.operation(model.name):  # let an operation under way finish
            pass
        if model.state in (M.HIBERNATED, M.DEAD, M.DELETED):
            return True
        try:
            await self._until_idle(model, STOP_BUSY_WAIT, "hibernation")
            async with self.sessions.operation(model.name):
                if model.state != M.IDLE or not self.sessions.is_current(model):
                    return False
                await self._hibernate(model, "server stopped", checkpoint=self.checkpoint_on_stop)
            return True
        except Exception as exc:
            self.log.warning(
                "session %s keeps running: not hibernated on stop (%s)", model.name, exc
            )
            return False

    async def expire(self: CheckpointService, model: SessionModel) -> None:
        """An idle session past its TTL hibernates; if that fails it is tried again a TTL later."""
        async with self.sessions.operation(model.name):
            if model.state != M.IDLE or not self.sessions.is_current(model):
                return
            try:
                await self._hibernate(model, f"expired: idle for more than {model.ttl:g} s")
            except Exception as exc:
                model.last_activity = time.time()
                self.log.warning("session %s did not hibernate: %s", model.name, exc)

    # -- automatic checkpoints and restores -----------------------------------------------

    def note_activity(self: CheckpointService, model: SessionModel) -> None:
        """Activity on ``model``: an automatic checkpoint follows once it has been quiet."""
        if not self.auto_checkpoint:
            return
        kid = model.kernel_id
        self._dirty.add(kid)
        old = self._timers.pop(kid, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[kid] = loop.call_later(
            self.auto_checkpoint_delay, lambda: self._spawn(self._auto_checkpoint(kid))
        )

    def _spawn(self: CheckpointService, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self: CheckpointService, kid: str) -> None:
        """The kernel ``kid`` stops: no automatic checkpoint of it is pending any more."""
        self._dirty.discard(kid)
        timer = self._timers.pop(kid, None)
        if timer is not None:
            timer.cancel()

    async def _auto_checkpoint(self: CheckpointService, kid: str) -> None:
        self._timers.pop(kid, None)
        model = self.sessions.by_kernel(kid)
        if model is None or kid not in self._dirty:
            return
        if model.state != M.IDLE or self.sessions.operation_running(model.name):
            if model.state in (M.BUSY, M.CHECKPOINTING, M.RESTORING, M.STARTING, M.IDLE):
                self.note_activity(model)  # busy again (its idle re-arms the timer) or in use
            return
        try:
            async with self.sessions.operation(model.name):
                if model.state == M.IDLE and kid in self._dirty and self.sessions.is_current(model):
                    await self._checkpoint(model, why="automatic checkpoint")
        except Exception as exc:
            self.log.warning("automatic checkpoint of session %s failed: %s", model.name, exc)

    def _may_auto_restore(self: CheckpointService, model: SessionModel) -> bool:
        """Policy on, and not in a loop of a checkpoint that kills every kernel it is put in."""
        if not self.auto_restore:
            return False
        now = time.time()
        recent = [
            t for t in self._restores.get(model.kernel_id, []) if now - t < AUTO_RESTORE_WINDOW
        ]
        self._restores[model.kernel_id] = recent
        if len(recent) >= AUTO_RESTORE_LIMIT:
            self.log.warning(
                "session %s: %d automatic restores in %g s; not restoring again",
                model.name,
                len(recent),
                AUTO_RESTORE_WINDOW,
            )
            return False
        recent.append(now)
        return True

    async def after_restart(self: CheckpointService, model: SessionModel) -> None:
        """jupyter_client restarted a dead session kernel (same id): put its namespace back,
        from the newest checkpoint that verifies and is complete (see ``store.choose``)."""
        manifest, passed = None, []
        if self._may_auto_restore(model):
            manifest, passed = await asyncio.to_thread(self.store.choose, model.name)
        if manifest is None and not passed:
            self.sessions.transition(model, M.IDLE, "restarted: namespace lost")
            return
        if manifest is not None:
            self.sessions.transition(
                model,
                M.RESTORING,
                f"kernel restarted: restoring checkpoint {manifest['id']} "
                f"taken {taken_at(manifest)}",
            )
        else:
            self.sessions.transition(model, M.RESTORING, "kernel restarted")
        try:
            manifest, report, passed = await self._load_best(model, manifest, passed)
        except Exception as exc:
            if model.state == M.RESTORING:
                self.sessions.transition(model, M.IDLE, f"restarted: restore failed: {exc}")
            return
        if manifest is None:
            self._unverifiable(model, "restarted", passed)
            return
        self._restored(
            model, manifest, "auto-restored", passed, missing_names(manifest, report, passed)
        )

    def revive_later(self: CheckpointService, model: SessionModel) -> None:
        """A dead session whose kernel is gone: restore its latest checkpoint in the background."""
        if self._may_auto_restore(model):
            self._spawn(self._revive_gone(model))

    async def _revive_gone(self: CheckpointService, model: SessionModel) -> None:
        try:
            async with self.sessions.operation(model.name):
                if model.state != M.DEAD or not self.sessions.is_current(model):
                    return
                manifest, passed = await asyncio.to_thread(self.store.choose, model.name)
                if manifest is None and not passed:
                    return
                await self._revive_best(model, "kernel gone", "auto-restored", empty="auto-restore")
        except Exception as exc:
            self.log.warning("automatic restore of session %s failed: %s", model.name, exc)
