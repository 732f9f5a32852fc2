"""REST endpoints under ``{base_url}api/kernel-sessions/`` (contract: ``api.yaml``).

One handler per endpoint; the route table is ``routes.py``. Every method is
``@web.authenticated`` + ``@authorized`` on ``kernel_sessions:sessions`` or
``kernel_sessions:pool``; ``execute`` and ``connection`` need the ``execute`` action because
they run code in, or hand out the key of, a kernel. A fork (``POST sessions`` with ``from``)
needs what restoring needs (``execute`` on ``kernel_sessions:checkpoints``) besides the
``write`` of creating a session; the catch-all route (a JSON 404) is authorized too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner
from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_escape, url_path_join
from tornado import web

from kernel_sessions.core import execution as execution
from kernel_sessions.core.models import SPEC_PREFIX, validate_name
from kernel_sessions.server import metrics as metrics
from kernel_sessions.server.handlers.base import (
    ApiError,
    KernelSessionsHandler,
    bad_request,
    finite_number,
)
from kernel_sessions.server.handlers.checkpoints import CHECKPOINTS_RESOURCE, check_source
from kernel_sessions.server.handlers.session_base import (
    MAX_KERNEL_NAME_CHARS,
    SESSIONS_RESOURCE,
    SessionsBase,
    session_json,
)

API_ROOT = "api/kernel-sessions"
SPEC_PATH = Path(__file__).parents[1] / "api.yaml"  # server/api.yaml
POOL_RESOURCE = "kernel_sessions:pool"
DEFAULT_EXECUTE_TIMEOUT = 30.0  # seconds
MAX_EXECUTE_TIMEOUT = 3600.0  # seconds
MAX_TTL_SECONDS = 366 * 24 * 3600.0
MAX_TAGS = 32
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
MAX_POOL_SIZE = 32  # spares per kernelspec

CREATE_FIELDS = frozenset({"name", "kernel_name", "ttl", "tags", "from"})
UPDATE_FIELDS = frozenset({"name", "ttl", "tags"})
EXECUTE_FIELDS = frozenset({"code", "timeout"})
POOL_FIELDS = frozenset({"sizes"})


# -- field checks ---------------------------------------------------------------------------


def check_ttl(value: Any) -> float | None:
    if value is None:
        return None
    if not finite_number(value) or not 0 < value <= MAX_TTL_SECONDS:
        raise bad_request(
            f"ttl must be null or a number of seconds in (0, {MAX_TTL_SECONDS:g}]", "invalid_ttl"
        )
    return float(value)


def check_tags(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_TAGS:
        raise bad_request(
            f"tags must be an object of at most {MAX_TAGS} string values", "invalid_tags"
        )
    for k, v in value.items():
        if (
            not 0 < len(k) <= MAX_TAG_KEY_CHARS
            or not isinstance(v, str)
            or len(v) > MAX_TAG_VALUE_CHARS
        ):
            raise bad_request(
                f"tag keys must have 1..{MAX_TAG_KEY_CHARS} characters and values be strings of "
                f"at most {MAX_TAG_VALUE_CHARS}",
                "invalid_tags",
            )
    return dict(value)


def check_name(value: Any) -> str:
    return validate_name(value)  # InvalidSessionName -> 400 showing the rule


# -- endpoints ------------------------------------------------------------------------------


class SpecHandler(KernelSessionsHandler):
    """The OpenAPI document of this API (the contract the tests check responses against)."""

    auth_resource = SESSIONS_RESOURCE

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(SPEC_PATH.read_text(encoding="utf-8"), set_content_type="text/x-yaml")


class SessionsHandler(SessionsBase):
    """List sessions; create one (the kernel is a warm spare, ready when this answers)."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ks = await self.manager()
        notebooks = await self.notebooks()
        self.write_json([session_json(m, self.kernel_manager, notebooks) for m in await ks.list()])

    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_object(CREATE_FIELDS, required=frozenset({"name"}))
        name = check_name(body["name"])
        kernel_name = (
            await self.known_kernel_name(body["kernel_name"]) if "kernel_name" in body else None
        )
        ttl = check_ttl(body.get("ttl"))
        tags = check_tags(body["tags"]) if "tags" in body else None
        source = check_source(body["from"]) if "from" in body else None
        if source is not None:  # a fork restores a checkpoint: what restore needs
            await self.require("execute", CHECKPOINTS_RESOURCE)
        ks = await self.manager()
        t0 = time.perf_counter()
        if source is None:
            model = await ks.create(name, kernel_name, ttl=ttl, tags=tags)
        else:  # a fork: a new session from another session's checkpoint
            model = (
                await ks.restore(
                    source[0], source[1], into=name, kernel_name=kernel_name, ttl=ttl, tags=tags
                )
            )["session"]
        metrics.CREATE_SECONDS.labels(model.kernel_name).observe(time.perf_counter() - t0)
        self.set_header(
            "Location", url_path_join(self.base_url, API_ROOT, "sessions", url_escape(model.name))
        )
        self.write_json(await self.render(model), status=201)


