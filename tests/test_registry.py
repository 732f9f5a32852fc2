"""The SQLite registry: permissions, corruption, rows."""

from __future__ import annotations

import os
import stat

import pytest

from kernel_sessions import KernelSessionManager, SessionExists, SessionNotFound
from kernel_sessions.models import SessionModel
from kernel_sessions.registry import Registry


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
    reg.insert(SessionModel(name="a", kernel_id="k", kernel_name="python3",
                            connection_info={"key": "secret"}))
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    for suffix in ("-wal", "-shm"):
        side = str(path) + suffix
        if os.path.exists(side):
            assert mode(side) == 0o600, suffix
    reg.close()


def test_rows_round_trip_and_conflicts(tmp_path):
    reg = Registry(tmp_path / "r.sqlite3")
    m = SessionModel(name="etl", kernel_id="k1", kernel_name="python3", tags={"team": "data"},
                     connection_info={"key": "s", "shell_port": 1}, pid=123, ttl=5.0)
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
    with pytest.raises(SessionNotFound):
        reg.save(m)
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
