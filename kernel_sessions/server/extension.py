"""The ``kernel_sessions`` jupyter_server extension.

It swaps in the pooled kernel manager and the TCP_NODELAY kernel websocket, creates one
``KernelSessionManager`` over the server's kernel manager and event logger, serves the REST API
(``handlers.py``) and the Prometheus collectors (``metrics.py``).

The session manager is started lazily and exactly once (``ensure_started``): jupyter_server calls
``_start_jupyter_server_extension`` only once its loop runs, and embedders (pytest-jupyter) never
call it, so every handler awaits ``ensure_started`` too. On a graceful stop the server stops
extensions *before* it shuts kernels down; ``stop_extension`` stops the manager first, which
hibernates every idle session (checkpoint, then its kernel stops; the next attach wakes it), or
with ``keep_kernels_on_stop`` releases the session kernels so the server's ``shutdown_all``
leaves them running for the next server to re-adopt.

One data dir, one owner (``ownership.py``): the manager starts only once this server holds the
data dir's ownership lock, before any registry recovery or adoption. A server that finds the lock
held (a second ``jupyter lab``, or ``jupyter kernel-sessions serve`` next to one) logs the owner's
pid once, manages nothing (no adoption, no kernel of the owner's touched, its stop leaves sessions
alone) and answers every sessions route 503 ``not_owner``; ordinary notebooks keep working with
plain (pooled) kernels, while ``session.<name>`` kernels are refused the same way. It tries the
lock again every ``owner_retry_interval`` seconds and, once the owner is gone, starts normally
(re-adopting the kernels that survived it). The lock is released after a clean stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.gateway.gateway_client import GatewayClient
from jupyter_server.log import log_request
from traitlets import Float, Unicode

from kernel_sessions.core.manager import (
    POOL_SCHEMA_ID,
    SCHEMA_DIR,
    STATE_SCHEMA_ID,
    KernelSessionManager,
)
from kernel_sessions.core.ownership import OwnerInfo, OwnershipLock
from kernel_sessions.server import metrics as metrics
from kernel_sessions.server.handlers.base import APP_SETTINGS_KEY, SETTINGS_KEY, ApiError

EXTENSION_NAME = "kernel_sessions"
# The kernel manager the extension installs (see jupyter_config/…/kernel_sessions.json too).
KERNEL_MANAGER_CLASS = "kernel_sessions.server.kernel_manager.SessionMappingKernelManager"
WEBSOCKET_CONNECTION_CLASS = "kernel_sessions.server.nodelay.NoDelayWebsocketConnection"
KERNEL_SPEC_MANAGER_CLASS = "kernel_sessions.server.kernelspecs.SessionKernelSpecManager"
STARTUP_TIMEOUT = 120.0  # seconds a request waits for the manager to finish starting
OWNER_RETRY_INTERVAL = 2.0  # seconds between attempts of a non-owner to take the data dir over
NOT_OWNER = "not_owner"  # the API reason while another server owns the data dir


def _without_paths(error: BaseException) -> str:
    """What went wrong, for clients: an OSError's text without the file name it carries."""
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return str(error)


