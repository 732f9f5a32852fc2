"""Notebooks attach to named sessions through jupyter_server's own kernel and session APIs.

``SessionMappingKernelManager`` (``ServerApp.kernel_manager_class``) makes a session's kernel
behave like a shared, indestructible notebook kernel:

- ``start_kernel(kernel_name="session.etl")`` returns the kernel id of session ``etl``, creating
  the session from the pool when it is missing (concurrent attaches create exactly one).
- ``shutdown_kernel`` of a session kernel only detaches: closing a notebook, ``DELETE
  /api/sessions/{id}`` or ``DELETE /api/kernels/{id}`` never ends a session; only the session
  manager (``ks.delete``, ``ks`` expiring it) stops its kernel.
- ``restart_kernel`` of a session kernel goes through ``ks.restart`` so the session's state,
  restart count and watcher stay right; the kernel id is kept.
- the culler never culls a session kernel.
- ``kernel_model`` reports a session kernel's name as ``session.<name>``, not its real spec.
  JupyterLab writes the kernel model's ``name`` into the notebook's ``metadata.kernelspec.name``
  whenever a notebook gets a kernel (``NotebookPanel._updateSpec``); reporting ``python3`` would
  rewrite a notebook saved with ``session.etl`` to ``python3`` on first attach, and reopening it
  would start a fresh kernel instead of re-attaching. With ``session.etl`` the metadata keeps
  pointing at the session, JupyterLab looks the spec up in ``/api/kernelspecs`` and shows
  ``etl (session)``, and a notebook that picks a session kernel from "connect to existing
  kernel" is re-pointed at the session. The real spec stays on the ``KernelManager``
  (``kernel_name``), which is what restarts launch.

Setting ``kernel_manager.kernel_sessions = ks`` (the extension does) wires all of this up;
``session_rows.py`` keeps the picker's rows, ``api_sessions.py`` the ``/api/sessions`` handlers.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

from tornado import web
from traitlets import Float, Instance, observe

from kernel_sessions.core import models as M
from kernel_sessions.core.errors import KernelSessionError, SessionExists, SessionNotFound
from kernel_sessions.core.models import session_name_of, spec_name
from kernel_sessions.pool.managers import PooledMappingKernelManager
from kernel_sessions.server.api_sessions import install_session_handlers
from kernel_sessions.server.handlers.base import APP_SETTINGS_KEY, http_error
from kernel_sessions.server.session_rows import SessionRows

if TYPE_CHECKING:
    from kernel_sessions.core.manager import KernelSessionManager
    from kernel_sessions.core.models import SessionModel

ATTACH_POLL = 0.05  # seconds between looks at a session another caller is starting


class SessionMappingKernelManager(PooledMappingKernelManager):
    """The server's kernel manager, aware of named sessions (see the module docstring)."""

    kernel_sessions = Instance(
        "kernel_sessions.core.manager.KernelSessionManager",
        allow_none=True,
        help="The session manager; set by the extension, which wires up rows and handlers.",
    )
    attach_timeout = Float(
        60.0, config=True, help="Seconds to wait for a session that another caller is starting."
    )

    def __init__(self, **kwargs: Any) -> None:
        # before super().__init__: a kernel_sessions kwarg fires the observer during it
        self._attach_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self.session_rows: SessionRows | None = None
        super().__init__(**kwargs)

    # -- wiring ----------------------------------------------------------------------------

    @observe("kernel_sessions")
    def _kernel_sessions_changed(self, change: dict) -> None:
        if self.session_rows is not None:
            self.session_rows.close()
            self.session_rows = None
        ks = change["new"]
        if ks is None:
            return
        ksm = self.kernel_spec_manager
        if ksm is not None and ksm.has_trait("kernel_sessions") and ksm.kernel_sessions is None:
            ksm.kernel_sessions = ks
        app = self.parent
        sm = getattr(app, "session_manager", None)
        if sm is not None:
            self.session_rows = SessionRows(ks, sm, self)
            self.session_rows.request_sync()
        web_app = getattr(app, "web_app", None)
        if web_app is not None:
            install_session_handlers(web_app)
        else:
            self.log.warning("kernel sessions: no web app yet; /api/sessions is not extended")

    def _session_of(self, kernel_id: str) -> SessionModel | None:
        ks = self.kernel_sessions
        return ks.by_kernel(kernel_id) if ks is not None else None

    def _shielded(self, kernel_id: str) -> SessionModel | None:
        """The session whose kernel this is, unless the session manager itself is stopping or
        restarting it (it marks those kernels as expected to exit)."""
        model = self._session_of(kernel_id)
        if model is None or self.kernel_sessions.exit_expected(kernel_id):
            return None
        return model

    # -- attach ----------------------------------------------------------------------------

    async def attach_session(self, name: str) -> SessionModel:
        """Get session ``name`` (or, if it was renamed, the session it became), creating it
        from the pool if missing; wait until it runs (waking it if hibernated).

        A per-name lock makes concurrent attaches create one session; a session created at the
        same moment through another path (``SessionExists``) is waited for instead.
        """
        ks = self.kernel_sessions
        if ks is None:
            raise web.HTTPError(
                503, "kernel sessions are not enabled on this server", reason="not_enabled"
            )
        lock = self._attach_locks.get(name)
        if lock is None:
            lock = self._attach_locks[name] = asyncio.Lock()
        try:
            await self._ensure_started(ks)
            async with lock:
                moved = ks.renamed_to(name)
                if moved is not None and ks.find(moved) is not None:  # saved before a rename
                    self.log.info("kernel sessions: session %r is now %r", name, moved)
                    name = moved
                try:
                    await ks.get(name)
                except SessionNotFound:
                    try:
                        await ks.create(name)
                        self.log.info("kernel sessions: created session %r on attach", name)
                    except SessionExists:
                        pass
                await ks.attach(name)  # wakes a hibernated session
                model = await self._until_running(ks, name)
        except KernelSessionError as e:
            raise http_error(e) from e
        if model.kernel_id not in self:
            raise web.HTTPError(
                409, f"session {name!r} has no kernel on this server", reason="invalid_state"
            )
        return model

    async def _ensure_started(self, ks: KernelSessionManager) -> None:
        """The extension starts the manager lazily: share its one start, or start it here."""
        settings = getattr(getattr(self.parent, "web_app", None), "settings", {})
        app = settings.get(APP_SETTINGS_KEY)
        if app is not None and getattr(app, "ks", None) is ks:
            await app.ensure_started()
        elif ks.registry is None:
            await ks.start()

    async def _until_running(self, ks: KernelSessionManager, name: str) -> SessionModel:
        deadline = time.monotonic() + self.attach_timeout
        while True:
            model = await ks.get(name)
            if model.state in M.HAS_KERNEL:
                return model
            if model.state != M.STARTING:
                raise web.HTTPError(
                    409,
                    f"session {name!r} is {model.state} ({model.reason}); "
                    "restart or restore it through the sessions API",
                    reason="invalid_state",
                )
            if time.monotonic() > deadline:
                raise web.HTTPError(504, f"session {name!r} is still starting", reason="timeout")
            await asyncio.sleep(ATTACH_POLL)

    # -- the kernel manager API ------------------------------------------------------------

    async def start_kernel(self, *, kernel_name: str | None = None, **kwargs: Any) -> str:  # type: ignore[override]
        """Start a kernel, or for ``session.<name>`` return that session's kernel id.

        ``path``/``env``/``kernel_id`` are ignored for a session kernel: it is shared, so it
        keeps the working directory and environment it was created with.
        """
        try:
            name = session_name_of(kernel_name)
        except KernelSessionError as e:
            raise http_error(e) from e
        if name is None:
            return await super().start_kernel(kernel_name=kernel_name, **kwargs)
        model = await self.attach_session(name)
        if not self._initialized_culler:
            self.initialize_culler()
        return model.kernel_id

    async def shutdown_kernel(  # type: ignore[override]
        self, kernel_id: str, now: bool = False, restart: bool = False
    ) -> None:
        """Stop a kernel; a session kernel is only detached from its caller and keeps running."""
        model = self._shielded(kernel_id)
        if model is None:
            return await super().shutdown_kernel(kernel_id, now=now, restart=restart)
        self.log.info(
            "kernel %s belongs to session %r: detached, not stopped", kernel_id, model.name
        )
        if self.session_rows is not None:
            self.session_rows.request_sync()  # runs after the caller deletes its session row
        return None

    async def restart_kernel(self, kernel_id: str, now: bool = False) -> Any:  # type: ignore[override]
        """Restart a kernel; a session kernel through its session manager (same kernel id)."""
        model = self._shielded(kernel_id)
        if model is None:
            return await super().restart_kernel(kernel_id, now=now)
        ks = self.kernel_sessions
        try:
            if model.state == M.STARTING:  # a restart is already under way: join it
                await self._until_running(ks, model.name)
            else:
                await ks.restart(model.name)
        except KernelSessionError as e:
            raise http_error(e) from e
        return None

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """Never cull a session kernel: sessions expire by their own TTL policy."""
        if self._session_of(kernel_id) is not None:
            return
        await super().cull_kernel_if_idle(kernel_id)

    def kernel_model(self, kernel_id: str) -> dict[str, Any]:
        """The REST model; a session kernel is named ``session.<name>`` (see module docstring)."""
        model = super().kernel_model(kernel_id)
        session = self._session_of(kernel_id)
        if session is not None:
            model["name"] = spec_name(session.name)
        return model

    async def shutdown_all(self, now: bool = False) -> None:
        if self.session_rows is not None:
            self.session_rows.close()
        await super().shutdown_all(now=now)
