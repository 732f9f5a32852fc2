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


class SessionBusy(KernelSessionError):
    """A running cell did not finish within the time an operation may wait for idle."""

    reason = "busy"
    status = 409


class KernelLimitError(KernelSessionError, RuntimeError):
    reason = "kernel_limit"
    status = 429


class CheckpointError(KernelSessionError):
    """A checkpoint operation refused; ``reason`` may be narrowed per instance."""

    reason = "checkpoint_error"
    status = 400

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class CheckpointNotFound(CheckpointError, KeyError):
    reason = "checkpoint_not_found"
    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "checkpoint not found"


class CheckpointInvalid(CheckpointError):
    """Unusable checkpoint: "tampered", "wrong_session", "wrong_id", "missing_blob", "corrupt"."""

    reason = "invalid_checkpoint"
    status = 409


class CheckpointFailed(CheckpointError):
    """The kernel could not take or apply a checkpoint (it died, or the snapshot code failed);
    the previous checkpoints are intact."""

    reason = "checkpoint_failed"
    status = 409


class CheckpointStorageFull(CheckpointError):
    """The checkpoint store ran out of space (ENOSPC, EDQUOT): HTTP 507 Insufficient Storage.
    Either nothing was written, or the checkpoint was committed marked partial (the message
    says which); earlier checkpoints are intact either way."""

    reason = "storage_full"
    status = 507


class CheckpointStorageError(CheckpointError):
    """The checkpoint store cannot be written (read-only, permissions, I/O error): an admin
    must fix it; earlier checkpoints are intact."""

    reason = "storage_error"
    status = 503


class CheckpointPartial(CheckpointError):
    """An operation that must not lose variables (hibernation) met a partial checkpoint: some
    variable could not be saved, so the kernel keeps running."""

    reason = "checkpoint_partial"
    status = 409


class CheckpointUnverifiable(CheckpointInvalid):
    """A session woke or was restored into an empty namespace: it has checkpoints, but none of
    them verifies (signature, deletion ledger and blobs)."""

    reason = "no_valid_checkpoint"
    status = 409


class CheckpointKeyError(CheckpointError):
    """The HMAC key file is unsafe or unreadable: an admin must fix it (not the client's fault,
    not a bug either, hence 503 rather than 4xx/500)."""

    reason = "checkpoint_key"
    status = 503


class KernelFailed(KernelSessionError, RuntimeError):
    """A session's kernel died or did not answer while it was being started or attached."""

    reason = "kernel_failed"
    status = 503
