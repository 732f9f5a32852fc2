"""Fault tests of the checkpoint store: a full or read-only disk, objects that break pickling,
blobs that no longer verify, the key file deleted or replaced while the server runs, FIFOs and
devices planted in the store, and deleted checkpoints copied back.

Store-level tests use the real kernel/snapshot.py on plain dict namespaces (no kernel); the
others run real ipykernel kernels. Disk-full tests mount a small tmpfs (we need root for that;
without it they are skipped) and always unmount it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kernel_sessions import KernelSessionManager
from kernel_sessions.checkpoint.store import CheckpointStore, failed_names
from kernel_sessions.core.errors import (
    CheckpointInvalid,
    CheckpointPartial,
    CheckpointStorageFull,
    CheckpointUnverifiable,
)
from tests.support.kernels import kernel_module, run, value, wait_for

SPEC = "python3"
VERSIONS = {"python": "3.x"}
HANG_BOUND = 20.0  # seconds: a call still running after this is hung, not slow


# -- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """A small tmpfs mounted on ``path`` (0700) for the test's duration; skip if we cannot."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def bounded(call: Callable[[], Any], what: str, fifos: list[Path] = ()) -> Any:
    """``call()`` in a thread; fails (instead of hanging the suite) if it does not return
    within HANG_BOUND seconds. A FIFO it blocked on is opened for writing to release it."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_BOUND)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        thread.join(HANG_BOUND)
        raise AssertionError(f"{what} hung on a planted file")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture(scope="module")
def snap() -> Iterator[types.ModuleType]:
    with kernel_module("snapshot", "_kernel_sessions_snapshot_for_faults") as module:
        module.BUNDLE_ITEM_BYTES = 0  # one blob per variable: tests damage one at a time
        yield module


@pytest.fixture
def log() -> logging.Logger:
    return logging.getLogger("tests.faults_store")


@pytest.fixture
def store(tmp_path: Path, log: logging.Logger) -> CheckpointStore:
    return CheckpointStore(root=str(tmp_path / "ckpt"), log=log)


def take(store: CheckpointStore, snap: types.ModuleType, session: str, ns: dict) -> dict:
    dump = snap.dump_namespace(ns, store.blob_dir)
    return store.write_manifest(session, dump, kernelspec=SPEC, versions=VERSIONS)


def manifest_file(store: CheckpointStore, session: str, cid: str) -> Path:
    return Path(store.root, "manifests", session, cid + ".json")


def blob_file(store: CheckpointStore, manifest: dict, name: str) -> Path:
    sha = manifest["variables"][name]["blob"]
    return Path(store.blob_dir, sha[:2], sha)


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


class Refuses:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


class Cursed:
    def __getattribute__(self, name):
        raise RuntimeError("no attribute may be read")


class Liar:
    @property
    def __class__(self):
        raise RuntimeError("no class either")


# -- 4: partial checkpoints, verification, choice ---------------------------------------------


def test_objects_breaking_pickling_or_attribute_access_are_skipped_and_make_it_partial(store, snap):
    ns = {
        "fine": {"a": 1},
        "refuses": Refuses(),
        "cursed": Cursed(),
        "liar": Liar(),
        "box": [Liar()],
        "lock": threading.Lock(),
    }
    m = take(store, snap, "etl", ns)
    assert set(m["variables"]) == {"fine"}
    skipped = {s["name"]: s for s in m["skipped"]}
    assert set(skipped) == {"refuses", "cursed", "liar", "box", "lock"}
    for name in ("refuses", "cursed", "liar", "box"):
        assert skipped[name]["failed"] is True and skipped[name]["reason"], skipped[name]
    assert "failed" not in skipped["lock"]  # never savable by nature: not a failure
    assert m["partial"] is True and sorted(failed_names(m)) == ["box", "cursed", "liar", "refuses"]
    [summary] = store.list("etl")
    assert summary["valid"] and summary["partial"]
    assert take(store, snap, "etl", {"fine": 1, "lock": threading.Lock()})["partial"] is False


def test_listing_verifies_blobs_once_and_sees_them_change(store, snap, monkeypatch):
    import kernel_sessions.checkpoint.store as ckpt

    m = take(store, snap, "etl", {"a": list(range(100)), "b": "text", "c": 3.5})
    hashed: list[str] = []
    real = ckpt._hasher

    def counting(alg: str) -> Any:
        hashed.append(alg)
        return real(alg)

    monkeypatch.setattr(ckpt, "_hasher", counting)
    assert [s["valid"] for s in store.list("etl")] == [True]
    assert len(hashed) == 3
    for _ in range(3):
        assert store.list("etl")[0]["valid"]
    assert len(hashed) == 3, "an unchanged blob was hashed again"

    flip_last_byte(blob_file(store, m, "b"))  # same size, new content
    [summary] = store.list("etl")
    assert summary["valid"] is False and summary["reason"] == "tampered"
    assert "b" in summary["message"] and store.root not in summary["message"]
    assert len(hashed) == 4  # only the changed blob
    blob_file(store, m, "b").unlink()
    assert store.list("etl")[0]["reason"] == "missing_blob"
    with pytest.raises(CheckpointInvalid) as exc:
        store.verify("etl", m["id"])
    assert exc.value.reason == "missing_blob"


def test_choose_takes_the_newest_complete_checkpoint_that_verifies(store, snap):
    c1 = take(store, snap, "etl", {"a": 1, "kept": [1, 2]})
    p2 = take(store, snap, "etl", {"a": 2, "kept": [1, 2], "new": "x", "bad": Refuses()})
    c3 = take(store, snap, "etl", {"a": 3, "kept": [1, 2], "new": "y"})
    flip_last_byte(blob_file(store, c3, "a"))
    chosen, passed = store.choose("etl")
    assert chosen["id"] == c1["id"]
    assert [(p["id"], p["reason"]) for p in passed] == [
        (c3["id"], "tampered"),
        (p2["id"], "partial"),
    ]
    assert set(passed[1]["names"]) == {"a", "kept", "new", "bad"}
    # with no complete one left, the newest partial one that verifies is better than nothing
    store.delete("etl", c1["id"])
    chosen, passed = store.choose("etl")
    assert chosen["id"] == p2["id"] and [p["id"] for p in passed] == [c3["id"]]
    store.delete("etl", p2["id"])
    assert store.choose("etl")[0] is None


def test_partial_checkpoints_never_prune_the_newest_complete_one(store, snap):
    store.keep_checkpoints = 1
    good = take(store, snap, "etl", {"a": 1})
    partial = [take(store, snap, "etl", {"a": i, "bad": Refuses()})["id"] for i in range(3)]
    ids = [s["id"] for s in store.list("etl")]
    assert good["id"] in ids and ids[0] == partial[-1] and len(ids) == 2
    assert store.choose("etl")[0]["id"] == good["id"]
    newer = take(store, snap, "etl", {"a": 9})  # a newer complete one: now the old one may go
    assert [s["id"] for s in store.list("etl")] == [newer["id"]]


# -- 5: the key ------------------------------------------------------------------------------


def _private(path: Path, mode: int) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == mode


def test_key_file_deleted_replaced_loosened_or_a_fifo_is_rewritten_from_memory(
    store, snap, tmp_path, caplog
):
    key = Path(store.root, "key")
    made = [take(store, snap, "etl", {"a": 0})]
    original = key.read_bytes()

    def damage_deleted() -> None:
        key.unlink()

    def damage_replaced() -> None:
        other = tmp_path / "other-key"
        other.write_bytes(os.urandom(32))
        os.replace(other, key)

    def damage_loosened() -> None:
        key.chmod(0o644)

    def damage_fifo() -> None:
        key.unlink()
        os.mkfifo(key, 0o600)

    caplog.set_level(logging.WARNING, logger="tests.faults_store")
    for i, damage in enumerate((damage_deleted, damage_replaced, damage_loosened, damage_fifo)):
        damage()
        caplog.clear()
        made.append(
            bounded(lambda i=i: take(store, snap, "etl", {"a": i + 1}), "a checkpoint", [key])
        )
        assert any("checkpoint key file" in r.getMessage() for r in caplog.records), damage
        assert key.read_bytes() == original and _private(key, 0o600)
        assert stat.S_ISREG(key.lstat().st_mode) and _private(Path(store.root), 0o700)
    # a server started afterwards (a fresh store reading the key from disk) verifies them all
    fresh = CheckpointStore(root=store.root)
    assert [s["valid"] for s in fresh.list("etl")] == [True] * len(made)
    # the root directory made readable by others is closed again before the key is written
    Path(store.root).chmod(0o755)
    key.unlink()
    take(store, snap, "etl", {"a": 99})
    assert _private(Path(store.root), 0o700) and _private(key, 0o600)


# -- 9: FIFOs, devices, and deleted checkpoints put back --------------------------------------


def _device(path: Path) -> bool:
    """A character device (/dev/zero's numbers) at ``path``; False where mknod is refused."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_fifo_or_device_in_place_of_a_manifest_or_blob_is_refused_without_hanging(
    store, snap, kind
):
    def plant(path: Path) -> None:
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path, 0o600)
        elif not _device(path):
            pytest.skip("mknod refused here")

    m1 = take(store, snap, "etl", {"a": [1, 2, 3]})
    m2 = take(store, snap, "etl", {"a": [4, 5, 6]})
    blob, manifest = blob_file(store, m1, "a"), manifest_file(store, "etl", m2["id"])
    plant(blob)
    plant(manifest)
    planted = [blob, manifest]

    listed = bounded(lambda: store.list("etl"), "a listing", planted)
    assert [(s["id"], s["valid"], s["reason"]) for s in listed] == [
        (m2["id"], False, "corrupt"),
        (m1["id"], False, "tampered"),
    ]
    assert "regular file" in listed[0]["message"]
    with pytest.raises(CheckpointInvalid) as exc:
        bounded(lambda: store.read_manifest("etl", m2["id"]), "reading a manifest", planted)
    assert exc.value.reason == "corrupt"
    assert bounded(lambda: store.choose("etl"), "choosing", planted)[0] is None
    assert bounded(lambda: store.verify_blobs(m1), "verifying", planted) == [
        m1["variables"]["a"]["blob"]
    ]
    bounded(lambda: store.collect_garbage(now=1e12), "garbage collection", planted)
    # the kernel side refuses it as well, and binds nothing
    ns: dict = {}
    out = bounded(
        lambda: snap.load_namespace(ns, store.blob_dir, m1["variables"]), "a restore", planted
    )
    assert out["refused"] and ns == {} and out["failed"][0]["reason"] == "not a regular file"
    assert not snap.verify_blob(store.blob_dir, m1["variables"]["a"]["blob"])
    # a new dump of the same value replaces the planted file with the real blob
    again = bounded(lambda: take(store, snap, "etl", {"a": [1, 2, 3]}), "a dump", planted)
    assert stat.S_ISREG(blob.lstat().st_mode) and store.verify("etl", again["id"])


