"""Checkpoint ids: ``<UTC time to the microsecond>-<8 hex>``. An id becomes a file name and
its string order is time order, which the store relies on to find the newest checkpoint and
to keep ids of a session strictly increasing; so what counts as an id, how one is made and how
its time is read back are kept together here, apart from the store that uses them.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone

from kernel_sessions.core.errors import CheckpointError

ID_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
CHECKPOINT_ID_RULE = r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{8}$"
ID_RE = re.compile(CHECKPOINT_ID_RULE)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def validate_checkpoint_id(checkpoint_id: object) -> str:
    """Return ``checkpoint_id`` if it is one we could have generated; it becomes a file name."""
    if not isinstance(checkpoint_id, str) or not ID_RE.fullmatch(checkpoint_id):
        raise CheckpointError(
            f"invalid checkpoint id {str(checkpoint_id)[:80]!r}: ids match {CHECKPOINT_ID_RULE}",
            reason="invalid_checkpoint_id",
        )
    return checkpoint_id


def new_checkpoint_id(micros: int) -> str:
    """``<UTC time to the microsecond>-<8 hex>``: string order is time order."""
    stamp = (_EPOCH + timedelta(microseconds=micros)).strftime(ID_TIME_FORMAT)
    return f"{stamp}-{secrets.token_hex(4)}"


def id_micros(checkpoint_id: str) -> int:
    """The time in an id, in microseconds since the epoch."""
    stamp = datetime.strptime(checkpoint_id.split("-")[0], ID_TIME_FORMAT)
    return (stamp.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)
