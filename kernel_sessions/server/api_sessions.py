"""``/api/sessions`` handlers are subclassed (and installed ahead of the stock ones) so that a
``session.*`` kernel name is resolved before jupyter_server's ``create_session``, which turns
every error into a 500: an invalid name is a 400, a full server a 429, and so on.
"""

from __future__ import annotations

from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.services.sessions import handlers as session_handlers
from jupyter_server.utils import url_path_join
from tornado import web

from kernel_sessions.core.errors import KernelSessionError
from kernel_sessions.core.models import session_name_of
from kernel_sessions.server.handlers.base import http_error

HANDLERS_FLAG = "kernel_sessions_session_handlers"


async def _pre_attach(handler: Any, kernel: Any, path: Any) -> None:
    """Resolve a ``session.*`` kernel name before jupyter_server's session code sees it."""
    if not isinstance(kernel, dict) or kernel.get("id"):
        return  # an explicit kernel id wins over the name in jupyter_server
    try:
        name = session_name_of(kernel.get("name"))
    except KernelSessionError as e:
        raise http_error(e) from e
    km = handler.kernel_manager
    if name is None or not callable(getattr(km, "attach_session", None)):  # not ours
        return
    if isinstance(path, str) and await ensure_async(
        handler.session_manager.session_exists(path=path)
    ):
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
    web_app.add_handlers(
        ".*$",
        [
            (
                url_path_join(base, r"/api/sessions/" + session_handlers._session_id_regex),
                SessionHandler,
            ),
            (url_path_join(base, r"/api/sessions"), SessionRootHandler),
        ],
    )
