"""Errors of the session layer.

Every error carries a short machine-readable ``reason`` so that the REST layer can turn it into
``{"message", "reason"}`` with a fitting status without string matching.
"""

from __future__ import annotations


class KernelSessionError(Exception):
    """Base class: a failure the caller can act on (never a bug)."""

    reason = "error"
    status = 400


class InvalidSessionName(KernelSessionError, ValueError):
    reason = "invalid_name"
    status = 400


class SessionExists(KernelSessionError):
    reason = "exists"
    status = 409


class SessionNotFound(KernelSessionError, KeyError):
    reason = "not_found"
    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "session not found"


class InvalidTransition(KernelSessionError):
    reason = "invalid_state"
    status = 409


class KernelLimitError(KernelSessionError, RuntimeError):
    reason = "kernel_limit"
    status = 429
