"""Finding the Jupyter server that serves kernel sessions (for the CLI, client, provisioner).

Order: an explicit URL (``--url``), else ``JUPYTER_KERNEL_SESSIONS_URL``, else the running
servers' runtime files (``jpserver-*.json``, what ``jupyter server list`` reads), taking the first
one that answers on ``api/kernel-sessions/``. The token is the explicit one, else
``JUPYTER_TOKEN``, else the one in the matching runtime file. Nothing here imports the server
unless the runtime files have to be read: a URL in the environment keeps the CLI fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

URL_ENV = "JUPYTER_KERNEL_SESSIONS_URL"
TOKEN_ENV = "JUPYTER_TOKEN"
API_PATH = "api/kernel-sessions/"
PROBE_PATH = API_PATH + "pool"
PROBE_TIMEOUT = 3.0  # seconds per candidate server
HOW_TO_START = (
    "start one with `jupyter kernel-sessions serve` (or `jupyter lab`), or point to one with "
    f"--url/--token or {URL_ENV}/{TOKEN_ENV}"
)


class ClientError(Exception):
    """A failure the caller can act on: a refused request, no server. Never a bug.

    ``reason`` is the API's machine-readable reason (``not_found``, ``invalid_name``, ...);
    ``status`` the HTTP status, if a server answered.
    """

    def __init__(self, message: str, reason: str = "error", status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class ServerNotFound(ClientError):
    """No server with the kernel_sessions extension could be found."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "no_server")


@dataclass(frozen=True)
class ServerInfo:
    """Where the server is: ``url`` is its base URL (ends with ``/``), ``token`` may be empty."""

    url: str
    token: str = ""

    @property
    def api_root(self) -> str:
        return self.url + API_PATH


# The pages of Jupyter's web apps: the URL a server prints (``…/lab?token=…``) or a browser
# shows (``…/lab/tree/x.ipynb``, ``…/tree``) ends in one of them after the server's base URL.
UI_PATHS = ("lab", "tree", "notebooks", "doc", "edit", "terminals", "consoles", "voila")


def split_url(url: str) -> tuple[str, str | None]:
    """``(base URL, token from the query or None)`` of any URL of a Jupyter server: the server
    itself, a base_url under it, or one of its web pages (``/lab?token=…``)."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ServerNotFound(f"not a server URL: {url!r}")
    segments = [p for p in parts.path.split("/") if p]
    for i, seg in enumerate(segments):
        if seg in UI_PATHS:
            segments = segments[:i]
            break
    tokens = parse_qs(parts.query).get("token")
    base = urlunsplit(
        (parts.scheme, parts.netloc, "/" + "".join(f"{s}/" for s in segments), "", "")
    )
    return base, (tokens[0] if tokens else None)


def normalize_url(url: str) -> str:
    """``localhost:8888`` -> ``http://localhost:8888/``; a base_url path is kept, a web page's
    path (``/lab``) and query are dropped."""
    return split_url(url)[0]


def running_servers(runtime_dir: str | None = None) -> Iterator[dict[str, Any]]:
    """Runtime info of the running Jupyter servers, newest first.

    What ``jupyter server list`` reads (``jpserver-*.json`` of live pids in the runtime dir),
    read directly: importing jupyter_server for it costs seconds. Files of dead servers are
    left alone (the server that owned them cleans up, or ``jupyter server list`` does).
    """
    import json
    import re

    import psutil
    from jupyter_core.paths import jupyter_runtime_dir

    folder = runtime_dir or jupyter_runtime_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    infos = []
    for name in names:
        if not re.fullmatch(r"jpserver-(.+)\.json", name):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):  # being written, or unreadable
            continue
        if (
            isinstance(info, dict)
            and isinstance(info.get("pid"), int)
            and psutil.pid_exists(info["pid"])
        ):
            infos.append(info)
    infos.sort(key=lambda i: i.get("pid", 0), reverse=True)
    yield from infos


def _token_for(url: str) -> str | None:
    """The token of the running server at ``url`` (from its runtime file), if any."""
    try:
        for info in running_servers():
            if normalize_url(info.get("url", "")) == url:
                return str(info.get("token") or "")
    except (OSError, ServerNotFound):
        pass
    return None


def probe(server: ServerInfo, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if ``server`` answers on the kernel-sessions API (403 counts: it is there)."""
    import httpx

    headers = {"Authorization": f"token {server.token}"} if server.token else {}
    try:
        r = httpx.get(server.url + PROBE_PATH, headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return False
    return r.status_code in (200, 403) and r.headers.get("content-type", "").startswith(
        "application/json"
    )


def find_server(url: str | None = None, token: str | None = None) -> ServerInfo:
    """The server to talk to (see the module docstring); ``ServerNotFound`` says how to start
    one."""
    given = url or os.environ.get(URL_ENV)
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    if given:
        base, in_url = split_url(given)
        if token is None:
            token = in_url if in_url is not None else _token_for(base)
        return ServerInfo(base, token or "")
    seen = []
    for info in running_servers():
        try:
            base = normalize_url(info.get("url", ""))
        except ServerNotFound:
            continue
        candidate = ServerInfo(base, token if token is not None else str(info.get("token") or ""))
        if probe(candidate):
            return candidate
        seen.append(base)
    if seen:
        raise ServerNotFound(
            f"none of the running Jupyter servers ({', '.join(seen)}) has the kernel_sessions "
            f"extension; {HOW_TO_START}"
        )
    raise ServerNotFound(f"no running Jupyter server found; {HOW_TO_START}")