def test_deleted_checkpoints_copied_back_are_refused(store, snap, caplog):
    def copy_back(session: str, manifest: dict, data: bytes) -> Path:
        path = manifest_file(store, session, manifest["id"])
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_bytes(data)
        return path

    def refused(session: str, manifest: dict) -> None:
        with pytest.raises(CheckpointInvalid) as exc:
            store.read_manifest(session, manifest["id"])
        assert exc.value.reason == "deleted", exc.value
        listed = {s["id"]: s for s in store.list(session)}
        assert listed[manifest["id"]]["valid"] is False
        assert listed[manifest["id"]]["reason"] == "deleted"
        chosen = store.choose(session)[0]
        assert chosen is None or chosen["id"] != manifest["id"]

    # explicit delete
    gone = take(store, snap, "etl", {"a": 1})
    kept = take(store, snap, "etl", {"a": 2})
    saved = manifest_file(store, "etl", gone["id"]).read_bytes()
    store.delete("etl", gone["id"])
    copy_back("etl", gone, saved)
    refused("etl", gone)
    assert store.choose("etl")[0]["id"] == kept["id"]
    store.delete("etl", gone["id"])  # the refused copy can be deleted by the user

    # pruned by retention
    store.keep_checkpoints = 1
    pruned = kept
    saved = manifest_file(store, "etl", pruned["id"]).read_bytes()
    newest = take(store, snap, "etl", {"a": 3})
    assert not manifest_file(store, "etl", pruned["id"]).exists()
    copy_back("etl", pruned, saved)
    refused("etl", pruned)
    store.keep_checkpoints = 20

    # renamed away: the old name's copy is refused, the new name keeps it
    saved = manifest_file(store, "etl", newest["id"]).read_bytes()
    assert store.rename_session("etl", "etl2") == 1
    copy_back("etl", newest, saved)
    refused("etl", newest)
    assert store.verify("etl2", newest["id"])["session"] == "etl2"

    # purged with the session
    saved = manifest_file(store, "etl2", newest["id"]).read_bytes()
    store.delete_session("etl2")
    copy_back("etl2", newest, saved)
    refused("etl2", newest)

    # a store whose ledger is lost keeps its checkpoints (made again, with a warning)
    caplog.set_level(logging.WARNING, logger="tests.faults_store")
    live = take(store, snap, "legacy", {"a": 1})
    Path(store.root, "ledger", "legacy.json").unlink()
    fresh = CheckpointStore(root=store.root, log=store.log)
    assert fresh.verify("legacy", live["id"])["id"] == live["id"]
    assert any("ledger" in r.getMessage() for r in caplog.records)


