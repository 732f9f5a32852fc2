"""``SessionRows`` keeps one jupyter_server session (type ``kernel-session``, name ``<name>``, path
``.kernel-sessions/<name>``) per named session, because JupyterLab (>= 4.3) labels each running
kernel in its picker with the name of a jupyter_server session using it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tornado import web

from kernel_sessions.core import models as M
from kernel_sessions.server.kernelspecs import current_sessions

if TYPE_CHECKING:
    from kernel_sessions.core.manager import KernelSessionManager
    from kernel_sessions.server.kernel_manager import SessionMappingKernelManager

ROW_TYPE = "kernel-session"  # jupyter_server session type of the picker rows
ROW_DIR = ".kernel-sessions"  # their (virtual) path prefix
QUIET = frozenset({M.IDLE, M.BUSY})  # idle<->busy never changes the rows


def row_path(name: str) -> str:
    return f"{ROW_DIR}/{name}"


class SessionRows:
    """One jupyter_server session per named session, so JupyterLab's picker shows its name.

    Synced on the session manager's lifecycle events (create, delete, death, restart), after a
    session kernel was detached (its row may just have been deleted), and before every
    ``GET /api/sessions`` (which also catches renames, which emit no event). Rows are written
    directly: ``delete_session`` would try to stop the kernel.
    """

    def __init__(
        self,
        ks: KernelSessionManager,
        session_manager: Any,
        kernel_manager: SessionMappingKernelManager,
    ) -> None:
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
            wanted = {
                m.kernel_id: m.name
                for m in current_sessions(self.ks)
                if m.kernel_id and m.kernel_id in self.km
            }
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
                    cur.execute(
                        "UPDATE session SET name=?, path=? WHERE session_id=?",
                        (name, row_path(name), sid),
                    )
            for kid, name in wanted.items():
                if kid in seen:
                    continue
                try:
                    await self.sm.create_session(
                        path=row_path(name), name=name, type=ROW_TYPE, kernel_id=kid
                    )
                except (web.HTTPError, KeyError):  # the kernel went meanwhile: no row needed
                    self.km.log.debug("kernel sessions: no row for %s, kernel gone", name)

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
