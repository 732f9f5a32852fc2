"""Unit tests for kernel_sessions/checkpoints.py (host side), with blobs made by the real
kernel/snapshot.py dumping plain dict namespaces; no kernel is started."""

from __future__ import annotations

import json
import os
import stat
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel_sessions.checkpoint.store import (
    GC_GRACE_SECONDS,
    CheckpointStore,
    canonical,
    validate_checkpoint_id,
)
from kernel_sessions.core.errors import (
    CheckpointError,
    CheckpointInvalid,
    CheckpointKeyError,
    CheckpointNotFound,
    CheckpointStorageError,
    InvalidSessionName,
)
from tests.support import KERNEL_DIR
from tests.support.kernels import kernel_module

SNAPSHOT_PATH = KERNEL_DIR / "snapshot.py"
SPEC = "python3"
VERSIONS = {"python": "3.x", "dill": "0.4.1"}
OLD = GC_GRACE_SECONDS + 60  # seconds: comfortably past the GC grace


@pytest.fixture(scope="module")
def snap() -> Iterator[types.ModuleType]:
    with kernel_module("snapshot", "_kernel_sessions_snapshot_for_checkpoints") as module:
        module.BUNDLE_ITEM_BYTES = 0  # one blob per variable here; bundles have their own test
        yield module


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(root=str(tmp_path / "ckpt"))


@pytest.fixture
def umask0():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def checkpoint(store, snap, session: str, ns: dict, **kw) -> dict:
    dump = snap.dump_namespace(ns, store.blob_dir)
    return store.write_manifest(session, dump, kernelspec=SPEC, versions=VERSIONS, **kw)


def manifest_file(store, session: str, cid: str) -> Path:
    return Path(store.root, "manifests", session, cid + ".json")


def blob_file(store, sha: str) -> Path:
    return Path(store.blob_dir, sha[:2], sha)


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_round_trip(store, snap):
    ns = {"n": 42, "s": "héllo", "lst": [1, [2, 3]], "os": os}
    m = checkpoint(store, snap, "etl", ns, label="before")
    validate_checkpoint_id(m["id"])
    assert m["session"] == "etl" and m["label"] == "before" and m["kernelspec"] == SPEC
    assert m["versions"] == VERSIONS and set(m["variables"]) == {"n", "s", "lst", "os"}
    assert m["variables"]["os"]["blob"] is None  # a module is saved by reference
    assert store.read_manifest("etl", m["id"]) == m
    assert store.verify_blobs(m) == []
    restored: dict = {}
    out = snap.load_namespace(restored, store.blob_dir, m["variables"])
    assert out["failed"] == [] and {k: restored[k] for k in ns} == ns
    doc = json.loads(manifest_file(store, "etl", m["id"]).read_bytes())
    assert set(doc) == {"manifest", "hmac"} and len(doc["hmac"]) == 64
    [summary] = store.list("etl")
    assert summary["id"] == m["id"] and summary["valid"] and summary["variables"] == 4
    assert summary["label"] == "before" and summary["skipped"] == 0
    assert store.latest("etl") == m and store.latest("other") is None


def test_skipped_variables_are_recorded(store, snap):
    import threading

    m = checkpoint(store, snap, "etl", {"a": 1, "lock": threading.Lock()})
    assert [s["name"] for s in m["skipped"]] == ["lock"]
    assert store.list("etl")[0]["skipped"] == 1


def test_hmac_tamper_detected(store, snap):
    m = checkpoint(store, snap, "etl", {"a": 1})
    path = manifest_file(store, "etl", m["id"])
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"label":null', b'"label":"x"'))
    with pytest.raises(CheckpointInvalid) as exc:
        store.read_manifest("etl", m["id"])
    assert exc.value.reason == "tampered"
    i = data.index(b'"created":') + len(b'"created":') + 1  # flip one digit of the timestamp
    path.write_bytes(data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :])
    with pytest.raises(CheckpointInvalid, match="signature") as exc:
        store.read_manifest("etl", m["id"])
    assert exc.value.reason == "tampered"
    path.write_bytes(b"not json")
    with pytest.raises(CheckpointInvalid):
        store.read_manifest("etl", m["id"])
    [summary] = store.list("etl")  # shown, not hidden
    assert summary["valid"] is False and summary["reason"] == "tampered"
    assert store.latest("etl") is None


