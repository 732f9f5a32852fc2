"""REST endpoints for checkpoints (``…/sessions/{name}/checkpoints[/{id}[/restore]]``).

Resource ``kernel_sessions:checkpoints``: listing and reading are ``read``, taking and deleting
are ``write``, restoring is ``execute`` (it unpickles into a kernel — only after the manifest's
signature and every blob's hash checked out). A fork (restore ``into`` a new session) also
creates a session: ``write`` on ``kernel_sessions:sessions``, as ``POST sessions`` with
``from`` needs, so both ways of forking ask for the same permissions.
"""

from __future__ import annotations

import keyword
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from kernel_sessions.checkpoint.store import MAX_LABEL_CHARS, validate_checkpoint_id
from kernel_sessions.core.models import validate_name
from kernel_sessions.server.handlers.base import bad_request, finite_number, isotime
from kernel_sessions.server.handlers.session_base import SESSIONS_RESOURCE, SessionsBase

CHECKPOINTS_RESOURCE = "kernel_sessions:checkpoints"
MAX_VARIABLES = 10_000  # names in one request
MAX_WAIT_SECONDS = 3600.0
CHECKPOINT_FIELDS = frozenset({"label", "variables", "timeout"})
RESTORE_FIELDS = frozenset({"into", "variables", "timeout"})
SOURCE_FIELDS = frozenset({"session", "checkpoint"})


def check_variables(value: Any) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_VARIABLES
        or not all(
            isinstance(v, str) and v.isidentifier() and not keyword.iskeyword(v) for v in value
        )
    ):
        raise bad_request(
            f"variables must be a list of at most {MAX_VARIABLES} variable names",
            "invalid_variables",
        )
    return list(dict.fromkeys(value))


def check_timeout(value: Any) -> float:
    if not finite_number(value) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise bad_request(
            f"timeout must be a number of seconds in [0, {MAX_WAIT_SECONDS:g}]", "invalid_timeout"
        )
    return float(value)


def check_source(value: Any) -> tuple[str, str | None]:
    """``from`` of a session create: ``{session, checkpoint?}`` (default: its latest)."""
    if not isinstance(value, dict) or not set(value) <= SOURCE_FIELDS or "session" not in value:
        raise bad_request("from must be an object {session, checkpoint?}", "invalid_from")
    checkpoint = value.get("checkpoint")
    return (
        validate_name(value["session"]),
        None if checkpoint is None else validate_checkpoint_id(checkpoint),
    )


def summary_json(name: str, s: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint as listed (from ``CheckpointStore.list`` or a manifest)."""
    variables, skipped = s.get("variables"), s.get("skipped")
    out = {
        "id": s["id"],
        "session": name,
        "label": s.get("label"),
        "created": isotime(s.get("created")),
        "bytes": s.get("bytes"),
        "new_bytes": s.get("new_bytes"),
        "variable_count": len(variables) if isinstance(variables, dict) else variables,
        "skipped_count": len(skipped) if isinstance(skipped, list) else skipped,
        "valid": s.get("valid", True),
        "partial": bool(s.get("partial")),
    }
    if not out["valid"]:
        out.update(reason=s.get("reason"), message=s.get("message"))
    return out


def detail_json(manifest: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint in full: its variables and what was skipped, with reasons."""
    return {
        **summary_json(manifest["session"], manifest),
        "kernelspec": manifest.get("kernelspec"),
        "versions": manifest.get("versions", {}),
        "execution_count": manifest.get("execution_count"),
        "variables": [
            {
                "name": n,
                "type": e.get("type"),
                "serializer": e.get("serializer"),
                "size": e.get("size", 0),
            }
            for n, e in sorted(manifest.get("variables", {}).items())
        ],
        "skipped": [
            {"name": s.get("name"), "type": s.get("type"), "reason": s.get("reason")}
            for s in manifest.get("skipped", [])
        ],
    }


class CheckpointsBase(SessionsBase):
    auth_resource = CHECKPOINTS_RESOURCE


class CheckpointsHandler(CheckpointsBase):
    """A session's checkpoints: list them (newest first), or take one now."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        """``?deleted=true``: also when no session has that name now (a deleted session's
        checkpoints stay until purged; fork one into a new session with ``restore {into}``)."""
        deleted = self.flag("deleted")
        ks = await self.manager()
        if deleted:
            validate_name(name)
        else:
            ks.kernel_id(name)  # 404 for an unknown session, 400 for a bad name
        self.write_json([summary_json(name, s) for s in await ks.checkpoints(name)])

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.json_object(CHECKPOINT_FIELDS)
        label = body.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS):
            raise bad_request(
                f"label must be a string of at most {MAX_LABEL_CHARS} characters", "invalid_label"
            )
        variables = check_variables(body["variables"]) if "variables" in body else None
        timeout = check_timeout(body["timeout"]) if "timeout" in body else None
        ks = await self.manager()
        manifest = await ks.checkpoint(name, label=label, variables=variables, timeout=timeout)
        self.write_json(detail_json(manifest), status=201)


class CheckpointHandler(CheckpointsBase):
    """One checkpoint: its manifest (authenticated), or delete it."""

    @web.authenticated
    @authorized
    async def get(self, name: str, checkpoint_id: str) -> None:
        validate_checkpoint_id(checkpoint_id)
        ks = await self.manager()
        self.write_json(detail_json(await ks.checkpointing.get(name, checkpoint_id)))

    @web.authenticated
    @authorized
    async def delete(self, name: str, checkpoint_id: str) -> None:
        validate_checkpoint_id(checkpoint_id)
        ks = await self.manager()
        await ks.checkpointing.delete(validate_name(name), checkpoint_id)
        self.set_status(204)
        self.finish()


class RestoreHandler(CheckpointsBase):
    """Restore a checkpoint into its session, or fork it into a new session (``into``)."""

    @web.authenticated
    @authorized(action="execute")
    async def post(self, name: str, checkpoint_id: str) -> None:
        validate_checkpoint_id(checkpoint_id)
        body = self.json_object(RESTORE_FIELDS)
        into = validate_name(body["into"]) if body.get("into") is not None else None
        variables = check_variables(body["variables"]) if "variables" in body else None
        timeout = check_timeout(body["timeout"]) if "timeout" in body else None
        if into is not None:  # a fork creates a session, as POST sessions {from} does
            await self.require("write", SESSIONS_RESOURCE)
        ks = await self.manager()
        report = await ks.restore(
            name, checkpoint_id, into=into, variables=variables, timeout=timeout
        )
        self.write_json({**report, "session": await self.render(report["session"])})
