"""The REST layer under hostile requests, against a real jupyter_server (in this process).

Authorization follows what an action does: dill bytes are unpickled in the kernel (``write``
and ``execute``, checked before the bytes are read), a fork restores a checkpoint (what restore
needs, plus the ``write`` of creating a session, whichever route forks), and the catch-all
route is authenticated and authorized. Input: 400-digit numbers, lone surrogates and values the
kernel cannot render are JSON 4xx (or a 504 for a read the kernel does not answer), never a
500, and the server goes on answering. Over-limit or anonymous uploads are refused before
their body is read (3 x 400 MiB: the server's memory does not grow). The Python client refuses
``.``, ``..``, empty and ``/`` ids before it builds a URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from typing import Any

import dill
import psutil
import pytest
from jupyter_server.auth import Authorizer
from traitlets.config import Config

from kernel_sessions.client import KernelSessionsClient
from kernel_sessions.client.discovery import ServerInfo
from kernel_sessions.client.rest import AsyncRestClient
from kernel_sessions.core import variables as variables_module
from kernel_sessions.server.handlers.base import MAX_BODY_BYTES, scrub_paths
from kernel_sessions.server.handlers.variables import MAX_PICKLE_BODY_BYTES
from tests.conftest import KsApi, ks_config

S, C, V = "kernel_sessions:sessions", "kernel_sessions:checkpoints", "kernel_sessions:variables"
HUGE = 10**400  # 400 digits: no float holds it
UPLOAD_BYTES = 400 << 20  # each hostile upload declares 400 MiB
UPLOADS = 3
RSS_GROWTH_LIMIT = 64 << 20  # far below one buffered 400 MiB upload
READ_TIMEOUT = 5.0  # seconds the variables service waits for the kernel here (30 by default)
WAIT = 60.0  # seconds any bounded wait of this module may take at most
OCTET = "application/octet-stream"


class Recording(Authorizer):
    """Allows all but the (action, resource) pairs in ``denied``; records what our routes ask."""

    denied: set[tuple[str, str]] = set()
    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if not resource.startswith("kernel_sessions:"):
            return True
        self.asked.append((action, resource))
        return (action, resource) not in self.denied


class DenyExecute(Authorizer):
    """jupyter_server's ``is_authorized``, denying only ``execute`` (on any resource)."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action != "execute"


