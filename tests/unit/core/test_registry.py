"""The SQLite registry: permissions, corruption, rows."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from kernel_sessions import KernelSessionManager, SessionExists, SessionNotFound
from kernel_sessions.core.models import SessionModel
from kernel_sessions.core.registry import Registry


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_permissions_hold_under_umask_000(tmp_path, umask_000):
    path = tmp_path / "deep" / "kernel_sessions" / "registry.sqlite3"
    reg = Registry(path)
    reg.insert(
        SessionModel(
            name="a", kernel_id="k", kernel_name="python3", connection_info={"key": "secret"}
        )
    )
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    for suffix in ("-wal", "-shm"):
        side = str(path) + suffix
        if os.path.exists(side):
            assert mode(side) == 0o600, suffix
    reg.close()


def test_rows_round_trip_and_conflicts(tmp_path):
    reg = Registry(tmp_path / "r.sqlite3")
    m = SessionModel(
        name="etl",
        kernel_id="k1",
        kernel_name="python3",
        tags={"team": "data"},
        connection_info={"key": "s", "shell_port": 1},
        pid=123,
        ttl=5.0,
    )
    reg.insert(m)
    with pytest.raises(SessionExists):
        reg.insert(m)
    got = reg.get("etl")
    assert got == m
    got.state, got.restarts = "dead", 2
    reg.save(got)
    assert reg.get("etl").restarts == 2
    reg.insert(SessionModel(name="other", kernel_id="k2", kernel_name="python3"))
    with pytest.raises(SessionExists):
        reg.rename("etl", "other")
    reg.rename("etl", "etl2")
    assert reg.names() == ["etl2", "other"]
    reg.delete("etl2")
    with pytest.raises(SessionNotFound):
        reg.get("etl2")
    assert reg.save(m) is False  # a deleted session's writer changes nothing
    reg.close()


def test_a_stale_writer_cannot_overwrite_a_newer_session_of_the_name(tmp_path):
    reg = Registry(tmp_path / "r.sqlite3")
    old = SessionModel(name="etl", kernel_id="k1", kernel_name="python3", generation="g1")
    reg.insert(old)
    reg.delete("etl", "g1")
    new = SessionModel(name="etl", kernel_id="k2", kernel_name="python3", generation="g2")
    reg.insert(new)
    old.state = "dead"
    assert reg.save(old) is False
    reg.delete("etl", "g1")  # a stale delete leaves the new row alone too
    assert reg.get("etl").kernel_id == "k2" and reg.get("etl").state == "starting"
    reg.close()


def _raw_insert(path, **row):
    conn = sqlite3.connect(path)
    cols = ", ".join(row)
    conn.execute(
        f"INSERT INTO sessions ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )
    conn.commit()
    conn.close()


def test_unreadable_rows_are_quarantined_with_a_reason(tmp_path):
    path = tmp_path / "r.sqlite3"
    reg = Registry(path)
    reg.insert(SessionModel(name="good", kernel_id="k", kernel_name="python3"))
    base = {"kernel_id": "k", "kernel_name": "python3", "restarts": 0, "connection_info": "{}"}
    _raw_insert(path, name="badjson", state="idle", tags="{not json", **base)
    _raw_insert(path, name="badstate", state="levitating", tags="{}", **base)
    _raw_insert(path, name="Bad Name!", state="idle", tags="{}", **base)
    _raw_insert(path, name="badtags", state="idle", tags="[1, 2]", **base)
    assert [m.name for m in reg.list()] == ["good"]
    reasons = {q["name"]: q["reason"] for q in reg.quarantined()}
    assert set(reasons) == {"badjson", "badstate", "Bad Name!", "badtags"}
    assert "not JSON" in reasons["badjson"] and "levitating" in reasons["badstate"]
    assert reg.names() == ["good"]  # kept aside, out of the sessions table
    reg.close()


def test_a_registry_path_that_is_a_directory_falls_back(tmp_path):
    path = tmp_path / "reg"
    path.mkdir()
    reg = Registry(path)
    assert reg.degraded and str(tmp_path) not in reg.degraded
    reg.insert(SessionModel(name="x", kernel_id="k", kernel_name="python3"))
    assert [m.name for m in reg.list()] == ["x"]
    reg.close()


def test_a_read_only_registry_falls_back_with_its_rows(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files; the directory case covers the fallback")
    path = tmp_path / "r.sqlite3"
    reg = Registry(path)
    reg.insert(SessionModel(name="kept", kernel_id="k", kernel_name="python3"))
    reg.close()
    os.chmod(path, 0o400)
    reg = Registry(path)
    assert reg.degraded and [m.name for m in reg.list()] == ["kept"]
    reg.close()


def test_a_second_connection_sees_writes(tmp_path):
    a = Registry(tmp_path / "r.sqlite3")
    b = Registry(tmp_path / "r.sqlite3")
    a.insert(SessionModel(name="x", kernel_id="k", kernel_name="python3"))
    assert [m.name for m in b.list()] == ["x"]
    with pytest.raises(SessionExists):  # the primary key holds across connections
        b.insert(SessionModel(name="x", kernel_id="k2", kernel_name="python3"))
    a.close()
    b.close()


def test_corrupt_file_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "r.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    reg = Registry(path)
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].startswith("r.sqlite3.corrupt-")
    assert (tmp_path / aside[0]).read_bytes().startswith(b"this is not a database")
    assert "moved aside" in caplog.text
    reg.insert(SessionModel(name="fresh", kernel_id="k", kernel_name="python3"))
    assert reg.names() == ["fresh"]
    reg.close()


async def test_manager_starts_on_a_corrupt_registry(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "registry.sqlite3").write_bytes(b"\x00garbage" * 512)
    ks = KernelSessionManager(data_dir=str(data), pool_sizes={"python3": 0})
    await ks.start()
    try:
        assert await ks.list() == []
        assert any(".corrupt-" in p.name for p in data.iterdir())
    finally:
        await ks.stop()
