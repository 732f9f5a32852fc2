"""Warm kernel pools: drop-in multi-kernel managers for jupyter_client and jupyter_server that
hand out an already-started kernel instead of launching one.

Built on the core's kernel calls and watchers only; nothing here knows about sessions.
"""

from __future__ import annotations

from kernel_sessions.pool.managers import (
    PooledMappingKernelManager,
    PooledMultiKernelManager,
    PoolMixin,
)

__all__ = ["PoolMixin", "PooledMappingKernelManager", "PooledMultiKernelManager"]