class DenyRead(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return action != "read"


@pytest.fixture
def jp_server_config(request: Any, ks_data_dir: Any) -> Config:
    return ks_config(ks_data_dir, **getattr(request, "param", {}))


@pytest.fixture
def ks_url(http_server_client: Any, jp_base_url: str, jp_auth_header: dict) -> Any:
    """Like ``ks_api``, for a path sent as it is (query and %-escapes included; ``jp_fetch``
    would escape them into the path): ``await ks_url("GET", "sessions/s?purge=1")``."""

    async def fetch(
        method: str, tail: str, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Any]:
        url = f"{jp_base_url}api/kernel-sessions/{tail}"
        if raw is None and method in ("POST", "PUT", "PATCH"):
            raw = b""
        resp = await http_server_client.fetch(
            url,
            method=method,
            body=raw,
            headers={**jp_auth_header, **(headers or {})},
            raise_error=False,
            allow_nonstandard_methods=True,
            request_timeout=WAIT,
        )
        data = KsApi.check(
            method,
            "/" + tail.split("?", 1)[0],
            resp.code,
            resp.body,
            resp.headers.get("Content-Type", ""),
        )
        return resp.code, data, resp

    return fetch


ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/(?:tmp|root|home|usr|work|var|etc)/")


def is_error(body: Any) -> bool:
    """``{message, reason}`` and nothing else: no traceback, no absolute path."""
    return (
        isinstance(body, dict)
        and set(body) == {"message", "reason"}
        and isinstance(body["message"], str)
        and isinstance(body["reason"], str)
        and "Traceback" not in body["message"]
        and not ABSOLUTE_PATH.search(body["message"])
    )


async def healthy(ks_api: Any, name: str) -> None:
    """The server answers, and the session's kernel runs code (waited for, bounded)."""
    assert (await ks_api("GET", "sessions"))[0] == 200
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        code, out, _ = await ks_api(
            "POST", f"sessions/{name}/execute", {"code": "print(6 * 7)", "timeout": 5}
        )
        if code == 200 and out["status"] == "ok":
            assert out["outputs"][0]["text"] == "42\n", out
            return
        assert asyncio.get_running_loop().time() < deadline, (code, out)


# -- 7. authorization matches what an action does ---------------------------------------------


@pytest.mark.parametrize("jp_server_config", [{"authorizer_class": DenyExecute}], indirect=True)
async def test_an_authorizer_denying_execute(ks_api, jp_serverapp):
    assert isinstance(jp_serverapp.authorizer, DenyExecute)
    assert (await ks_api("POST", "sessions", {"name": "m"}))[0] == 201
    code, out, _ = await ks_api("PUT", "sessions/m/variables/x", 5)  # a JSON value: a write
    assert code == 200 and out["ok"], out
    code, err, _ = await ks_api(
        "PUT", "sessions/m/variables/x", raw=dill.dumps(6), headers={"Content-Type": OCTET}
    )
    assert code == 403 and is_error(err) and err["reason"] == "forbidden", err
    code, listing, _ = await ks_api("GET", "sessions/m/variables")  # a read: still 5
    assert code == 200 and [(v["name"], v["preview"]) for v in listing["variables"]] == [("x", "5")]
    code, cp, _ = await ks_api("POST", "sessions/m/checkpoints", {})  # taking one is a write
    assert code == 201, cp
    refused = [
        ("POST", f"sessions/m/checkpoints/{cp['id']}/restore", {}),
        ("POST", f"sessions/m/checkpoints/{cp['id']}/restore", {"into": "f2"}),
        ("POST", "sessions", {"name": "f", "from": {"session": "m"}}),
        ("POST", "sessions", {"name": "f", "from": {"session": "m", "checkpoint": cp["id"]}}),
        ("POST", "sessions/m/execute", {"code": "1"}),
        ("GET", "sessions/m/variables/x", None),
        ("GET", "sessions/m/connection", None),
        ("POST", "sessions/m/wake", None),
    ]
    for method, path, body in refused:
        code, err, _ = await ks_api(method, path, body)
        assert code == 403 and is_error(err) and err["reason"] == "forbidden", (path, err)
    for name in ("f", "f2"):  # refused forks created nothing
        assert (await ks_api("GET", f"sessions/{name}"))[0] == 404
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):  # the catch-all answers (read)
        code, err, _ = await ks_api(method, "no/such/route", {} if method != "GET" else None)
        assert code == 404 and is_error(err) and err["reason"] == "not_found", (method, err)


@pytest.mark.parametrize("jp_server_config", [{"authorizer_class": Recording}], indirect=True)
async def test_a_fork_needs_what_restore_needs(ks_api, jp_serverapp):
    authz = jp_serverapp.authorizer
    assert isinstance(authz, Recording)
    authz.denied = set()
    assert (await ks_api("POST", "sessions", {"name": "m"}))[0] == 201
    code, cp, _ = await ks_api("POST", "sessions/m/checkpoints", {})
    assert code == 201, cp
    restore = f"sessions/m/checkpoints/{cp['id']}/restore"
    fork = ("POST", "sessions", {"name": "f", "from": {"session": "m"}})
    fork_into = ("POST", restore, {"into": "f"})

    authz.asked = []
    code, report, _ = await ks_api("POST", restore, {})
    assert code == 200, report
    restore_needs = set(authz.asked)
    assert restore_needs == {("execute", C)}
    for route in (fork, fork_into):
        authz.asked = []
        assert (await ks_api(*route))[0] in (200, 201)
        assert set(authz.asked) == restore_needs | {("write", S)}, (route, authz.asked)
        assert (await ks_api("DELETE", "sessions/f"))[0] == 204

    for denied in (("execute", C), ("write", S)):
        authz.denied = {denied}
        for route in (fork, fork_into):
            code, err, _ = await ks_api(*route)
            assert code == 403 and is_error(err), (denied, route, err)
            assert (await ks_api("GET", "sessions/f"))[0] == 404  # nothing was created
    authz.denied = {("execute", C)}
    assert (await ks_api("POST", restore, {}))[0] == 403  # restore and fork stay equal
    authz.denied = {("write", S)}
    assert (await ks_api("POST", restore, {}))[0] == 200  # restoring in place creates nothing


