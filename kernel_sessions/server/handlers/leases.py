"""REST endpoint for owned sessions: ``…/sessions/{name}/lease`` (auto sessions of clients).

A client process creates its own session under a lease (``POST``), renews it well before it
lapses (``POST`` again, same owner), and ends it when done (``DELETE``). A process that dies
without releasing stops renewing; the session manager's reaper then ends the session once the
lease lapses. Only the owner may renew or release: a named session, or another process's, is
never taken over (409 ``lease_conflict``). Permissions are those of the sessions resource
(``write``).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_escape, url_path_join
from tornado import web

from kernel_sessions.core.errors import SessionExists, SessionNotFound
from kernel_sessions.core.models import validate_name
from kernel_sessions.server.handlers.base import ApiError, bad_request, finite_number
from kernel_sessions.server.handlers.session_base import SessionsBase

LEASE_FIELDS = frozenset({"owner", "lease_seconds", "kernel_name", "create"})
MAX_OWNER_CHARS = 256
MAX_LEASE_SECONDS = 24 * 3600.0


def check_owner(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_OWNER_CHARS:
        raise bad_request(
            f"owner must be a string of 1..{MAX_OWNER_CHARS} characters", "invalid_owner"
        )
    return value


def check_lease(value: Any) -> float | None:
    if value is None:
        return None
    if not finite_number(value) or not 0 < value <= MAX_LEASE_SECONDS:
        raise bad_request(
            f"lease_seconds must be a number in (0, {MAX_LEASE_SECONDS:g}]", "invalid_lease"
        )
    return float(value)


def conflict(name: str, owner: str | None) -> ApiError:
    held = f"owned by {owner!r}" if owner else "a named session without a lease"
    return ApiError(409, "lease_conflict", f"session {name!r} is {held}")


class LeaseHandler(SessionsBase):
    """Create-or-renew (POST) and release (DELETE) an owned session."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.json_object(LEASE_FIELDS, required=frozenset({"owner"}))
        validate_name(name)
        owner = check_owner(body["owner"])
        lease = check_lease(body.get("lease_seconds"))
        create = body.get("create", True)
        if not isinstance(create, bool):
            raise bad_request("create must be true or false", "invalid_body")
        ks = await self.manager()
        try:
            model = await ks.get(name)
        except SessionNotFound:
            if not create:
                raise
            model = None
        if model is None:
            kernel_name = (
                await self.known_kernel_name(body["kernel_name"]) if "kernel_name" in body else None
            )
            try:
                model = await ks.create(name, kernel_name, owner=owner, lease_seconds=lease)
            except SessionExists:  # created meanwhile by someone else: only its owner may renew
                model = await ks.get(name)
            else:
                self.set_header(
                    "Location",
                    url_path_join(
                        self.base_url, "api/kernel-sessions/sessions", url_escape(model.name)
                    ),
                )
                self.write_json(await self.render(model), status=201)
                return
        if model.owner != owner:
            raise conflict(name, model.owner)
        model = await ks.renew_lease(name, lease)
        self.write_json(await self.render(model))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        owner = check_owner(self.get_query_argument("owner", ""))
        ks = await self.manager()
        model = await ks.get(name)
        if model.owner != owner:
            raise conflict(name, model.owner)
        await ks.delete(name)
        self.set_status(204)
        self.finish()
