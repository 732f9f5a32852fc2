"""Named, persistent, pooled IPython kernel sessions for Jupyter."""

from __future__ import annotations

from .errors import (
    InvalidSessionName,
    InvalidTransition,
    KernelLimitError,
    KernelSessionError,
    SessionExists,
    SessionNotFound,
)
from .manager import KernelSessionManager
from .models import SessionModel
from .pool import PooledMappingKernelManager, PooledMultiKernelManager, PoolMixin

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
]


def _jupyter_server_extension_points() -> list[dict]:
    """The jupyter_server extension (imported lazily: the package works without a server)."""
    from .extension import KernelSessionsApp

    return [{"module": "kernel_sessions.extension", "app": KernelSessionsApp}]
