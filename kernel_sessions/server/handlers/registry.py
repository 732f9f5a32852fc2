"""REST endpoint for the health of the session registry: ``…/registry``.

A registry row that could not be read at startup (bad JSON, an unknown state, an invalid name)
is quarantined rather than stopping the server; a registry path that cannot be written falls
back to one beside it. Both are shown here, so a user sees what was set aside and why.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from kernel_sessions.server.handlers.session_base import SessionsBase


class RegistryHandler(SessionsBase):
    """The registry's state: ``{degraded, quarantined: [{name, reason, at}]}``."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ks = await self.manager()
        registry = ks.registry
        self.write_json(
            {
                "degraded": registry.degraded if registry is not None else None,
                "quarantined": ks.quarantined(),
            }
        )
