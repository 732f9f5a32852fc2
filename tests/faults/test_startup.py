"""Startup never wedges: a real server starts on a registry holding rows it cannot use, or on a
registry path it cannot write, sets aside what it cannot read (listed with a reason, no paths)
and serves every other session."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel_sessions.core.models import SessionModel
from kernel_sessions.core.registry import Registry
from tests.support.cli_server import LiveServer
from tests.support.faults import registry_path, registry_rows

UNREADABLE = {  # name -> what is wrong with its row: each is quarantined with that reason
    "badjson": ({"tags": "{not json"}, "not JSON"),
    "badstate": ({"state": "levitating"}, "levitating"),
    "Bad Name!": ({}, "invalid session name"),
}
HALF_DONE = {  # rows a crash leaves: finished (dropped) at start
    "gone": {"state": "deleted"},
    "nullkid": {"state": "starting", "kernel_id": None, "pid": None},  # a create cut short
}


def plant(path: Path, template: dict[str, Any], name: str, **changes: Any) -> None:
    row = {**template, "name": name, **changes}
    conn = sqlite3.connect(path)
    conn.execute(
        f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        list(row.values()),
    )
    conn.commit()
    conn.close()


def run(server: LiveServer, name: str, code: str) -> dict[str, Any]:
    r = server.api("POST", f"sessions/{name}/execute", json={"code": code})
    assert r.status_code == 200, r.text
    return r.json()


def test_unreadable_and_half_done_rows_do_not_wedge_the_start(tmp_path: Path) -> None:
    first = LiveServer(tmp_path)
    try:
        assert first.api("POST", "sessions", json={"name": "good"}).status_code == 201
        assert run(first, "good", "x = 1")["status"] == "ok"
    finally:
        first.stop()  # hibernates "good": checkpoint, kernel stopped
    (template,) = registry_rows(tmp_path)
    for name, (changes, _) in UNREADABLE.items():
        plant(registry_path(tmp_path), template, name, **changes)
    for name, changes in HALF_DONE.items():
        plant(registry_path(tmp_path), template, name, **changes)

    server = LiveServer(tmp_path)
    try:
        assert server.names() == ["good"]
        for name in ("badjson", "gone", "nullkid"):
            assert server.api("GET", f"sessions/{name}").status_code == 404
        r = server.api("GET", "registry")
        assert r.status_code == 200 and r.json()["degraded"] is None
        reasons = {q["name"]: q["reason"] for q in r.json()["quarantined"]}
        assert set(reasons) == set(UNREADABLE)
        for name, (_, why) in UNREADABLE.items():
            assert why in reasons[name]
        assert str(tmp_path) not in r.text
        assert {row["name"] for row in registry_rows(tmp_path)} == {"good"}  # the rest aside
        out = run(server, "good", "print(x)")  # wakes from its checkpoint
        assert out["status"] == "ok" and out["outputs"][0]["text"].strip() == "1", out
        assert server.api("POST", "sessions", json={"name": "gone"}).status_code == 201
    finally:
        server.stop()


def test_a_registry_path_that_is_a_directory_is_served_from_a_fallback(tmp_path: Path) -> None:
    regdir = tmp_path / "registry-dir"
    regdir.mkdir()
    server = LiveServer(tmp_path, registry_path=str(regdir))
    try:
        r = server.api("GET", "registry")
        assert r.status_code == 200, r.text
        degraded = r.json()["degraded"]
        assert degraded and "cannot be written" in degraded and str(tmp_path) not in degraded
        assert server.api("POST", "sessions", json={"name": "fresh"}).status_code == 201
        assert run(server, "fresh", "print(6 * 7)")["outputs"][0]["text"].strip() == "42"
    finally:
        server.stop()


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[None]:
    """``path`` bind-mounted read-only onto itself (root writes through file modes)."""
    try:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot bind-mount here: {e}")
    try:
        subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(path)], check=True, capture_output=True
        )
        yield
    finally:
        subprocess.run(["umount", str(path)], check=False, capture_output=True)


def test_a_read_only_registry_is_served_with_its_rows(tmp_path: Path) -> None:
    rodir = tmp_path / "ro"
    rodir.mkdir(mode=0o700)
    reg = Registry(rodir / "registry.sqlite3")
    reg.insert(SessionModel(name="kept", kernel_id=None, kernel_name="python3", state="hibernated"))
    reg.close()
    with read_only_mount(rodir):
        with pytest.raises(OSError):
            (rodir / "probe").write_text("x")
        server = LiveServer(tmp_path, registry_path=str(rodir / "registry.sqlite3"))
        try:
            r = server.api("GET", "registry")
            assert r.status_code == 200
            assert "cannot be written" in r.json()["degraded"]
            assert str(tmp_path) not in json.dumps(r.json())
            assert "kept" in server.names()
            assert server.api("POST", "sessions", json={"name": "fresh"}).status_code == 201
        finally:
            server.stop()