@pytest.mark.parametrize("jp_server_config", [{"authorizer_class": Recording}], indirect=True)
async def test_dill_bytes_need_execute_before_they_are_read(
    jp_fetch, jp_serverapp, http_server_port, jp_base_url, jp_auth_header, ks_api
):
    """A PUT of dill bytes by a user without ``execute`` is refused on its headers: the
    server answers 403 although not one byte of the declared 60 MiB was sent."""
    authz = jp_serverapp.authorizer
    authz.denied = set()
    assert (await ks_api("POST", "sessions", {"name": "m"}))[0] == 201
    authz.denied = {("execute", V)}
    authz.asked = []
    status, body, sent = await upload(
        http_server_port[1],
        "PUT",
        f"{jp_base_url}api/kernel-sessions/sessions/m/variables/x",
        60 << 20,
        jp_auth_header,
        "application/octet-stream",
        send_body=False,
    )
    assert status == 403 and sent == 0 and is_error(body), (status, body)
    assert ("execute", V) in authz.asked
    authz.denied = set()  # with execute the same PUT works
    code, out, _ = await ks_api(
        "PUT", "sessions/m/variables/x", raw=dill.dumps({"a": 1}), headers={"Content-Type": OCTET}
    )
    assert code == 200 and out["ok"], out


@pytest.mark.parametrize("jp_server_config", [{"authorizer_class": DenyRead}], indirect=True)
async def test_the_catch_all_route_is_authorized(ks_api):
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        code, err, _ = await ks_api(method, "no/such/route", {} if method != "GET" else None)
        assert code == 403 and is_error(err) and err["reason"] == "forbidden", (method, err)


@pytest.mark.parametrize(
    "jp_server_config",
    [{"allow_unauthenticated_access": True}, {"allow_unauthenticated_access": False}],
    indirect=True,
    ids=["unauth-allowed", "auth-required"],
)
async def test_the_catch_all_route_is_authenticated(
    ks_url, http_server_client, jp_base_url, jp_auth_header
):
    anonymous = {"Authorization": "token not-the-token"}
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        body = None if method == "GET" else b"{}"
        for path in ("no/such/route", "", "sessions/m/nothing/here", "sessions/m/variables/x/y"):
            code, err, _ = await ks_url(method, path, body, headers=anonymous)
            assert code == 403 and is_error(err), (method, path, err)
        resp = await http_server_client.fetch(  # the API root without its slash
            f"{jp_base_url}api/kernel-sessions",
            method=method,
            body=body,
            headers=anonymous,
            raise_error=False,
            allow_nonstandard_methods=True,
        )
        assert resp.code == 403 and is_error(json.loads(resp.body)), (method, resp.body)
    code, err, _ = await ks_url("GET", "no/such/route")  # with a token: a JSON 404
    assert code == 404 and err["reason"] == "not_found", err
    resp = await http_server_client.fetch(
        f"{jp_base_url}api/kernel-sessions", raise_error=False, headers=jp_auth_header
    )
    assert resp.code == 404 and json.loads(resp.body)["reason"] == "not_found"


# -- 8. input ---------------------------------------------------------------------------------


