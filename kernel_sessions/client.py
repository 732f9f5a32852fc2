"""Python client: the REST API, and jupyter_client kernel clients attached to sessions by name.

``KernelSessionsClient`` (sync) and ``AsyncKernelSessionsClient`` mirror the REST API method for
method. ``connect(name)`` returns a started jupyter_client ``BlockingKernelClient`` talking ZMQ
straight to the session's kernel (so an execute costs what it costs with raw jupyter_client);
``connect_async`` returns an ``AsyncKernelClient``. Both carry ``push``/``pull`` (dill, so
functions and classes travel).

Auto sessions: ``connect()`` without a name gives this process a session of its own,
``auto-<host>-<pid>-<time>``, held under a lease that a background thread renews and that is
released at interpreter exit; a SIGKILLed process stops renewing and the server reaps the
session once the lease lapses. ``release()`` ends it; the next ``connect()`` makes a new one.
A forked child gets its own.

Kernel clients talk to the kernel's ports directly, so ``connect`` needs the kernel on this
machine (or its ports reachable); the REST calls work against any server.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import os
import re
import secrets
import socket
import threading
import time
from datetime import datetime
from queue import Empty
from typing import Any, Callable
from urllib.parse import quote

import httpx
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.blocking.client import BlockingKernelClient

from .discovery import TOKEN_ENV, URL_ENV, ClientError, ServerInfo, ServerNotFound, find_server

__all__ = [
    "AsyncKernelSessionsClient",
    "AsyncSessionKernelClient",
    "ClientError",
    "KernelSessionsClient",
    "ServerNotFound",
    "SessionKernelClient",
    "auto_session",
    "connect",
    "connect_async",
    "pull",
    "push",
    "release",
]

DEFAULT_TIMEOUT = 60.0  # seconds for an API call (a create waits for the kernel to answer)
LONG_TIMEOUT = 3600.0  # seconds for checkpoints and restores
EXECUTE_SLACK = 15.0  # seconds an execute call may take beyond the cell's own timeout
READY_TIMEOUT = 30.0  # seconds for a new kernel client to see the kernel answer
IOPUB_PROBE = 0.05  # first wait for the iopub echo of a kernel_info; doubles per retry
RELEASE_TIMEOUT = 5.0  # seconds the exit-time release may take
MIN_RENEW_INTERVAL = 0.5  # seconds
OCTET = "application/octet-stream"
_UNSET: Any = object()


# -- REST -------------------------------------------------------------------------------------

def _q(part: str) -> str:
    return quote(str(part), safe="")


def _json(r: httpx.Response) -> Any:
    return r.json() if r.content else None


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
            r.status_code, "http_error")
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

    def _call(self, method: str, path: str, *, decode: Callable[[httpx.Response], Any] = _json,
              timeout: float | None = None, **kwargs: Any) -> Any:
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

    def create_session(self, name: str, kernel_name: str | None = None, *,
                       ttl: float | None = None, tags: dict[str, str] | None = None,
                       from_session: str | None = None, checkpoint: str | None = None) -> Any:
        """Create a session; with ``from_session`` it is a fork (of a checkpoint of it)."""
        body: dict[str, Any] = {"name": name}
        if kernel_name:
            body["kernel_name"] = kernel_name
        if ttl is not None:
            body["ttl"] = ttl
        if tags:
            body["tags"] = tags
        if from_session:
            body["from"] = {"session": from_session,
                            **({"checkpoint": checkpoint} if checkpoint else {})}
        return self._call("POST", "sessions", json=body, timeout=LONG_TIMEOUT if from_session else None)

    def update_session(self, name: str, *, new_name: str | None = None, ttl: Any = _UNSET,
                       tags: dict[str, str] | None = None) -> Any:
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
        return self._call("POST", self._s(name, "execute"), json={"code": code, "timeout": timeout},
                          timeout=timeout + EXECUTE_SLACK)

    def connection_info(self, name: str) -> Any:
        """What a jupyter_client kernel client needs, signing key included."""
        return self._call("GET", self._s(name, "connection"))

    # variables
    def variables(self, name: str, *, include_modules: bool = False,
                  filter: str | None = None) -> Any:
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
        return self._call("GET", self._s(name, "variables", var), params={"format": "pickle"},
                          decode=_unpickle, timeout=LONG_TIMEOUT)

    def _push_one(self, name: str, var: str, value: Any) -> Any:
        return self._call("PUT", self._s(name, "variables", var), content=_pickled(value),
                          headers={"Content-Type": OCTET}, timeout=LONG_TIMEOUT)

    # pool
    def pool(self) -> Any:
        return self._call("GET", "pool")

    def resize_pool(self, sizes: dict[str, int]) -> Any:
        return self._call("PATCH", "pool", json={"sizes": sizes})

    # checkpoints
    def checkpoints(self, name: str) -> Any:
        """Summaries, newest first."""
        return self._call("GET", self._s(name, "checkpoints"))

    def create_checkpoint(self, name: str, *, label: str | None = None,
                          variables: list[str] | None = None, timeout: float | None = None) -> Any:
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

    def restore(self, name: str, checkpoint: str, *, into: str | None = None,
                variables: list[str] | None = None) -> Any:
        """Restore a checkpoint into the session, or ``into`` a new one (a fork)."""
        body: dict[str, Any] = {}
        if into:
            body["into"] = into
        if variables is not None:
            body["variables"] = variables
        return self._call("POST", self._s(name, "checkpoints", checkpoint, "restore"), json=body,
                          timeout=LONG_TIMEOUT)

    # leases (auto sessions)
    def acquire_lease(self, name: str, owner: str, *, lease_seconds: float | None = None,
                      kernel_name: str | None = None, create: bool = True) -> Any:
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


class KernelSessionsClient(_Api):
    """The REST API, synchronously. ``url``/``token`` default to what discovery finds."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 server: ServerInfo | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server or find_server(url, token)
        headers = {"Authorization": f"token {self.server.token}"} if self.server.token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, *, decode: Callable[[httpx.Response], Any] = _json,
              timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, self.server.api_root + path,
                                   timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs)
        except httpx.HTTPError as e:
            raise _unreachable(self.server, e) from None
        if r.is_error:
            raise _error(r)
        return decode(r)

    def push(self, name: str, **values: Any) -> None:
        """Bind each value (dill-pickled, unpickled inside the kernel) in the session."""
        for var, value in values.items():
            self._push_one(name, var, value)

    def latest_checkpoint(self, name: str) -> str:
        return _latest(self.checkpoints(name), name)

    def connect(self, name: str | None = None, *, create: bool = True,
                kernel_name: str | None = None, timeout: float = READY_TIMEOUT) -> SessionKernelClient:
        """A started ``BlockingKernelClient`` on session ``name`` (None: the auto session)."""
        name, info = _connection(self, name, create, kernel_name)
        kc = SessionKernelClient()
        kc.session_name, kc.api = name, self
        kc.load_connection_info(info)
        kc.start_channels(hb=False)
        try:
            _sync_iopub(kc, timeout)
        except BaseException:
            kc.stop_channels()
            raise
        return kc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KernelSessionsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncKernelSessionsClient(_Api):
    """The REST API, as coroutines."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 server: ServerInfo | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server or find_server(url, token)
        headers = {"Authorization": f"token {self.server.token}"} if self.server.token else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout)

    async def _call(self, method: str, path: str, *,  # type: ignore[override]
                    decode: Callable[[httpx.Response], Any] = _json,
                    timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            r = await self._http.request(method, self.server.api_root + path,
                                         timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs)
        except httpx.HTTPError as e:
            raise _unreachable(self.server, e) from None
        if r.is_error:
            raise _error(r)
        return decode(r)

    async def push(self, name: str, **values: Any) -> None:
        for var, value in values.items():
            await self._push_one(name, var, value)

    async def latest_checkpoint(self, name: str) -> str:
        return _latest(await self.checkpoints(name), name)

    async def connect(self, name: str | None = None, *, create: bool = True,
                      kernel_name: str | None = None,
                      timeout: float = READY_TIMEOUT) -> AsyncSessionKernelClient:
        """A started ``AsyncKernelClient`` on session ``name`` (None: the auto session)."""
        # the lookups share the sync path (and its process-wide auto-session lock)
        sync = _sync_client(self.server)
        name, info = await asyncio.to_thread(_connection, sync, name, create, kernel_name)
        kc = AsyncSessionKernelClient()
        kc.session_name, kc.api = name, self
        kc.load_connection_info(info)
        kc.start_channels(hb=False)
        try:
            await _async_iopub(kc, timeout)
        except BaseException:
            kc.stop_channels()
            raise
        return kc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKernelSessionsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- kernel clients ---------------------------------------------------------------------------

class SessionKernelClient(BlockingKernelClient):
    """A jupyter_client ``BlockingKernelClient`` attached to a named session."""

    session_name: str = ""
    api: Any = None

    def push(self, **values: Any) -> None:
        """Bind each value (dill) in the session's namespace."""
        self.api.push(self.session_name, **values)

    def pull(self, var: str) -> Any:
        """A copy of the session's variable ``var``."""
        return self.api.pull(self.session_name, var)

    def variables(self, **kwargs: Any) -> list[dict]:
        """The session's variables, read without running a cell."""
        return self.api.variables(self.session_name, **kwargs)["variables"]