# -- real kernels ----------------------------------------------------------------------------


@pytest.fixture
async def ks(tmp_path):
    made = KernelSessionManager(
        data_dir=str(tmp_path / "data"), pool_sizes={"python3": 1}, root_dir=str(tmp_path)
    )
    made.checkpointing.auto_checkpoint = False
    await made.start()
    yield made
    # deleted first: a session whose checkpoint is partial is not hibernated by a stop but
    # left running for the next server, which would outlive the test
    for model in made.models():
        with contextlib.suppress(Exception):
            await made.delete(model.name)
    await made.stop(keep_sessions=False)


async def execute(ks: KernelSessionManager, name: str, code: str) -> None:
    kc = ks.client(name)
    try:
        content = await run(kc, code)
        assert content["status"] == "ok", content
    finally:
        kc.stop_channels()


async def values(ks: KernelSessionManager, name: str, exprs: list[str]) -> list:
    kc = ks.client(name)
    try:
        return [await value(kc, e) for e in exprs]
    finally:
        kc.stop_channels()


BROKEN = """
class Cursed:
    def __getattribute__(self, name):
        raise RuntimeError("no attribute may be read")
class Liar:
    @property
    def __class__(self):
        raise RuntimeError("no class either")
class Refuses:
    def __reduce__(self):
        raise TypeError("not today")
cursed, liar, refuses = Cursed(), Liar(), Refuses()
fine = {"still": "saved"}
"""


