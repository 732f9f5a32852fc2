"""Unit tests for kernel_sessions/kernel/snapshot.py, run as plain Python on dict namespaces.

The module is loaded from its file under a private name, as the kernel does, so these tests
also prove it needs nothing from the kernel_sessions package. Objects a user would define in a
notebook are created by exec() in a module installed as ``sys.modules["__main__"]``, which is
what IPython does with the user namespace.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import KERNEL_DIR
from tests.support.kernels import kernel_module

SNAPSHOT_PATH = KERNEL_DIR / "snapshot.py"
MB = 1 << 20
OPEN_FILE = "open file (not saved: reopening could truncate it)"
BIG_ARRAY_BYTES = 200 * MB

USER_CODE = """
import dataclasses

offset = 10
def add_offset(x):
    return x + offset

square = lambda x: x * x

def make_counter(start):
    count = [start]
    def step():
        count[0] += 1
        return count[0]
    return step

counter = make_counter(5)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2

p = Point(3, 4)

@dataclasses.dataclass
class Config:
    name: str
    sizes: list

cfg = Config("run", [1, 2, 3])
"""


@pytest.fixture(scope="module")
def snap() -> Iterator[types.ModuleType]:
    with kernel_module("snapshot", "_kernel_sessions_snapshot_under_test") as module:
        module.BUNDLE_ITEM_BYTES = 0  # one blob per variable here; bundles have their own test
        yield module


@contextlib.contextmanager
def as_main(module: types.ModuleType):
    """Make ``module`` the ``__main__`` module, as IPython does with its user namespace."""
    old = sys.modules["__main__"]
    sys.modules["__main__"] = module
    try:
        yield module.__dict__
    finally:
        sys.modules["__main__"] = old


def new_main() -> types.ModuleType:
    return types.ModuleType("__main__")


def dump_as_main(snap, code: str, blob_dir: Path, **extra):
    """Run ``code`` in a fresh ``__main__``, add ``extra`` and dump; returns (ns, result)."""
    module = new_main()
    with as_main(module) as ns:
        exec(code, ns)
        ns.update(extra)
        return ns, snap.dump_namespace(ns, str(blob_dir))


def load_as_main(snap, blob_dir: Path, variables: dict, **kw):
    """Load into a brand-new ``__main__`` (a restarted kernel); returns (ns, result)."""
    with as_main(new_main()) as ns:
        return ns, snap.load_namespace(ns, str(blob_dir), variables, **kw)


def test_module_imports_only_stdlib_at_top_level():
    tree = ast.parse(SNAPSHOT_PATH.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            top.add((node.module or "").split(".")[0])
    assert top - {"__future__"} <= set(sys.stdlib_module_names), top


def test_round_trip_into_fresh_namespace(snap, tmp_path):
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    extra = {
        "n": 42,
        "s": "héllo",
        "lst": [1, [2, 3], {"x": (4, 5)}],
        "dct": {"a": {"b": [1.5]}},
        "mat": np.arange(12.0).reshape(3, 4),
        "fmat": np.asfortranarray(np.arange(6).reshape(2, 3)),
        "strided": np.arange(20)[::3],
        "df": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [0.5, 1.5, 2.5]}),
    }
    ns, res = dump_as_main(snap, USER_CODE, tmp_path / "blobs", **extra)
    assert res["skipped"] == []
    v = res["variables"]
    assert v["n"]["serializer"] == "pickle5" and v["mat"]["serializer"] == "pickle5"
    assert v["square"]["serializer"] == "dill" and v["Point"]["serializer"] == "dill"
    assert v["dataclasses"]["serializer"] == "module"
    assert v["mat"]["type"] == "numpy.ndarray" and v["n"]["type"] == "int"

    ns2, out = load_as_main(snap, tmp_path / "blobs", v)
    assert out["failed"] == [] and sorted(out["restored"]) == sorted(v)
    for key in ("n", "s", "lst", "dct", "offset"):
        assert ns2[key] == ns[key]
    for key in ("mat", "fmat", "strided"):
        np.testing.assert_array_equal(ns2[key], ns[key])
    assert ns2["fmat"].flags.f_contiguous and ns2["mat"].flags.writeable
    pd.testing.assert_frame_equal(ns2["df"], ns["df"])
    assert ns2["square"](7) == 49
    assert ns2["add_offset"](1) == 11
    ns2["offset"] = 100  # restored functions see the live namespace, as in the notebook
    assert ns2["add_offset"](1) == 101
    assert ns2["counter"]() == 6 and ns2["counter"]() == 7
    assert isinstance(ns2["p"], ns2["Point"]) and ns2["p"].norm2() == 25
    assert ns2["Point"] is not ns["Point"]
    assert isinstance(ns2["cfg"], ns2["Config"]) and ns2["cfg"] == ns2["Config"]("run", [1, 2, 3])


def test_plain_dict_namespace_without_main(snap, tmp_path):
    """Outside a kernel (ns is not __main__'s dict) dill copies just the globals used."""
    ns = {"__name__": "__main__"}
    exec("k = 3\nscale = lambda x: x * k\nclass C:\n    v = 1\n", ns)
    res = snap.dump_namespace(ns, str(tmp_path))
    assert res["skipped"] == []
    ns2: dict = {}
    out = snap.load_namespace(ns2, str(tmp_path), res["variables"])
    assert out["failed"] == [] and ns2["scale"](2) == 6 and ns2["C"].v == 1


def test_aliasing_is_kept(snap, tmp_path):
    np = pytest.importorskip("numpy")
    code = (
        "a = [1]\nb = a\nd = {'k': a}\nclass Box:\n    pass\nbox = Box()\nbox.item = d\n"
        "other = [1]\nt1 = (1, 2)\n"
    )
    arr = np.arange(10.0)
    ns, res = dump_as_main(snap, code, tmp_path, arr=arr, arr2=arr)
    v = res["variables"]
    assert v["a"]["group"] is not None
    assert len({v[k]["group"] for k in ("a", "b", "d", "box", "Box")}) == 1
    assert v["arr"]["group"] == v["arr2"]["group"] is not None
    assert v["other"]["group"] is None and v["t1"]["group"] is None
    ns2, out = load_as_main(snap, tmp_path, v)
    assert out["failed"] == []
    assert ns2["b"] is ns2["a"] and ns2["d"]["k"] is ns2["a"] and ns2["box"].item is ns2["d"]
    assert type(ns2["box"]) is ns2["Box"]
    assert ns2["arr2"] is ns2["arr"]
    ns2["a"].append(2)
    assert ns2["b"] == [1, 2] and ns2["other"] == [1]

    # Asking for one member of a group loads the group but binds only that name.
    ns3, out = load_as_main(snap, tmp_path, v, names=["b"])
    assert (
        out == {"restored": ["b"], "failed": [], "refused": False}
        and "a" not in ns3
        and ns3["b"] == [1]
    )


def test_modules_and_from_imports_by_reference(snap, tmp_path, monkeypatch):
    pytest.importorskip("numpy")
    src = tmp_path / "src"
    src.mkdir()
    (src / "my_local_helpers.py").write_text("def helper(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(src))
    code = (
        "import numpy as np\nimport os.path as osp\nfrom collections import OrderedDict\n"
        "from os.path import join\nfrom math import sqrt\nfrom numpy import mean\n"
        "from my_local_helpers import helper\nimport my_local_helpers\n"
    )
    _, res = dump_as_main(snap, code, tmp_path / "blobs")
    v = res["variables"]
    assert res["skipped"] == [] and res["blobs_written"] == 0
    assert v["np"] == {
        **v["np"],
        "serializer": "module",
        "module": "numpy",
        "blob": None,
        "origin": None,
    }
    assert v["osp"]["module"] == os.path.__name__
    od = v["OrderedDict"]
    assert (od["serializer"], od["module"], od["attr"]) == ("ref", "collections", "OrderedDict")
    assert v["join"]["serializer"] == v["sqrt"]["serializer"] == v["mean"]["serializer"] == "ref"
    origin = os.path.realpath(src / "my_local_helpers.py")
    assert v["helper"]["serializer"] == "ref" and v["helper"]["origin"] == origin
    assert v["my_local_helpers"]["origin"] == origin

    # A later kernel whose sys.path lacks the folder: the recorded origin finds it again.
    monkeypatch.delitem(sys.modules, "my_local_helpers")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(src)])
    ns2, out = load_as_main(snap, tmp_path / "blobs", v)
    assert out["failed"] == []
    import collections
    import math

    assert ns2["OrderedDict"] is collections.OrderedDict and ns2["sqrt"] is math.sqrt
    assert ns2["np"] is sys.modules["numpy"] and ns2["helper"](1) == 2


