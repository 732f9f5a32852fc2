"""Hostile input: every refusal is a JSON ``{message, reason}`` 4xx (413 when oversize), never a
500, and nothing is created by a refused request.
"""

from __future__ import annotations

import json
from typing import Any

from kernel_sessions.server.handlers.base import MAX_BODY_BYTES
from tests.conftest import KsApi

DEEP = b'{"a": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}"  # deeper than MAX_JSON_DEPTH
BAD_BODIES: list[bytes] = [
    b"[]",
    b'"x"',
    b"123",
    b"null",
    b"true",
    b'{"name": "a',
    b"{,}",
    b"\xff\xfe{\x00",
    b'{"name": "a", "ttl": NaN}',
    b"[" * 5000,
    DEEP,
]
BAD_NAMES: list[Any] = [
    "..",
    ".",
    "a/b",
    "%2e",
    "a\x00b",
    "x" * 256,
    "<script>",
    "ABC",
    "a b",
    "-a",
    "a\n",
    "",
    1,
    None,
    [],
    {},
    True,
]
# field -> wrong values, per endpoint that takes a body
WRONG_FIELDS: dict[str, dict[str, list[Any]]] = {
    "sessions": {
        "kernel_name": [1, "", None, [], "nope", "session.ok", "x" * 200],
        "ttl": ["1", -1, 0, True, [], {}, 1e12],
        "tags": [
            [],
            "x",
            1,
            {"k": 1},
            {"": "v"},
            {"k": "v" * 300},
            {"k" * 65: "v"},
            {f"k{i}": "v" for i in range(33)},
        ],
        "unknown": [1],
    },
    "sessions/ok": {"ttl": ["x", -5, False], "tags": [None, 1, {"k": None}], "kernel_name": ["p"]},
    "sessions/ok/execute": {"code": [1, None, [], {}], "timeout": [0, -1, "1", 1e9, True, None]},
    "pool": {
        "sizes": [None, [], 1, "x", {"python3": -1}, {"python3": 99}, {"python3": "1"}, {"nope": 1}]
    },
}
BODY_ROUTES = [
    ("POST", "sessions"),
    ("PATCH", "sessions/ok"),
    ("POST", "sessions/ok/execute"),
    ("PATCH", "pool"),
    ("POST", "sessions/ok/restart"),
    ("POST", "sessions/ok/interrupt"),
]


async def raw_fetch(
    http_server_client: Any,
    base_url: str,
    auth: dict,
    method: str,
    raw_path: str,
    body: bytes | None = None,
) -> tuple[int, Any]:
    """Fetch a path exactly as given (no escaping), checked against api.yaml."""
    resp = await http_server_client.fetch(
        f"{base_url}api/kernel-sessions/{raw_path}",
        method=method,
        body=body,
        headers=auth,
        raise_error=False,
        allow_nonstandard_methods=True,
    )
    data = KsApi.check(
        method, "/" + raw_path, resp.code, resp.body, resp.headers.get("Content-Type", "")
    )
    return resp.code, data


async def test_hostile_bodies_and_names_get_json_4xx(
    ks_api, http_server_client, jp_base_url, jp_auth_header
):
    codes: list[int] = []
    assert (await ks_api("POST", "sessions", {"name": "ok"}))[0] == 201

    for method, path in BODY_ROUTES:
        for raw in BAD_BODIES:
            code, err, _ = await ks_api(method, path, raw=raw)
            assert code == 400 and err["reason"] in (
                "invalid_body",
                "invalid_json",
                "invalid_encoding",
            ), (path, raw[:30], err)
        code, err, _ = await ks_api(method, path, raw=json.dumps("x" * (10 << 20)).encode())
        assert (code, err["reason"]) == (413, "body_too_large")
        code, err, _ = await ks_api(method, path, raw=b'{"' + b"x" * MAX_BODY_BYTES + b'": 1}')
        assert code == 413
        code, err, _ = await ks_api(method, path, {"name": "ok", "bogus": 1})
        assert (code, err["reason"]) == (400, "unknown_field")
    for path in ("sessions", "sessions/ok/execute", "pool"):  # required fields
        code, err, _ = await ks_api("POST" if "pool" not in path else "PATCH", path, {})
        assert (code, err["reason"]) == (400, "missing_field")

    for path, fields in WRONG_FIELDS.items():
        method = "POST" if path in ("sessions", "sessions/ok/execute") else "PATCH"
        base = {"sessions": {"name": "fresh"}, "sessions/ok/execute": {"code": "1"}}.get(path, {})
        for field, values in fields.items():
            for value in values:
                code, err, _ = await ks_api(method, path, {**base, field: value})
                codes.append(code)
                assert code == 400, (path, field, value, err)

    for name in BAD_NAMES:
        for method, path in (("POST", "sessions"), ("PATCH", "sessions/ok")):
            code, err, _ = await ks_api(method, path, {"name": name})
            assert (code, err["reason"]) == (400, "invalid_name"), (name, err)
            assert "[a-z0-9]" in err["message"]
    url_names = [
        "..",
        "%2e",
        "%2e%2e",
        "a%2Fb",
        "%00",
        "x" * 256,
        "%3Cscript%3E",
        "ABC",
        "a%20b",
        "%ff%fe",
        "-a",
        "a%0A",
    ]
    for raw_name in url_names:
        for method, suffix in (
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/restart"),
            ("GET", "/connection"),
            ("POST", "/execute"),
        ):
            body = b'{"code": "1"}' if method == "POST" else None
            code, err = await raw_fetch(
                http_server_client,
                jp_base_url,
                jp_auth_header,
                method,
                f"sessions/{raw_name}{suffix}",
                body,
            )
            assert code == 400, (raw_name, suffix, err)
            codes.append(code)
    code, err = await raw_fetch(
        http_server_client, jp_base_url, jp_auth_header, "GET", "sessions/a/b"
    )
    assert (code, err["reason"]) == (404, "not_found")
    code, err = await raw_fetch(http_server_client, jp_base_url, jp_auth_header, "PUT", "sessions")
    assert code == 405 and set(err) == {"message", "reason"}
    assert 500 not in codes
    code, listed, _ = await ks_api("GET", "sessions")
    assert [s["name"] for s in listed] == ["ok"]