async def test_disk_full_and_read_only_blobs_make_partial_checkpoints_that_never_win(ks, tmp_path):
    events: list[dict] = []
    ks.observe(events.append)
    store = ks.checkpointing.store
    with tmpfs(Path(store.blob_dir)):
        model = await ks.create("full")
        await execute(ks, "full", "x = 'complete'\nkeep = list(range(100))")
        good = await ks.checkpoint("full")
        assert good["partial"] is False

        await execute(ks, "full", "import os\nx = 'newer'\nhuge = os.urandom(3 << 20)")
        with pytest.raises(CheckpointStorageFull) as exc:
            await ks.checkpoint("full")
        assert exc.value.status == 507 and exc.value.reason == "storage_full"
        assert "partial" in str(exc.value) and str(tmp_path) not in str(exc.value)
        assert model.state == "idle"
        listed = await ks.checkpoints("full")
        full_id = listed[0]["id"]
        assert listed[0]["valid"] and listed[0]["partial"] and listed[1]["id"] == good["id"]
        [huge] = [
            s
            for s in (await ks.checkpointing.get("full", full_id))["skipped"]
            if s["name"] == "huge"
        ]
        assert huge["failed"] and huge["errno"] == "ENOSPC" and "/" not in huge["reason"]

        subprocess.run(["mount", "-o", "remount,ro", store.blob_dir], check=True, timeout=30)
        await execute(ks, "full", "x = 'newest'\ndel huge")
        ro = await ks.checkpoint("full")  # nothing new could be written: partial, not full
        assert ro["partial"] and "x" in failed_names(ro)
        assert any("(EROFS)" in s["reason"] for s in ro["skipped"])
        with pytest.raises(CheckpointPartial):  # hibernating now would lose x
            await ks.hibernate("full")
        assert model.state == "idle" and model.kernel_id in ks.kernel_manager
        tried = model.last_checkpoint  # the (partial) checkpoint hibernation took first
        assert tried != ro["id"]

        os.kill(model.pid, signal.SIGKILL)  # the restarter restarts it; auto-restore follows
        await wait_for(lambda: model.state == "idle" and "auto-restored" in model.reason, 60)
        assert good["id"] in model.reason and "passed over" in model.reason
        assert await values(ks, "full", ["x", "keep[-1]", "'huge' in globals()"]) == [
            "complete",
            99,
            False,
        ]
        [event] = [e for e in events if e.get("passed_over")][-1:]
        assert event["checkpoint"] == good["id"]
        assert event["passed_over"] == [
            {"id": cid, "reason": "partial"} for cid in (tried, ro["id"], full_id)
        ]
        assert "huge" in event["missing"]