class KernelSessionsApp(ExtensionApp):
    """Named, persistent, pooled kernel sessions inside jupyter_server."""

    name = EXTENSION_NAME
    load_other_extensions = True
    # applied when the extension launches its own server; the json config file does the same for
    # `jupyter server` / `jupyter lab`, and `_link_jupyter_server_extension` covers config-less
    # embedders (tests) as long as the user did not choose other classes.
    serverapp_config: dict[str, Any] = {
        "kernel_manager_class": KERNEL_MANAGER_CLASS,
        "kernel_websocket_connection_class": WEBSOCKET_CONNECTION_CLASS,
        "kernel_spec_manager_class": KERNEL_SPEC_MANAGER_CLASS,
    }

    session_data_dir = Unicode(
        "",
        config=True,
        help="Where the session registry and checkpoints live "
        "(default: KernelSessionManager.data_dir, i.e. <jupyter data dir>/kernel_sessions).",
    )

    owner_retry_interval = Float(
        OWNER_RETRY_INTERVAL,
        config=True,
        help="Seconds between attempts to take the data dir's ownership lock while another "
        "server holds it (this server manages no session until it gets the lock).",
    )

    ks: KernelSessionManager | None = None
    ownership: OwnershipLock | None = None
    _start_task: asyncio.Task | None = None
    _retry_task: asyncio.Task | None = None
    _owner: OwnerInfo | None = None  # the other server, as last read, while we are refused
    _refused = False
    _stopping = False

    # -- wiring into the server -------------------------------------------------------------

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Install our kernel manager and websocket classes unless the user chose others.

        Linking happens before the server builds its configurables, so this is early enough.
        """
        super()._link_jupyter_server_extension(serverapp)
        if GatewayClient(parent=serverapp).gateway_enabled:  # the server's own check, early
            self.log.warning("kernel_sessions: a kernel gateway is configured; no warm pool")
            return
        # reading the traits' defaults this early would fail: only look at explicit values
        for trait, ours in (
            ("kernel_manager_class", KERNEL_MANAGER_CLASS),
            ("kernel_websocket_connection_class", WEBSOCKET_CONNECTION_CLASS),
            ("kernel_spec_manager_class", KERNEL_SPEC_MANAGER_CLASS),
        ):
            if not serverapp.trait_has_value(trait):
                setattr(serverapp, trait, ours)

    def initialize_settings(self) -> None:
        """Create the session manager and publish it where handlers and providers look."""
        sa = self.serverapp
        # register the event schemas now: an /api/events/subscribe listener only hears schemas
        # registered before it subscribed
        for sid, schema in ((STATE_SCHEMA_ID, "session_state"), (POOL_SCHEMA_ID, "pool")):
            if sid not in sa.event_logger.schemas.schema_ids:
                sa.event_logger.register_event_schema(SCHEMA_DIR / schema / "v1.yaml")
        kwargs: dict[str, Any] = {}
        if self.session_data_dir:
            kwargs["data_dir"] = self.session_data_dir
        self.ks = KernelSessionManager(
            parent=self,
            log=self.log,
            kernel_manager=sa.kernel_manager,
            event_logger=sa.event_logger,
            root_dir=sa.root_dir,
            **kwargs,
        )
        self.ownership = OwnershipLock(self.ks.data_dir)
        sa.kernel_manager.kernel_sessions = self.ks
        sa.kernel_spec_manager.kernel_sessions = self.ks
        self.settings[SETTINGS_KEY] = self.ks
        self.settings[APP_SETTINGS_KEY] = self
        metrics.install(self.ks)

    def initialize_handlers(self) -> None:
        from kernel_sessions.server.handlers.base import quiet_refusals
        from kernel_sessions.server.handlers.routes import default_handlers

        self.handlers.extend(default_handlers)
        settings = self.serverapp.web_app.settings
        settings["log_function"] = quiet_refusals(settings.get("log_function") or log_request)

    # -- lifecycle --------------------------------------------------------------------------

    async def ensure_started(self) -> KernelSessionManager:
        """Start the session manager once; concurrent callers share the one start.

        Only the owner of the data dir starts it: without the lock this raises 503 ``not_owner``.
        """
        if self.ks is None or self._stopping:
            raise ApiError(
                503, "unavailable", "kernel sessions are not available (server stopping)"
            )
        if self._start_task is None:
            try:
                owned = self._take_ownership()
            except OSError as e:  # not even a lock file can be opened in the data dir
                raise ApiError(
                    503, "unavailable", f"the data dir cannot be locked: {_without_paths(e)}"
                ) from e
            if not owned:
                raise self._not_owner_error()
            self._start_task = asyncio.ensure_future(self.ks.start())
        try:
            await asyncio.wait_for(asyncio.shield(self._start_task), STARTUP_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise ApiError(503, "unavailable", "kernel sessions are still starting") from None
        except Exception as e:  # logged once by _start_jupyter_server_extension
            if self._start_task is not None and self._start_task.done() and not self.ks.started:
                self._start_task = None  # it failed before starting anything: retry next time
            raise ApiError(
                503, "unavailable", f"kernel sessions failed to start: {_without_paths(e)}"
            ) from e
        return self.ks

    # -- ownership of the data dir ----------------------------------------------------------

    def _take_ownership(self) -> bool:
        """Hold the data dir's lock (True), or note the owner and keep retrying (False)."""
        assert self.ownership is not None
        if self.ownership.acquire():
            if self._refused:
                self.log.warning(
                    "kernel_sessions: the data dir's previous owner (%s) is gone; "
                    "this server now manages its sessions",
                    self._owner.describe() if self._owner else "another server",
                )
            self._refused, self._owner = False, None
            return True
        self._owner = self.ownership.owner()
        if not self._refused:
            self._refused = True
            self.log.error(
                "kernel_sessions: %s already manages the sessions in %s; this server manages "
                "none of them (its sessions API answers 503 %s) and takes over once that server "
                "is gone (retrying every %.3g s)",
                self._owner_text(),
                self.ownership.data_dir,
                NOT_OWNER,
                self.owner_retry_interval,
            )
        if self._retry_task is None or self._retry_task.done():
            self._retry_task = asyncio.ensure_future(self._retry_ownership())
        return False

    def _owner_text(self) -> str:
        return f"another server ({self._owner.describe()})" if self._owner else "another server"

    def _not_owner_error(self) -> ApiError:
        return ApiError(
            503,
            NOT_OWNER,
            f"kernel sessions on this data dir are managed by {self._owner_text()}; "
            "use that server, or stop it and this one takes over",
        )

    async def _retry_ownership(self) -> None:
        """Try the lock every ``owner_retry_interval`` s; start the manager once it is ours."""
        while not self._stopping and self._start_task is None:
            await asyncio.sleep(self.owner_retry_interval)
            if self._stopping or self._start_task is not None:
                return
            try:
                await self.ensure_started()
            except ApiError as e:
                if e.reason != NOT_OWNER:
                    self.log.error("kernel_sessions: the session manager failed to start: %s", e)
                    return
            else:
                return

    # -- lifecycle --------------------------------------------------------------------------

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the manager as soon as the server's loop runs: re-adopt kernels, warm pools."""
        try:
            await self.ensure_started()
        except ApiError as e:
            if e.reason != NOT_OWNER:  # not owning is logged (once) by _take_ownership
                self.log.error("kernel_sessions: the session manager failed to start: %s", e)
        except Exception:
            self.log.exception("kernel_sessions: the session manager failed to start")

    async def stop_extension(self) -> None:
        """Stop the manager before the server shuts kernels down (session kernels survive),
        then release the data dir. A server that never owned it has nothing to stop."""
        self._stopping = True
        metrics.uninstall(self.ks)
        retry, self._retry_task = self._retry_task, None
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        task, self._start_task = self._start_task, None
        try:
            if task is None or self.ks is None:
                return
            try:
                await task
            except Exception:
                self.log.warning(
                    "kernel_sessions: start had failed; stopping anyway", exc_info=True
                )
            try:
                await self.ks.stop()
            except Exception:  # the server's own shutdown must go on whatever happened here
                self.log.exception("kernel_sessions: stopping the session manager failed")
        finally:
            if self.ownership is not None:
                self.ownership.release()  # only after the registry is closed