async def test_400_digit_numbers_are_400(ks_api, ks_url):
    assert (await ks_api("POST", "sessions", {"name": "s"}))[0] == 201
    digits = str(HUGE).encode()
    for sign in (b"", b"-"):
        n = sign + digits
        for method, path, raw, reason in (
            ("POST", "sessions", b'{"name": "big", "ttl": %s}' % n, "invalid_ttl"),
            ("PATCH", "sessions/s", b'{"ttl": %s}' % n, "invalid_ttl"),
            ("POST", "sessions/s/execute", b'{"code": "1", "timeout": %s}' % n, "invalid_timeout"),
            ("POST", "sessions/s/checkpoints", b'{"timeout": %s}' % n, "invalid_timeout"),
            (
                "POST",
                "sessions/s/lease",
                b'{"owner": "me", "lease_seconds": %s}' % n,
                "invalid_lease",
            ),
            ("PATCH", "pool", b'{"sizes": {"python3": %s}}' % n, "invalid_sizes"),
            ("POST", "sessions", b'{"name": "big", "ttl": %s.5}' % n, "invalid_ttl"),
            ("POST", "sessions", b'{"name": "big", "ttl": %se400}' % n, "invalid_ttl"),
        ):
            code, err, _ = await ks_api(method, path, raw=raw)
            assert code == 400 and is_error(err) and err["reason"] == reason, (path, n[:2], err)
    # query arguments: a typed one is refused, a name the API does not read changes nothing
    h = str(HUGE)
    for method, path in (
        ("DELETE", f"sessions/s?purge={h}"),
        ("GET", f"sessions/s/checkpoints?deleted={h}"),
        ("GET", f"sessions/s/variables?include_modules={h}"),
        ("GET", f"sessions/s/variables?filter={h}"),
        ("GET", f"sessions/{h}"),
        ("GET", f"sessions/s/variables/x{h}x?format={h}"),
        ("GET", f"sessions/s/checkpoints/{h}"),
    ):
        code, err, _ = await ks_url(method, path)
        assert code == 400 and is_error(err), (path[:60], err)
    code, out, _ = await ks_url(
        "POST", f"sessions/s/execute?timeout={h}&ttl={h}", b'{"code": "1 + 1"}'
    )
    assert code == 200 and out["status"] == "ok", out
    code, made, _ = await ks_url("POST", f"sessions?ttl={h}&timeout={h}", b'{"name": "q"}')
    assert code == 201 and made["ttl"] is None, made
    # a 400-digit integer is a fine *value* of a variable
    assert (await ks_api("PUT", "sessions/s/variables/big", raw=digits))[0] == 200
    code, value, _ = await ks_url("GET", "sessions/s/variables/big?format=json")
    assert code == 200 and value["value"] == HUGE, value
    await healthy(ks_api, "s")


LONE = (b'"\\ud800"', b'"\\udfff"', b'"a\\udc80b"')


async def test_lone_surrogates_are_400(ks_api, ks_url):
    assert (await ks_api("POST", "sessions", {"name": "s"}))[0] == 201
    for lone in LONE:
        for method, path, raw in (
            ("POST", "sessions/s/execute", b'{"code": %s}' % lone),
            ("POST", "sessions/s/lease", b'{"owner": %s}' % lone),
            ("POST", "sessions", b'{"name": %s}' % lone),
            ("POST", "sessions", b'{"name": "t", "tags": {"a": %s}}' % lone),
            ("POST", "sessions", b'{"name": "t", "tags": {%s: "a"}}' % lone),
            ("POST", "sessions", b'{"name": "t", "kernel_name": %s}' % lone),
            ("POST", "sessions", b'{"name": "t", "from": {"session": %s}}' % lone),
            ("PATCH", "sessions/s", b'{"tags": {"k": %s}}' % lone),
            ("POST", "sessions/s/checkpoints", b'{"label": %s}' % lone),
            ("PUT", "sessions/s/variables/v", b'["ok", {"k": %s}]' % lone),
            ("PUT", "sessions/s/variables/v", lone),
        ):
            code, err, _ = await ks_api(method, path, raw=raw)
            assert code == 400 and is_error(err) and err["reason"] == "invalid_text", (path, err)
    # the same in a URL (UTF-8 of a surrogate): path segments and query arguments
    for method, path in (
        ("DELETE", "sessions/s/lease?owner=%ED%A0%80"),
        ("GET", "sessions/%ED%A0%80"),
        ("GET", "sessions/s/variables/%ED%A0%80"),
        ("GET", "sessions/s/variables?filter=%ED%A0%80"),
        ("GET", "sessions/s/checkpoints/%ED%A0%80"),
        ("GET", "no/%ED%A0%80"),
    ):
        code, err, _ = await ks_url(method, path)
        assert code == 400 and is_error(err), (path, err)
    assert (await ks_api("GET", "sessions/t"))[0] == 404
    await healthy(ks_api, "s")


HOSTILE = """
import time
class BadLen(list):
    def __len__(self):
        raise RuntimeError("no len")
class SlowRepr(list):
    def __repr__(self):
        time.sleep(3600)
bad_len = BadLen([1, 2])
slow_repr = SlowRepr([1])
"""


