"""KernelSessionManager: named sessions over pooled kernels, durable across processes.

It owns the names, the lifecycle and the state machine (``models.TRANSITIONS``); every
transition is written to the registry and reaches observers and, when given, a jupyter_events
``EventLogger``. Session kernels start ``independent=True`` so they outlive the process that
manages them; a new manager on the same data dir re-adopts them under the same kernel id.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, Callable

from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from traitlets import All, Bool, Dict, Float, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from . import models as M
from .adoption import adopt, process_create_time
from .checkpointing import CheckpointService
from .errors import InvalidTransition, SessionNotFound
from .models import SessionModel, check_transition, validate_name
from .pool import PooledMultiKernelManager, handed_out_warm
from .registry import Registry, secure_dir
from .sweeps import READY_TIMEOUT, SweepsMixin
from .variables import VariablesService
from .watch import SessionWatcher, fresh_client

SCHEMA_DIR = Path(__file__).parent / "event_schemas"
STATE_SCHEMA_ID = "https://events.jupyter.org/kernel_sessions/session_state/v1"
POOL_SCHEMA_ID = "https://events.jupyter.org/kernel_sessions/pool/v1"
LEASED_TTL = 24 * 3600.0

Observer = Callable[[dict], None]
_NO_NAMES = object()


class KernelSessionManager(SweepsMixin, LoggingConfigurable):
    """Create, find, rename, restart, interrupt and delete named kernel sessions."""

    data_dir = Unicode(config=True, help="Where the registry (and later checkpoints) live.")
    registry_path = Unicode("", config=True, help="SQLite file (default: <data_dir>/registry.sqlite3).")
    root_dir = Unicode(config=True, help="Working directory of session kernels.")
    default_kernel_name = Unicode("python3", config=True)
    pool_sizes = Dict({"python3": 2}, config=True, help="Warm spares per kernelspec.")
    keep_kernels_on_stop = Bool(
        False, config=True, help="Leave session kernels running when the manager stops, "
        "instead of hibernating the sessions (checkpoint, then stop the kernel).",
    )
    death_check_interval = Float(0.25, config=True, help="Seconds between liveness checks.")
    reap_interval = Float(1.0, config=True, help="Seconds between lease and TTL sweeps.")
    lease_seconds = Float(60.0, config=True, help="Default lease of owned sessions.")
    default_ttl = Float(
        None, allow_none=True, config=True,
        help="Idle seconds before a named session expires (None: never).",
    )
    leased_ttl = Float(LEASED_TTL, config=True, help="Idle seconds before a leased session expires.")
    kernel_manager = Instance(AsyncMultiKernelManager, allow_none=True)
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
        self._expected_exit: set[str] = set()  # kernel ids we are stopping or restarting
        self._tasks: list[asyncio.Task] = []
        self._op_locks: dict[str, asyncio.Lock] = {}
        self._started = False
        self.registry: Registry | None = None
        self.vars = VariablesService(self, parent=self)
        self.checkpointing = CheckpointService(self, parent=self)

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> KernelSessionManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the registry, warm the pool, re-adopt recorded kernels, start the sweeps."""
        if self._started:
            return
        self._started = True
        secure_dir(Path(self.data_dir))
        self.registry = Registry(self.registry_path or os.path.join(self.data_dir, "registry.sqlite3"))
        if self.kernel_manager is None:
            runtime = secure_dir(Path(jupyter_runtime_dir()))
            self.kernel_manager = PooledMultiKernelManager(
                parent=self, log=self.log, pool_sizes=self.pool_sizes, connection_dir=str(runtime),
                pool_cwd=self.root_dir, default_kernel_name=self.default_kernel_name,
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
        ]

    async def stop(self, keep_sessions: bool | None = None) -> None:
        """Stop sweeps and spares; hibernate the sessions, or with ``keep_sessions`` (default:
        ``keep_kernels_on_stop``) leave their kernels running to be re-adopted.

        A session still busy after a short wait is left running rather than killed.
        """
        if not self._started:
            return
        keep = self.keep_kernels_on_stop if keep_sessions is None else keep_sessions
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.checkpointing.close()
        km = self.kernel_manager
        for name in list(self._sessions):
            model = self._sessions[name]
            if keep or not await self.checkpointing.on_stop(model):
                if model.kernel_id in km and hasattr(km, "release_kernel"):
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

    def _transition(self, model: SessionModel, to: str, reason: str, **extra: Any) -> None:
        old = model.state
        if old == to and to in (M.IDLE, M.BUSY):
            return
        check_transition(model.name, old, to)
        model.state, model.reason = to, reason
        if to in (M.IDLE, M.BUSY):
            model.last_activity = time.time()
        if to != M.DELETED:
            self.registry.save(model)
        self._emit(STATE_SCHEMA_ID, {
            "name": model.name, "from": old, "to": to, "reason": reason,
            "kernel_id": model.kernel_id, "restarts": model.restarts, **extra,
        })

    # -- lookups --------------------------------------------------------------------------

    def _model(self, name: str) -> SessionModel:
        validate_name(name)
        model = self._sessions.get(name)
        if model is None:
            raise SessionNotFound(f"no session named {name!r}")
        watcher = self._watchers.get(name)
        if watcher is not None:
            watcher.drain()
        return model

    def _lock(self, model: SessionModel) -> asyncio.Lock:
        """One lifecycle operation (restart, delete, expiry) at a time per kernel."""
        return self._op_locks.setdefault(model.kernel_id or model.name, asyncio.Lock())

    async def get(self, name: str) -> SessionModel:
        model = self._model(name)
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
        return self._model(name).kernel_id

    async def attach(self, name: str) -> SessionModel:
        """The session, woken first if it is hibernated (its latest checkpoint restored into a
        pooled kernel). Every way in — clients, notebooks, execute, variables — comes here."""
        model = self._model(name)
        if model.state == M.HIBERNATED:
            await self.checkpointing.wake(model)
        return model

    def client(self, name: str) -> Any:
        """A started ``AsyncKernelClient`` attached to the session's kernel.

        Synchronous, so it cannot wake a hibernated session: ``await ks.attach(name)`` first.
        """
        model = self._model(name)
        if model.state == M.HIBERNATED:
            raise InvalidTransition(f"session {name!r} is hibernated ({model.reason}); "
                                    "await ks.attach(name) to wake it")
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

    async def checkpoint(self, name: str, *, label: str | None = None,
                         variables: list[str] | None = None,
                         timeout: float | None = None) -> dict:
        """Checkpoint the session's namespace; returns the signed manifest."""
        return await self.checkpointing.checkpoint(name, label=label, variables=variables,
                                                   timeout=timeout)

    async def checkpoints(self, name: str) -> list[dict]:
        """Summaries of the session's checkpoints, newest first."""
        return await self.checkpointing.list(name)

    async def restore(self, name: str, checkpoint_id: str | None = None, *,
                      into: str | None = None, variables: list[str] | None = None,
                      **kw: Any) -> dict:
        """Restore a checkpoint (default: the latest) into the session, or fork it ``into`` a
        new one; returns ``{session, checkpoint, restored, failed, removed}``."""
        return await self.checkpointing.restore(name, checkpoint_id, into=into,
                                                variables=variables, **kw)

    async def hibernate(self, name: str) -> SessionModel:
        """Checkpoint and stop the kernel; the next attach wakes the session."""
        return await self.checkpointing.hibernate(name)

    def pool_stats(self) -> dict:
        km = self.kernel_manager
        return km.pool_stats() if hasattr(km, "pool_stats") else {}

    # -- create / delete ------------------------------------------------------------------

    async def create(
        self, name: str, kernel_name: str | None = None, *, owner: str | None = None,
        lease_seconds: float | None = None, ttl: float | None = None,
        tags: dict[str, str] | None = None,
    ) -> SessionModel:
        """Start a session; the registry's primary key makes a name taken exactly once."""
        validate_name(name)
        now = time.time()
        model = SessionModel(
            name=name, kernel_id="", kernel_name=kernel_name or self.default_kernel_name,
            owner=owner, tags=dict(tags or {}), created=now, last_activity=now,
            ttl=ttl if ttl is not None else (self.leased_ttl if owner else self.default_ttl),
            lease_expires=now + (lease_seconds or self.lease_seconds) if owner else None,
            cwd=self.root_dir, reason="created",
        )
        self.registry.insert(model)  # SessionExists for a taken name, across processes too
        self.registry.forget_name(name)  # a redirect from this name to a renamed session ends
        self._sessions[name] = model
        self._emit(STATE_SCHEMA_ID, {"name": name, "from": None, "to": M.STARTING,
                                     "reason": "created", "kernel_id": "", "restarts": 0})
        try:
            model.kernel_id = await self.kernel_manager.start_kernel(
                kernel_name=model.kernel_name, independent=True, cwd=self.root_dir
            )
            km = self.kernel_manager.get_kernel(model.kernel_id)
            await self._attach_kernel(model, wait=not handed_out_warm(km))
        except BaseException:
            self._sessions.pop(name, None)
            self.registry.delete(name)
            if model.kernel_id and model.kernel_id in self.kernel_manager:
                await self.kernel_manager.shutdown_kernel(model.kernel_id, now=True)
            raise
        if owner:  # the lease runs from when the session is usable
            model.lease_expires = time.time() + (lease_seconds or self.lease_seconds)
        self._transition(model, M.IDLE, "created")
        return model

    async def _attach_kernel(self, model: SessionModel, *, wait: bool = True) -> None:
        """Record the kernel's connection and pid, watch it, and wait until it answers."""
        km = self.kernel_manager.get_kernel(model.kernel_id)
        info = dict(km.get_connection_info())
        info["key"] = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
        model.connection_info = info
        model.pid = getattr(km.provisioner, "pid", None)
        model.pid_create_time = process_create_time(model.pid)
        self.registry.save(model)
        if not getattr(km, "_kernel_sessions_watched", False):
            km._kernel_sessions_watched = True
            self.kernel_manager.add_restart_callback(
                model.kernel_id, lambda kid=model.kernel_id: self._on_auto_restart(kid), "restart")
        old = self._watchers.pop(model.name, None)
        if old:
            old.stop()
        watcher = SessionWatcher(km, lambda state, kid=model.kernel_id: self._on_status(kid, state))
        self._watchers[model.name] = watcher
        if wait:
            await watcher.wait_ready(READY_TIMEOUT)
        watcher.start()

    async def delete(self, name: str, *, purge: bool = False) -> None:
        """End the session: its kernel stops and its record goes. Its checkpoints stay (a new
        session of that name can restore them) unless ``purge``."""
        model = self._model(name)
        async with self._lock(model):
            if self._sessions.get(model.name) is not model:
                raise SessionNotFound(f"no session named {name!r}")
            await self._delete(model)
        if purge:
            await asyncio.to_thread(self.checkpointing.store.delete_session, name)

    async def _delete(self, model: SessionModel) -> None:
        name = model.name
        self.checkpointing._forget(model.kernel_id)
        self._transition(model, M.DELETED, "deleted")
        self._sessions.pop(name, None)
        watcher = self._watchers.pop(name, None)
        if watcher:
            watcher.stop()
        km = self.kernel_manager
        if model.kernel_id in km:
            self._expected_exit.add(model.kernel_id)
            try:
                await km.shutdown_kernel(model.kernel_id, now=False)
            finally:
                self._expected_exit.discard(model.kernel_id)
        self.registry.delete(name)
        self._op_locks.pop(model.kernel_id, None)

    async def rename(self, old: str, new: str) -> SessionModel:
        model = self._model(old)
        validate_name(new)
        self.registry.rename(old, new)
        await asyncio.to_thread(self.checkpointing.store.rename_session, old, new)
        model.name = new
        self._sessions[new] = self._sessions.pop(old)
        if old in self._watchers:
            self._watchers[new] = self._watchers.pop(old)
        return model

    async def update(self, name: str, *, ttl: float | None = ..., tags: dict | None = None) -> SessionModel:  # type: ignore[assignment]
        model = self._model(name)
        if ttl is not ...:
            model.ttl = ttl
        if tags is not None:
            model.tags = dict(tags)
        self.registry.save(model)
        return model

    # -- restart / interrupt --------------------------------------------------------------

    async def restart(self, name: str) -> SessionModel:
        """Restart the kernel in place: same kernel id, empty namespace."""
        model = self._model(name)
        async with self._lock(model):
            return await self._restart(model)

    async def _restart(self, model: SessionModel) -> SessionModel:
        self._transition(model, M.STARTING, "restart requested")
        kid = model.kernel_id
        self._expected_exit.add(kid)
        try:
            await self.kernel_manager.restart_kernel(kid, now=False)
            await self._attach_kernel(model)
        except Exception as e:
            self._transition(model, M.DEAD, f"restart failed: {e}")
            raise
        finally:
            self._expected_exit.discard(kid)
        model.restarts += 1
        self._transition(model, M.IDLE, "restarted by request")
        return model

    async def interrupt(self, name: str) -> None:
        model = self._model(name)
        if model.state in (M.DEAD, M.HIBERNATED):
            raise InvalidTransition(f"session {name!r} is {model.state}")
        await self.kernel_manager.interrupt_kernel(model.kernel_id)

    # -- leases ---------------------------------------------------------------------------

    async def renew_lease(self, name: str, lease_seconds: float | None = None) -> SessionModel:
        model = self._model(name)
        model.lease_expires = time.time() + (lease_seconds or self.lease_seconds)
        self.registry.save(model)
        return model

    # -- recovery -------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Re-adopt every recorded kernel that still answers; the rest are dead."""
        for model in self.registry.list():
            self._sessions[model.name] = model
            if model.state in (M.DEAD, M.HIBERNATED):
                continue
            km = None
            if model.kernel_id and model.kernel_id not in self.kernel_manager:
                km = await adopt(self.kernel_manager, model, model.cwd or self.root_dir)
            if km is None:
                self._transition(model, M.DEAD, "kernel gone")
                self.checkpointing.revive_later(model)
                continue
            await self._attach_kernel(model)
            if model.state != M.IDLE:
                self._transition(model, M.IDLE, "re-adopted")