def test_other_key_is_tampered(store, snap, tmp_path):
    m = checkpoint(store, snap, "etl", {"a": 1})
    os.unlink(Path(store.root, "key"))
    fresh = CheckpointStore(root=store.root)
    with pytest.raises(CheckpointInvalid) as exc:
        fresh.read_manifest("etl", m["id"])
    assert exc.value.reason == "tampered"


def test_wrong_session_and_fork(store, snap):
    m = checkpoint(store, snap, "etl", {"a": 1})
    other = manifest_file(store, "other", m["id"])
    other.parent.mkdir(mode=0o700)
    other.write_bytes(manifest_file(store, "etl", m["id"]).read_bytes())  # valid HMAC, moved
    with pytest.raises(CheckpointInvalid) as exc:
        store.read_manifest("other", m["id"])
    assert exc.value.reason == "wrong_session"
    assert store.read_manifest("fork", m["id"], source_session="etl") == m
    with pytest.raises(CheckpointNotFound):
        store.read_manifest("fork", m["id"])


def test_renamed_file_is_wrong_id(store, snap):
    a = checkpoint(store, snap, "etl", {"a": 1})
    b = checkpoint(store, snap, "etl", {"a": 2})
    os.replace(manifest_file(store, "etl", a["id"]), manifest_file(store, "etl", b["id"]))
    with pytest.raises(CheckpointInvalid) as exc:
        store.read_manifest("etl", b["id"])
    assert exc.value.reason == "wrong_id"


def test_ids_and_names_validated(store):
    for bad in ("../key", "20240101T000000.000000Z-abcdef1", "x.json", "", None):
        with pytest.raises(CheckpointError) as exc:
            store.read_manifest("etl", bad)
        assert exc.value.reason == "invalid_checkpoint_id" and exc.value.status == 400
    for bad in ("../etl", "ETL", "a/b", ".."):
        with pytest.raises(InvalidSessionName):
            store.list(bad)
    with pytest.raises(CheckpointNotFound):
        store.delete("etl", "20240101T000000.000000Z-abcdef12")


def test_missing_blob_refuses_write(store, snap):
    dump = snap.dump_namespace({"a": [1, 2, 3], "b": "x"}, store.blob_dir)
    blob_file(store, dump["variables"]["a"]["blob"]).unlink()
    with pytest.raises(CheckpointInvalid) as exc:
        store.write_manifest("etl", dump, kernelspec=SPEC, versions=VERSIONS)
    assert exc.value.reason == "missing_blob"
    assert store.list("etl") == [] and not any(Path(store.root, "manifests").rglob("*.json"))
    dump["variables"]["b"]["blob"] = "../../key"
    with pytest.raises(CheckpointInvalid):
        store.write_manifest("etl", dump, kernelspec=SPEC, versions=VERSIONS)