def test_unsavable_objects_are_skipped_with_reasons(snap, tmp_path):
    precious = tmp_path / "precious.txt"
    fh = open(precious, "w")
    fh.write("do not truncate me")
    fh.flush()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    thread = threading.Thread(target=lambda: None)
    try:
        extra = {
            "gen": (i for i in range(3)),
            "sock": sock,
            "lock": threading.Lock(),
            "rlock": threading.RLock(),
            "thread": thread,
            "fh": fh,
            "nested": {"log": fh},
            "binary": open(precious, "rb"),
            "event": threading.Event(),
            "ok": [1, 2],
        }
        _, res = dump_as_main(snap, "", tmp_path / "blobs", **extra)
        reasons = {s["name"]: s["reason"] for s in res["skipped"]}
        types_ = {s["name"]: s["type"] for s in res["skipped"]}
        assert set(reasons) == set(extra) - {"ok"}, reasons
        assert list(res["variables"]) == ["ok"]
        assert reasons["fh"] == reasons["binary"] == OPEN_FILE
        assert types_["fh"] == "_io.TextIOWrapper"
        assert reasons["nested"] == "contains " + OPEN_FILE
        assert "generator" in reasons["gen"] and "socket" in reasons["sock"]
        assert "lock" in reasons["lock"] and "lock" in reasons["rlock"]
        assert "thread" in reasons["thread"]
        assert reasons["event"].startswith("contains thread or lock")
        ns2, out = load_as_main(snap, tmp_path / "blobs", res["variables"])
        assert out["failed"] == [] and ns2["ok"] == [1, 2]
        assert precious.read_text() == "do not truncate me"
    finally:
        fh.close()
        extra["binary"].close()
        sock.close()
    assert precious.read_text() == "do not truncate me"


