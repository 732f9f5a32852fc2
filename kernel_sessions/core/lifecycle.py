"""The session core's public interface, and the per-name operation locks behind it.

Every service (checkpointing and its policies, variables, kernelspecs, the server's kernel
manager, metrics) depends on ``SessionCore`` only, never on the manager's private state. The
rules it encodes (see docs/architecture.md):

- one lifecycle operation at a time per session *name* (``operation``), held across start,
  attach, load, delete and rename; a rename holds both names;
- a kernel the core stops, restarts or replaces is marked first (``expecting_exit``), so the
  death watch and jupyter_client's restarter callbacks leave it alone;
- every state change goes through ``transition`` (checked against the state machine, written
  to the registry, emitted as an event).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kernel_sessions.core.models import SessionModel
    from kernel_sessions.core.registry import Registry
    from kernel_sessions.core.watch import SessionWatcher


class SessionCore(Protocol):
    """What the services may use of ``KernelSessionManager``."""

    data_dir: str
    root_dir: str
    kernel_manager: Any
    registry: Registry | None

    def model(self, name: str) -> SessionModel: ...
    def find(self, name: str) -> SessionModel | None: ...
    def by_kernel(self, kernel_id: str) -> SessionModel | None: ...
    def models(self) -> list[SessionModel]: ...
    def is_current(self, model: SessionModel) -> bool: ...
    def watcher(self, name: str) -> SessionWatcher | None: ...
    def transition(self, model: SessionModel, to: str, reason: str, **extra: Any) -> None: ...
    def save(self, model: SessionModel) -> None: ...
    def operation(self, *names: str) -> contextlib.AbstractAsyncContextManager[None]: ...
    def operation_running(self, name: str) -> bool: ...
    def expecting_exit(self, kernel_id: str) -> AbstractContextManager[None]: ...
    def exit_expected(self, kernel_id: str) -> bool: ...
    async def attach(self, name: str) -> SessionModel: ...
    async def attach_kernel(self, model: SessionModel, *, wait: bool = True) -> None: ...
    async def stop_kernel(self, model: SessionModel, *, now: bool = False) -> None: ...
    async def replace_kernel(self, model: SessionModel) -> None: ...
    async def create(
        self, name: str, kernel_name: str | None = None, **kw: Any
    ) -> SessionModel: ...
    async def remove(self, model: SessionModel) -> None: ...


class _NameLock:
    """An asyncio lock that the task holding it may take again (operations nest: a fork
    creates, a stop hibernates), with a count of waiters so an idle one can be dropped."""

    __slots__ = ("lock", "owner", "depth", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.owner: asyncio.Task | None = None
        self.depth = 0
        self.waiting = 0


class NameLocks:
    """One ``_NameLock`` per session name, created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[str, _NameLock] = {}

    def held(self, name: str) -> bool:
        """Some task is inside an operation on ``name``."""
        lk = self._locks.get(name)
        return lk is not None and lk.lock.locked()

    def held_by_other(self, name: str) -> bool:
        lk = self._locks.get(name)
        return lk is not None and lk.lock.locked() and lk.owner is not asyncio.current_task()

    @contextlib.asynccontextmanager
    async def hold(self, names: Iterable[str]) -> AsyncIterator[None]:
        """Hold every name, taken in sorted order so that two multi-name holders (renames)
        cannot deadlock."""
        task = asyncio.current_task()
        taken: list[_NameLock] = []
        try:
            for name in sorted(set(names)):
                lk = self._locks.setdefault(name, _NameLock())
                if lk.owner is not task or task is None:
                    lk.waiting += 1
                    try:
                        await lk.lock.acquire()
                    finally:
                        lk.waiting -= 1
                    lk.owner = task
                lk.depth += 1
                taken.append(lk)
            yield
        finally:
            for lk in reversed(taken):
                lk.depth -= 1
                if lk.depth == 0:
                    lk.owner = None
                    lk.lock.release()
            for name in list(self._locks):
                lk = self._locks[name]
                if not lk.lock.locked() and not lk.waiting:
                    del self._locks[name]