def test_blob_tamper_reported(store, snap):
    m = checkpoint(store, snap, "etl", {"a": list(range(100)), "b": "text", "c": 3})
    sha_a, sha_b = m["variables"]["a"]["blob"], m["variables"]["b"]["blob"]
    path = blob_file(store, sha_a)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    blob_file(store, sha_b).unlink()
    assert store.verify_blobs(m) == sorted([sha_a, sha_b])
    out = snap.load_namespace({}, store.blob_dir, m["variables"])  # the kernel refuses too
    assert {f["name"] for f in out["failed"]} == {"a", "b"}

    # a refused restore binds and imports nothing, not even the modules it saved by name
    import sys

    sys.modules.pop("colorsys", None)
    entries = {
        **m["variables"],
        "cs": {
            "serializer": "module",
            "module": "colorsys",
            "attr": None,
            "origin": None,
            "type": "module",
        },
    }
    ns: dict = {}
    out = snap.load_namespace(ns, store.blob_dir, entries)
    assert out["refused"] and ns == {} and "colorsys" not in sys.modules


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_key_created_private_under_umask0(store, snap, umask0):
    key = Path(store.root, "key")
    assert store.blob_dir and not key.exists()  # made on first use, not before
    m = checkpoint(store, snap, "etl", {"a": 1})
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_size == 32
    assert CheckpointStore(root=store.root).read_manifest("etl", m["id"]) == m  # same key reused
    assert not list(Path(store.root).glob(".*.tmp"))


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_loose_key_refused(store, snap):
    Path(store.root).mkdir(mode=0o700)
    key = Path(store.root, "key")
    key.write_bytes(os.urandom(32))
    key.chmod(0o644)
    with pytest.raises(CheckpointKeyError, match="chmod 600") as exc:
        checkpoint(store, snap, "etl", {"a": 1})
    assert exc.value.status == 503 and not store.list("etl")
    key.chmod(0o600)
    key.write_bytes(b"short")
    with pytest.raises(CheckpointKeyError, match="32 bytes"):
        CheckpointStore(root=store.root)._load_key()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_key_of_other_owner_refused(store):
    store._load_key()
    os.chown(Path(store.root, "key"), 65534, -1)
    with pytest.raises(CheckpointKeyError, match="owned by"):
        CheckpointStore(root=store.root)._load_key()


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_permissions_under_umask0(store, snap, umask0):
    m = checkpoint(store, snap, "etl", {"a": [1, 2], "b": {"x": 1}})
    root = Path(store.root)
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(dirs) >= 5 and len(files) >= 4  # root, blobs, manifests, etl, blob subdirs
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o700}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}
    assert manifest_file(store, "etl", m["id"]) in files


def test_label_validated(store, snap):
    for bad in ("x" * 201, "two\nlines", 5):
        with pytest.raises(CheckpointError) as exc:
            checkpoint(store, snap, "etl", {"a": 1}, label=bad)
        assert exc.value.reason == "invalid_label"
    assert checkpoint(store, snap, "etl", {"a": 1}, label="")["label"] is None


def test_failed_commit_leaves_previous_checkpoints(store, snap, monkeypatch):
    first = checkpoint(store, snap, "etl", {"a": 1})
    dump = snap.dump_namespace({"a": 2}, store.blob_dir)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(CheckpointStorageError, match="disk gone") as exc:
        store.write_manifest("etl", dump, kernelspec=SPEC, versions=VERSIONS)
    assert exc.value.status == 503 and str(store.root) not in str(exc.value)
    monkeypatch.undo()
    assert [s["id"] for s in store.list("etl")] == [first["id"]]
    assert sorted(p.name for p in manifest_file(store, "etl", first["id"]).parent.iterdir()) == [
        first["id"] + ".json"
    ]  # the temp file was removed too
    assert store.latest("etl") == first


def test_gc_racing_a_dump_that_reuses_an_old_blob(store, snap):
    """GC may remove an old unreferenced blob that a dump has just reused: the commit is then
    refused (never a manifest pointing at nothing) and dumping again rewrites the blob."""
    gone = checkpoint(store, snap, "etl", {"a": "reused"})
    store.delete("etl", gone["id"])
    age(blob_file(store, gone["variables"]["a"]["blob"]), OLD)
    dump = snap.dump_namespace({"a": "reused"}, store.blob_dir)
    assert dump["blobs_written"] == 0  # the old blob is reused as it is
    assert store.collect_garbage() > 0
    with pytest.raises(CheckpointInvalid) as exc:
        store.write_manifest("etl", dump, kernelspec=SPEC, versions=VERSIONS)
    assert exc.value.reason == "missing_blob" and store.list("etl") == []
    m = checkpoint(store, snap, "etl", {"a": "reused"})
    assert store.verify_blobs(m) == [] and m["new_bytes"] > 0