def test_group_with_unsavable_member_keeps_the_rest_together(snap, tmp_path):
    with open(tmp_path / "log.txt", "w") as fh:
        a = [1]
        ns = {"a": a, "b": a, "d": {"a": a, "log": fh}}
        res = snap.dump_namespace(ns, str(tmp_path / "blobs"))
    assert res["skipped"] == [{"name": "d", "type": "dict", "reason": "contains " + OPEN_FILE}]
    v = res["variables"]
    assert v["a"]["group"] == v["b"]["group"] is not None and v["a"]["blob"] == v["b"]["blob"]
    ns2: dict = {}
    assert snap.load_namespace(ns2, str(tmp_path / "blobs"), v)["failed"] == []
    assert ns2["b"] is ns2["a"] == [1]


def test_ipython_names_private_names_and_exclude(snap, tmp_path):
    ns = {
        "In": ["", "x = 1"],
        "Out": {},
        "exit": object(),
        "quit": object(),
        "get_ipython": lambda: None,
        "_": 5,
        "_i1": "x",
        "__builtins__": {},
        "x": 1,
        "secret": 2,
    }
    res = snap.dump_namespace(ns, str(tmp_path), exclude=lambda name, obj: name == "secret")
    assert list(res["variables"]) == ["x"] and res["skipped"] == []
    res = snap.dump_namespace(
        ns,
        str(tmp_path),
        names=["_", "secret", "missing"],
        exclude=lambda name, obj: name == "secret",
    )
    assert list(res["variables"]) == ["_"]
    reasons = {s["name"]: s["reason"] for s in res["skipped"]}
    assert reasons == {"secret": "excluded", "missing": "not defined"}


