"""The REST layer's base handler: strict JSON bodies, one error mapping, the shared manager.

Every error leaves as ``{"message", "reason"}`` with a fitting 4xx: the session layer's errors
carry their own ``status``/``reason`` (``errors.py``), tornado's ``HTTPError`` (auth, routing)
keeps its status, a kernel that did not answer in time (``TimeoutError``) is a 504, and anything
else is a 500 without a traceback in the body (logged once). No message carries an absolute
file path (``scrub_paths``): a path in an OS error would tell a client about the server's disks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.web import HTTPError

from kernel_sessions.core.errors import KernelSessionError

MAX_BODY_BYTES = 1 << 20  # 1 MiB: a body is a small JSON object (code to run included)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
TRUE_WORDS = frozenset({"1", "true", "yes"})  # a boolean query argument
FALSE_WORDS = frozenset({"", "0", "false", "no"})
MAX_JSON_DEPTH = 32  # deeper bodies are rejected before any field is looked at
SETTINGS_KEY = "kernel_sessions"
APP_SETTINGS_KEY = "kernel_sessions_app"
_SLUG = re.compile(r"[a-z][a-z0-9_]{0,40}")
# an absolute POSIX path of two or more parts, or a Windows drive path; kept: its last part
_ABS_PATH = re.compile(
    r"(?<![\w.~%:/-])(?:/[^\s'\"/,;:()\[\]{}<>]+){2,}/?"
    r"|\b[A-Za-z]:\\(?:[^\s'\"\\,;:()<>]+\\)*[^\s'\"\\,;:()<>]*"
)


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


def has_lone_surrogate(obj: Any) -> bool:
    """Whether a decoded JSON value holds a string (or key) that is not valid Unicode text:
    JSON's ``"\\ud800"`` decodes to a lone surrogate, which no kernel message can carry."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def scrub_paths(message: str) -> str:
    """``message`` with every absolute file path shortened to ``…/<last part>``."""

    def short(m: re.Match[str]) -> str:
        parts = [p for p in re.split(r"[/\\]", m.group(0)) if p]
        return "…/" + (parts[-1] if parts else "")

    return _ABS_PATH.sub(short, message)


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


@web.stream_request_body
class KernelSessionsHandler(APIHandler):
    """Base of every kernel_sessions endpoint (subclasses set ``auth_resource``).

    Bodies are streamed (``stream_request_body``): ``prepare`` runs once the headers are in,
    so a request without a user, without the permissions its body needs
    (``upload_actions()``), or whose declared size is over ``body_limit()``, is refused before
    any of its body is read; chunks are counted as they come (a chunked upload has no declared
    size), and the first one over the limit gets the 413 at once. After a refusal tornado
    closes the connection instead of reading the rest. Handlers read the body through ``body``.
    """

    auth_resource = "kernel_sessions:sessions"

    def body_limit(self) -> int:
        """The largest body this request may have."""
        return MAX_BODY_BYTES

    def upload_actions(self) -> tuple[tuple[str, str], ...]:
        """``(action, resource)`` pairs checked in ``prepare``, before the body is read: for
        bodies that may be large (the method's own ``@authorized`` checks them again)."""
        return ()

    async def prepare(self) -> None:  # type: ignore[override]
        self._chunks: list[bytes] = []
        self._received = 0
        await super().prepare()
        if self.request.method not in BODY_METHODS:
            return
        if self.current_user is None:
            raise HTTPError(403)  # an anonymous upload is never read
        for action, resource in self.upload_actions():
            await self.require(action, resource)
        declared = self.request.headers.get("Content-Length", "0")
        limit = self.body_limit()
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > limit)
        ):
            raise ApiError(
                413,
                "body_too_large",
                f"request body of {declared[:20]} bytes exceeds {limit} bytes",
            )

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return  # refused already: the rest of the upload is dropped as it arrives
        self._received += len(chunk)
        limit = self.body_limit()
        if self._received > limit:
            self._chunks = []
            # answered from here: an exception would only drop the connection (and log a
            # traceback); after this answer tornado closes it rather than read on
            err = ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
            self.log_exception(ApiError, err, None)
            self.send_error(413, exc_info=(ApiError, err, None))
            return
        self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        """The whole request body (joined once from the streamed chunks)."""
        if self._chunks:
            self.request.body = b"".join(self._chunks)
            self._chunks = []
        return self.request.body or b""

    def flag(self, name: str) -> bool:
        """A boolean query argument (absent: false); anything else is a 400."""
        raw = self.get_query_argument(name, "").lower()
        if raw not in TRUE_WORDS | FALSE_WORDS:
            raise bad_request(f"{name} must be true or false", "invalid_query")
        return raw in TRUE_WORDS

    async def require(self, action: str, resource: str | None = None) -> None:
        """Authorize ``action`` on ``resource`` (default: the handler's) too, beyond the
        method's own: e.g. a write that runs code in the kernel also needs ``execute``."""
        user = self.current_user
        resource = resource or self.auth_resource
        if user is None or not await ensure_async(
            self.authorizer.is_authorized(self, user, action, resource)
        ):
            raise HTTPError(403, f"{action} permission on {resource} is needed")

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
        raw = self.body
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
            raise bad_request(
                f"the body is not valid JSON: {str(e)[:200]}", "invalid_json"
            ) from None
        if not isinstance(body, dict):
            raise bad_request(f"the body must be a JSON object, not {type(body).__name__}")
        if _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise bad_request(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
        if has_lone_surrogate(body):
            raise bad_request(
                "the body holds a string that is not valid Unicode text (a lone "
                "surrogate such as \\ud800)",
                "invalid_text",
            )
        unknown = sorted(set(body) - allowed)
        if unknown:
            shown = ", ".join(repr(k)[:40] for k in unknown[:5])
            raise bad_request(
                f"unknown field(s) {shown}; allowed: {sorted(allowed)}", "unknown_field"
            )
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
        elif isinstance(exc, TimeoutError):  # a kernel that did not answer in time
            status, reason = 504, "timeout"
            message = f"the kernel did not answer in time ({str(exc)[:200] or 'timed out'})"
        elif exc is not None:
            status, reason = 500, "internal_error"
            message = "internal error; see the server log"
        else:
            status, reason = status_code, _reason_slug(status_code)
            message = _phrase(status_code)
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps({"message": scrub_paths(str(message)), "reason": reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Refusals are not server errors: log them briefly, keep tracebacks for real bugs."""
        if isinstance(value, KernelSessionError):
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.path, value.status, value.reason
            )
            return
        super().log_exception(typ, value, tb)


def quiet_refusals(log_function: Callable[[Any], None]) -> Callable[[Any], None]:
    """jupyter_server's request log, except for our own 503 refusals (stopping, starting, not
    the data dir's owner): ``log_exception`` already logged those in one line, and the server's
    log would add an error line and a dump of the request headers for each panel poll."""

    def log_request(handler: Any) -> None:
        if isinstance(handler, KernelSessionsHandler) and handler.get_status() == 503:
            return
        log_function(handler)

    return log_request


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def finite_number(value: Any) -> bool:
    """A JSON number a float can hold: a 400-digit integer is not one (and no 500 either)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def http_error(e: KernelSessionError) -> web.HTTPError:
    """The API form of a session-layer error for jupyter_server's own handlers (which answer
    ``web.HTTPError``): its status, message and machine reason."""
    return web.HTTPError(e.status, str(e), reason=e.reason)
