"""KernelSessionManager: named sessions over pooled kernels, durable across processes.

It owns the names, the lifecycle and the state machine (``models.TRANSITIONS``); every
transition is written to the registry and reaches observers and, when given, a jupyter_events
``EventLogger``. Session kernels start ``independent=True`` so they outlive the process that
manages them; a new manager on the same data dir re-adopts them under the same kernel id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from traitlets import All, Bool, Dict, Float, Instance, Integer, Type, Unicode, default
from traitlets.config import LoggingConfigurable

from kernel_sessions.core import models as M
from kernel_sessions.core.adoption import adopt, process_create_time
from kernel_sessions.core.errors import (
    InvalidTransition,
    KernelFailed,
    SessionExists,
    SessionNotFound,
)
from kernel_sessions.core.kernel_rpc import handed_out_warm
from kernel_sessions.core.lifecycle import NameLocks
from kernel_sessions.core.liveness import READY_TIMEOUT, SweepsMixin
from kernel_sessions.core.models import SessionModel, check_transition, validate_name
from kernel_sessions.core.registry import Registry, secure_dir
from kernel_sessions.core.variables import VariablesService
from kernel_sessions.core.watch import SessionWatcher, fresh_client

SCHEMA_DIR = Path(__file__).parent / "event_schemas"
STATE_SCHEMA_ID = "https://events.jupyter.org/kernel_sessions/session_state/v1"
POOL_SCHEMA_ID = "https://events.jupyter.org/kernel_sessions/pool/v1"
LEASED_TTL = 24 * 3600.0
# states in which an operation works on the kernel and a delete or restart kills it rather than
# waiting (the operation then fails; earlier checkpoints are intact)
PREEMPTIBLE = (M.CHECKPOINTING, M.RESTORING, M.UNRESPONSIVE)

Observer = Callable[[dict], None]
_NO_NAMES = object()


class KernelSessionManager(SweepsMixin, LoggingConfigurable):
    """Create, find, rename, restart, interrupt and delete named kernel sessions."""

    data_dir = Unicode(config=True, help="Where the registry (and later checkpoints) live.")
    registry_path = Unicode(
        "", config=True, help="SQLite file (default: <data_dir>/registry.sqlite3)."
    )
    root_dir = Unicode(config=True, help="Working directory of session kernels.")
    default_kernel_name = Unicode("python3", config=True)
    pool_sizes = Dict({"python3": 2}, config=True, help="Warm spares per kernelspec.")
    keep_kernels_on_stop = Bool(
        False,
        config=True,
        help="Leave session kernels running when the manager stops, "
        "instead of hibernating the sessions (checkpoint, then stop the kernel).",
    )
    death_check_interval = Float(0.25, config=True, help="Seconds between liveness checks.")
    reap_interval = Float(1.0, config=True, help="Seconds between lease and TTL sweeps.")
    lease_seconds = Float(60.0, config=True, help="Default lease of owned sessions.")
    default_ttl = Float(
        None,
        allow_none=True,
        config=True,
        help="Idle seconds before a named session expires (None: never).",
    )
    leased_ttl = Float(
        LEASED_TTL, config=True, help="Idle seconds before a leased session expires."
    )
    stop_timeout = Float(
        15.0,
        min=0.0,
        config=True,
        help="Seconds a server stop waits, all sessions at once, "
        "for sessions to hibernate; those not done by then are left running to be re-adopted.",
    )
    heartbeat_interval = Float(
        1.0, min=0.05, config=True, help="Seconds between heartbeats sent to each session kernel."
    )
    heartbeat_misses = Integer(
        3,
        min=1,
        config=True,
        help="Heartbeats in a row a kernel may miss before its session is shown as unresponsive.",
    )
    kernel_manager = Instance(AsyncMultiKernelManager, allow_none=True)
    # the layers above the core, named rather than imported (nothing here imports upward)
    kernel_manager_class = Type(
        "kernel_sessions.pool.PooledMultiKernelManager",
        klass=AsyncMultiKernelManager,
        config=True,
        help="The multi-kernel manager started when none is given.",
    )
    checkpoint_service_class = Type(
        "kernel_sessions.checkpoint.service.CheckpointService",
        klass=LoggingConfigurable,
        config=True,
        help="The checkpoint service (save, restore, hibernate, recover).",
    )
    event_logger = Instance("jupyter_events.EventLogger", allow_none=True)

    @default("data_dir")
    def _data_dir_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "kernel_sessions")

    @default("root_dir")
    def _root_dir_default(self) -> str:
        return os.getcwd()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observers: list[Observer] = []
        self._owns_km = False
        self._sessions: dict[str, SessionModel] = {}
        self._watchers: dict[str, SessionWatcher] = {}
        self._expected_exit: dict[str, int] = {}  # kernel ids we stop, restart or replace
        self._tasks: list[asyncio.Task] = []
        self._locks = NameLocks()
        self._hb_misses: dict[str, int] = {}  # kernel id -> heartbeats missed in a row
        self._before_hang: dict[str, str] = {}  # kernel id -> state when it stopped answering
        self._started = False
        self.registry: Registry | None = None
        self.vars = VariablesService(self, parent=self)
        self.checkpointing = self.checkpoint_service_class(self, parent=self)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> KernelSessionManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def started(self) -> bool:
        return self._started

    def _secure_data_dir(self) -> None:
        """Make the data dir 0700; one that exists but cannot be changed (a read-only mount)
        is logged and used as it is: the registry falls back, sessions are still served."""
        try:
            secure_dir(Path(self.data_dir))
        except OSError as e:
            if not Path(self.data_dir).is_dir():
                raise
            self.log.error("kernel sessions: the data dir cannot be secured (%s)", e.strerror)

    async def start(self) -> None:
        """Open the registry, warm the pool, re-adopt recorded kernels, start the sweeps."""
        if self._started:
            return
        self._started = True
        try:
            self._secure_data_dir()
            self.registry = Registry(
                self.registry_path or os.path.join(self.data_dir, "registry.sqlite3")
            )
        except BaseException:
            self._started = False  # nothing began yet: the next start tries again
            raise
        if self.kernel_manager is None:
            runtime = secure_dir(Path(jupyter_runtime_dir()))
            self.kernel_manager = self.kernel_manager_class(
                parent=self,
                log=self.log,
                pool_sizes=self.pool_sizes,
                connection_dir=str(runtime),
                pool_cwd=self.root_dir,
                default_kernel_name=self.default_kernel_name,
            )
            self._owns_km = True
        if self.event_logger is not None:
            for schema in ("session_state", "pool"):
                sid = STATE_SCHEMA_ID if schema == "session_state" else POOL_SCHEMA_ID
                if sid not in self.event_logger.schemas.schema_ids:
                    self.event_logger.register_event_schema(SCHEMA_DIR / schema / "v1.yaml")
        if hasattr(self.kernel_manager, "observe_pool"):
            self.kernel_manager.observe_pool(self._pool_event)
            await self.kernel_manager.start_pool()
        await self._recover()
        self._tasks = [
            asyncio.create_task(self._death_loop()),
            asyncio.create_task(self._reap_loop()),
            asyncio.create_task(self._heartbeat_loop()),
        ]

    async def stop(self, keep_sessions: bool | None = None) -> None:
        """Stop sweeps and spares; hibernate the sessions, or with ``keep_sessions`` (default:
        ``keep_kernels_on_stop``) leave their kernels running to be re-adopted.

        Sessions stop in parallel under one deadline (``stop_timeout``): a session that is busy,
        unresponsive or not hibernated by then is left running, to be re-adopted by the next
        server; nothing is killed, so nothing is lost.
        """
        if not self._started:
            return
        keep = self.keep_kernels_on_stop if keep_sessions is None else keep_sessions
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.checkpointing.close()
        km = self.kernel_manager
        models = list(self._sessions.values())
        stopped = [False] * len(models)
        if not keep:

            async def one(i: int, model: SessionModel) -> None:
                stopped[i] = await self.checkpointing.on_stop(model)

            jobs = [asyncio.ensure_future(one(i, m)) for i, m in enumerate(models)]
            if jobs:
                done, pending = await asyncio.wait(jobs, timeout=self.stop_timeout)
                for job in pending:
                    job.cancel()
                await asyncio.gather(*jobs, return_exceptions=True)
                if pending:
                    self.log.warning(
                        "%d session(s) left running: not hibernated within %g s",
                        len(pending),
                        self.stop_timeout,
                    )
        for model, ok in zip(models, stopped):
            if not ok and model.kernel_id in km and hasattr(km, "release_kernel"):
                km.release_kernel(model.kernel_id)
        for w in list(self._watchers.values()):
            w.stop()
        self._watchers.clear()
        if self._owns_km:
            await km.shutdown_all()
        elif hasattr(km, "stop_pool"):
            await km.stop_pool()
        self._sessions.clear()
        self.registry.close()
        self._started = False

    # -- observers and events -------------------------------------------------------------

    def observe(self, callback: Observer, names: Any = _NO_NAMES, type: str = "change") -> None:  # type: ignore[override]
        """Call ``callback(event)`` for every state transition (``name, from, to, reason``).

        With ``names`` given, or while traitlets itself is still setting the object up, this is
        traitlets' own ``observe`` (trait change handlers).
        """
        if names is _NO_NAMES and "_observers" in self.__dict__:
            self._observers.append(callback)
        else:
            super().observe(callback, All if names is _NO_NAMES else names, type=type)

    def _emit(self, schema_id: str, data: dict) -> None:
        for cb in list(self._observers) if schema_id == STATE_SCHEMA_ID else []:
            try:
                cb(dict(data))
            except Exception:
                self.log.exception("session observer failed")
        if self.event_logger is not None:
            self.event_logger.emit(schema_id=schema_id, data=data)

    def _pool_event(self, kind: str, data: dict) -> None:
        payload = {"kind": kind, **{k: v for k, v in data.items() if v is not None}}
        if self.event_logger is not None:
            self.event_logger.emit(schema_id=POOL_SCHEMA_ID, data=payload)

    def transition(self, model: SessionModel, to: str, reason: str, **extra: Any) -> None:
        """Move ``model`` to state ``to`` (checked), record it and emit the event. A model that
        is no longer the current session of its name (deleted meanwhile) only changes itself."""
        old = model.state
        if old == to and to in (M.IDLE, M.BUSY):
            return
        check_transition(model.name, old, to)
        model.state, model.reason = to, reason
        if to in (M.IDLE, M.BUSY):
            model.last_activity = time.time()
        if not self.save(model):
            return
        self._emit(
            STATE_SCHEMA_ID,
            {
                "name": model.name,
                "from": old,
                "to": to,
                "reason": reason,
                "kernel_id": model.kernel_id,
                "restarts": model.restarts,
                **extra,
            },
        )

    def save(self, model: SessionModel) -> bool:
        """Write ``model``'s row; False (nothing written) if it is not the current session."""
        return self.registry is not None and self.registry.save(model)

    # -- the core's interface (lifecycle.SessionCore) --------------------------------------

    def find(self, name: str) -> SessionModel | None:
        return self._sessions.get(name)

    def model(self, name: str) -> SessionModel:
        """The session ``name`` (its pending iopub status handled first), or SessionNotFound.
        A session being deleted is already gone for callers (its kernel may still be stopping)."""
        validate_name(name)
        model = self._sessions.get(name)
        if model is None or model.state == M.DELETED:
            raise SessionNotFound(f"no session named {name!r}")
        watcher = self._watchers.get(name)
        if watcher is not None:
            watcher.drain()
        return model

    def models(self) -> list[SessionModel]:
        return [self._sessions[n] for n in sorted(self._sessions)]

    def by_kernel(self, kernel_id: str) -> SessionModel | None:
        return next((m for m in self._sessions.values() if m.kernel_id == kernel_id), None)

    def is_current(self, model: SessionModel) -> bool:
        return self._sessions.get(model.name) is model

    def watcher(self, name: str) -> SessionWatcher | None:
        return self._watchers.get(name)

    def operation(self, *names: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the lifecycle lock of each name (nestable by the task holding it)."""
        return self._locks.hold(names)

    def operation_running(self, name: str) -> bool:
        return self._locks.held(name)

    @contextlib.contextmanager
    def expecting_exit(self, kernel_id: str) -> Iterator[None]:
        """While inside, the exit of ``kernel_id`` is ours: not a death to report or restore."""
        self._expected_exit[kernel_id] = self._expected_exit.get(kernel_id, 0) + 1
        try:
            yield
        finally:
            left = self._expected_exit.pop(kernel_id, 1) - 1
            if left > 0:
                self._expected_exit[kernel_id] = left

    def exit_expected(self, kernel_id: str) -> bool:
        return kernel_id in self._expected_exit

    async def stop_kernel(self, model: SessionModel, *, now: bool = False) -> None:
        """Stop the session's kernel (its watcher first); the session itself stays."""
        kid = model.kernel_id
        watcher = self._watchers.get(model.name)
        if watcher is not None and watcher.km is self._kernel_or_none(kid):
            self._watchers.pop(model.name, None)
            watcher.stop()
        self.checkpointing.forget(kid)
        km = self.kernel_manager
        hung = model.state == M.UNRESPONSIVE or not self.responsive(kid)
        self._hb_misses.pop(kid, None)
        self._before_hang.pop(kid, None)
        if kid and kid in km:
            with self.expecting_exit(kid):
                await km.shutdown_kernel(kid, now=now or hung)

    def _kernel_or_none(self, kernel_id: str) -> Any:
        km = self.kernel_manager
        return km.get_kernel(kernel_id) if kernel_id and kernel_id in km else None

    async def replace_kernel(self, model: SessionModel) -> None:
        """Give the session a new kernel from the pool under its own kernel id."""
        km = self.kernel_manager
        kid = model.kernel_id
        with self.expecting_exit(kid):
            await self.stop_kernel(model, now=True)
            await km.start_kernel(
                kernel_name=model.kernel_name,
                kernel_id=kid,
                independent=True,
                cwd=model.cwd or self.root_dir,
            )
            await self.attach_kernel(model, wait=not handed_out_warm(km.get_kernel(kid)))

    async def _kill_for(self, model: SessionModel, what: str) -> None:
        """``what`` (a delete or restart) must not queue behind an operation stuck on a hung
        kernel: kill the kernel, which fails that operation at once (earlier checkpoints stay)."""
        kernel = self._kernel_or_none(model.kernel_id)
        stuck = model.state in PREEMPTIBLE or not self.responsive(model.kernel_id)
        if kernel is None or not stuck or not self._locks.held_by_other(model.name):
            return  # a create or restart under way is waited for, not killed
        self.log.warning(
            "session %s: %s while an operation runs: killing its kernel", model.name, what
        )
        with self.expecting_exit(model.kernel_id):
            with contextlib.suppress(Exception):
                if kernel.has_kernel and kernel.provisioner is not None:
                    await kernel.provisioner.kill()

    # -- lookups --------------------------------------------------------------------------

    async def get(self, name: str) -> SessionModel:
        model = self.model(name)
        watcher = self._watchers.get(name)
        if watcher is not None:
            await watcher.settle(model.state == M.BUSY)
        return model

    async def list(self) -> list[SessionModel]:
        out = []
        for name in sorted(self._sessions):
            try:
                out.append(await self.get(name))
            except SessionNotFound:  # renamed or deleted while we were listing
                continue
        return out

    def renamed_to(self, name: str) -> str | None:
        """The current name of the session that was called ``name``, if it was renamed."""
        validate_name(name)
        return self.registry.renamed_to(name) if name not in self._sessions else None

    def kernel_id(self, name: str) -> str:
        return self.model(name).kernel_id

    async def attach(self, name: str) -> SessionModel:
        """The session, woken first if it is hibernated (its latest checkpoint restored into a
        pooled kernel). Every way in — clients, notebooks, execute, variables — comes here."""
        model = self.model(name)
        if model.state == M.HIBERNATED:
            await self.checkpointing.wake(model)
        return model

    def client(self, name: str) -> Any:
        """A started ``AsyncKernelClient`` attached to the session's kernel.

        Synchronous, so it cannot wake a hibernated session: ``await ks.attach(name)`` first.
        """
        model = self.model(name)
        if model.state == M.HIBERNATED:
            raise InvalidTransition(
                f"session {name!r} is hibernated ({model.reason}); await ks.attach(name) to wake it"
            )
        if model.state == M.DEAD:
            raise InvalidTransition(f"session {name!r} is {model.state}: {model.reason}")
        kc = fresh_client(self.kernel_manager.get_kernel(model.kernel_id))
        kc.start_channels()
        model.last_activity = time.time()
        return kc

    # -- variables (see variables.py) -----------------------------------------------------

    async def variables(self, name: str, **kw: Any) -> list[dict]:
        """The session's user variables, read without running a cell."""
        return (await self.vars.list(name, **kw))["variables"]

    async def push(self, name: str, **values: Any) -> None:
        """Bind each value (dill-pickled, so functions and classes travel) in the session."""
        await self.vars.push(name, **values)

    async def pull(self, name: str, var: str) -> Any:
        """A copy of the session's variable ``var``."""
        return await self.vars.pull(name, var)

    # -- checkpoints (see checkpointing.py) -----------------------------------------------

    async def checkpoint(
        self,
        name: str,
        *,
        label: str | None = None,
        variables: list[str] | None = None,
        timeout: float | None = None,
    ) -> dict:
        """Checkpoint the session's namespace; returns the signed manifest."""
        return await self.checkpointing.checkpoint(
            name, label=label, variables=variables, timeout=timeout
        )

    async def checkpoints(self, name: str) -> list[dict]:
        """Summaries of the session's checkpoints, newest first."""
        return await self.checkpointing.list(name)

    async def restore(
        self,
        name: str,
        checkpoint_id: str | None = None,
        *,
        into: str | None = None,
        variables: list[str] | None = None,
        **kw: Any,
    ) -> dict:
        """Restore a checkpoint (default: the latest) into the session, or fork it ``into`` a
        new one; returns ``{session, checkpoint, restored, failed, removed}``."""
        return await self.checkpointing.restore(
            name, checkpoint_id, into=into, variables=variables, **kw
        )

    async def hibernate(self, name: str) -> SessionModel:
        """Checkpoint and stop the kernel; the next attach wakes the session."""
        return await self.checkpointing.hibernate(name)

    def pool_stats(self) -> dict:
        km = self.kernel_manager
        return km.pool_stats() if hasattr(km, "pool_stats") else {}

    # -- create / delete ------------------------------------------------------------------

    async def create(
        self,
        name: str,
        kernel_name: str | None = None,
        *,
        owner: str | None = None,
        lease_seconds: float | None = None,
        ttl: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> SessionModel:
        """Start a session; the registry's primary key makes a name taken exactly once.

        The name's operation lock is held from the registry row to the attached kernel, so a
        delete, rename or second create of that name waits for a whole session, never a half.
        """
        validate_name(name)
        async with self.operation(name):
            if name in self._sessions:
                raise SessionExists(f"session {name!r} already exists")
            return await self._create(
                name, kernel_name, owner=owner, lease_seconds=lease_seconds, ttl=ttl, tags=tags
            )

    async def _create(
        self,
        name: str,
        kernel_name: str | None,
        *,
        owner: str | None,
        lease_seconds: float | None,
        ttl: float | None,
        tags: dict[str, str] | None,
    ) -> SessionModel:
        now = time.time()
        model = SessionModel(
            name=name,
            kernel_id="",
            kernel_name=kernel_name or self.default_kernel_name,
            owner=owner,
            tags=dict(tags or {}),
            created=now,
            last_activity=now,
            ttl=ttl if ttl is not None else (self.leased_ttl if owner else self.default_ttl),
            lease_expires=now + (lease_seconds or self.lease_seconds) if owner else None,
            cwd=self.root_dir,
            reason="created",
            generation=secrets.token_hex(8),
        )
        self.registry.insert(model)  # SessionExists for a taken name, across processes too
        self.registry.forget_name(name)  # a redirect from this name to a renamed session ends
        self._sessions[name] = model
        self._emit(
            STATE_SCHEMA_ID,
            {
                "name": name,
                "from": None,
                "to": M.STARTING,
                "reason": "created",
                "kernel_id": "",
                "restarts": 0,
            },
        )
        try:
            model.kernel_id = await self.kernel_manager.start_kernel(
                kernel_name=model.kernel_name, independent=True, cwd=self.root_dir
            )
            km = self.kernel_manager.get_kernel(model.kernel_id)
            await self.attach_kernel(model, wait=not handed_out_warm(km))
        except BaseException:
            self._sessions.pop(name, None)
            self.registry.delete(name, model.generation)
            watcher = self._watchers.pop(name, None)
            if watcher is not None:
                watcher.stop()
            if model.kernel_id and model.kernel_id in self.kernel_manager:
                with self.expecting_exit(model.kernel_id):
                    await asyncio.shield(
                        self.kernel_manager.shutdown_kernel(model.kernel_id, now=True)
                    )
            raise
        if owner:  # the lease runs from when the session is usable
            model.lease_expires = time.time() + (lease_seconds or self.lease_seconds)
        self.transition(model, M.IDLE, "created")
        return model

    async def attach_kernel(self, model: SessionModel, *, wait: bool = True) -> None:
        """Record the kernel's connection and pid, watch it, and wait until it answers."""
        km = self.kernel_manager.get_kernel(model.kernel_id)
        info = dict(km.get_connection_info())
        info["key"] = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
        model.connection_info = info
        model.pid = getattr(km.provisioner, "pid", None)
        model.pid_create_time = process_create_time(model.pid)
        self.save(model)
        if not getattr(km, "_kernel_sessions_watched", False):
            km._kernel_sessions_watched = True
            self.kernel_manager.add_restart_callback(
                model.kernel_id, lambda kid=model.kernel_id: self._on_auto_restart(kid), "restart"
            )
        old = self._watchers.pop(model.name, None)
        if old:
            old.stop()
        watcher = SessionWatcher(km, lambda state, kid=model.kernel_id: self._on_status(kid, state))
        self._watchers[model.name] = watcher
        if wait:
            try:
                await watcher.wait_ready(READY_TIMEOUT)
            except (RuntimeError, TimeoutError) as e:
                raise KernelFailed(f"the kernel of session {model.name!r} {e}") from None
        watcher.start()

    async def delete(self, name: str, *, purge: bool = False) -> None:
        """End the session: its kernel stops and its record goes. Its checkpoints stay (a new
        session of that name can restore them) unless ``purge``.

        It does not queue behind an operation stuck on a hung kernel: it kills the kernel.
        """
        model = self.model(name)
        await self._kill_for(model, "delete")
        async with self.operation(name):
            if not self.is_current(model):
                raise SessionNotFound(f"no session named {name!r}")
            await self.remove(model)
            if purge:
                await asyncio.to_thread(self.checkpointing.store.delete_session, name)
        if purge:  # the blobs only its checkpoints used go now, not at the next sweep
            await self.checkpointing.collect_garbage(force=True)

    async def remove(self, model: SessionModel) -> None:
        """Delete ``model`` (the caller holds its name's operation): state ``deleted``, kernel
        stopped, row removed. The row goes last, so a crash in between leaves a ``deleted``
        row that the next start finishes."""
        name = model.name
        self.transition(model, M.DELETED, "deleted")
        await asyncio.shield(self.stop_kernel(model))
        self._sessions.pop(name, None)
        self.registry.delete(name, model.generation)

    async def rename(self, old: str, new: str) -> SessionModel:
        """Rename the session; both names are held, so nothing starts under either meanwhile."""
        validate_name(new)
        model = self.model(old)
        async with self.operation(old, new):
            if not self.is_current(model):
                raise SessionNotFound(f"no session named {old!r}")
            if new in self._sessions:
                raise SessionExists(f"session {new!r} already exists")
            self.registry.rename(old, new)
            model.name = new
            self._sessions[new] = self._sessions.pop(old)
            if old in self._watchers:
                self._watchers[new] = self._watchers.pop(old)
            await asyncio.to_thread(self.checkpointing.store.rename_session, old, new)
        return model

    async def update(
        self, name: str, *, ttl: float | None = ..., tags: dict | None = None
    ) -> SessionModel:  # type: ignore[assignment]
        model = self.model(name)
        if ttl is not ...:
            model.ttl = ttl
        if tags is not None:
            model.tags = dict(tags)
        self.save(model)
        return model

    # -- restart / interrupt --------------------------------------------------------------

    async def restart(self, name: str) -> SessionModel:
        """Restart the kernel in place: same kernel id, empty namespace. A hung kernel (or one
        stuck in an operation) is killed rather than waited for."""
        model = self.model(name)
        await self._kill_for(model, "restart")
        async with self.operation(name):
            if not self.is_current(model):
                raise SessionNotFound(f"no session named {name!r}")
            return await self._restart(model)

    async def _restart(self, model: SessionModel) -> SessionModel:
        hung = model.state == M.UNRESPONSIVE
        self.transition(model, M.STARTING, "restart requested")
        kid = model.kernel_id
        with self.expecting_exit(kid):
            try:
                if hung:
                    await self.replace_kernel(model)
                else:
                    await self.kernel_manager.restart_kernel(kid, now=False)
                    await self.attach_kernel(model)
            except Exception as e:
                self.transition(model, M.DEAD, f"restart failed: {e}")
                raise
        model.restarts += 1
        self.transition(model, M.IDLE, "restarted by request")
        return model

    async def interrupt(self, name: str) -> None:
        model = self.model(name)
        if model.state in (M.DEAD, M.HIBERNATED):
            raise InvalidTransition(f"session {name!r} is {model.state}")
        await self.kernel_manager.interrupt_kernel(model.kernel_id)

    # -- leases ---------------------------------------------------------------------------

    async def renew_lease(self, name: str, lease_seconds: float | None = None) -> SessionModel:
        model = self.model(name)
        model.lease_expires = time.time() + (lease_seconds or self.lease_seconds)
        self.save(model)
        return model

    # -- recovery -------------------------------------------------------------------------

    def quarantined(self) -> list[dict[str, Any]]:
        """Registry rows set aside because they could not be read, with the reason."""
        return self.registry.quarantined() if self.registry is not None else []

    async def _recover(self) -> None:
        """Re-adopt every recorded kernel that still answers; the rest are dead.

        One session that cannot be recovered never stops the others: its row is quarantined
        (unreadable) or it is marked dead with the reason. Rows a crash left half-done are
        finished: ``deleted`` ones are deleted (their kernel stopped), and a create that never
        got a kernel id is dropped.
        """
        for model in self.registry.list():
            try:
                await self._recover_one(model)
            except Exception as exc:
                self.log.exception("session %s could not be recovered", model.name)
                self._sessions.setdefault(model.name, model)
                if model.state not in (M.DEAD, M.DELETED) and model.kernel_id:
                    model.state, model.reason = M.DEAD, f"recovery failed: {exc}"
                    self.save(model)

    async def _recover_one(self, model: SessionModel) -> None:
        if model.state == M.DELETED or (not model.kernel_id and model.state != M.HIBERNATED):
            if model.kernel_id and model.kernel_id not in self.kernel_manager:
                km = await adopt(self.kernel_manager, model, model.cwd or self.root_dir)
                if km is not None:
                    with self.expecting_exit(model.kernel_id):
                        await self.kernel_manager.shutdown_kernel(model.kernel_id, now=True)
            self.log.info(
                "session %s: finishing an interrupted %s",
                model.name,
                "delete" if model.state == M.DELETED else "create",
            )
            self.registry.delete(model.name, model.generation)
            return
        if not model.generation:  # a row from before generations: give it one
            self.registry.set_generation(model.name, secrets.token_hex(8))
            model.generation = self.registry.get(model.name).generation
        self._sessions[model.name] = model
        if model.state in (M.DEAD, M.HIBERNATED):
            return
        km = None
        if model.kernel_id and model.kernel_id not in self.kernel_manager:
            km = await adopt(self.kernel_manager, model, model.cwd or self.root_dir)
        if km is None:
            self.transition(model, M.DEAD, "kernel gone")
            self.checkpointing.revive_later(model)
            return
        await self.attach_kernel(model)
        if model.state != M.IDLE:
            self.transition(model, M.IDLE, "re-adopted")
