"""Kernel websockets with TCP_NODELAY.

Tornado leaves Nagle's algorithm on and jupyter_server never turns it off, so a small
execute_request/reply exchange over a kernel websocket waits on delayed ACKs: ~44 ms per round
trip on loopback instead of ~3 ms. ``ServerApp.kernel_websocket_connection_class`` is the
supported hook: the connection is created per websocket and ``connect`` runs once the websocket
is open, which is the first moment its socket exists.
"""

from __future__ import annotations

from jupyter_server.services.kernels.connection.channels import (
    ZMQChannelsWebsocketConnection,
)


class NoDelayWebsocketConnection(ZMQChannelsWebsocketConnection):
    """``ZMQChannelsWebsocketConnection`` that disables Nagle on its websocket."""

    def connect(self):  # type: ignore[no-untyped-def]
        handler = self.websocket_handler
        if handler is not None and handler.ws_connection is not None:
            handler.set_nodelay(True)
        return super().connect()
