"""REST endpoints for the variables of a session (``…/sessions/{name}/variables[/{var}]``).

Listing is a ``read`` of ``kernel_sessions:variables``; reading a value is ``execute`` (it runs
code in the kernel: a repr or a pickle), changing one is ``write``, and changing one from dill
bytes is ``write`` and ``execute`` (unpickling runs code), checked before the bytes are read.
Variable names are checked here and again in the kernel; they are looked up, never evaluated.

A value the kernel cannot render (its ``__len__`` or repr raises inside the kernel's display
formatter) is a 422 ``unreadable``; a read the kernel does not answer in time is a 504
``timeout`` (the session can be interrupted to free the kernel) — never a 500.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Awaitable
from typing import Any, TypeVar

from jupyter_server.auth.decorator import authorized
from tornado import web

from kernel_sessions.core.errors import KernelSessionError
from kernel_sessions.core.variables import VariablesService
from kernel_sessions.server.handlers.base import (
    MAX_BODY_BYTES,
    ApiError,
    KernelSessionsHandler,
    bad_request,
    has_lone_surrogate,
)

VARIABLES_RESOURCE = "kernel_sessions:variables"
FORMATS = ("json", "repr", "pickle")
MAX_PICKLE_BODY_BYTES = 64 << 20  # a PUT of dill bytes may exceed the JSON body limit
MAX_FILTER_CHARS = 200
OCTET = "application/octet-stream"
T = TypeVar("T")


def check_var(var: str) -> str:
    if not var.isidentifier() or keyword.iskeyword(var):
        raise ApiError(
            400,
            "invalid_name",
            f"{var[:80]!r} is not a variable name (names are looked up, never evaluated)",
        )
    return var


class VariablesBase(KernelSessionsHandler):
    auth_resource = VARIABLES_RESOURCE

    async def service(self) -> VariablesService:
        return (await self.manager()).vars

    async def in_kernel(self, call: Awaitable[T], name: str, var: str | None = None) -> T:
        """``call`` (a request the variables service sends to the kernel), its failures as
        API errors: the session layer's keep theirs; a kernel that does not answer in time is a
        504; an answer that cannot be decoded (the kernel's formatter failed on the value) is a
        422 naming what failed."""
        what = f"variable {var!r} of session {name!r}" if var else f"session {name!r}"
        try:
            return await call
        except KernelSessionError:
            raise
        except TimeoutError:
            raise ApiError(
                504,
                "timeout",
                f"{what}: the kernel did not answer in time (a value whose repr or "
                "length never returns, or a running cell); interrupt the session "
                "to free its kernel",
            ) from None
        except (RuntimeError, KeyError, ValueError, SyntaxError) as e:
            # RuntimeError: the kernel's own "ename: evalue"; KeyError: no text/plain (the
            # display formatter failed); ValueError/SyntaxError: an answer that does not parse
            detail = str(e)[:160] if type(e) is RuntimeError else type(e).__name__
            raise ApiError(
                422,
                "unreadable",
                f"{what}: the kernel could not render the answer ({detail}); "
                "try format=repr or format=pickle",
            ) from None


class VariablesHandler(VariablesBase):
    """The session's user variables, listed without running a cell."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        filt = self.get_query_argument("filter", None)
        if filt is not None and len(filt) > MAX_FILTER_CHARS:
            raise bad_request(
                f"filter is longer than {MAX_FILTER_CHARS} characters", "invalid_query"
            )
        listing = await self.in_kernel(
            (await self.service()).list(
                name, include_modules=self.flag("include_modules"), filter=filt or None
            ),
            name,
        )
        self.write_json(listing)


class VariableHandler(VariablesBase):
    """One variable: read (json, repr or dill bytes), set (JSON or dill bytes), delete."""

    def _pickled(self) -> bool:
        return self.request.method == "PUT" and self.request.headers.get(
            "Content-Type", ""
        ).startswith(OCTET)

    def body_limit(self) -> int:
        """Dill bodies may exceed the JSON limit, but only octet-stream PUTs."""
        return MAX_PICKLE_BODY_BYTES if self._pickled() else super().body_limit()

    def upload_actions(self) -> tuple[tuple[str, str], ...]:
        """Dill bytes (up to 64 MiB) are only read from a user who may unpickle them."""
        if self._pickled():
            return (("write", VARIABLES_RESOURCE), ("execute", VARIABLES_RESOURCE))
        return ()

    @web.authenticated
    @authorized(action="execute")
    async def get(self, name: str, var: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in FORMATS:
            raise bad_request(f"format must be one of {', '.join(FORMATS)}", "invalid_format")
        var = check_var(var)
        result = await self.in_kernel((await self.service()).get(name, var, fmt), name, var)
        if fmt == "pickle":
            self.set_header("Cache-Control", "no-store")
            self.finish(result["data"], set_content_type=OCTET)
            return
        self.write_json(result)

    @web.authenticated
    @authorized
    async def put(self, name: str, var: str) -> None:
        """Set a variable. Dill bytes are unpickled in the kernel, which runs code there: that
        needs ``execute`` as well as ``write``."""
        check_var(var)
        if self._pickled():
            await self.require("execute")
        svc = await self.service()
        if self._pickled():
            result = await self.in_kernel(svc.set(name, var, pickled=self.body), name, var)
        else:
            value = self.json_value()
            result = await self.in_kernel(svc.set(name, var, value=value), name, var)
        self.write_json(result)

    @web.authenticated
    @authorized
    async def delete(self, name: str, var: str) -> None:
        var = check_var(var)
        await self.in_kernel((await self.service()).delete(name, var), name, var)
        self.set_status(204)
        self.finish()

    def json_value(self) -> Any:
        """The body as any JSON value (the new value of the variable)."""
        raw = self.body
        if not raw.strip():
            raise bad_request(
                f"the body must be a JSON value (or dill bytes as {OCTET})", "invalid_body"
            )
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", "JSON value too large; send dill bytes")
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise bad_request(
                f"the body is not valid JSON: {str(e)[:200]}", "invalid_json"
            ) from None
        if has_lone_surrogate(value):
            raise bad_request(
                "the value holds a string that is not valid Unicode text", "invalid_text"
            )
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")
