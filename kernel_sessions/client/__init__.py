"""Python clients: the REST API (sync and async), server discovery, and jupyter_client kernel
clients attached to sessions by name (``connect("etl")``), with auto sessions held by a lease.

Needs neither jupyter_server nor the core: scripts import this in milliseconds.
"""

from __future__ import annotations

from kernel_sessions.client.attach import (
    AsyncKernelSessionsClient,
    AsyncSessionKernelClient,
    ClientError,
    KernelSessionsClient,
    ServerNotFound,
    SessionKernelClient,
    auto_session,
    connect,
    connect_async,
    pull,
    push,
    release,
)

__all__ = [
    "AsyncKernelSessionsClient",
    "AsyncSessionKernelClient",
    "ClientError",
    "KernelSessionsClient",
    "ServerNotFound",
    "SessionKernelClient",
    "auto_session",
    "connect",
    "connect_async",
    "pull",
    "push",
    "release",
]