class AsyncSessionKernelClient(AsyncKernelClient):
    """A jupyter_client ``AsyncKernelClient`` attached to a named session."""

    session_name: str = ""
    api: Any = None

    async def push(self, **values: Any) -> None:
        await self.api.push(self.session_name, **values)

    async def pull(self, var: str) -> Any:
        return await self.api.pull(self.session_name, var)

    async def variables(self, **kwargs: Any) -> list[dict]:
        return (await self.api.variables(self.session_name, **kwargs))["variables"]


def _is_echo(msg: dict, msg_id: str) -> bool:
    return msg.get("msg_type") == "status" and msg.get("parent_header", {}).get("msg_id") == msg_id


def _sync_iopub(kc: BlockingKernelClient, timeout: float) -> None:
    """Return once this client's iopub subscription is live.

    A SUB socket misses what is published before its subscription reaches the kernel, and an
    execute whose ``idle`` is missed waits forever. jupyter_client's ``wait_for_ready`` waits a
    fixed 0.2 s of iopub silence; instead, send kernel_info until its own status echo arrives
    on iopub (a few milliseconds on a warm kernel).
    """
    deadline = time.monotonic() + timeout
    probe = IOPUB_PROBE
    while True:
        msg_id = kc.kernel_info()
        end = time.monotonic() + probe
        while (left := end - time.monotonic()) > 0:
            try:
                if _is_echo(kc.get_iopub_msg(timeout=left), msg_id):
                    _drain_reply(kc, msg_id, deadline)
                    return
            except Empty:
                break
        if time.monotonic() > deadline:
            raise ClientError(f"the kernel did not answer within {timeout:g} s", "timeout")
        probe = min(probe * 2, 1.0)


