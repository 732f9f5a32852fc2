"""Named, persistent, pooled IPython kernel sessions for Jupyter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kernel_sessions.core.errors import (
    InvalidSessionName,
    InvalidTransition,
    KernelLimitError,
    KernelSessionError,
    SessionExists,
    SessionNotFound,
)

if TYPE_CHECKING:
    from kernel_sessions.client import connect, connect_async
    from kernel_sessions.core.manager import KernelSessionManager
    from kernel_sessions.core.models import SessionModel
    from kernel_sessions.pool import PooledMappingKernelManager, PooledMultiKernelManager, PoolMixin

# Imported on first use: the manager pulls in jupyter_server, which takes seconds to import,
# and the command line and the client need none of it.
_LAZY = {
    "connect": "client",  # kernel_sessions.connect("etl"), as scripts use it
    "connect_async": "client",
    "KernelSessionManager": "core.manager",
    "SessionModel": "core.models",
    "PoolMixin": "pool",
    "PooledMappingKernelManager": "pool",
    "PooledMultiKernelManager": "pool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kernel_sessions' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "InvalidSessionName",
    "InvalidTransition",
    "KernelLimitError",
    "KernelSessionError",
    "KernelSessionManager",
    "PoolMixin",
    "PooledMappingKernelManager",
    "PooledMultiKernelManager",
    "SessionExists",
    "SessionModel",
    "SessionNotFound",
    "connect",
    "connect_async",
]


def _jupyter_server_extension_points() -> list[dict]:
    """The jupyter_server extension (imported lazily: the package works without a server)."""
    from kernel_sessions.server.extension import KernelSessionsApp

    return [{"module": "kernel_sessions.server.extension", "app": KernelSessionsApp}]
