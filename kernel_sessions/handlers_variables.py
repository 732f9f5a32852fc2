"""REST endpoints for the variables of a session (``…/sessions/{name}/variables[/{var}]``).

Listing is a ``read`` of ``kernel_sessions:variables``; reading a value is ``execute`` (it runs
code in the kernel: a repr or a pickle), changing one is ``write``. Variable names are checked
here and again in the kernel; they are looked up, never evaluated.
"""

from __future__ import annotations

import json
import keyword
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .handlers_base import MAX_BODY_BYTES, ApiError, KernelSessionsHandler, bad_request
from .variables import VariablesService

VARIABLES_RESOURCE = "kernel_sessions:variables"
FORMATS = ("json", "repr", "pickle")
MAX_PICKLE_BODY_BYTES = 64 << 20  # a PUT of dill bytes may exceed the JSON body limit
MAX_FILTER_CHARS = 200
OCTET = "application/octet-stream"
TRUE_WORDS = {"1", "true", "yes"}
FALSE_WORDS = {"", "0", "false", "no"}


def check_var(var: str) -> str:
    if not var.isidentifier() or keyword.iskeyword(var):
        raise ApiError(400, "invalid_name",
                       f"{var[:80]!r} is not a variable name (names are looked up, never "
                       "evaluated)")
    return var


class VariablesBase(KernelSessionsHandler):
    auth_resource = VARIABLES_RESOURCE

    async def service(self) -> VariablesService:
        return (await self.manager()).vars

    def flag(self, name: str) -> bool:
        raw = self.get_query_argument(name, "").lower()
        if raw not in TRUE_WORDS | FALSE_WORDS:
            raise bad_request(f"{name} must be true or false", "invalid_query")
        return raw in TRUE_WORDS


class VariablesHandler(VariablesBase):
    """The session's user variables, listed without running a cell."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        filt = self.get_query_argument("filter", None)
        if filt is not None and len(filt) > MAX_FILTER_CHARS:
            raise bad_request(f"filter is longer than {MAX_FILTER_CHARS} characters",
                              "invalid_query")
        listing = await (await self.service()).list(
            name, include_modules=self.flag("include_modules"), filter=filt or None)
        self.write_json(listing)


class VariableHandler(VariablesBase):
    """One variable: read (json, repr or dill bytes), set (JSON or dill bytes), delete."""

    async def prepare(self) -> None:  # type: ignore[override]
        """Allow dill bodies beyond the JSON limit, but only for octet-stream PUTs."""
        if self.request.method == "PUT" and self.request.headers.get("Content-Type", "").startswith(OCTET):
            size = len(self.request.body or b"")
            if size > MAX_PICKLE_BODY_BYTES:
                raise ApiError(413, "body_too_large",
                               f"pickled value of {size} bytes exceeds {MAX_PICKLE_BODY_BYTES}")
            await super(KernelSessionsHandler, self).prepare()
            return
        await super().prepare()

    @web.authenticated
    @authorized(action="execute")
    async def get(self, name: str, var: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise bad_request(f"format must be one of {', '.join(FORMATS)}", "invalid_format")
        result = await (await self.service()).get(name, check_var(var), fmt)
        if fmt == "pickle":
            self.set_header("Cache-Control", "no-store")
            self.finish(result["data"], set_content_type=OCTET)
            return
        self.write_json(result)

    @web.authenticated
    @authorized
    async def put(self, name: str, var: str) -> None:
        check_var(var)
        svc = await self.service()
        if self.request.headers.get("Content-Type", "").startswith(OCTET):
            result = await svc.set(name, var, pickled=self.request.body or b"")
        else:
            result = await svc.set(name, var, value=self.json_value())
        self.write_json(result)

    @web.authenticated
    @authorized
    async def delete(self, name: str, var: str) -> None:
        await (await self.service()).delete(name, check_var(var))
        self.set_status(204)
        self.finish()

    def json_value(self) -> Any:
        """The body as any JSON value (the new value of the variable)."""
        raw = self.request.body or b""
        if not raw.strip():
            raise bad_request("the body must be a JSON value (or dill bytes as "
                              f"{OCTET})", "invalid_body")
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", "JSON value too large; send dill bytes")
        try:
            return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise bad_request(f"the body is not valid JSON: {str(e)[:200]}", "invalid_json") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def routes(api_root: str, name: str) -> list[tuple[str, type]]:
    return [
        (rf"/{api_root}/sessions/{name}/variables", VariablesHandler),
        (rf"/{api_root}/sessions/{name}/variables/(?P<var>[^/]+)", VariableHandler),
    ]