def test_dedup_only_changed_variables_are_written(snap, tmp_path):
    np = pytest.importorskip("numpy")
    ns = {"a": list(range(100)), "b": {"k": "v"}, "c": np.ones((50, 50)), "d": "text"}
    first = snap.dump_namespace(ns, str(tmp_path))
    assert first["blobs_written"] == 4 and first["bytes_written"] > 20_000
    second = snap.dump_namespace(ns, str(tmp_path))
    assert second["blobs_written"] == 0 and second["bytes_written"] == 0
    assert second["variables"] == first["variables"]
    ns["c"][0, 0] = 7.0
    third = snap.dump_namespace(ns, str(tmp_path))
    assert third["blobs_written"] == 1
    assert third["variables"]["c"]["blob"] != first["variables"]["c"]["blob"]
    assert {k: e["blob"] for k, e in third["variables"].items() if k != "c"} == {
        k: e["blob"] for k, e in first["variables"].items() if k != "c"
    }
    blobs = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(blobs) == 5 and not [p for p in blobs if p.name.endswith(".tmp")]


def test_tampered_blob_is_refused(snap, tmp_path, monkeypatch):
    ns = {"a": [1, 2, 3], "b": [1], "c": "fine"}
    ns["d"] = ns["b"]
    res = snap.dump_namespace(ns, str(tmp_path))
    v = res["variables"]
    for name, mutate in (("a", "flip"), ("b", "append")):  # b is a group with d
        path = snap.blob_path(str(tmp_path), v[name]["blob"])
        data = bytearray(Path(path).read_bytes())
        if mutate == "flip":
            data[-3] ^= 0x01
        else:
            data += b"\x80\x05extra"
        Path(path).write_bytes(bytes(data))
        assert not snap.verify_blob(str(tmp_path), v[name]["blob"], v[name]["hash"])
    assert snap.verify_blob(str(tmp_path), v["c"]["blob"], v["c"]["hash"])
    unpickled = []
    monkeypatch.setattr(snap.pickle, "loads", lambda *a, **k: unpickled.append(a) or "poisoned")
    ns2: dict = {}
    out = snap.load_namespace(ns2, str(tmp_path), {k: v[k] for k in ("a", "b", "d")})
    assert out["restored"] == [] and unpickled == [] and ns2 == {}
    assert {f["name"]: f["reason"] for f in out["failed"]} == {
        "a": "hash mismatch",
        "b": "hash mismatch",
        "d": "hash mismatch",
    }
    # one altered blob refuses the whole restore: the intact "c" is not unpickled either
    out = snap.load_namespace(ns2, str(tmp_path), {k: v[k] for k in ("a", "c")})
    assert out["refused"] and out["restored"] == [] and unpickled == [] and ns2 == {}
    monkeypatch.undo()
    os.remove(snap.blob_path(str(tmp_path), v["c"]["blob"]))
    out = snap.load_namespace(ns2, str(tmp_path), v, names=["c", "nope"])
    reasons = {f["name"]: f["reason"] for f in out["failed"]}
    assert reasons == {"c": "missing blob", "nope": "not in snapshot"}
    with pytest.raises(ValueError):
        snap.blob_path(str(tmp_path), "../" + "0" * 61)
    bad = dict(v["c"], blob="../../etc/passwd")
    out = snap.load_namespace({}, str(tmp_path), {"c": bad})
    assert out["failed"][0]["reason"].startswith("invalid blob id")
    # A missing blob, or one of the wrong size, is rewritten by the next dump (same name);
    # same-size damage is only caught on load (a dump re-reading every blob would cost too much).
    healed = snap.dump_namespace(ns, str(tmp_path))
    assert healed["blobs_written"] == 2 and healed["variables"] == v
    assert [snap.verify_blob(str(tmp_path), v[k]["blob"], v[k]["hash"]) for k in "abc"] == [
        False,
        True,
        True,
    ]


