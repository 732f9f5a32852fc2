"""Checkpoints of sessions: save, restore, fork, hibernate, wake and recover (host side).

The kernel does the heavy work (``kernel/snapshot.py``): it writes blobs straight into the
store's blob directory and reads them back, checking every blob's hash before it unpickles
anything. This side waits for idle, signs and commits manifests (``checkpoints.CheckpointStore``),
authenticates a manifest before any restore, drives the state machine (``checkpointing``,
``restoring``, ``hibernated``) and runs the policies: an automatic checkpoint after activity,
hibernation on a graceful stop and on TTL expiry, waking on attach, and restoring a session
whose kernel died or was gone from its latest checkpoint.

Automatic restores (after a kernel death or restart) and wakes take the newest checkpoint
that verifies completely (signature, ledger and every blob) and is not partial
(``CheckpointStore.choose``); one the kernel still refuses is passed over too. The result, the
state reason and the event name the checkpoint taken, the newer ones passed over (with why)
and the variables that could not be restored. When checkpoints exist but none verifies, the
session comes up with an empty namespace and says so: state reason, event, and an error
(409 ``no_valid_checkpoint``) on the request that woke it. A checkpoint that could not write
a variable because the store is full is committed marked partial and answered with 507
``storage_full``; hibernation never stops a kernel whose checkpoint is partial.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import time
from typing import TYPE_CHECKING, Any

from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable

from kernel_sessions.checkpoint.policies import (
    PoliciesMixin,
    fallback_note,
    few,
    missing_names,
    public_passed,
    taken_at,
)
from kernel_sessions.checkpoint.store import (
    STORAGE_FULL_ERRNOS,
    CheckpointStore,
    failed_names,
    is_partial,
)
from kernel_sessions.core import models as M
from kernel_sessions.core.errors import (
    CheckpointFailed,
    CheckpointInvalid,
    CheckpointNotFound,
    CheckpointPartial,
    CheckpointStorageFull,
    CheckpointUnverifiable,
    InvalidTransition,
    SessionBusy,
    SessionNotFound,
)
from kernel_sessions.core.kernel_rpc import install_expr, ns_call_code
from kernel_sessions.core.models import SessionModel, validate_name
from kernel_sessions.kernel.snapshot import RESULT_SUFFIX

if TYPE_CHECKING:
    from kernel_sessions.core.lifecycle import SessionCore

IDLE_POLL = 0.05  # seconds between state checks while waiting for a busy session
BACKGROUND_POLL = 0.02  # seconds between looks for a background checkpoint's result
DEATH_POLL = 0.25  # seconds between liveness checks while the kernel dumps or loads
UNAVAILABLE = (M.DEAD, M.DELETED, M.HIBERNATED, M.UNRESPONSIVE)
FULL_ERRNO_NAMES = frozenset(errno.errorcode[e] for e in STORAGE_FULL_ERRNOS)


class CheckpointService(PoliciesMixin, LoggingConfigurable):
    """Checkpoint operations and policies of one ``KernelSessionManager``'s sessions."""

    auto_checkpoint = Bool(
        True,
        config=True,
        help="Checkpoint a session after activity, once "
        "it has been quiet for auto_checkpoint_delay seconds.",
    )
    auto_checkpoint_delay = Float(
        10.0,
        min=0.0,
        config=True,
        help="Quiet seconds after activity before an automatic checkpoint.",
    )
    checkpoint_on_stop = Bool(
        True,
        config=True,
        help="Checkpoint every session when the server "
        "stops gracefully (it then hibernates; see keep_kernels_on_stop).",
    )
    checkpoint_on_hibernate = Bool(
        True,
        config=True,
        help="Checkpoint a session before its "
        "kernel stops for hibernation (TTL expiry, stop, request).",
    )
    auto_restore = Bool(
        True,
        config=True,
        help="Restore a session whose kernel died, or was "
        "gone after a server restart, from its latest checkpoint.",
    )
    busy_timeout = Float(
        30.0,
        min=0.0,
        config=True,
        help="Seconds a checkpoint or restore "
        "waits for a running cell to finish before answering 409.",
    )
    background_checkpoints = Bool(
        False,
        config=True,
        help="Take checkpoints in a fork of the "
        "kernel process (POSIX): the kernel pauses only for the fork "
        "and runs cells while the copy-on-write snapshot is written.",
    )
    track_writes = Bool(
        True,
        config=True,
        help="Ask the OS (Linux >= 6.7: userfaultfd "
        "asynchronous write-protect and PAGEMAP_SCAN) which large buffers were "
        "written since the last checkpoint, and hash only those. Elsewhere, "
        "everything is hashed. Turn off if devices write host memory behind the "
        "CPU (memory registered for DMA by a GPU or network driver).",
    )
    checkpoint_timeout = Float(
        600.0,
        min=1.0,
        config=True,
        help="Seconds the kernel may take to write or read a checkpoint.",
    )

    def __init__(self, sessions: SessionCore, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sessions = sessions
        self._store: CheckpointStore | None = None
        self._dirty: set[str] = set()  # kernel ids with activity since their last checkpoint
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._restores: dict[str, list[float]] = {}  # kernel id -> times of automatic restores
        self._tasks: set[asyncio.Task] = set()
        self._last_gc = 0.0
        self._seen: dict[str, str] = {}  # kernel id -> last user busy/idle while checkpointing
        self.last_pause_ms: float | None = None  # the kernel's pause in the last background one

    @property
    def store(self) -> CheckpointStore:
        """The store; under the manager's data dir unless ``CheckpointStore.root`` is set."""
        if self._store is None:
            store = CheckpointStore(parent=self)
            if not store.trait_has_value("root"):
                store.root = os.path.join(self.sessions.data_dir, "checkpoints")
            self._store = store
        return self._store

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- listing --------------------------------------------------------------------------

    async def list(self, name: str) -> list[dict[str, Any]]:
        validate_name(name)
        return await asyncio.to_thread(self.store.list, name)

    async def get(self, name: str, checkpoint_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.read_manifest, name, checkpoint_id)

    async def delete(self, name: str, checkpoint_id: str) -> None:
        await asyncio.to_thread(self.store.delete, name, checkpoint_id)
        model = self.sessions.find(name)
        if model is not None and model.last_checkpoint == checkpoint_id:
            latest = await asyncio.to_thread(self.store.latest, name)
            model.last_checkpoint = latest["id"] if latest else None
            self.sessions.save(model)

    async def _manifest(
        self, name: str, checkpoint_id: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The checkpoint asked for, or (None) the newest that verifies and is complete; with
        the newer ones passed over."""
        validate_name(name)
        if checkpoint_id is not None:
            return await asyncio.to_thread(self.store.read_manifest, name, checkpoint_id), []
        manifest, passed = await asyncio.to_thread(self.store.choose, name)
        if manifest is None and passed:
            raise CheckpointUnverifiable(
                f"none of the {len(passed)} checkpoint(s) of session "
                f"{name!r} verifies{fallback_note(passed, [])}"
            )
        if manifest is None:
            raise CheckpointNotFound(f"session {name!r} has no checkpoint")
        return manifest, passed

    # -- waiting and calling into the kernel ----------------------------------------------

    async def _until_idle(self, model: SessionModel, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            watcher = self.sessions.watcher(model.name)
            if watcher is not None:
                await watcher.settle(model.state == M.BUSY)
            if model.state == M.IDLE:
                return
            if model.state in UNAVAILABLE:
                raise InvalidTransition(f"session {model.name!r} is {model.state}: {model.reason}")
            if time.monotonic() >= deadline:
                raise SessionBusy(
                    f"session {model.name!r} is {model.state}: a {what} waits at most "
                    f"{timeout:g} s for the running cell to finish; try again when it is idle, "
                    "or interrupt it"
                )
            await asyncio.sleep(IDLE_POLL)

    async def _call(
        self, model: SessionModel, func: str, *args: Any, what: str, **kwargs: Any
    ) -> dict[str, Any]:
        """Run ``snapshot.func`` silently in the kernel; fail fast if the kernel dies meanwhile."""
        watcher = self.sessions.watcher(model.name)
        km = self.sessions.kernel_manager
        if watcher is None or model.kernel_id not in km:
            raise InvalidTransition(f"session {model.name!r} has no running kernel")
        kernel = km.get_kernel(model.kernel_id)
        code = ns_call_code("snapshot", func, *args, **kwargs)
        if kwargs.get("track_writes"):  # dirty.py goes in first, where snapshot.py finds it
            code = f"({install_expr('dirty')}, {code})[-1]"
        task = asyncio.ensure_future(watcher.evaluate(code, self.checkpoint_timeout))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=DEATH_POLL)
                if not task.done() and not await kernel.is_alive():
                    raise CheckpointFailed(
                        f"the kernel of session {model.name!r} died during the "
                        f"{what}; earlier checkpoints are intact"
                    )
                if not task.done() and not self.sessions.responsive(model.kernel_id):
                    raise CheckpointFailed(
                        f"the kernel of session {model.name!r} stopped "
                        f"answering heartbeats during the {what}; earlier "
                        "checkpoints are intact"
                    )
            if task.cancelled():  # its watcher stopped: the session was deleted or restarted
                raise CheckpointFailed(
                    f"the kernel of session {model.name!r} went away during "
                    f"the {what}; earlier checkpoints are intact"
                )
            text = task.result()
        except TimeoutError as exc:  # e.g. a __reduce__ that never returns: break it off
            with contextlib.suppress(Exception):
                await km.interrupt_kernel(model.kernel_id)
            raise CheckpointFailed(
                f"{what} of session {model.name!r} was interrupted: {exc}; "
                "earlier checkpoints are intact"
            ) from None
        except RuntimeError as exc:
            raise CheckpointFailed(
                f"{what} of session {model.name!r} failed in the kernel: {exc}"
            ) from None
        finally:
            task.cancel()
        return json.loads(ast.literal_eval(text))

    # -- checkpoint -----------------------------------------------------------------------

    async def checkpoint(
        self,
        name: str,
        *,
        label: str | None = None,
        variables: list[str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Checkpoint ``name`` (waking it if hibernated); waits for idle up to ``timeout``."""
        model = await self.sessions.attach(name)
        wait = self.busy_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            await self._until_idle(model, max(0.0, deadline - time.monotonic()), "checkpoint")
            async with self.sessions.operation(model.name):
                self._still_current(model)
                if model.state == M.IDLE:
                    return await self._checkpoint(
                        model, label=label, names=variables, why="checkpoint requested"
                    )

    async def _checkpoint(
        self,
        model: SessionModel,
        *,
        label: str | None = None,
        names: list[str] | None = None,
        why: str,
    ) -> dict[str, Any]:
        """Dump, sign, commit; the caller holds the session's lock and saw it idle."""
        kid = model.kernel_id
        self._dirty.discard(kid)
        self._seen.pop(kid, None)
        self.sessions.transition(model, M.CHECKPOINTING, why)
        try:
            for attempt in (1, 2):
                result = await self._dump(model, names)
                try:
                    manifest = await asyncio.to_thread(
                        self.store.write_manifest,
                        model.name,
                        result,
                        label=label,
                        kernelspec=model.kernel_name,
                        versions=result.get("versions") or {},
                    )
                    break
                except CheckpointInvalid as exc:  # a blob collected between dump and commit
                    if exc.reason != "missing_blob" or attempt == 2:
                        raise
        except BaseException as exc:
            if model.state == M.CHECKPOINTING:
                self.sessions.transition(
                    model, self._seen.pop(kid, M.IDLE), f"checkpoint failed: {exc}"
                )
            if model.state != M.DELETED:
                self._dirty.add(kid)
            raise
        model.last_checkpoint = manifest["id"]
        skipped = manifest["skipped"]
        failed = failed_names(manifest)
        note = f"; {len(skipped)} variable(s) not saved" if skipped else ""
        if is_partial(manifest):
            note += f"; PARTIAL: saving failed for {few(failed)}"
        watcher = self.sessions.watcher(model.name)
        if watcher is not None:
            watcher.drain()
        self._named_transition(
            model, self._seen.pop(kid, M.IDLE), f"checkpoint {manifest['id']}{note}", manifest
        )
        full = [s["name"] for s in skipped if s.get("errno") in FULL_ERRNO_NAMES]
        if full:
            self._dirty.add(kid)
            raise CheckpointStorageFull(
                f"checkpoint {manifest['id']} of session {model.name!r} is partial: the "
                f"checkpoint store is full, {few(full)} could not be written; earlier "
                "checkpoints are intact and automatic restores keep to the newest complete one"
            )
        return manifest

    def saw_status(self, model: SessionModel, state: str) -> None:
        """A user's cell went busy or idle while the session was checkpointing (cells run
        beside a background checkpoint): the state to return to afterwards, and activity the
        checkpoint may not hold."""
        self._seen[model.kernel_id] = state
        if state == M.IDLE:
            self.note_activity(model)

    async def _dump(self, model: SessionModel, names: list[str] | None) -> dict[str, Any]:
        """The dump result, taken in the kernel, or in a fork of it (``background_checkpoints``)."""
        if self.background_checkpoints:
            result_path = os.path.join(
                self.store.blob_dir, f".{model.kernel_id}.{secrets.token_hex(6)}{RESULT_SUFFIX}"
            )
            started = await self._call(
                model,
                "checkpoint_in_background",
                self.store.blob_dir,
                result_path,
                names=names,
                what="checkpoint",
            )
            if "pid" in started:
                self.last_pause_ms = started.get("pause_ms")
                return await self._background_result(model, int(started["pid"]), result_path)
            self.log.info(
                "session %s: %s; checkpointing in the kernel", model.name, started.get("error")
            )
        return await self._call(
            model,
            "checkpoint_payload",
            self.store.blob_dir,
            names=names,
            track_writes=self.track_writes,
            what="checkpoint",
        )

    async def _background_result(self, model: SessionModel, pid: int, path: str) -> dict[str, Any]:
        """Wait for the forked child's result file; the child gone without one is a failure."""
        import psutil

        deadline = time.monotonic() + self.checkpoint_timeout
        try:
            while not os.path.exists(path):
                gone = not psutil.pid_exists(pid)
                if not gone:
                    with contextlib.suppress(psutil.Error):
                        gone = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
                if gone and not os.path.exists(path):
                    raise CheckpointFailed(
                        f"the background checkpoint of session "
                        f"{model.name!r} ended without a result; earlier "
                        "checkpoints are intact"
                    )
                if time.monotonic() > deadline:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                    raise CheckpointFailed(
                        f"the background checkpoint of session "
                        f"{model.name!r} took more than "
                        f"{self.checkpoint_timeout:g} s"
                    )
                await asyncio.sleep(BACKGROUND_POLL)
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    # -- restore and fork -----------------------------------------------------------------

    async def restore(
        self,
        name: str,
        checkpoint_id: str | None = None,
        *,
        into: str | None = None,
        variables: list[str] | None = None,
        timeout: float | None = None,
        **create: Any,
    ) -> dict[str, Any]:
        """Restore a checkpoint of ``name`` into itself, or into a new session ``into`` (fork).

        The manifest is authenticated (signature and owner) before anything else happens, and
        the kernel checks every blob's hash before it unpickles anything. A whole-checkpoint
        restore into a live session also removes the variables the checkpoint does not know.
        Returns ``{session, checkpoint, restored, failed, removed}``.
        """
        if into is not None:
            validate_name(into)
        manifest, passed = await self._manifest(name, checkpoint_id)
        if into is not None:
            return await self._fork(manifest, into, variables, passed, **create)
        model = self.sessions.model(name)
        why = f"restoring checkpoint {manifest['id']} taken {taken_at(manifest)}"
        if model.state in (M.HIBERNATED, M.DEAD):
            async with self.sessions.operation(model.name):
                self._still_current(model)
                if model.state in (M.HIBERNATED, M.DEAD):
                    if checkpoint_id is None and variables is None:
                        return await self._revive_best(model, "restoring", "restored")
                    report = await self._revive(model, manifest, why, names=variables)
                    return self._report(model, manifest, report, passed)
        wait = self.busy_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            await self._until_idle(model, max(0.0, deadline - time.monotonic()), "restore")
            async with self.sessions.operation(model.name):
                self._still_current(model)
                if model.state != M.IDLE:
                    continue
                self.sessions.transition(model, M.RESTORING, why)
                try:
                    report = await self._load(model, manifest, variables, prune=variables is None)
                finally:
                    if model.state == M.RESTORING:
                        self._restored(model, manifest, "restored")
                return self._report(model, manifest, report, passed)

    async def _fork(
        self,
        manifest: dict[str, Any],
        into: str,
        names: list[str] | None,
        passed: list[dict[str, Any]],
        **create: Any,
    ) -> dict[str, Any]:
        kernel_name = create.pop("kernel_name", None) or manifest.get("kernelspec")
        async with self.sessions.operation(into):  # held from create to load: no half fork
            model = await self.sessions.create(
                into, kernel_name if isinstance(kernel_name, str) else None, **create
            )
            self.sessions.transition(
                model, M.RESTORING, f"forking {manifest['session']} checkpoint {manifest['id']}"
            )
            try:
                report = await self._load(model, manifest, names, prune=False)
            except BaseException:
                await self.sessions.remove(model)  # no half-made fork is left behind
                raise
            self._restored(model, manifest, f"forked from {manifest['session']}")
        return self._report(model, manifest, report, passed)

    async def _load(
        self, model: SessionModel, manifest: dict[str, Any], names: list[str] | None, *, prune: bool
    ) -> dict[str, Any]:
        result = await self._call(
            model,
            "restore_payload",
            self.store.blob_dir,
            manifest["variables"],
            names=names,
            execution_count=manifest.get("execution_count"),
            prune=prune,
            keep=[s.get("name") for s in manifest.get("skipped", []) if isinstance(s, dict)],
            what="restore",
        )
        if result.get("refused"):
            bad = sorted({f"{f['name']} ({f['reason']})" for f in result["failed"]})
            raise CheckpointInvalid(
                f"signature mismatch: blobs of checkpoint {manifest['id']} do not match their "
                f"signed hashes: {', '.join(bad[:5])}; nothing was restored",
                reason="tampered",
            )
        return result

    def _named_transition(
        self, model: SessionModel, to: str, reason: str, manifest: dict[str, Any]
    ) -> None:
        """A transition whose event names the checkpoint taken or restored, and its time."""
        self.sessions.transition(
            model, to, reason, checkpoint=manifest["id"], checkpoint_created=taken_at(manifest)
        )

    def _restored(
        self,
        model: SessionModel,
        manifest: dict[str, Any],
        verb: str,
        passed: list[dict[str, Any]] | None = None,
        missing: list[str] | None = None,
    ) -> None:
        """Back to idle after ``manifest`` was loaded (``verb``: restored, forked from …);
        an automatic choice names what it passed over and what could not be restored."""
        extra: dict[str, Any] = {}
        if passed:
            extra["passed_over"] = public_passed(passed)
        if missing:
            extra["missing"] = list(missing)
        self.sessions.transition(
            model,
            M.IDLE,
            f"{verb} checkpoint {manifest['id']} taken {taken_at(manifest)}"
            f"{fallback_note(passed or [], missing or [])}",
            checkpoint=manifest["id"],
            checkpoint_created=taken_at(manifest),
            **extra,
        )

    @staticmethod
    def _report(
        model: SessionModel,
        manifest: dict[str, Any],
        result: dict[str, Any],
        passed: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``passed_over``: newer checkpoints not taken (and why); ``missing``: variables the
        chosen or passed-over checkpoints knew that are not restored (only when it chose)."""
        passed = passed or []
        return {
            "session": model,
            "checkpoint": manifest["id"],
            "restored": result.get("restored", []),
            "failed": result.get("failed", []),
            "removed": result.get("removed", []),
            "passed_over": public_passed(passed),
            "missing": missing_names(manifest, result, passed)
            if passed
            else [f["name"] for f in result.get("failed", [])],
        }

    def _still_current(self, model: SessionModel) -> None:
        """Inside an operation: the session was not deleted or renamed while we waited."""
        if not self.sessions.is_current(model):
            raise SessionNotFound(f"session {model.name!r} was deleted or renamed meanwhile")

    # -- a new kernel for a stopped or dead session ---------------------------------------

    async def _fresh_kernel(self, model: SessionModel, why: str) -> None:
        """State ``restoring`` (with ``why``), then a new kernel under the same id; a kernel
        that does not start leaves the session dead with the reason."""
        self.sessions.transition(model, M.RESTORING, why)
        try:
            await self.sessions.replace_kernel(model)
        except BaseException as exc:
            if model.state == M.RESTORING:
                self.sessions.transition(model, M.DEAD, f"restore failed: {exc}")
            raise

    async def _revive(
        self,
        model: SessionModel,
        manifest: dict[str, Any] | None,
        why: str,
        *,
        names: list[str] | None = None,
        verb: str = "restored",
    ) -> dict[str, Any]:
        """A hibernated or dead session: new kernel (same id), then the checkpoint into it.

        The caller holds the session's operation. A refused or failed load leaves the session
        idle with an empty namespace and the reason, and raises.
        """
        await self._fresh_kernel(model, why)
        if manifest is None:
            self.sessions.transition(model, M.IDLE, "woken: no checkpoint to restore")
            return {}
        try:
            report = await self._load(model, manifest, names, prune=False)
        except BaseException as exc:
            if model.state == M.RESTORING:
                self.sessions.transition(model, M.IDLE, f"restore failed, namespace empty: {exc}")
            raise
        self._restored(model, manifest, verb)
        return report

    async def wake(self, model: SessionModel) -> None:
        """Any attach to a hibernated session restores its newest checkpoint that verifies into
        a pooled kernel; CheckpointUnverifiable (after it woke, empty) if none does."""
        async with self.sessions.operation(model.name):
            if model.state != M.HIBERNATED or not self.sessions.is_current(model):
                return
            await self._revive_best(model, "waking", "woken: restored", empty="woken")

    async def _load_best(
        self, model: SessionModel, manifest: dict[str, Any] | None, passed: list[dict[str, Any]]
    ) -> tuple[dict[str, Any] | None, dict[str, Any], list[dict[str, Any]]]:
        """Load ``manifest`` (``store.choose``'s pick) into the session's running kernel; if
        the kernel refuses it (a blob changed since the store checked), the next one that
        verifies. Returns (manifest loaded or None, kernel report, all passed over)."""
        refused: list[dict[str, Any]] = []
        while manifest is not None:
            try:
                report = await self._load(model, manifest, None, prune=False)
            except CheckpointInvalid as exc:
                self.log.warning(
                    "session %s: checkpoint %s refused by the kernel (%s); trying an older one",
                    model.name,
                    manifest["id"],
                    exc.reason,
                )
                refused.append(
                    {
                        "id": manifest["id"],
                        "reason": exc.reason,
                        "names": sorted(manifest.get("variables", {})),
                    }
                )
                manifest, passed = await asyncio.to_thread(
                    self.store.choose, model.name, {r["id"] for r in refused}
                )
                continue
            break
        else:
            report = {}
        merged = {p["id"]: p for p in passed + refused}
        return manifest, report, [merged[i] for i in sorted(merged, reverse=True)]

    def _unverifiable(
        self, model: SessionModel, what: str, passed: list[dict[str, Any]]
    ) -> CheckpointUnverifiable:
        """Loudly: the session is idle with an EMPTY namespace, none of its checkpoints verified."""
        message = (
            f"{what} with an EMPTY namespace: none of the {len(passed)} checkpoint(s) "
            f"of session {model.name!r} could be verified{fallback_note(passed, [])}"
        )
        self.log.error("session %s: %s", model.name, message)
        if model.state == M.RESTORING:
            self.sessions.transition(model, M.IDLE, message, passed_over=public_passed(passed))
        return CheckpointUnverifiable(message)

    async def _revive_best(
        self, model: SessionModel, doing: str, verb: str, *, empty: str = "restored"
    ) -> dict[str, Any]:
        """A hibernated or dead session: new kernel (same id), then the newest checkpoint that
        verifies. The caller holds the operation. Nothing verifies: idle, empty, loudly."""
        manifest, passed = await asyncio.to_thread(self.store.choose, model.name)
        why = (
            f"{doing}: restoring checkpoint {manifest['id']} taken {taken_at(manifest)}"
            if manifest
            else doing
        )
        await self._fresh_kernel(model, why)
        if manifest is None and not passed:
            self.sessions.transition(model, M.IDLE, f"{empty}: no checkpoint to restore")
            return {
                "session": model,
                "checkpoint": None,
                "restored": [],
                "failed": [],
                "removed": [],
                "passed_over": [],
                "missing": [],
            }
        try:
            manifest, report, passed = await self._load_best(model, manifest, passed)
        except BaseException as exc:
            if model.state == M.RESTORING:
                self.sessions.transition(model, M.IDLE, f"restore failed, namespace empty: {exc}")
            raise
        if manifest is None:
            raise self._unverifiable(model, empty, passed)
        self._restored(model, manifest, verb, passed, missing_names(manifest, report, passed))
        return self._report(model, manifest, report, passed)

    # -- hibernation ----------------------------------------------------------------------

    async def hibernate(self, name: str, timeout: float | None = None) -> SessionModel:
        model = self.sessions.model(name)
        if model.state == M.HIBERNATED:
            return model
        await self._until_idle(
            model, self.busy_timeout if timeout is None else timeout, "hibernation"
        )
        async with self.sessions.operation(model.name):
            self._still_current(model)
            if model.state == M.IDLE:
                await self._hibernate(model, "hibernated by request")
            elif model.state != M.HIBERNATED:
                raise SessionBusy(f"session {name!r} is {model.state}; try again")
        return model

    async def _hibernate(
        self, model: SessionModel, why: str, *, checkpoint: bool | None = None
    ) -> None:
        """Checkpoint (by policy), then stop the kernel; the caller holds the operation and saw
        idle. If the checkpoint fails the kernel keeps running: nothing is lost to a policy.
        """
        if self.checkpoint_on_hibernate if checkpoint is None else checkpoint:
            manifest = await self._checkpoint(model, why=f"checkpoint before hibernation ({why})")
            if is_partial(manifest):
                raise CheckpointPartial(
                    f"session {model.name!r} was not hibernated: its checkpoint "
                    f"{manifest['id']} is partial ({few(failed_names(manifest))} could not be "
                    "saved), so its kernel keeps running"
                )
            why = f"{why}; checkpoint {manifest['id']}"
        try:
            await self.sessions.stop_kernel(model)
        finally:
            self.sessions.transition(model, M.HIBERNATED, why)
