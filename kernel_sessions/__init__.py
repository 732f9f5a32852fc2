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