async def test_broken_objects_are_skipped_and_the_rest_is_saved(ks):
    await ks.create("odd")
    await execute(ks, "odd", BROKEN)
    manifest = await ks.checkpoint("odd")  # one object failing never fails the checkpoint
    skipped = {s["name"] for s in manifest["skipped"] if s.get("failed")}
    assert {"cursed", "liar", "refuses"} <= skipped and manifest["partial"] is True
    assert "fine" in manifest["variables"]
    report = await ks.restore("odd", manifest["id"], into="odd2")
    assert "fine" in report["restored"]
    assert await values(ks, "odd2", ["fine"]) == [{"still": "saved"}]
    with pytest.raises(CheckpointPartial):
        await ks.hibernate("odd")
    assert (await ks.get("odd")).state == "idle"


async def test_wake_falls_back_to_the_newest_checkpoint_that_verifies_then_says_empty(
    ks, monkeypatch
):
    events: list[dict] = []
    ks.observe(events.append)
    store = ks.checkpointing.store
    model = await ks.create("w")
    await execute(ks, "w", "x = 1")
    await ks.checkpoint("w")
    await execute(ks, "w", "x = 2")
    c2 = await ks.checkpoint("w")
    await execute(ks, "w", "x = 3\nonly_in_3 = True")
    await ks.hibernate("w")
    c3 = await ks.checkpointing.get("w", model.last_checkpoint)
    for blob in {blob_file(store, c3, name) for name in ("x", "only_in_3")}:  # c3's own
        flip_last_byte(blob)  # (small variables share one blob: each flipped once)

    # the host's check is bypassed once (as if the blob changed after it): the kernel refuses
    # c3, and the wake goes on to the next one that verifies
    real_choose = store.choose
    calls: list[int] = []

    def choose_missing_the_damage(session: str, exclude: Any = frozenset()) -> Any:
        calls.append(1)
        return (c3, []) if len(calls) == 1 else real_choose(session, exclude)

    monkeypatch.setattr(store, "choose", choose_missing_the_damage)
    await ks.attach("w")
    monkeypatch.undo()
    assert model.state == "idle" and model.reason.startswith(
        "woken: restored checkpoint " + c2["id"]
    )
    assert f"passed over {c3['id']} (tampered)" in model.reason
    assert "only_in_3" in model.reason  # named as not restored
    assert await values(ks, "w", ["x", "'only_in_3' in globals()"]) == [2, False]
    woke = [e for e in events if e["to"] == "idle" and e.get("checkpoint") == c2["id"]][-1]
    assert woke["passed_over"] == [{"id": c3["id"], "reason": "tampered"}]
    assert "only_in_3" in woke["missing"]

    # nothing verifies any more: the wake says so loudly, in the state, the event and the error
    await ks.hibernate("w")
    for blob in Path(store.blob_dir).rglob("*"):
        if blob.is_file():
            blob.write_bytes(b"garbage")
    with pytest.raises(CheckpointUnverifiable) as exc:
        await ks.attach("w")
    assert exc.value.status == 409 and exc.value.reason == "no_valid_checkpoint"
    assert "EMPTY" in str(exc.value) and store.root not in str(exc.value)
    assert model.state == "idle" and "EMPTY" in model.reason
    assert [e for e in events if e["to"] == "idle" and "EMPTY" in e["reason"]][-1]["passed_over"]
    assert await values(ks, "w", ["'x' in globals()"]) == [False]
    assert all(not s["valid"] for s in await ks.checkpoints("w"))