def test_permissions_under_umask_zero(snap, tmp_path):
    old = os.umask(0)
    try:
        res = snap.dump_namespace({"x": [1, 2, 3]}, str(tmp_path / "deep" / "blobs"))
    finally:
        os.umask(old)
    blob_dir = tmp_path / "deep" / "blobs"
    path = Path(snap.blob_path(str(blob_dir), res["variables"]["x"]["blob"]))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(blob_dir.stat().st_mode) == 0o700


def test_failing_reduce_is_skipped_and_others_saved(snap, tmp_path):
    code = (
        "class Bad:\n    def __reduce__(self):\n        raise RuntimeError('refuses to pickle')\n"
        "bad = Bad()\nshared = [1]\nholder = {'bad': bad, 'shared': shared}\ngood = 'ok'\n"
    )
    _, res = dump_as_main(snap, code, tmp_path)
    reasons = {s["name"]: s["reason"] for s in res["skipped"]}
    assert set(reasons) == {"bad", "holder"}
    assert reasons["bad"] == "RuntimeError: refuses to pickle"
    assert {"Bad", "shared", "good"} <= set(res["variables"])
    ns2, out = load_as_main(snap, tmp_path, res["variables"])
    assert out["failed"] == [] and ns2["good"] == "ok" and ns2["shared"] == [1]


def test_write_failure_leaves_no_partial_blob(snap, tmp_path, monkeypatch):
    real = snap._write_all

    def flaky(fd, data):
        if memoryview(data).nbytes >= 4096:  # the in-band pickle of "big"
            real(fd, memoryview(data)[:100])
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(snap, "_write_all", flaky)
    res = snap.dump_namespace({"big": bytearray(4096), "small": [1, 2]}, str(tmp_path))
    assert list(res["variables"]) == ["small"]
    assert res["skipped"][0]["name"] == "big" and "No space left" in res["skipped"][0]["reason"]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name == res["variables"]["small"]["blob"]