def test_retention_keeps_newest_and_labelled(store, snap):
    store.keep_checkpoints = 3
    made = [
        checkpoint(store, snap, "etl", {"i": i}, label="keep" if i in (0, 2) else None)
        for i in range(8)
    ]
    ids = [s["id"] for s in store.list("etl")]
    unlabelled = [m["id"] for m in made if m["label"] is None]
    labelled = [m["id"] for m in made if m["label"]]
    assert sorted(ids) == sorted(unlabelled[-3:] + labelled)
    assert ids == sorted(ids, reverse=True)  # newest first
    assert store.latest("etl")["id"] == made[-1]["id"]
    assert store.prune("etl") == []
    store.keep_checkpoints = 1
    assert store.prune("etl") == unlabelled[-3:-1][::-1]


def test_ids_increase_when_the_clock_steps_back(store, snap, monkeypatch):
    store.keep_checkpoints = 2
    made = [checkpoint(store, snap, "etl", {"i": i}) for i in range(2)]
    monkeypatch.setattr(time, "time_ns", lambda: 10**18)  # 2001: the clock went back
    made.append(checkpoint(store, snap, "etl", {"i": 2}))
    assert made[2]["id"] > made[1]["id"] and made[2]["created"] > made[1]["created"]
    assert [s["id"] for s in store.list("etl")] == [made[2]["id"], made[1]["id"]]
    assert store.latest("etl")["id"] == made[2]["id"]


def test_gc_removes_only_old_unreferenced_blobs(store, snap):
    kept = checkpoint(store, snap, "etl", {"a": "kept", "b": [1, 2, 3]})
    gone = checkpoint(store, snap, "etl", {"a": "dropped"})
    young = snap.dump_namespace({"z": "being dumped"}, store.blob_dir)  # no manifest yet
    store.delete("etl", gone["id"])
    shas = {k: v["blob"] for k, v in kept["variables"].items()}
    dropped, fresh = gone["variables"]["a"]["blob"], young["variables"]["z"]["blob"]
    for sha in [*shas.values(), dropped]:
        age(blob_file(store, sha), OLD)
    size = blob_file(store, dropped).stat().st_size
    assert store.collect_garbage() == size
    assert not blob_file(store, dropped).exists()
    assert blob_file(store, fresh).exists()  # inside the grace period
    assert store.verify_blobs(kept) == []
    assert store.collect_garbage() == 0
    assert store.collect_garbage(now=time.time() + OLD) > 0 and not blob_file(store, fresh).exists()


def test_gc_keeps_blobs_of_invalid_manifests(store, snap):
    m = checkpoint(store, snap, "etl", {"a": "data"})
    path = manifest_file(store, "etl", m["id"])
    path.write_bytes(path.read_bytes().replace(b'"label":null', b'"label":"x"'))
    assert store.collect_garbage(now=time.time() + OLD) == 0
    assert store.verify_blobs(m) == []


def test_rename_keeps_checkpoints_readable(store, snap):
    a = checkpoint(store, snap, "etl", {"a": 1})
    b = checkpoint(store, snap, "etl", {"a": 2}, label="v2")
    bad = checkpoint(store, snap, "etl", {"a": 3})
    p = manifest_file(store, "etl", bad["id"])
    p.write_bytes(p.read_bytes().replace(b'"a":{', b'"b":{'))
    assert store.rename_session("etl", "etl-v2") == 2
    assert store.list("etl") == [] and not Path(store.root, "manifests", "etl").exists()
    for m in (a, b):
        got = store.read_manifest("etl-v2", m["id"])
        assert got["session"] == "etl-v2" and got["variables"] == m["variables"]
    listed = {s["id"]: s["valid"] for s in store.list("etl-v2")}
    assert listed == {a["id"]: True, b["id"]: True, bad["id"]: False}  # not laundered
    assert store.rename_session("etl-v2", "etl-v2") == 0
    assert store.delete_session("etl-v2") == 3 and store.list("etl-v2") == []


