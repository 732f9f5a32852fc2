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
"""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.gateway.gateway_client import GatewayClient
from traitlets import Unicode

from . import metrics
from .handlers_base import APP_SETTINGS_KEY, SETTINGS_KEY, ApiError
from .manager import POOL_SCHEMA_ID, SCHEMA_DIR, STATE_SCHEMA_ID, KernelSessionManager

EXTENSION_NAME = "kernel_sessions"
# The kernel manager the extension installs (see jupyter_config/…/kernel_sessions.json too).
KERNEL_MANAGER_CLASS = "kernel_sessions.server_kernels.SessionMappingKernelManager"
WEBSOCKET_CONNECTION_CLASS = "kernel_sessions.nodelay.NoDelayWebsocketConnection"
KERNEL_SPEC_MANAGER_CLASS = "kernel_sessions.kernelspecs.SessionKernelSpecManager"
STARTUP_TIMEOUT = 120.0  # seconds a request waits for the manager to finish starting


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

    ks: KernelSessionManager | None = None
    _start_task: asyncio.Task | None = None
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
        for trait, ours in (("kernel_manager_class", KERNEL_MANAGER_CLASS),
                            ("kernel_websocket_connection_class", WEBSOCKET_CONNECTION_CLASS),
                            ("kernel_spec_manager_class", KERNEL_SPEC_MANAGER_CLASS)):
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
            parent=self, log=self.log, kernel_manager=sa.kernel_manager,
            event_logger=sa.event_logger, root_dir=sa.root_dir, **kwargs,
        )
        sa.kernel_manager.kernel_sessions = self.ks
        sa.kernel_spec_manager.kernel_sessions = self.ks
        self.settings[SETTINGS_KEY] = self.ks
        self.settings[APP_SETTINGS_KEY] = self
        metrics.install(self.ks)

    def initialize_handlers(self) -> None:
        from .handlers import default_handlers

        self.handlers.extend(default_handlers)

    # -- lifecycle --------------------------------------------------------------------------

    async def ensure_started(self) -> KernelSessionManager:
        """Start the session manager once; concurrent callers share the one start."""
        if self.ks is None or self._stopping:
            raise ApiError(503, "unavailable",
                           "kernel sessions are not available (server stopping)")
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self.ks.start())
        try:
            await asyncio.wait_for(asyncio.shield(self._start_task), STARTUP_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            raise ApiError(503, "unavailable", "kernel sessions are still starting") from None
        except Exception as e:  # logged once by _start_jupyter_server_extension
            raise ApiError(503, "unavailable", f"kernel sessions failed to start: {e}") from e
        return self.ks

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the manager as soon as the server's loop runs: re-adopt kernels, warm pools."""
        try:
            await self.ensure_started()
        except Exception:
            self.log.exception("kernel_sessions: the session manager failed to start")

    async def stop_extension(self) -> None:
        """Stop the manager before the server shuts kernels down (session kernels survive)."""
        self._stopping = True
        metrics.uninstall(self.ks)
        task, self._start_task = self._start_task, None
        if task is None or self.ks is None:
            return
        try:
            await task
        except Exception:
            self.log.warning("kernel_sessions: start had failed; stopping anyway", exc_info=True)
        await self.ks.stop()