def test_large_array_no_copy_and_throughput(snap, tmp_path):
    np = pytest.importorskip("numpy")
    big = np.arange(BIG_ARRAY_BYTES // 8, dtype=np.float64)
    ns = {"big": big}
    tracemalloc.start()
    t0 = time.perf_counter()
    res = snap.dump_namespace(ns, str(tmp_path))
    dump_s = time.perf_counter() - t0
    dump_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    t0 = time.perf_counter()
    again = snap.dump_namespace(ns, str(tmp_path))
    rehash_s = time.perf_counter() - t0
    tracemalloc.reset_peak()
    ns2: dict = {}
    t0 = time.perf_counter()
    out = snap.load_namespace(ns2, str(tmp_path), res["variables"])
    load_s = time.perf_counter() - t0
    load_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res["blobs_written"] == 1 and again["blobs_written"] == 0 and out["failed"] == []
    assert res["bytes_written"] >= BIG_ARRAY_BYTES
    np.testing.assert_array_equal(ns2["big"], big)
    assert dump_peak < BIG_ARRAY_BYTES // 10, f"dump copied the array: peak {dump_peak / MB:.0f} MB"
    assert load_peak < BIG_ARRAY_BYTES * 1.2, f"load copied the array: peak {load_peak / MB:.0f} MB"
    size_mb = BIG_ARRAY_BYTES / MB
    print(
        f"\n200 MB ndarray: dump {dump_s:.2f}s ({size_mb / dump_s:.0f} MB/s, "
        f"peak +{dump_peak / MB:.1f} MB), "
        f"unchanged re-dump {rehash_s:.2f}s ({size_mb / rehash_s:.0f} MB/s), "
        f"load+verify {load_s:.2f}s ({size_mb / load_s:.0f} MB/s, peak +{load_peak / MB:.0f} MB)"
    )


IPYTHON_SCRIPT = r"""
import json, sys, types
import dill  # imported before IPython swaps __main__, as a kernel extension might
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
mod = types.ModuleType("_kernel_sessions_snapshot")  # installed as kernelcode.py does
exec(compile(open(sys.argv[1]).read(), mod.__name__, "exec"), mod.__dict__)
blob_dir, manifest = sys.argv[3], sys.argv[3] + ".json"
if sys.argv[2] == "dump":
    shell.run_cell(sys.argv[4], store_history=True)
    json.dump(mod.dump_namespace(shell.user_ns, blob_dir), open(manifest, "w"))
else:
    result = mod.load_namespace(shell.user_ns, blob_dir, json.load(open(manifest))["variables"])
    shell.run_cell(sys.argv[4])
    print(json.dumps({"load": result, "check": shell.user_ns["check"]}))
"""


def test_real_ipython_shell_round_trip(tmp_path):
    """Two processes, as across a kernel restart: IPython's own names are not saved."""
    pytest.importorskip("IPython")
    pytest.importorskip("dill")
    script = tmp_path / "run.py"
    script.write_text(IPYTHON_SCRIPT)
    dump_cell = (
        "import math\nfrom os.path import join\noffset = 1\ndef bump(x): return x + offset\n"
        "class P:\n    pass\np = P(); ps = [P(), p]\n"
        "fh = open({!r}, 'w'); fh.write('keep'); fh.flush()\n"
        "_private = 1\n1 + 1\n".format(str(tmp_path / "keep.txt"))
    )
    load_cell = (
        "offset = 10\ncheck = [bump(1), type(p) is P, ps[1] is p, math.sqrt(4), join('a', 'b')]"
    )
    blobs = str(tmp_path / "blobs")
    run = [sys.executable, str(script), str(SNAPSHOT_PATH), "dump", blobs, dump_cell]
    subprocess.run(run, check=True, cwd=tmp_path, timeout=120, capture_output=True)
    manifest = json.loads((tmp_path / "blobs.json").read_text())
    assert sorted(manifest["variables"]) == ["P", "bump", "join", "math", "offset", "p", "ps"]
    assert [s["name"] for s in manifest["skipped"]] == ["fh"]
    run[3:] = ["load", blobs, load_cell]
    out = subprocess.run(run, check=True, cwd=tmp_path, timeout=120, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["load"]["failed"] == []
    assert result["check"] == [11, True, True, 2.0, os.path.join("a", "b")]
    assert (tmp_path / "keep.txt").read_text() == "keep"


def test_blobs_are_named_by_blake3_or_sha256_and_both_load(snap, tmp_path, monkeypatch):
    import blake3
    import numpy as np

    ns = {"arr": np.arange(10_000_000, dtype=np.int64), "small": [1, 2], "text": "x" * 100}
    fast = snap.dump_namespace(ns, str(tmp_path / "b3"))["variables"]  # > PARALLEL_MIN_BYTES
    assert {e["hash"] for e in fast.values()} == {"blake3"}
    blob = Path(snap.blob_path(str(tmp_path / "b3"), fast["arr"]["blob"])).read_bytes()
    assert blake3.blake3(blob).hexdigest() == fast["arr"]["blob"]
    monkeypatch.setattr(snap, "preferred_hash", lambda: "sha256")  # a kernel without blake3
    plain = snap.dump_namespace(ns, str(tmp_path / "sha"))["variables"]
    assert {e["hash"] for e in plain.values()} == {"sha256"}
    assert plain["arr"]["blob"] != fast["arr"]["blob"]
    for folder, entries in (("b3", fast), ("sha", plain)):
        out: dict = {}
        result = snap.load_namespace(out, str(tmp_path / folder), entries)
        assert sorted(result["restored"]) == ["arr", "small", "text"] and not result["failed"]
        assert np.array_equal(out["arr"], ns["arr"]) and out["small"] == [1, 2]
    # the hash named in the (signed) manifest is the one checked: a mismatch is refused
    wrong = {k: dict(v, hash="sha256") for k, v in fast.items()}
    result = snap.load_namespace({}, str(tmp_path / "b3"), wrong)
    assert result["refused"] and {f["reason"] for f in result["failed"]} == {"hash mismatch"}


def test_large_blobs_are_mapped_copy_on_write_and_format_1_still_loads(snap, tmp_path):
    import hashlib
    import pickle

    import numpy as np

    arr = np.arange(1_000_000, dtype=np.float64)  # 8 MB: over MMAP_MIN_BYTES
    entries = snap.dump_namespace({"arr": arr}, str(tmp_path))["variables"]
    path = Path(snap.blob_path(str(tmp_path), entries["arr"]["blob"]))
    before = path.read_bytes()
    out: dict = {}
    assert snap.load_namespace(out, str(tmp_path), entries)["restored"] == ["arr"]
    got = out["arr"]
    assert got.flags.writeable and got.flags.aligned and np.array_equal(got, arr)
    got[:10] = -1  # private to this namespace: the blob on disk is unchanged
    assert path.read_bytes() == before and snap.verify_blob(str(tmp_path), path.name, "blake3")

    # a blob of format 1 (buffers back to back, no alignment) written by an older version
    buffers: list = []
    inband = pickle.dumps(np.arange(5.0), protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    blob = (
        snap.HEADER.pack(b"KSNB", 1, 1, 0, len(raws), len(inband))
        + b"".join(snap.BUFFER_LENGTH.pack(r.nbytes) for r in raws)
        + inband
        + b"".join(bytes(r) for r in raws)
    )
    sha = hashlib.sha256(blob).hexdigest()
    Path(snap.blob_path(str(tmp_path), sha)).parent.mkdir(exist_ok=True)
    Path(snap.blob_path(str(tmp_path), sha)).write_bytes(blob)
    old = {"v": {"blob": sha, "serializer": "pickle5", "size": len(blob), "group": None}}
    out = {}
    assert snap.load_namespace(out, str(tmp_path), old)["restored"] == ["v"]
    assert out["v"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_small_variables_share_bundles_that_dedupe_and_load_per_name(snap, tmp_path, monkeypatch):
    monkeypatch.setattr(snap, "BUNDLE_ITEM_BYTES", 256 << 10)
    monkeypatch.setattr(snap, "BUNDLE_BYTES", 64 << 10)
    ns = {f"v{i}": [i, str(i) * 20] for i in range(2000)}
    ns["square"] = lambda x: x * x  # dill: never bundled
    first = snap.dump_namespace(ns, str(tmp_path))
    blobs = {e["blob"] for e in first["variables"].values()}
    assert 2 < len(blobs) < 40 and first["variables"]["square"]["group"] is None
    assert first["variables"]["v1"]["group"] is not None
    ns["v1999"].append("changed")  # only the last bundle changes
    second = snap.dump_namespace(ns, str(tmp_path))
    assert second["blobs_written"] == 1 and second["bytes_written"] <= 80 << 10
    out: dict = {}
    result = snap.load_namespace(out, str(tmp_path), second["variables"], names=["v7", "v1999"])
    assert sorted(result["restored"]) == ["v1999", "v7"] and set(out) == {"v7", "v1999"}
    assert out["v1999"][-1] == "changed"