async def test_values_the_kernel_cannot_render_get_json_answers(ks_api, ks_url, monkeypatch):
    """Read first, before any listing (a listing learns which values hang): a list whose
    ``__len__`` raises, then one whose repr never returns, each with ``format=json``. The
    answer is the value, a JSON 4xx, or a 504 once the (shortened) read timeout is over; the
    session is then interrupted and runs code again."""
    monkeypatch.setattr(variables_module, "CALL_TIMEOUT", READ_TIMEOUT)
    assert (await ks_api("POST", "sessions", {"name": "odd"}))[0] == 201
    code, out, _ = await ks_api("POST", "sessions/odd/execute", {"code": HOSTILE})
    assert code == 200 and out["status"] == "ok", out
    answers = {}
    for var, value in (("bad_len", [1, 2]), ("slow_repr", [1])):
        resp = await ks_api.jp_fetch(
            "api",
            "kernel-sessions",
            "sessions",
            "odd",
            "variables",
            var,
            params={"format": "json"},
            raise_error=False,
        )
        body = json.loads(resp.body)
        answers[var] = (resp.code, body)
        assert resp.code != 500 and resp.headers["Content-Type"].startswith("application/json")
        if resp.code == 200:
            assert body["value"] == value, body
        else:
            assert 400 <= resp.code < 500 or resp.code == 504, (var, resp.code, body)
            assert is_error(body), body
        if resp.code == 504:  # the kernel is still in the repr: free it
            assert body["reason"] == "timeout"
            assert (await ks_api("POST", "sessions/odd/interrupt"))[0] == 200
        await healthy(ks_api, "odd")
    print(f"\nformat=json reads: {answers}")
    code, listing, _ = await ks_api("GET", "sessions/odd/variables")
    assert code == 200 and {"bad_len", "slow_repr"} <= {v["name"] for v in listing["variables"]}
    for var in ("bad_len", "slow_repr"):  # repr is guarded in the kernel: a quick answer
        code, body, _ = await ks_url("GET", f"sessions/odd/variables/{var}?format=repr")
        assert code in (200, 400), (var, code, body)
    await healthy(ks_api, "odd")


def test_messages_carry_no_absolute_paths():
    for message, kept in (
        ("[Errno 13] Permission denied: '/home/u/.local/share/jupyter/ks/key'", "…/key"),
        ("cannot write C:\\Users\\u\\AppData\\ks\\blob", "…/blob"),
        ("at /usr/lib/python3/site-packages/kernel_sessions/x.py, line 3", "…/x.py"),
    ):
        scrubbed = scrub_paths(message)
        assert kept in scrubbed and not re.search(r"/home|/usr|Users", scrubbed), scrubbed
    for message in (
        "no endpoint api/kernel-sessions/a/b",
        "ttl must be in (0, 3.2e+07]",
        "see http://127.0.0.1:8888/lab/tree",
        "1/2/3",
    ):
        assert scrub_paths(message) == message


# -- uploads refused before they are buffered -------------------------------------------------


async def upload(
    port: int,
    method: str,
    path: str,
    size: int,
    headers: dict[str, str] | None,
    content_type: str = "application/json",
    *,
    chunked: bool = False,
    send_body: bool = True,
) -> tuple[int, Any, int]:
    """A request declaring a ``size`` body (or a chunked one) on a raw connection: the headers,
    then body bytes until the server closes (never more than ``size``), while the answer is
    read as it comes (data the server sent before it closed stays readable after a reset).
    ``(status, JSON body of the answer, body bytes sent)``."""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    head = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Type: {content_type}",
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    sent = 0
    chunk = b"x" * (1 << 20)
    if chunked:
        chunk = b"%x\r\n%s\r\n" % (len(chunk), chunk)

    async def push() -> None:
        nonlocal sent
        try:
            await loop.sock_sendall(sock, ("\r\n".join(head) + "\r\n\r\n").encode())
            while send_body and sent < size:
                await loop.sock_sendall(sock, chunk)
                sent += 1 << 20
        except OSError:
            pass  # the server closed the connection: it reads no more

    async def answer() -> bytes:
        data = b""
        try:
            while block := await loop.sock_recv(sock, 1 << 16):
                data += block
        except ConnectionResetError:
            pass  # closed with our bytes unread: what it sent before is in ``data``
        return data

    pusher = asyncio.ensure_future(push())
    try:
        data = await asyncio.wait_for(answer(), WAIT)  # until the server closes
    finally:
        pusher.cancel()
        await asyncio.gather(pusher, return_exceptions=True)
        sock.close()
    head_in, _, body = data.partition(b"\r\n\r\n")
    status_line = head_in.split(b"\r\n", 1)[0]
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else 0
    return status, json.loads(body) if body.strip() else None, sent


