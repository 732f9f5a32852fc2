"""The write tracker (kernel/dirty.py) on real memory, and snapshots that rely on it.

Runs where Linux offers asynchronous userfaultfd write-protection and PAGEMAP_SCAN (>= 6.7);
elsewhere the tracker must say so and the snapshot must hash as before (checked too).
"""

from __future__ import annotations

import mmap
import os
import pickle

import numpy as np
import pytest

from kernel_sessions.kernel import dirty, snapshot

MIB = 1 << 20

tracker = dirty.tracker()
needs_tracking = pytest.mark.skipif(
    not tracker.available, reason="no userfaultfd write-protect tracking here"
)


def check(buf) -> bool:
    view = memoryview(buf).cast("B")
    return tracker.unchanged(dirty.buffer_address(view), view.nbytes)


@needs_tracking
def test_writes_anywhere_are_seen_once():
    a = np.random.default_rng(0).random(2 * MIB)  # 16 MiB, not page aligned in general
    assert not check(a)  # first look: nothing known
    assert check(a) and check(a)
    for index in (0, 1, len(a) // 2, len(a) - 1):  # partial head page, inside, tail
        a[index] += 1
        assert not check(a), index
        assert check(a), index
    a[10:20].sort()  # a write that leaves the same bytes still counts
    assert not check(a)
    b = a.copy()  # reading is not writing
    assert check(a) and b is not a


@needs_tracking
def test_kernel_writes_count():
    a = np.zeros(MIB)
    a[:] = 1.0
    assert not check(a)
    assert check(a)
    with open("/dev/urandom", "rb") as f:
        f.readinto(memoryview(a).cast("B")[3 * MIB : 3 * MIB + 100])  # the OS writes, not the CPU
    assert not check(a)


@needs_tracking
def test_shared_and_dropped_memory_are_never_trusted():
    shared = mmap.mmap(-1, 8 * MIB)  # MAP_SHARED: another process could write it
    shared.write(b"x" * (8 * MIB))
    assert not check(shared) and not check(shared)
    private = mmap.mmap(-1, 8 * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    private.write(b"x" * (8 * MIB))
    assert not check(private)
    assert check(private)
    private.madvise(mmap.MADV_DONTNEED, MIB, 4096)  # the page now reads back as zeros
    assert not check(private)


@needs_tracking
def test_overlapping_ranges_do_not_hide_writes_from_each_other():
    whole = np.random.default_rng(1).random(MIB)
    tail = whole[MIB // 4 :]
    check(whole), check(tail)  # arming one marks the other as maybe written: look again
    check(whole), check(tail)
    assert check(whole) and check(tail)
    whole[-3] = 0.5
    assert not check(whole)  # re-protects the page...
    assert not check(tail)  # ...which the other range must still be told about
    assert check(whole) and check(tail)


def test_small_readonly_and_forked_buffers_are_not_tracked():
    assert not check(np.ones(1000))  # below TRACK_MIN_BYTES
    assert dirty.buffer_address(memoryview(bytes(2 * MIB))) is None  # read-only
    if not hasattr(os, "fork"):
        return
    a = np.random.default_rng(2).random(MIB)
    check(a)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked child has no registration: it must never trust the parent's
        os.write(w, b"1" if dirty.tracker().unchanged(dirty.buffer_address(a), a.nbytes) else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"0"


@pytest.fixture
def blobs(tmp_path):
    return str(tmp_path / "blobs")


def blob_of(result, name):
    return result["variables"][name]["blob"]


def test_snapshots_with_tracking_name_the_same_blobs_as_without(blobs, monkeypatch):
    monkeypatch.setattr(snapshot, "BUNDLE_ITEM_BYTES", 0)
    ns = {
        "big": np.random.default_rng(3).random(MIB),
        "df_like": np.arange(3 * MIB // 8),
        "small": [1, 2, 3],
    }
    first = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    again = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    assert again["blobs_written"] == 0
    assert {n: blob_of(again, n) for n in ns} == {n: blob_of(first, n) for n in ns}

    ns["big"][12345] = -1.0  # in place: same object, same address
    changed = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    plain = snapshot.dump_namespace(ns, blobs)  # everything hashed: the reference
    assert blob_of(changed, "big") != blob_of(first, "big")
    assert {n: blob_of(changed, n) for n in ns} == {n: blob_of(plain, n) for n in ns}
    assert changed["blobs_written"] == 1

    ns["big"] = ns["big"].reshape(2, -1)  # same buffer, other pickle: never the old hash
    reshaped = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    assert blob_of(reshaped, "big") == blob_of(snapshot.dump_namespace(ns, blobs), "big")
    assert blob_of(reshaped, "big") != blob_of(changed, "big")

    report = snapshot.load_namespace(restored := {}, blobs, reshaped["variables"])
    assert not report["refused"] and np.array_equal(restored["big"], ns["big"])


def test_a_deleted_blob_is_written_again(blobs):
    ns = {"big": np.random.default_rng(4).random(MIB)}
    first = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    os.unlink(snapshot.blob_path(blobs, blob_of(first, "big")))
    again = snapshot.dump_namespace(ns, blobs, tracker=tracker)
    assert again["blobs_written"] == 1
    assert snapshot.verify_blob(blobs, blob_of(again, "big"), again["variables"]["big"]["hash"])
    assert pickle.loads(pickle.dumps(ns["big"])).shape == (MIB,)


NO_FCNTL = r"""
import importlib.util, sys
sys.modules["fcntl"] = None  # as on a platform without it: ``import fcntl`` raises ImportError
from kernel_sessions.kernel import snapshot
path = snapshot.__file__.replace("snapshot.py", "dirty.py")
spec = importlib.util.spec_from_file_location("dirty_without_fcntl", path)
dirty = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dirty)
t = dirty.PageTracker()
buf = bytearray(4 << 20)
ns = {"big": buf, "small": [1, 2, 3]}
first = snapshot.dump_namespace(ns, sys.argv[1], tracker=t)
buf[123] = 7
again = snapshot.dump_namespace(ns, sys.argv[1], tracker=t)
restored = {}
report = snapshot.load_namespace(restored, sys.argv[1], again["variables"])
import ctypes
addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
print(t.available, t.unchanged(addr, len(buf)), again["blobs_written"],
      restored["big"] == buf, restored["small"], bool(report["refused"]))
"""


def test_without_fcntl_the_tracker_is_off_and_checkpoints_still_work(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", NO_FCNTL, str(tmp_path / "blobs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "1", "True", "[1,", "2,", "3]", "False"]
