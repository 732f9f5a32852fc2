"""The kernel-sessions REST API over HTTP, synchronously (``RestClient``) and as coroutines
(``AsyncRestClient``): one method per endpoint, errors as ``ClientError`` with the API's
``reason`` and status. ``client.py`` builds the public clients on these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from kernel_sessions.client.discovery import ClientError, ServerInfo, find_server

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_TIMEOUT = 60.0  # seconds for an API call (a create waits for the kernel to answer)
LONG_TIMEOUT = 3600.0  # seconds for checkpoints, restores and big values
EXECUTE_SLACK = 15.0  # seconds an execute call may take beyond the cell's own timeout
OCTET = "application/octet-stream"
_UNSET: Any = object()


# httpx logs every request at INFO: under papermill or nbclient (which log at INFO) a notebook
# run on a session would print a line per API call. Quiet unless the application set a level.
_HTTPX_LOG = logging.getLogger("httpx")
if _HTTPX_LOG.level == logging.NOTSET:
    _HTTPX_LOG.setLevel(logging.WARNING)


# -- REST -------------------------------------------------------------------------------------

# path segments a URL would resolve (``sessions/etl/variables/..`` is ``sessions/etl``)
DOT_SEGMENTS = frozenset({"", ".", ".."})


def _q(part: str) -> str:
    """One path segment, escaped. ``.``, ``..``, empty ones and ones holding a ``/`` are
    refused before any URL is built: ``delete_variable("etl", "..")`` must never delete the
    session, and no name, variable or checkpoint id of the API contains a ``/``."""
    text = str(part)
    if text in DOT_SEGMENTS or "/" in text:
        raise ValueError(
            f"{text[:80]!r} is not a valid name or id (empty, '.', '..' and "
            "names with '/' are refused)"
        )
    return quote(text, safe="")


def _json(r: httpx.Response) -> Any:
    """The JSON answer; anything else (an HTML page: a URL that is not the server's API) is an
    error, never taken as an empty answer."""
    if not r.content:
        return None
    if not r.headers.get("content-type", "").startswith("application/json"):
        raise ClientError(
            f"the answer from {r.request.url} is not JSON (is that the Jupyter server's URL?)",
            "not_json",
            r.status_code,
        )
    return r.json()


def _text(r: httpx.Response) -> str:
    return r.text


def _unpickle(r: httpx.Response) -> Any:
    import dill

    return dill.loads(r.content)


def _error(r: httpx.Response) -> ClientError:
    """``{message, reason}`` as a ``ClientError``; anything else described by its status."""
    try:
        body = r.json()
        message, reason = str(body["message"]), str(body["reason"])
    except (ValueError, KeyError, TypeError):
        phrase = r.reason_phrase or "error"
        message = f"{r.status_code} {phrase} from {r.request.url}"
        if r.status_code == 404:
            message += " (is the kernel_sessions extension enabled on that server?)"
        reason = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(
            r.status_code, "http_error"
        )
    if r.status_code in (401, 403) and reason in ("forbidden", "unauthorized"):
        message += " (check the token: --token or JUPYTER_TOKEN)"
    return ClientError(message, reason, r.status_code)


def _unreachable(server: ServerInfo, e: Exception) -> ClientError:
    if isinstance(e, httpx.TimeoutException):
        return ClientError(f"the server at {server.url} did not answer in time", "timeout")
    return ClientError(f"cannot reach the server at {server.url}: {e}", "unreachable")


def _pickled(value: Any) -> bytes:
    import dill

    return dill.dumps(value, recurse=True)


class _Api:
    """The API calls, shared by the sync and async clients (``_call`` returns the value or a
    coroutine of it). Paths are relative to ``{base_url}api/kernel-sessions/``."""

    server: ServerInfo

    def _call(
        self,
        method: str,
        path: str,
        *,
        decode: Callable[[httpx.Response], Any] = _json,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        raise NotImplementedError

    @staticmethod
    def _s(name: str, *rest: str) -> str:
        return "/".join(["sessions", _q(name), *(_q(p) for p in rest)])

    # sessions
    def spec(self) -> Any:
        """The OpenAPI document (YAML text)."""
        return self._call("GET", "spec.yaml", decode=_text)

    def list_sessions(self) -> Any:
        return self._call("GET", "sessions")

    def get_session(self, name: str) -> Any:
        return self._call("GET", self._s(name))

    def create_session(
        self,
        name: str,
        kernel_name: str | None = None,
        *,
        ttl: float | None = None,
        tags: dict[str, str] | None = None,
        from_session: str | None = None,
        checkpoint: str | None = None,
    ) -> Any:
        """Create a session; with ``from_session`` it is a fork (of a checkpoint of it)."""
        body: dict[str, Any] = {"name": name}
        if kernel_name:
            body["kernel_name"] = kernel_name
        if ttl is not None:
            body["ttl"] = ttl
        if tags:
            body["tags"] = tags
        if from_session:
            body["from"] = {
                "session": from_session,
                **({"checkpoint": checkpoint} if checkpoint else {}),
            }
        return self._call(
            "POST", "sessions", json=body, timeout=LONG_TIMEOUT if from_session else None
        )

    def update_session(
        self,
        name: str,
        *,
        new_name: str | None = None,
        ttl: Any = _UNSET,
        tags: dict[str, str] | None = None,
    ) -> Any:
        body: dict[str, Any] = {}
        if new_name is not None:
            body["name"] = new_name
        if ttl is not _UNSET:
            body["ttl"] = ttl
        if tags is not None:
            body["tags"] = tags
        return self._call("PATCH", self._s(name), json=body)

    def rename_session(self, old: str, new: str) -> Any:
        return self.update_session(old, new_name=new)

    def delete_session(self, name: str, *, purge: bool = False) -> Any:
        """End the session (its kernel stops); ``purge`` deletes its checkpoints too."""
        return self._call("DELETE", self._s(name), params={"purge": "1"} if purge else None)

    def restart(self, name: str) -> Any:
        return self._call("POST", self._s(name, "restart"), content=b"")

    def interrupt(self, name: str) -> Any:
        return self._call("POST", self._s(name, "interrupt"), content=b"")

    def execute(self, name: str, code: str, timeout: float = 30.0) -> Any:
        """Run ``code``: ``{status, execution_count, outputs, truncated}`` (not streamed)."""
        return self._call(
            "POST",
            self._s(name, "execute"),
            json={"code": code, "timeout": timeout},
            timeout=timeout + EXECUTE_SLACK,
        )

    def connection_info(self, name: str) -> Any:
        """What a jupyter_client kernel client needs, signing key included."""
        return self._call("GET", self._s(name, "connection"))

    # variables
    def variables(
        self, name: str, *, include_modules: bool = False, filter: str | None = None
    ) -> Any:
        params = {"include_modules": "1" if include_modules else "0"}
        if filter:
            params["filter"] = filter
        return self._call("GET", self._s(name, "variables"), params=params)

    def get_variable(self, name: str, var: str, format: str = "json") -> Any:
        """``{name, format, size, value}`` for json/repr; use ``pull`` for the object itself."""
        return self._call("GET", self._s(name, "variables", var), params={"format": format})

    def set_variable(self, name: str, var: str, value: Any) -> Any:
        """Bind ``var`` to a JSON value."""
        return self._call("PUT", self._s(name, "variables", var), json=value)

    def delete_variable(self, name: str, var: str) -> Any:
        return self._call("DELETE", self._s(name, "variables", var))

    def pull(self, name: str, var: str) -> Any:
        """A copy of the session's variable ``var`` (dill)."""
        return self._call(
            "GET",
            self._s(name, "variables", var),
            params={"format": "pickle"},
            decode=_unpickle,
            timeout=LONG_TIMEOUT,
        )

    def _push_one(self, name: str, var: str, value: Any) -> Any:
        return self._call(
            "PUT",
            self._s(name, "variables", var),
            content=_pickled(value),
            headers={"Content-Type": OCTET},
            timeout=LONG_TIMEOUT,
        )

    # pool
    def pool(self) -> Any:
        return self._call("GET", "pool")

    def resize_pool(self, sizes: dict[str, int]) -> Any:
        return self._call("PATCH", "pool", json={"sizes": sizes})

    # checkpoints
    def checkpoints(self, name: str, *, deleted: bool = False) -> Any:
        """Summaries, newest first; ``deleted``: also those of a deleted session of that name."""
        return self._call(
            "GET", self._s(name, "checkpoints"), params={"deleted": "true"} if deleted else None
        )

    def create_checkpoint(
        self,
        name: str,
        *,
        label: str | None = None,
        variables: list[str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        body: dict[str, Any] = {}
        if label is not None:
            body["label"] = label
        if variables is not None:
            body["variables"] = variables
        if timeout is not None:
            body["timeout"] = timeout
        return self._call("POST", self._s(name, "checkpoints"), json=body, timeout=LONG_TIMEOUT)

    def get_checkpoint(self, name: str, checkpoint: str) -> Any:
        return self._call("GET", self._s(name, "checkpoints", checkpoint))

    def delete_checkpoint(self, name: str, checkpoint: str) -> Any:
        return self._call("DELETE", self._s(name, "checkpoints", checkpoint))

    def restore(
        self,
        name: str,
        checkpoint: str,
        *,
        into: str | None = None,
        variables: list[str] | None = None,
    ) -> Any:
        """Restore a checkpoint into the session, or ``into`` a new one (a fork)."""
        body: dict[str, Any] = {}
        if into:
            body["into"] = into
        if variables is not None:
            body["variables"] = variables
        return self._call(
            "POST",
            self._s(name, "checkpoints", checkpoint, "restore"),
            json=body,
            timeout=LONG_TIMEOUT,
        )

    # leases (auto sessions)
    def acquire_lease(
        self,
        name: str,
        owner: str,
        *,
        lease_seconds: float | None = None,
        kernel_name: str | None = None,
        create: bool = True,
    ) -> Any:
        """Create session ``name`` owned by ``owner``, or renew ``owner``'s lease on it."""
        body: dict[str, Any] = {"owner": owner, "create": create}
        if lease_seconds is not None:
            body["lease_seconds"] = lease_seconds
        if kernel_name:
            body["kernel_name"] = kernel_name
        return self._call("POST", self._s(name, "lease"), json=body)

    def release_lease(self, name: str, owner: str) -> Any:
        """End ``owner``'s session ``name``."""
        return self._call("DELETE", self._s(name, "lease"), params={"owner": owner})


def _latest(summaries: list[dict], name: str) -> str:
    for s in summaries:
        if s.get("valid", True):
            return str(s["id"])
    raise ClientError(f"session {name!r} has no usable checkpoint", "checkpoint_not_found", 404)


def _auth(server: ServerInfo) -> dict[str, str]:
    return {"Authorization": f"token {server.token}"} if server.token else {}


class RestClient(_Api):
    """The REST API, synchronously. ``url``/``token`` default to what discovery finds."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        server: ServerInfo | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server or find_server(url, token)
        self._http = httpx.Client(headers=_auth(self.server), timeout=timeout)

    def _call(
        self,
        method: str,
        path: str,
        *,
        decode: Callable[[httpx.Response], Any] = _json,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            r = self._http.request(
                method,
                self.server.api_root + path,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except httpx.HTTPError as e:
            raise _unreachable(self.server, e) from None
        if r.is_error:
            raise _error(r)
        return decode(r)

    def push(self, name: str, **values: Any) -> None:
        """Bind each value (dill-pickled, unpickled inside the kernel) in the session."""
        for var, value in values.items():
            self._push_one(name, var, value)

    def latest_checkpoint(self, name: str, *, deleted: bool = False) -> str:
        return _latest(self.checkpoints(name, deleted=deleted), name)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRestClient(_Api):
    """The REST API, as coroutines."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        server: ServerInfo | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server or find_server(url, token)
        self._http = httpx.AsyncClient(headers=_auth(self.server), timeout=timeout)

    async def _call(
        self,
        method: str,
        path: str,
        *,  # type: ignore[override]
        decode: Callable[[httpx.Response], Any] = _json,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            r = await self._http.request(
                method,
                self.server.api_root + path,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except httpx.HTTPError as e:
            raise _unreachable(self.server, e) from None
        if r.is_error:
            raise _error(r)
        return decode(r)

    async def push(self, name: str, **values: Any) -> None:
        for var, value in values.items():
            await self._push_one(name, var, value)

    async def latest_checkpoint(self, name: str, *, deleted: bool = False) -> str:
        return _latest(await self.checkpoints(name, deleted=deleted), name)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
