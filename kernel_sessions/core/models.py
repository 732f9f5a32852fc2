"""Session names, states and the session model shared by every layer."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from kernel_sessions.core.errors import InvalidSessionName, InvalidTransition

NAME_RULE = "^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME_RE = re.compile(NAME_RULE)
NAME_DISPLAY_LIMIT = 80  # how much of a rejected name is echoed back


def validate_name(name: object) -> str:
    """Return ``name`` if it follows the rule, else raise InvalidSessionName showing the rule.

    ``fullmatch`` matters: ``$`` alone would accept a trailing newline.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in {".", ".."}:
        shown = repr(name)[:NAME_DISPLAY_LIMIT]
        raise InvalidSessionName(
            f"invalid session name {shown}: names must match {NAME_RULE} "
            "(lowercase letters, digits, '.', '_' and '-', starting with a letter or digit, "
            "at most 63 characters)"
        )
    return name


STARTING = "starting"
IDLE = "idle"
BUSY = "busy"
CHECKPOINTING = "checkpointing"
RESTORING = "restoring"
HIBERNATED = "hibernated"
UNRESPONSIVE = "unresponsive"  # the process is there but misses heartbeats (stopped, frozen)
DEAD = "dead"
DELETED = "deleted"
STATES = (STARTING, IDLE, BUSY, CHECKPOINTING, RESTORING, HIBERNATED, UNRESPONSIVE, DEAD, DELETED)
LIVE = (IDLE, BUSY)  # a kernel that answers and holds the session's namespace
HAS_KERNEL = frozenset({IDLE, BUSY, CHECKPOINTING, RESTORING})  # running, answering, attachable
GONE = frozenset({DEAD, DELETED, HIBERNATED})  # no kernel to attach to

SPEC_PREFIX = "session."  # kernelspec names that stand for sessions, not for kernels
DISPLAY_SUFFIX = " (session)"  # how such a kernelspec is shown


def spec_name(session: str) -> str:
    """The kernelspec name under which session ``session`` is offered."""
    return SPEC_PREFIX + validate_name(session)


def session_name_of(kernel_name: object) -> str | None:
    """The session a kernelspec name points at, or None for an ordinary kernelspec.

    Raises InvalidSessionName (a 400 in the API) when the part after ``session.`` breaks the
    naming rule, so ``session.Bad/..`` never reaches a lookup or a path.
    """
    if not isinstance(kernel_name, str) or not kernel_name.startswith(SPEC_PREFIX):
        return None
    return validate_name(kernel_name[len(SPEC_PREFIX) :])


# from-state -> allowed to-states; see docs/architecture.md.
# ``starting`` is also the way back after a restart (manual or automatic).
TRANSITIONS: dict[str, frozenset[str]] = {
    STARTING: frozenset({IDLE, BUSY, RESTORING, DEAD, DELETED}),
    IDLE: frozenset(
        {BUSY, CHECKPOINTING, RESTORING, HIBERNATED, STARTING, UNRESPONSIVE, DEAD, DELETED}
    ),
    BUSY: frozenset({IDLE, CHECKPOINTING, RESTORING, STARTING, UNRESPONSIVE, DEAD, DELETED}),
    CHECKPOINTING: frozenset({IDLE, BUSY, DEAD, DELETED}),
    RESTORING: frozenset({IDLE, BUSY, DEAD, DELETED}),
    HIBERNATED: frozenset({RESTORING, STARTING, DEAD, DELETED}),
    UNRESPONSIVE: frozenset({IDLE, BUSY, STARTING, DEAD, DELETED}),
    DEAD: frozenset({STARTING, RESTORING, DELETED}),
    DELETED: frozenset(),
}


def check_transition(name: str, old: str, new: str) -> None:
    if new not in TRANSITIONS.get(old, frozenset()):
        raise InvalidTransition(f"session {name!r} cannot go from {old!r} to {new!r}")


@dataclass
class SessionModel:
    """One session as the registry stores it and every API returns it."""

    name: str
    kernel_id: str
    kernel_name: str
    state: str = STARTING
    reason: str = ""
    owner: str | None = None
    lease_expires: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None
    created: float = 0.0
    last_activity: float = 0.0
    restarts: int = 0
    last_checkpoint: str | None = None
    connection_info: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    pid_create_time: float | None = None
    cwd: str | None = None
    # a token new with every session of a name: registry writes match it, so a writer holding
    # a session that was deleted (and its name taken again) cannot overwrite the new row
    generation: str = ""

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """Plain dict; the connection key is left out unless ``secrets``."""
        d = asdict(self)
        d.pop("generation", None)
        if not secrets:
            d.pop("connection_info", None)
        return d
