"""Rendering of sessions for the REST API, and the base of every session endpoint.

Kept apart from the route table so that endpoint modules (sessions, checkpoints) share one
rendering of a session, with its kernel, memory and attached notebooks.
"""

from __future__ import annotations

from typing import Any

import psutil
from jupyter_core.utils import ensure_async
from tornado import web

from kernel_sessions.core import models as M
from kernel_sessions.core.adoption import CREATE_TIME_SLACK
from kernel_sessions.core.models import SessionModel
from kernel_sessions.server.handlers.base import (
    ApiError,
    KernelSessionsHandler,
    bad_request,
    isotime,
)
from kernel_sessions.server.session_rows import ROW_TYPE as PICKER_ROW_TYPE  # no notebooks

SESSIONS_RESOURCE = "kernel_sessions:sessions"
MAX_KERNEL_NAME_CHARS = 128


# -- rendering ------------------------------------------------------------------------------


def memory_rss(model: SessionModel) -> int | None:
    """RSS of a local, live session kernel (the pid is checked against its create time)."""
    if not model.pid or model.state in (M.DEAD, M.HIBERNATED, M.DELETED):
        return None
    try:
        proc = psutil.Process(model.pid)
        drift = abs(proc.create_time() - (model.pid_create_time or proc.create_time()))
        if drift > CREATE_TIME_SLACK:  # the pid was recycled
            return None
        return int(proc.memory_info().rss)
    except psutil.Error:
        return None


def kernel_json(model: SessionModel, km: Any) -> dict[str, Any]:
    kid = model.kernel_id or None
    state: str | None = M.DEAD if model.state == M.DEAD else None
    connections = 0
    if kid and kid in km and model.state not in (M.DEAD, M.HIBERNATED):
        try:
            live = km.kernel_model(kid)
            state, connections = live.get("execution_state"), int(live.get("connections", 0))
        except (web.HTTPError, KeyError, AttributeError, TypeError):  # gone, or no activity record
            state = None
        state = state or model.state
    live_pid = model.pid if kid and model.state not in (M.DEAD, M.HIBERNATED, M.DELETED) else None
    return {
        "id": kid,
        "name": model.kernel_name,
        "execution_state": state,
        "connections": connections,
        "pid": live_pid,
    }


def session_json(model: SessionModel, km: Any, notebooks: dict[str, list]) -> dict[str, Any]:
    return {
        "name": model.name,
        "kernel": kernel_json(model, km),
        "state": model.state,
        "reason": model.reason,
        "created": isotime(model.created),
        "last_activity": isotime(model.last_activity),
        "restarts": model.restarts,
        "owner": model.owner,
        "lease_expires": isotime(model.lease_expires),
        "ttl": model.ttl,
        "tags": dict(model.tags),
        "memory_rss": memory_rss(model),
        "notebooks": notebooks.get(model.kernel_id, []) if model.kernel_id else [],
        "last_checkpoint": model.last_checkpoint,
    }


class SessionsBase(KernelSessionsHandler):
    """Shared by the session endpoints: rendering with attached notebooks."""

    auth_resource = SESSIONS_RESOURCE

    async def notebooks(self) -> dict[str, list]:
        """jupyter_server sessions (notebooks, consoles) by kernel id.

        Read straight from the session table: ``list_sessions()`` builds a full model (with a
        kernel model) per row, which made every GET O(rows) in Python.
        """
        out: dict[str, list] = {}
        sm = self.session_manager
        if not hasattr(sm, "cursor"):  # not jupyter_server's SQLite session manager
            rows = [
                {
                    "session_id": s["id"],
                    "kernel_id": (s.get("kernel") or {}).get("id"),
                    **{k: s.get(k) for k in ("path", "name", "type")},
                }
                for s in await ensure_async(sm.list_sessions())
            ]
        else:
            rows = sm.cursor.execute(
                "SELECT session_id, path, name, type, kernel_id FROM session"
            ).fetchall()
        for row in rows:
            if row["type"] == PICKER_ROW_TYPE or not row["kernel_id"]:
                continue
            out.setdefault(row["kernel_id"], []).append(
                {
                    "id": row["session_id"],
                    "path": row["path"],
                    "name": row["name"],
                    "type": row["type"],
                }
            )
        return out

    async def render(self, model: SessionModel) -> dict[str, Any]:
        return session_json(model, self.kernel_manager, await self.notebooks())

    def live_kernel(self, model: SessionModel) -> Any:
        if model.state in (M.DEAD, M.HIBERNATED) or model.kernel_id not in self.kernel_manager:
            raise ApiError(
                409,
                "invalid_state",
                f"session {model.name!r} has no running kernel ({model.state}: {model.reason})",
            )
        return self.kernel_manager.get_kernel(model.kernel_id)

    async def known_kernel_name(self, value: Any) -> str:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_KERNEL_NAME_CHARS:
            raise bad_request("kernel_name must be a kernelspec name", "invalid_kernel_name")
        specs = await ensure_async(self.kernel_spec_manager.find_kernel_specs())
        if value.startswith(M.SPEC_PREFIX) or value not in specs:
            shown = repr(value)[:MAX_KERNEL_NAME_CHARS]
            raise bad_request(
                f"no kernelspec named {shown}; known: {sorted(specs)[:20]}", "unknown_kernel_name"
            )
        return value
