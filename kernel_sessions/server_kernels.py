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

``SessionRows`` keeps one jupyter_server session (type ``kernel-session``, name ``<name>``, path
``.kernel-sessions/<name>``) per named session, because JupyterLab (>= 4.3) labels each running
kernel in its picker with the name of a jupyter_server session using it.

``/api/sessions`` handlers are subclassed (and installed ahead of the stock ones) so that a
``session.*`` kernel name is resolved before jupyter_server's ``create_session``, which turns
every error into a 500: an invalid name is a 400, a full server a 429, and so on.

Setting ``kernel_manager.kernel_sessions = ks`` (the extension does) wires all of this up.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING, Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.services.sessions import handlers as session_handlers
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Float, Instance, observe

from . import models as M
from .errors import KernelSessionError, SessionExists, SessionNotFound
from .handlers_base import APP_SETTINGS_KEY
from .kernelspecs import current_sessions, session_name_of, spec_name
from .pool import PooledMappingKernelManager

if TYPE_CHECKING:
    from .manager import KernelSessionManager
    from .models import SessionModel

ROW_TYPE = "kernel-session"  # jupyter_server session type of the picker rows
ROW_DIR = ".kernel-sessions"  # their (virtual) path prefix
LIVE_STATES = frozenset({M.IDLE, M.BUSY, M.CHECKPOINTING, M.RESTORING})
QUIET = frozenset({M.IDLE, M.BUSY})  # idle<->busy never changes the rows
ATTACH_POLL = 0.05  # seconds between looks at a session another caller is starting
HANDLERS_FLAG = "kernel_sessions_session_handlers"


def row_path(name: str) -> str:
    return f"{ROW_DIR}/{name}"


def http_error(e: KernelSessionError) -> web.HTTPError:
    """The API form of a session-layer error: its status, message and machine reason."""
    return web.HTTPError(e.status, str(e), reason=e.reason)