def _drain_reply(kc: BlockingKernelClient, msg_id: str, deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        try:
            if kc.get_shell_msg(timeout=left).get("parent_header", {}).get("msg_id") == msg_id:
                return
        except Empty:
            return


async def _async_iopub(kc: AsyncKernelClient, timeout: float) -> None:
    """``_sync_iopub`` for an ``AsyncKernelClient``."""
    deadline = time.monotonic() + timeout
    probe = IOPUB_PROBE
    while True:
        msg_id = kc.kernel_info()
        end = time.monotonic() + probe
        while (left := end - time.monotonic()) > 0:
            try:
                if _is_echo(await kc.get_iopub_msg(timeout=left), msg_id):
                    while (rest := deadline - time.monotonic()) > 0:
                        reply = await kc.get_shell_msg(timeout=rest)
                        if reply.get("parent_header", {}).get("msg_id") == msg_id:
                            return
                    return
            except Empty:
                break
        if time.monotonic() > deadline:
            raise ClientError(f"the kernel did not answer within {timeout:g} s", "timeout")
        probe = min(probe * 2, 1.0)


def _connection(api: KernelSessionsClient, name: str | None, create: bool,
                kernel_name: str | None) -> tuple[str, dict]:
    """``(session name, connection info)``, creating the session (or the auto session)."""
    auto = name is None
    if auto:
        name = _auto_name(api, kernel_name)
    try:
        return name, api.connection_info(name)
    except ClientError as e:
        if e.status != 404 or e.reason != "not_found" or not create:
            raise
    if auto:  # reaped (the lease lapsed, e.g. while the machine slept): start over
        _forget_auto(api.server, name)
        name = _auto_name(api, kernel_name)
    else:
        try:
            api.create_session(name, kernel_name)
        except ClientError as e:
            if e.reason != "exists":
                raise
    return name, api.connection_info(name)


# -- auto sessions ----------------------------------------------------------------------------

class _Auto:
    """This process's auto session on one server."""

    def __init__(self, server: ServerInfo, name: str, owner: str, lease: float) -> None:
        self.server, self.name, self.owner, self.lease = server, name, owner, lease
        self.pid = os.getpid()


_lock = threading.RLock()
_autos: dict[str, _Auto] = {}  # server url -> auto session
_clients: dict[tuple, KernelSessionsClient] = {}
_servers: dict[tuple, ServerInfo] = {}
_owner: tuple[int, str] | None = None
_renewer: _Renewer | None = None


def _host() -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")
    return host[:24].strip("-") or "host"


def auto_session_name() -> str:
    """``auto-<host>-<pid>-<milliseconds since the epoch>``: unique per process and call."""
    return f"auto-{_host()}-{os.getpid()}-{int(time.time() * 1000)}"


def _owner_id() -> str:
    """Who holds the leases: user, host, pid and a random part (pids get reused)."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        try:
            user = getpass.getuser()
        except Exception:  # no user name in some containers
            user = str(os.getuid()) if hasattr(os, "getuid") else "user"
        _owner = (os.getpid(), f"{user}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}")
    return _owner[1]


def _lease_of(session: dict) -> float:
    """Seconds of the lease the server just granted (from ``lease_expires``)."""
    expires = session.get("lease_expires")
    if not expires:
        return 60.0
    end = datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    return max(1.0, end - time.time())


def _auto_name(api: KernelSessionsClient, kernel_name: str | None) -> str:
    """This process's auto session on ``api``'s server, created on first use."""
    with _lock:
        auto = _autos.get(api.server.url)
        if auto is not None and auto.pid == os.getpid():
            return auto.name
        owner = _owner_id()
        name = auto_session_name()
        session = api.acquire_lease(name, owner, kernel_name=kernel_name)
        _autos[api.server.url] = _Auto(api.server, name, owner, _lease_of(session))
        _ensure_renewer()
        return name


def _forget_auto(server: ServerInfo, name: str) -> None:
    with _lock:
        auto = _autos.get(server.url)
        if auto is not None and auto.name == name:
            del _autos[server.url]


def auto_session(url: str | None = None, token: str | None = None) -> str:
    """The name of this process's auto session (created if needed)."""
    return _auto_name(_default_client(url, token), None)


class _Renewer(threading.Thread):
    """Renews this process's leases at a third of their length; daemon, so it never holds up
    exit (the exit hook releases the sessions)."""

    def __init__(self) -> None:
        super().__init__(name="kernel-sessions-lease", daemon=True)
        self.stopped = threading.Event()
        self.pid = os.getpid()

    def run(self) -> None:
        while True:
            with _lock:
                autos = list(_autos.values())
            interval = min((a.lease for a in autos), default=30.0) / 3
            if self.stopped.wait(max(MIN_RENEW_INTERVAL, interval)):
                return
            for auto in autos:
                try:
                    _sync_client(auto.server).acquire_lease(auto.name, auto.owner, create=False)
                except ClientError as e:
                    if e.status in (404, 409):  # reaped or taken: the next connect() starts over
                        _forget_auto(auto.server, auto.name)
                    # otherwise (server briefly unreachable) try again next round


def _ensure_renewer() -> None:
    global _renewer
    if _renewer is None or not _renewer.is_alive() or _renewer.pid != os.getpid():
        _renewer = _Renewer()
        _renewer.start()


def release(url: str | None = None, token: str | None = None) -> None:
    """End this process's auto session(s) (all servers, or the one at ``url``); the next
    ``connect()`` creates a new one."""
    with _lock:
        if url is None and token is None:
            autos = [a for a in _autos.values() if a.pid == os.getpid()]
        else:
            server = _default_client(url, token).server
            autos = [a for a in _autos.values() if a.server.url == server.url]
        for auto in autos:
            _autos.pop(auto.server.url, None)
    for auto in autos:
        try:
            _sync_client(auto.server).release_lease(auto.name, auto.owner)
        except ClientError as e:
            if e.status not in (404, 409):
                raise


def _release_at_exit() -> None:
    with _lock:
        autos = [a for a in _autos.values() if a.pid == os.getpid()]
        _autos.clear()
    if _renewer is not None:
        _renewer.stopped.set()
    for auto in autos:
        try:
            with KernelSessionsClient(server=auto.server, timeout=RELEASE_TIMEOUT) as api:
                api.release_lease(auto.name, auto.owner)
        except ClientError:
            pass  # the server reaps it when the lease lapses


def _after_fork() -> None:
    """A forked child shares no auto session, renewer or HTTP connection with its parent."""
    global _lock, _renewer
    _lock = threading.RLock()
    _autos.clear()
    _clients.clear()
    _renewer = None


atexit.register(_release_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# -- module-level conveniences ----------------------------------------------------------------

def _sync_client(server: ServerInfo) -> KernelSessionsClient:
    with _lock:
        key = (server.url, server.token)
        api = _clients.get(key)
        if api is None:
            api = _clients[key] = KernelSessionsClient(server=server)
        return api


def _find(url: str | None, token: str | None) -> ServerInfo:
    """``find_server``, remembered per arguments and environment (discovery reads files and
    probes servers)."""
    key = (url, token, os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV),
           os.environ.get("JUPYTER_RUNTIME_DIR"))
    with _lock:
        server = _servers.get(key)
    if server is None:
        server = find_server(url, token)
        with _lock:
            _servers[key] = server
    return server


def _default_client(url: str | None = None, token: str | None = None) -> KernelSessionsClient:
    return _sync_client(_find(url, token))


def connect(name: str | None = None, *, create: bool = True, kernel_name: str | None = None,
            url: str | None = None, token: str | None = None,
            timeout: float = READY_TIMEOUT) -> SessionKernelClient:
    """A started jupyter_client ``BlockingKernelClient`` attached to session ``name``.

    ``name=None`` uses this process's auto session (see the module docstring). A missing named
    session is created (from the warm pool) unless ``create=False``.
    """
    try:
        api = _default_client(url, token)
        return api.connect(name, create=create, kernel_name=kernel_name, timeout=timeout)
    except ClientError as e:
        if e.reason != "unreachable":
            raise
    with _lock:  # the server found earlier is gone: look again, once
        _servers.clear()
    return _default_client(url, token).connect(name, create=create, kernel_name=kernel_name,
                                               timeout=timeout)


async def connect_async(name: str | None = None, *, create: bool = True,
                        kernel_name: str | None = None, url: str | None = None,
                        token: str | None = None,
                        timeout: float = READY_TIMEOUT) -> AsyncSessionKernelClient:
    """``connect`` returning a started ``AsyncKernelClient``."""
    server = await asyncio.to_thread(_find, url, token)
    api = AsyncKernelSessionsClient(server=server)
    return await api.connect(name, create=create, kernel_name=kernel_name, timeout=timeout)


def push(name: str | None = None, /, **values: Any) -> None:
    """Bind ``values`` in session ``name`` (None: the auto session)."""
    api = _default_client()
    api.push(name or _auto_name(api, None), **values)


def pull(name: str | None, var: str) -> Any:
    """A copy of variable ``var`` of session ``name`` (None: the auto session)."""
    api = _default_client()
    return api.pull(name or _auto_name(api, None), var)
