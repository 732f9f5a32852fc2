"""Authentication and authorization of every route: 403 without a user or the permission,
2xx with it, on the documented resource/action; no JupyterServerAuthWarning for our routes.
"""

from __future__ import annotations

from typing import Any

import pytest
from jupyter_server.auth import Authorizer
from traitlets.config import Config

from tests.conftest import ks_config

S, P = "kernel_sessions:sessions", "kernel_sessions:pool"
V = "kernel_sessions:variables"
# every route x method: (method, path, body, resource, action); DELETE last (it ends "m")
MATRIX: list[tuple[str, str, Any, str, str]] = [
    ("GET", "spec.yaml", None, S, "read"),
    ("GET", "sessions", None, S, "read"),
    ("POST", "sessions", {"name": "made"}, S, "write"),
    ("GET", "sessions/m", None, S, "read"),
    ("PATCH", "sessions/m", {"tags": {"a": "b"}}, S, "write"),
    ("POST", "sessions/m/interrupt", None, S, "write"),
    ("POST", "sessions/m/restart", None, S, "write"),
    ("POST", "sessions/m/execute", {"code": "1"}, S, "execute"),
    ("GET", "sessions/m/connection", None, S, "execute"),
    ("PUT", "sessions/m/variables/x", 5, V, "write"),
    ("GET", "sessions/m/variables", None, V, "read"),
    ("GET", "sessions/m/variables/x", None, V, "execute"),
    ("DELETE", "sessions/m/variables/x", None, V, "write"),
    ("GET", "pool", None, P, "read"),
    ("PATCH", "pool", {"sizes": {"python3": 1}}, P, "write"),
    ("DELETE", "sessions/m", None, S, "write"),
]


class DenyOneAuthorizer(Authorizer):
    """Allows everything except one (action, resource); records what our routes asked."""

    denied: tuple[str, str] | None = None
    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource.startswith("kernel_sessions:"):
            self.asked.append((action, resource))
        return (action, resource) != self.denied


@pytest.fixture
def jp_server_config(request: Any, ks_data_dir: Any) -> Config:
    """The shared config plus this test's ServerApp settings (indirect parametrization)."""
    return ks_config(ks_data_dir, **request.param)


@pytest.mark.filterwarnings("error::jupyter_server.utils.JupyterServerAuthWarning")
@pytest.mark.parametrize(
    "jp_server_config",
    [{"allow_unauthenticated_access": False}, {"allow_unauthenticated_access": True}],
    indirect=True,
    ids=["auth-required", "unauth-allowed"],
)
async def test_every_route_needs_authentication(ks_api, jp_serverapp):
    assert (await ks_api("POST", "sessions", {"name": "m"}))[0] == 201
    anonymous = {"Authorization": "token not-the-token"}
    for method, path, body, _, _ in [*MATRIX, ("GET", "nowhere", None, S, "read")]:
        code, err, _ = await ks_api(method, path, body, headers=anonymous)
        assert code == 403 and set(err) == {"message", "reason"}, (method, path, err)
    code, listed, _ = await ks_api("GET", "sessions")
    assert code == 200 and [s["name"] for s in listed] == ["m"]


@pytest.mark.parametrize(
    "jp_server_config", [{"authorizer_class": DenyOneAuthorizer}], indirect=True
)
async def test_authorizer_matrix(ks_api, jp_serverapp):
    authz = jp_serverapp.authorizer
    assert isinstance(authz, DenyOneAuthorizer)
    assert (await ks_api("POST", "sessions", {"name": "m"}))[0] == 201
    for method, path, body, resource, action in MATRIX:
        authz.denied = (action, resource)
        authz.asked = []
        code, err, _ = await ks_api(method, path, body)
        assert code == 403 and err["reason"] == "forbidden", (method, path, err)
        assert authz.asked == [(action, resource)], (method, path, authz.asked)
        if method == "POST" and path == "sessions":  # refused: nothing was created
            assert (await ks_api("GET", "sessions/made"))[0] == 404
        # any other denial does not matter to this route
        authz.denied = ("read" if action != "read" else "write", resource)
        code, _, _ = await ks_api(method, path, body)
        assert 200 <= code < 300, (method, path, code)
    authz.denied = None
    assert (await ks_api("GET", "sessions/m"))[0] == 404  # the allowed DELETE ran
