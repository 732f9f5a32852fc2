"""The REST layer's base handler: strict JSON bodies, one error mapping, the shared manager.

Every error leaves as ``{"message", "reason"}`` with a fitting 4xx: the session layer's errors
carry their own ``status``/``reason`` (``errors.py``), tornado's ``HTTPError`` (auth, routing)
keeps its status, and anything else is a 500 without a traceback in the body (logged once).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado.web import HTTPError

from .errors import KernelSessionError

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a body is a small JSON object (code to run included)
MAX_JSON_DEPTH = 32  # deeper bodies are rejected before any field is looked at
SETTINGS_KEY = "kernel_sessions"
APP_SETTINGS_KEY = "kernel_sessions_app"
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,40}")


class ApiError(KernelSessionError):
    """A request the API refuses, with its own status and machine-readable reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def bad_request(message: str, reason: str = "invalid_body") -> ApiError:
    return ApiError(400, reason, message)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _reason_slug(status: int) -> str:
    return _phrase(status).lower().replace(" ", "_").replace("-", "_")


def _depth(obj: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping early past ``limit``."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        value, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(value, dict):
            stack.extend((v, d + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, d + 1) for v in value)
    return deepest


def isotime(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC (``...Z``), as jupyter_server's own models show times."""
    if not ts:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


class KernelSessionsHandler(APIHandler):
    """Base of every kernel_sessions endpoint (subclasses set ``auth_resource``)."""

    auth_resource = "kernel_sessions:sessions"

    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        declared = self.request.headers.get("Content-Length", "0")
        size = max(len(self.request.body or b""), int(declared) if declared.isdigit() else 0)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large",
                           f"request body of {size} bytes exceeds {MAX_BODY_BYTES} bytes")

    # -- the manager ------------------------------------------------------------------------

    async def manager(self) -> Any:
        """The started ``KernelSessionManager`` (starting it on first use)."""
        app = self.settings.get(APP_SETTINGS_KEY)
        if app is None:
            raise ApiError(503, "unavailable", "the kernel_sessions extension is not loaded")
        return await app.ensure_started()

    # -- bodies -----------------------------------------------------------------------------

    def json_object(self, allowed: frozenset[str], required: frozenset[str] = frozenset()) -> dict:
        """The body as a JSON object with only ``allowed`` keys and all ``required`` ones."""
        raw = self.request.body or b""
        if not raw.strip():
            if required:
                raise bad_request(f"a JSON object body is required (fields: {sorted(required)})")
            return {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise bad_request("the body is not UTF-8 text", "invalid_encoding") from None
        try:
            body = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:
            raise bad_request(f"the body is not valid JSON: {str(e)[:200]}",
                              "invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a JSON object, not {type(body).__name__}")
        if _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise bad_request(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        unknown = sorted(set(body) - allowed)
        if unknown:
            shown = ", ".join(repr(k)[:40] for k in unknown[:5])
            raise bad_request(f"unknown field(s) {shown}; allowed: {sorted(allowed)}",
                              "unknown_field")
        missing = sorted(required - set(body))
        if missing:
            raise bad_request(f"missing field(s): {missing}", "missing_field")
        return body

    # -- responses --------------------------------------------------------------------------

    def write_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(obj))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place errors become ``{"message", "reason"}``."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        if isinstance(exc, KernelSessionError):
            status, reason, message = exc.status, exc.reason, str(exc)
        elif isinstance(exc, HTTPError):
            status = exc.status_code
            # a machine reason given as HTTPError(reason=...) (e.g. by server_kernels) is kept
            given = exc.reason or ""
            reason = given if _SLUG.fullmatch(given) else _reason_slug(status)
            message = exc.log_message or _phrase(status)
        elif exc is not None:
            status, reason = 500, "internal_error"
            message = "internal error; see the server log"
        else:
            status, reason = status_code, _reason_slug(status_code)
            message = _phrase(status_code)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"message": message, "reason": reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Refusals are not server errors: log them briefly, keep tracebacks for real bugs."""
        if isinstance(value, KernelSessionError):
            self.log.info("%s %s -> %s %s", self.request.method, self.request.path,
                          value.status, value.reason)
            return
        super().log_exception(typ, value, tb)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
