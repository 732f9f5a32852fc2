"""Shared fixtures: a real jupyter_server (pytest-jupyter) with the kernel_sessions extension.

pytest-jupyter runs its fixtures on its own event loop while pytest-asyncio (``asyncio_mode =
auto``) runs the test coroutines on another; ``jp_asyncio_loop`` is pointed at pytest-asyncio's
loop so the server and the test share one.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from traitlets.config import Config

from tests.support import REPO

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TEST_POOL_SIZES = {"python3": 1}  # one warm spare: enough for hits, cheap on 2 cores


@pytest.fixture
async def _ks_running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@pytest.fixture
def jp_asyncio_loop(_ks_running_loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """pytest-jupyter's loop fixture, made the loop pytest-asyncio runs the test on."""
    return _ks_running_loop


@pytest.fixture
def ks_data_dir(tmp_path: Any) -> Any:
    path = tmp_path / "ks_data"
    path.mkdir()
    return path


def ks_config(data_dir: Any, **server_app: Any) -> Config:
    """The server with the kernel_sessions extension, a small pool and a tmp data dir.

    Session kernels are shut down with the test server (``keep_kernels_on_stop = False``) so no
    independent kernel outlives a test; extension failures raise instead of being logged.
    """
    return Config(
        {
            # terminals off: pytest-jupyter adds them otherwise, and their websocket route is
            # undecorated (a JupyterServerAuthWarning that is not ours)
            "ServerApp": {
                "jpserver_extensions": {"kernel_sessions": True, "jupyter_server_terminals": False},
                "reraise_server_extension_failures": True,
                **server_app,
            },
            "PoolMixin": {"pool_sizes": dict(TEST_POOL_SIZES)},
            "KernelSessionsApp": {"session_data_dir": str(data_dir)},
            "KernelSessionManager": {"keep_kernels_on_stop": False},
            # no background checkpoints in the middle of unrelated assertions (tested on their own)
            "CheckpointService": {"auto_checkpoint": False},
        }
    )


@pytest.fixture
def jp_server_config(ks_data_dir: Any) -> Config:
    return ks_config(ks_data_dir)


# -- the REST API, checked against its OpenAPI document -----------------------------------------

API_SPEC_PATH = REPO / "kernel_sessions" / "server" / "api.yaml"
_SPEC_URI = "urn:kernel-sessions-api"


class KsApi:
    """Calls ``{base_url}api/kernel-sessions/...`` and checks every response against api.yaml.

    The status must be one the operation documents, and a JSON body must match its schema.
    Returns ``(status, decoded body or None, response)``.
    """

    spec: dict = yaml.safe_load(API_SPEC_PATH.read_text())
    _registry = Registry().with_resource(_SPEC_URI, Resource.from_contents(spec, DRAFT202012))
    _routes = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), item)
        for p, item in spec["paths"].items()
    ]

    def __init__(self, jp_fetch: Any) -> None:
        self.jp_fetch = jp_fetch

    async def __call__(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, **kwargs: Any
    ) -> tuple[int, Any, Any]:
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        if raw is None and method in ("POST", "PATCH", "PUT"):
            raw = b""
        resp = await self.jp_fetch(
            "api",
            "kernel-sessions",
            path.lstrip("/"),
            method=method,
            body=raw,
            raise_error=False,
            allow_nonstandard_methods=True,
            **kwargs,
        )
        data = self.check(
            method,
            "/" + path.lstrip("/"),
            resp.code,
            resp.body,
            resp.headers.get("Content-Type", ""),
        )
        return resp.code, data, resp

    @classmethod
    def check(cls, method: str, path: str, code: int, body: bytes, ctype: str) -> Any:
        item = next((it for rx, it in cls._routes if rx.match(path)), None)
        data = json.loads(body) if body and ctype.startswith("application/json") else None
        if item is None:  # unknown path: only a JSON error is acceptable
            assert code in (400, 403, 404), (path, code)
            cls.validate(data, "Error")
            return data
        op = item.get(method.lower())
        assert op is not None or code in (403, 404, 405), (method, path, code)
        if op is None:
            return data
        assert str(code) in op["responses"], (
            f"{method} {path}: undocumented status {code}: {body[:300]!r}"
        )
        content = op["responses"][str(code)]
        if "$ref" in content:
            content = cls.spec["components"]["responses"][content["$ref"].rsplit("/", 1)[1]]
        media = content.get("content", {})
        if media and not ctype.startswith("application/json"):
            # another documented media type (e.g. dill bytes as application/octet-stream)
            assert ctype.split(";")[0].strip() in media, (path, code, ctype)
            return data
        if "application/json" in media:
            assert ctype.startswith("application/json"), (path, code, ctype)
            schema = dict(media["application/json"]["schema"])
            if "$ref" in schema:
                schema["$ref"] = _SPEC_URI + schema["$ref"]
            else:
                schema = {
                    "$ref": _SPEC_URI
                    + "#/paths/"
                    + cls._escape(path, item)
                    + f"/{method.lower()}/responses/{code}/content/application~1json/schema"
                }
            jsonschema.Draft202012Validator(schema, registry=cls._registry).validate(data)
        else:
            assert not body or not ctype.startswith("application/json") or code == 204, (path, code)
        return data

    @classmethod
    def _escape(cls, path: str, item: dict) -> str:
        template = next(p for p, it in cls.spec["paths"].items() if it is item)
        return template.replace("~", "~0").replace("/", "~1")

    @classmethod
    def validate(cls, data: Any, component: str) -> None:
        schema = {"$ref": f"{_SPEC_URI}#/components/schemas/{component}"}
        jsonschema.Draft202012Validator(schema, registry=cls._registry).validate(data)


@pytest.fixture
def ks_api(jp_fetch: Any) -> KsApi:
    """``await ks_api("POST", "sessions", {"name": "a"})`` -> (status, json, response)."""
    return KsApi(jp_fetch)
