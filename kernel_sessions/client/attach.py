"""Python client: the REST API, and jupyter_client kernel clients attached to sessions by name.

``KernelSessionsClient`` (sync) and ``AsyncKernelSessionsClient`` mirror the REST API method for
method (``client_rest.py``). ``connect(name)`` returns a started jupyter_client
``BlockingKernelClient`` talking ZMQ straight to the session's kernel (so an execute costs what
it costs with raw jupyter_client); ``connect_async`` returns an ``AsyncKernelClient``. Both carry
``push``/``pull`` (dill, so functions and classes travel).

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
import contextlib
import getpass
import itertools
import os
import re
import secrets
import socket
import threading
import time
from datetime import datetime
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.blocking.client import BlockingKernelClient

from kernel_sessions.client.discovery import (
    TOKEN_ENV,
    URL_ENV,
    ClientError,
    ServerInfo,
    ServerNotFound,
    find_server,
)
from kernel_sessions.client.rest import AsyncRestClient, RestClient

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

READY_TIMEOUT = 30.0  # seconds for a new kernel client to see the kernel answer
IOPUB_PROBE = 0.05  # first wait for the iopub echo of a kernel_info; doubles per retry
STARTING_POLL = 0.05  # seconds between looks at a session someone else is starting
RELEASE_TIMEOUT = 5.0  # seconds the exit-time release may take
MIN_RENEW_INTERVAL = 0.25  # seconds
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


# -- clients ----------------------------------------------------------------------------------


class KernelSessionsClient(RestClient):
    """The REST API, synchronously, plus ``connect`` to a session's kernel."""

    def connect(
        self,
        name: str | None = None,
        *,
        create: bool = True,
        kernel_name: str | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> SessionKernelClient:
        """A started ``BlockingKernelClient`` on session ``name`` (None: the auto session)."""
        name, info = _connection(self, name, create, kernel_name)
        # the process-wide zmq context: a client's own context is terminated by its __del__,
        # which blocks whatever thread the garbage collector happens to run in (for good, if
        # the dropped client's channels still run)
        kc = SessionKernelClient(context=zmq.Context.instance())
        kc.session_name, kc.api = name, self
        kc.load_connection_info(info)
        kc.start_channels(hb=False)
        try:
            _sync_iopub(kc, timeout)
        except BaseException:
            kc.stop_channels()
            raise
        return kc


class AsyncKernelSessionsClient(AsyncRestClient):
    """The REST API as coroutines, plus ``connect`` to a session's kernel."""

    async def connect(
        self,
        name: str | None = None,
        *,
        create: bool = True,
        kernel_name: str | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> AsyncSessionKernelClient:
        """A started ``AsyncKernelClient`` on session ``name`` (None: the auto session)."""
        # the lookups share the sync path (and its process-wide auto-session lock)
        sync = _sync_client(self.server)
        name, info = await asyncio.to_thread(_connection, sync, name, create, kernel_name)
        kc = AsyncSessionKernelClient(context=zmq.asyncio.Context.instance())
        kc.session_name, kc.api = name, self
        kc.load_connection_info(info)
        kc.start_channels(hb=False)
        try:
            await _async_iopub(kc, timeout)
        except BaseException:
            kc.stop_channels()
            raise
        return kc


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


def _probe(kc: Any, attempt: int) -> tuple[str, Any]:
    """Send a kernel_info request: on control (answered even while a cell runs, which a shared
    session's may be), every other attempt on shell (for kernels that ignore control)."""
    if attempt % 2:
        return kc.kernel_info(), None
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    return msg["header"]["msg_id"], kc.control_channel


def _sync_iopub(kc: BlockingKernelClient, timeout: float) -> None:
    """Return once this client's iopub subscription is live.

    A SUB socket misses what is published before its subscription reaches the kernel, and an
    execute whose ``idle`` is missed waits forever. jupyter_client's ``wait_for_ready`` waits a
    fixed 0.2 s of iopub silence (and on shell, so not while a cell runs); instead, send
    kernel_info until its own status echo arrives on iopub (a few milliseconds).
    """
    deadline = time.monotonic() + timeout
    probe = IOPUB_PROBE
    for attempt in itertools.count():
        msg_id, control = _probe(kc, attempt)
        end = time.monotonic() + probe
        while (left := end - time.monotonic()) > 0:
            try:
                if _is_echo(kc.get_iopub_msg(timeout=left), msg_id):
                    if control is not None:  # leave no reply behind on control
                        with contextlib.suppress(Empty):
                            control.get_msg(timeout=max(0.0, deadline - time.monotonic()))
                    return
            except Empty:
                break
        if time.monotonic() > deadline:
            raise ClientError(f"the kernel did not answer within {timeout:g} s", "timeout")
        probe = min(probe * 2, 1.0)


async def _async_iopub(kc: AsyncKernelClient, timeout: float) -> None:
    """``_sync_iopub`` for an ``AsyncKernelClient``."""
    deadline = time.monotonic() + timeout
    probe = IOPUB_PROBE
    for attempt in itertools.count():
        msg_id, control = _probe(kc, attempt)
        end = time.monotonic() + probe
        while (left := end - time.monotonic()) > 0:
            try:
                if _is_echo(await kc.get_iopub_msg(timeout=left), msg_id):
                    if control is not None:
                        with contextlib.suppress(Empty):
                            await control.get_msg(timeout=max(0.0, deadline - time.monotonic()))
                    return
            except Empty:
                break
        if time.monotonic() > deadline:
            raise ClientError(f"the kernel did not answer within {timeout:g} s", "timeout")
        probe = min(probe * 2, 1.0)


def _connection(
    api: KernelSessionsClient, name: str | None, create: bool, kernel_name: str | None
) -> tuple[str, dict]:
    """``(session name, connection info)``, creating the session (or the auto session)."""
    auto = name is None
    if auto:
        name = _auto_name(api, kernel_name)
    try:
        return name, _connection_info(api, name)
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
            if e.reason != "exists":  # someone else is creating it: wait for it below
                raise
    return name, _connection_info(api, name)


def _connection_info(api: KernelSessionsClient, name: str) -> dict:
    """Connection info, waiting out a session that is still starting (created elsewhere)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            return _reachable(api.server, api.connection_info(name))
        except ClientError as e:
            if e.reason != "invalid_state" or time.monotonic() > deadline:
                raise
            if api.get_session(name)["state"] in ("dead", "hibernated"):
                raise  # not coming up by itself (starting, restoring: wait; idle: ready now)
        time.sleep(STARTING_POLL)


def _reachable(server: ServerInfo, info: dict) -> dict:
    """Refuse at once (``not_local``) a loopback-bound kernel of a server on another machine,
    rather than wait for a kernel that can never answer."""
    if info.get("transport") != "tcp" or info.get("ip") not in LOOPBACK:
        return info
    host = urlsplit(server.url).hostname or ""
    try:
        addr = socket.gethostbyname(host)
    except OSError:
        return info
    from jupyter_client.localinterfaces import is_local_ip

    if not addr.startswith("127.") and not is_local_ip(addr):
        raise ClientError(
            f"the kernels of {server.url} listen on that machine only; use the "
            "REST calls (execute, variables) from here",
            "not_local",
            409,
        )
    return info


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
        except (OSError, KeyError):  # no user name in some containers
            user = str(os.getuid()) if hasattr(os, "getuid") else "user"
        pid = os.getpid()
        _owner = (pid, f"{user}@{socket.gethostname()}:{pid}:{secrets.token_hex(4)}")
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
    """Renews this process's leases four times per lease; daemon, so it never holds up exit
    (the exit hook releases the sessions). ``wake`` makes it look again at once when an auto
    session was added, so a new session never waits out an interval computed without it."""

    def __init__(self) -> None:
        super().__init__(name="kernel-sessions-lease", daemon=True)
        self.stopped = threading.Event()
        self.wake = threading.Event()
        self.pid = os.getpid()

    def run(self) -> None:
        while not self.stopped.is_set():
            with _lock:
                autos = list(_autos.values())
            interval = min((a.lease for a in autos), default=60.0) / 4
            if self.wake.wait(max(MIN_RENEW_INTERVAL, interval)):
                self.wake.clear()
                continue
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
    else:
        _renewer.wake.set()


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
        _renewer.wake.set()
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
    key = (
        url,
        token,
        os.environ.get(URL_ENV),
        os.environ.get(TOKEN_ENV),
        os.environ.get("JUPYTER_RUNTIME_DIR"),
    )
    with _lock:
        server = _servers.get(key)
    if server is None:
        server = find_server(url, token)
        with _lock:
            _servers[key] = server
    return server


def _default_client(url: str | None = None, token: str | None = None) -> KernelSessionsClient:
    return _sync_client(_find(url, token))


def connect(
    name: str | None = None,
    *,
    create: bool = True,
    kernel_name: str | None = None,
    url: str | None = None,
    token: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> SessionKernelClient:
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
    return _default_client(url, token).connect(
        name, create=create, kernel_name=kernel_name, timeout=timeout
    )


async def connect_async(
    name: str | None = None,
    *,
    create: bool = True,
    kernel_name: str | None = None,
    url: str | None = None,
    token: str | None = None,
    timeout: float = READY_TIMEOUT,
) -> AsyncSessionKernelClient:
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