async def test_large_uploads_are_refused_before_they_are_read(
    ks_api, http_server_port, jp_base_url, jp_auth_header
):
    port, root = http_server_port[1], f"{jp_base_url}api/kernel-sessions/"
    assert (await ks_api("GET", "sessions"))[0] == 200
    proc = psutil.Process(os.getpid())  # jp_serve's server runs in this process
    before = proc.memory_info().rss
    results = [
        await upload(port, "POST", root + "sessions", UPLOAD_BYTES, None) for _ in range(UPLOADS)
    ]
    anonymous_grown = proc.memory_info().rss - before
    results += [
        await upload(port, "POST", root + "sessions", UPLOAD_BYTES, jp_auth_header),
        await upload(port, "PUT", root + "no/such/route", UPLOAD_BYTES, None),
        await upload(
            port,
            "PUT",
            root + "sessions/m/variables/x",
            MAX_PICKLE_BODY_BYTES + 1,
            jp_auth_header,
            "application/octet-stream",
        ),
        await upload(port, "POST", root + "sessions", UPLOAD_BYTES, jp_auth_header, chunked=True),
    ]
    grown = proc.memory_info().rss - before
    print(
        f"\n{UPLOADS} x {UPLOAD_BYTES >> 20} MiB anonymous POSTs: RSS grew "
        f"{anonymous_grown / (1 << 20):.1f} MiB; with 4 more over-limit uploads "
        f"{grown / (1 << 20):.1f} MiB; (status, bytes sent): "
        f"{[(s, sent) for s, _, sent in results]}"
    )
    assert [s for s, _, _ in results] == [403] * UPLOADS + [413, 403, 413, 413], results
    assert all(is_error(body) for _, body, _ in results), results
    assert all(body["reason"] == "body_too_large" for s, body, _ in results if s == 413)
    # the server closed each connection long before the declared body was through
    assert all(sent < UPLOAD_BYTES // 4 for _, _, sent in results), results
    # chunked: counted as it came, refused just past the limit
    assert results[-1][2] <= MAX_BODY_BYTES + (16 << 20)
    assert anonymous_grown < RSS_GROWTH_LIMIT and grown < RSS_GROWTH_LIMIT
    assert (await ks_api("GET", "sessions"))[0] == 200  # and it goes on answering
    code, made, _ = await ks_api("POST", "sessions", {"name": "after"})
    assert code == 201, made


# -- the Python client ------------------------------------------------------------------------

BAD_IDS = ("", ".", "..", "a/b", "/", "../etl", "x/..")


async def test_the_client_refuses_dot_and_slash_ids_before_building_a_url():
    server = ServerInfo("http://127.0.0.1:9/", "")  # never contacted: port 9 refuses
    api = KernelSessionsClient(server=server)
    for bad in BAD_IDS:
        for call in (
            lambda bad=bad: api.delete_variable("etl", bad),
            lambda bad=bad: api.get_variable("etl", bad),
            lambda bad=bad: api.set_variable("etl", bad, 1),
            lambda bad=bad: api.pull("etl", bad),
            lambda bad=bad: api.delete_checkpoint("etl", bad),
            lambda bad=bad: api.get_checkpoint("etl", bad),
            lambda bad=bad: api.restore("etl", bad),
            lambda bad=bad: api.delete_session(bad),
            lambda bad=bad: api.variables(bad),
            lambda bad=bad: api.push(bad, x=1),
        ):
            with pytest.raises(ValueError, match="not a valid name or id"):
                call()
    async with AsyncRestClient(server=server) as aapi:
        for bad in BAD_IDS:
            with pytest.raises(ValueError, match="not a valid name or id"):
                await aapi.delete_variable("etl", bad)
            with pytest.raises(ValueError, match="not a valid name or id"):
                await aapi.delete_checkpoint("etl", bad)
    # a name with a dot that is not a dot segment still gets through to the (refused) call
    from kernel_sessions.client.discovery import ClientError

    with pytest.raises(ClientError):
        api.delete_variable("etl", "...")