def test_crash_leftover_temp_manifest(store, snap):
    m = checkpoint(store, snap, "etl", {"a": 1})
    folder = manifest_file(store, "etl", m["id"]).parent
    leftover = folder / f".{m['id']}.json.123.abcdef.tmp"
    leftover.write_bytes(b'{"manifest": {"half')
    blob_tmp = Path(store.blob_dir, "ab", ".abcdef.123.cafe.tmp")
    blob_tmp.parent.mkdir(exist_ok=True)
    blob_tmp.write_bytes(b"partial")
    assert [s["id"] for s in store.list("etl")] == [m["id"]]
    assert store.collect_garbage() == 0 and leftover.exists()  # might be in flight
    age(leftover, OLD)
    age(blob_tmp, OLD)
    sizes = leftover.stat().st_size + blob_tmp.stat().st_size
    assert store.collect_garbage() == sizes
    assert not leftover.exists() and not blob_tmp.exists()
    assert store.read_manifest("etl", m["id"]) == m


def test_incremental_checkpoint_writes_one_blob(store, snap):
    big = os.urandom(200_000)
    ns = {"big": big, "rows": list(range(5000)), "c": 1, "same": [7, 8], "twin": [7, 8]}
    first = checkpoint(store, snap, "etl", ns)
    v1 = first["variables"]
    assert v1["same"]["blob"] == v1["twin"]["blob"]  # equal values share one blob
    distinct = {e["blob"]: e["size"] for e in v1.values()}
    assert first["bytes"] == sum(distinct.values()) == first["new_bytes"]
    ns["c"] = 2
    dump = snap.dump_namespace(ns, store.blob_dir)
    assert dump["blobs_written"] == 1
    second = store.write_manifest("etl", dump, kernelspec=SPEC, versions=VERSIONS)
    v2 = second["variables"]
    assert second["new_bytes"] == v2["c"]["size"] < 100
    assert second["bytes"] == first["bytes"] - v1["c"]["size"] + v2["c"]["size"]
    assert [s["bytes"] for s in store.list("etl")] == [second["bytes"], first["bytes"]]


def test_manifest_is_canonical_json(store, snap):
    m = checkpoint(store, snap, "etl", {"a": 1})
    data = manifest_file(store, "etl", m["id"]).read_bytes()
    assert data == canonical(json.loads(data))
    assert set(m) >= {
        "id",
        "session",
        "label",
        "created",
        "kernelspec",
        "versions",
        "variables",
        "skipped",
        "bytes",
        "new_bytes",
    }


def test_committed_checkpoints_never_lose_blobs_to_a_concurrent_gc(store, snap):
    """The worst case: a GC that ignores the grace period runs in a loop while sessions
    checkpoint. Commits may be refused, but a committed checkpoint always has all its blobs."""
    import threading

    stop, errors = threading.Event(), []

    def gc_loop():
        while not stop.is_set():
            store.collect_garbage(now=time.time() + OLD)

    def writer(session: str):
        for i in range(15):
            try:
                checkpoint(store, snap, session, {"i": i, "shared": "same in all", "n": [i]})
            except CheckpointInvalid as exc:
                if exc.reason != "missing_blob":
                    errors.append(exc)
            except Exception as exc:  # reported below
                errors.append(exc)

    gc = threading.Thread(target=gc_loop)
    gc.start()
    writers = [threading.Thread(target=writer, args=(f"s{k}",)) for k in range(3)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    gc.join()
    assert errors == []
    for k in range(3):
        for summary in store.list(f"s{k}"):
            assert store.verify_blobs(store.read_manifest(f"s{k}", summary["id"])) == []