async def test_rest_storage_full_is_507_and_an_unverifiable_wake_is_an_error(
    ks_api, jp_serverapp, ks_data_dir
):
    blob_dir = Path(ks_data_dir) / "checkpoints" / "blobs"
    blob_dir.parent.mkdir(mode=0o700)
    with tmpfs(blob_dir):
        assert (await ks_api("POST", "sessions", {"name": "s"}))[0] == 201
        await ks_api("POST", "sessions/s/execute", {"code": "x = 42"})
        code, first, _ = await ks_api("POST", "sessions/s/checkpoints", {})
        assert code == 201, first
        code, res, _ = await ks_api(
            "POST", "sessions/s/execute", {"code": "import os\nhuge = os.urandom(3 << 20)"}
        )
        assert res["status"] == "ok", res
        code, err, _ = await ks_api("POST", "sessions/s/checkpoints", {})
        assert code == 507 and err["reason"] == "storage_full", err
        assert "partial" in err["message"] and str(ks_data_dir) not in err["message"]
        code, listed, _ = await ks_api("GET", "sessions/s/checkpoints")
        assert [c["valid"] for c in listed] == [True, True] and listed[1]["id"] == first["id"]

        ks = await jp_serverapp.web_app.settings["kernel_sessions_app"].ensure_started()
        await ks_api("POST", "sessions/s/execute", {"code": "del huge"})
        await ks.hibernate("s")
        for blob in blob_dir.rglob("*"):
            if blob.is_file():
                blob.write_bytes(b"garbage")
        code, listed, _ = await ks_api("GET", "sessions/s/checkpoints")
        assert listed and all(c["valid"] is False for c in listed)
        code, err, _ = await ks_api("POST", "sessions/s/execute", {"code": "1"})
        assert code == 409 and err["reason"] == "no_valid_checkpoint", err
        assert "EMPTY" in err["message"] and str(ks_data_dir) not in err["message"]
        code, session, _ = await ks_api("GET", "sessions/s")
        assert session["state"] == "idle" and "EMPTY" in session["reason"]
        assert (await ks_api("DELETE", "sessions/s"))[0] == 204


async def test_purge_frees_the_blobs_only_its_checkpoints_used(ks):
    store = ks.checkpointing.store
    await ks.create("gone")
    await ks.create("stays")
    await execute(ks, "gone", "big = bytes(2_000_000)")
    await execute(ks, "stays", "other = bytes(1_000_000)")
    await ks.checkpoint("gone")
    await ks.checkpoint("stays")
    old = os.path.getmtime(store.blob_dir) - 3600  # older than the GC grace of a running dump
    for root, _, files in os.walk(store.blob_dir):
        for f in files:
            os.utime(os.path.join(root, f), (old, old))

    def blob_bytes() -> int:
        return sum(
            os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(store.blob_dir) for f in fs
        )

    before = blob_bytes()
    await ks.delete("gone", purge=True)
    after = blob_bytes()
    assert before - after >= 2_000_000 and after >= 1_000_000  # freed at once; the other kept
    assert await values(ks, "stays", ["len(other)"]) == [1_000_000]
    assert (await ks.restore("stays"))["restored"] == ["other"]