class SessionHandler(SessionsBase):
    """One session: read it, rename it or change its ttl/tags, delete it."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        ks = await self.manager()
        self.write_json(await self.render(await ks.get(name)))

    @web.authenticated
    @authorized
    async def patch(self, name: str) -> None:
        body = self.json_object(UPDATE_FIELDS, required=frozenset())
        new_name = check_name(body["name"]) if "name" in body else None
        changes: dict[str, Any] = {}
        if "ttl" in body:
            changes["ttl"] = check_ttl(body["ttl"])
        if "tags" in body:
            changes["tags"] = check_tags(body["tags"])
        ks = await self.manager()
        model = await ks.get(name)
        if new_name is not None and new_name != model.name:
            model = await ks.rename(model.name, new_name)
        if changes:
            model = await ks.update(model.name, **changes)
        self.write_json(await self.render(model))

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        purge = self.flag("purge")
        ks = await self.manager()
        await ks.delete(name, purge=purge)
        self.set_status(204)
        self.finish()


class RestartHandler(SessionsBase):
    """Restart the session's kernel in place: same kernel id, empty namespace."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.json_object(frozenset())
        ks = await self.manager()
        self.write_json(await self.render(await ks.restart(name)))


class InterruptHandler(SessionsBase):
    """Interrupt whatever the session's kernel is running."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        self.json_object(frozenset())
        ks = await self.manager()
        await ks.interrupt(name)
        self.write_json(await self.render(await ks.get(name)))


class WakeHandler(SessionsBase):
    """Wake a hibernated session now (its kernel restarts from its checkpoint), as attaching
    would; a running session is answered as it is. Restoring runs code: ``execute``."""

    @web.authenticated
    @authorized(action="execute")
    async def post(self, name: str) -> None:
        self.json_object(frozenset())
        ks = await self.manager()
        await ks.attach(name)
        self.write_json(await self.render(await ks.get(name)))


class ExecuteHandler(SessionsBase):
    """Run code in the session and answer with its outputs (for scripts and the CLI)."""

    @web.authenticated
    @authorized(action="execute")
    async def post(self, name: str) -> None:
        body = self.json_object(EXECUTE_FIELDS, required=frozenset({"code"}))
        code = body["code"]
        if not isinstance(code, str):
            raise bad_request("code must be a string", "invalid_code")
        timeout = body.get("timeout", DEFAULT_EXECUTE_TIMEOUT)
        if not finite_number(timeout) or not 0 < timeout <= MAX_EXECUTE_TIMEOUT:
            raise bad_request(
                f"timeout must be a number of seconds in (0, {MAX_EXECUTE_TIMEOUT:g}]",
                "invalid_timeout",
            )
        ks = await self.manager()
        await ks.attach(name)  # wakes a hibernated session
        km = self.live_kernel(await ks.get(name))
        result = await execution.execute(km, code, float(timeout), lambda: ks.interrupt(name))
        self.write_json(result)


class ConnectionHandler(SessionsBase):
    """Connection info (with the signing key) of a local session kernel; never logged."""

    @web.authenticated
    @authorized(action="execute")
    async def get(self, name: str) -> None:
        ks = await self.manager()
        await ks.attach(name)  # wakes a hibernated session
        model = await ks.get(name)
        km = self.live_kernel(model)
        if not isinstance(km.provisioner, LocalProvisioner):
            raise ApiError(
                409,
                "not_local",
                f"session {name!r} runs on a remote provisioner; connect through the "
                "server's kernel websocket instead",
            )
        info = dict(km.get_connection_info(session=False))
        key = info.get("key", b"")
        info["key"] = key.decode() if isinstance(key, bytes) else key
        info["kernel_name"] = model.kernel_name
        info["kernel_id"] = model.kernel_id
        self.write_json(info)


class PoolHandler(KernelSessionsHandler):
    """Warm pool statistics; resize pools live."""

    auth_resource = POOL_RESOURCE

    def pool_json(self, ks: Any) -> dict[str, Any]:
        return {
            "pools": ks.pool_stats(),
            "max_kernels": getattr(self.kernel_manager, "max_kernels", 0) or None,
        }

    @web.authenticated
    @authorized
    async def get(self) -> None:
        ks = await self.manager()
        self.write_json(self.pool_json(ks))

    @web.authenticated
    @authorized
    async def patch(self) -> None:
        body = self.json_object(POOL_FIELDS, required=POOL_FIELDS)
        sizes = body["sizes"]
        if not isinstance(sizes, dict):
            raise bad_request(
                "sizes must be an object of kernelspec name -> spares", "invalid_sizes"
            )
        specs = await ensure_async(self.kernel_spec_manager.find_kernel_specs())
        for spec, n in sizes.items():
            if spec.startswith(SPEC_PREFIX) or spec not in specs:
                raise bad_request(
                    f"no kernelspec named {repr(spec)[:MAX_KERNEL_NAME_CHARS]}",
                    "unknown_kernel_name",
                )
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_POOL_SIZE:
                raise bad_request(
                    f"pool size of {spec!r} must be an integer in 0..{MAX_POOL_SIZE}",
                    "invalid_sizes",
                )
        km = self.kernel_manager
        if not hasattr(km, "pool_sizes"):
            raise ApiError(409, "no_pool", "the server's kernel manager has no warm pool")
        ks = await self.manager()
        merged = {**km.pool_sizes, **sizes}
        km.pool_sizes = {k: v for k, v in merged.items() if v > 0}
        self.write_json(self.pool_json(ks))


class NotFoundHandler(KernelSessionsHandler):
    """Anything else under the API root (the root itself too): a JSON 404 rather than an HTML
    page, for an authenticated user with ``read``; streamed like every route of ours, so a
    large body sent to no endpoint is never buffered either."""

    @web.authenticated
    @authorized(action="read")
    def get(self, rest: str | None = None) -> None:
        raise ApiError(404, "not_found", f"no endpoint {API_ROOT}/{(rest or '')[:100]}")

    post = patch = put = delete = get
