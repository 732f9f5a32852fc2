"""Uploads against a real server process (``jupyter kernel-sessions serve``): over-limit and
anonymous ones are refused before their body is read, so its memory does not grow.

The rest of the hostile-request checks (authorization, numbers, surrogates, odd values) run
in-process in ``test_rest.py``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.support.cli_server import LiveServer

UPLOAD_BYTES = 400 << 20  # each hostile upload declares 400 MiB
UPLOADS = 3
SENT_PER_UPLOAD = 8 << 20  # bytes pushed anyway after the headers, until the server closes
RSS_GROWTH_LIMIT = 64 << 20  # far below one buffered upload


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("uploads"))
    try:
        yield server
    finally:
        server.stop()


def upload(server: LiveServer, path: str, token: str | None) -> str:
    """POST with a declared 400 MiB body: send the headers, then push body bytes until the
    server answers and closes (or ``SENT_PER_UPLOAD`` went out); the status line it sent."""
    head = (
        f"POST /api/kernel-sessions/{path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {UPLOAD_BYTES}\r\n"
        + (f"Authorization: token {token}\r\n" if token else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(head.encode())
        chunk, sent = b"x" * (1 << 20), 0
        try:
            while sent < SENT_PER_UPLOAD:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # closed by the server: it read no more
            pass
        sock.settimeout(60)
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer.split(b"\r\n", 1)[0].decode(errors="replace")


def test_large_uploads_are_refused_before_they_are_read(live: LiveServer) -> None:
    proc = psutil.Process(live.proc.pid)
    assert live.api("GET", "sessions").status_code == 200
    before = proc.memory_info().rss
    statuses = [upload(live, "sessions", None) for _ in range(UPLOADS)]
    statuses.append(upload(live, "sessions", live.token))  # authenticated, over the limit
    grown = proc.memory_info().rss - before
    print(
        f"\n{UPLOADS} x {UPLOAD_BYTES >> 20} MiB unauthenticated POSTs + 1 authenticated: "
        f"{statuses}; server RSS grew {grown / (1 << 20):.1f} MiB"
    )
    assert all(" 403 " in s for s in statuses[:UPLOADS]), statuses
    assert " 413 " in statuses[-1], statuses
    assert grown < RSS_GROWTH_LIMIT
    deadline = time.monotonic() + 60  # and the server goes on answering
    while live.api("GET", "sessions").status_code != 200:
        assert time.monotonic() < deadline