class SessionMappingKernelManager(PooledMappingKernelManager):
    """The server's kernel manager, aware of named sessions (see the module docstring)."""

    kernel_sessions = Instance(
        "kernel_sessions.manager.KernelSessionManager",
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
            raise web.HTTPError(503, "kernel sessions are not enabled on this server",
                                reason="not_enabled")
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
            raise web.HTTPError(409, f"session {name!r} has no kernel on this server",
                                reason="invalid_state")
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
            if model.state in LIVE_STATES:
                return model
            if model.state != M.STARTING:
                raise web.HTTPError(
                    409, f"session {name!r} is {model.state} ({model.reason}); "
                    "restart or restore it through the sessions API", reason="invalid_state")
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
        self.log.info("kernel %s belongs to session %r: detached, not stopped",
                      kernel_id, model.name)
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


class SessionRows:
    """One jupyter_server session per named session, so JupyterLab's picker shows its name.

    Synced on the session manager's lifecycle events (create, delete, death, restart), after a
    session kernel was detached (its row may just have been deleted), and before every
    ``GET /api/sessions`` (which also catches renames, which emit no event). Rows are written
    directly: ``delete_session`` would try to stop the kernel.
    """

    def __init__(self, ks: KernelSessionManager, session_manager: Any,
                 kernel_manager: SessionMappingKernelManager) -> None:
        self.ks = ks
        self.sm = session_manager
        self.km = kernel_manager
        self._lock = asyncio.Lock()
        self._dirty = False
        self._task: asyncio.Future | None = None
        self._closed = False
        ks.observe(self._on_event)

    def _on_event(self, event: dict) -> None:
        if event.get("from") in QUIET and event.get("to") in QUIET:
            return
        self.request_sync()

    def request_sync(self) -> None:
        """Sync soon (coalesced); safe to call from synchronous code and before the loop runs."""
        if self._closed:
            return
        self._dirty = True
        if self._task is not None and not self._task.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            from tornado.ioloop import IOLoop

            IOLoop.current().add_callback(self.request_sync)
            return
        self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._dirty and not self._closed:
            self._dirty = False
            try:
                await self.sync()
            except Exception:
                self.km.log.exception("kernel sessions: syncing jupyter_server sessions failed")

    async def sync(self) -> None:
        """Make the ``kernel-session`` rows match the sessions whose kernel this server runs."""
        if self._closed:
            return
        async with self._lock:
            wanted = {m.kernel_id: m.name for m in current_sessions(self.ks)
                      if m.kernel_id and m.kernel_id in self.km}
            cur = self.sm.cursor
            rows = cur.execute(
                "SELECT session_id, name, path, kernel_id FROM session WHERE type=?", (ROW_TYPE,)
            ).fetchall()
            seen: set[str] = set()
            for row in rows:
                sid, kid = row["session_id"], row["kernel_id"]
                name = wanted.get(kid)
                if name is None or kid in seen:
                    cur.execute("DELETE FROM session WHERE session_id=?", (sid,))
                    continue
                seen.add(kid)
                if row["name"] != name or row["path"] != row_path(name):  # renamed
                    cur.execute("UPDATE session SET name=?, path=? WHERE session_id=?",
                                (name, row_path(name), sid))
            for kid, name in wanted.items():
                if kid in seen:
                    continue
                try:
                    await self.sm.create_session(path=row_path(name), name=name, type=ROW_TYPE,
                                                 kernel_id=kid)
                except (web.HTTPError, KeyError):  # the kernel went meanwhile: no row needed
                    self.km.log.debug("kernel sessions: no row for %s, kernel gone", name)

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()


# -- /api/sessions ---------------------------------------------------------------------------


async def _pre_attach(handler: Any, kernel: Any, path: Any) -> None:
    """Resolve a ``session.*`` kernel name before jupyter_server's session code sees it."""
    if not isinstance(kernel, dict) or kernel.get("id"):
        return  # an explicit kernel id wins over the name in jupyter_server
    try:
        name = session_name_of(kernel.get("name"))
    except KernelSessionError as e:
        raise http_error(e) from e
    km = handler.kernel_manager
    if name is None or not isinstance(km, SessionMappingKernelManager):
        return
    if isinstance(path, str) and await ensure_async(handler.session_manager.session_exists(path=path)):
        return  # jupyter_server will hand back the existing session and start nothing
    await km.attach_session(name)


class SessionRootHandler(session_handlers.SessionRootHandler):
    """``/api/sessions``: proper 4xx for ``session.*`` kernels; rows synced before listing."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        rows = getattr(self.kernel_manager, "session_rows", None)
        if rows is not None:
            try:
                await rows.sync()
            except Exception:  # a stale picker row never costs the listing
                self.log.exception("kernel sessions: syncing jupyter_server sessions failed")
        await super().get()

    @web.authenticated
    @authorized
    async def post(self) -> None:
        model = self.get_json_body()
        if model is not None and not isinstance(model, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        if model is not None:
            await _pre_attach(self, model.get("kernel"), model.get("path"))
        await super().post()


class SessionHandler(session_handlers.SessionHandler):
    """``/api/sessions/{id}``: switching a notebook to ``session.<name>`` gets proper 4xx."""

    @web.authenticated
    @authorized
    async def patch(self, session_id: str) -> None:
        model = self.get_json_body()
        if model is not None and not isinstance(model, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        if model is not None:
            await _pre_attach(self, model.get("kernel"), None)
        await super().patch(session_id)


def install_session_handlers(web_app: Any) -> None:
    """Put the handlers above in front of jupyter_server's own (idempotent).

    tornado's ``add_handlers`` inserts new rules before the application's initial ones, so
    these win for the same URLs.
    """
    if web_app.settings.get(HANDLERS_FLAG):
        return
    web_app.settings[HANDLERS_FLAG] = True
    base = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [
        (url_path_join(base, r"/api/sessions/%s" % session_handlers._session_id_regex),
         SessionHandler),
        (url_path_join(base, r"/api/sessions"), SessionRootHandler),
    ])
