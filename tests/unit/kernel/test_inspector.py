"""Unit tests for the in-kernel variable inspector, run as plain Python (no kernel)."""

from __future__ import annotations

import base64
import json
import math
import os
import pickle
import time
import types

import pytest

from kernel_sessions.kernel import inspector as ins


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in entries}


def rows_as_entries(payload: dict) -> list[dict]:
    """A listing's rows as the dicts the server makes of them."""
    return [dict(zip(payload["fields"], row)) for row in payload["rows"]]


def one(value, name: str = "x", **kw) -> dict:
    entries = ins.list_variables({name: value}, **kw)
    assert len(entries) == 1, entries
    return entries[0]


FIELDS_ORDER = ("name", "type", "kind", "size", "shape", "len", "dtype", "preview", "error")
FIELDS = set(FIELDS_ORDER)


# ---------------------------------------------------------------- basic values
def test_int_and_str():
    e = one(42)
    assert set(e) == FIELDS
    assert (e["type"], e["kind"], e["preview"], e["error"]) == ("int", "data", "42", None)
    assert e["size"] > 0 and e["len"] is None and e["shape"] is None
    s = one("x" * 10_000)
    assert s["type"] == "str" and s["len"] == 10_000
    assert len(s["preview"]) == ins.PREVIEW_CHARS and s["preview"].endswith("…")


def test_huge_int_is_summarised():
    e = one(10**20_000)
    assert e["preview"].startswith("<int with ~") and e["error"] is None


def test_containers_preview_item_by_item():
    e = one({"a": [1, 2, (3,)], "b": {4}, "c": frozenset(), "d": "s"})
    assert e["preview"] == "{'a': [1, 2, (3,)], 'b': {4}, 'c': frozenset(), 'd': 's'}"
    assert e["len"] == 4
    cyclic: list = [1]
    cyclic.append(cyclic)
    assert one(cyclic)["preview"].startswith("[1, [1, [1, [")


def test_container_subclasses_and_odd_scalars():
    import collections

    dd = collections.defaultdict(list, {i: [i] for i in range(100_000)})
    got = by_name(
        ins.list_variables(
            {
                "dd": dd,
                "od": collections.OrderedDict(a=1),
                "nt": collections.namedtuple("P", "x y")(1, 2),
                "r": range(10**20),
                "z": 1 + 2j,
                "e": ...,
            }
        )
    )
    assert got["dd"]["preview"].startswith("defaultdict({0: [0], 1: [1],")
    assert got["dd"]["len"] == 100_000
    assert got["od"]["preview"] == "OrderedDict({'a': 1})"
    assert got["nt"]["preview"] == "P(x=1, y=2)" and got["nt"]["len"] == 2
    assert got["r"]["preview"] == "range(0, 100000000000000000000)" and got["r"]["len"] is None
    assert (got["z"]["preview"], got["e"]["preview"]) == ("(1+2j)", "Ellipsis")
    assert all(e["error"] is None and list(e) == list(FIELDS_ORDER) for e in got.values())


def test_ten_million_list_preview_is_fast():
    big = list(range(10**7))
    ins.list_variables({"big": big})  # warm-up
    t0 = time.perf_counter()
    e = one(big, "big")
    elapsed = time.perf_counter() - t0
    print(f"10^7 list described in {elapsed * 1000:.2f} ms")
    assert e["len"] == 10**7 and e["kind"] == "data"
    assert e["preview"].startswith("[0, 1, 2,") and e["preview"].endswith(", …]")
    assert len(e["preview"]) <= ins.PREVIEW_CHARS
    assert elapsed < 0.5  # target is < 5 ms; generous bound for slow CI


def test_functions_classes_instances_and_kinds():
    class Thing:
        pass

    def f(x):
        return x

    ns = {
        "f": f,
        "lam": lambda: 1,
        "Thing": Thing,
        "t": Thing(),
        "pr": print,
        "meth": Thing().__init__,
        "bm": [].append,
        "part": __import__("functools").partial(f, 1),
    }
    got = by_name(ins.list_variables(ns))
    assert {n: got[n]["kind"] for n in got} == {
        "f": "function",
        "lam": "function",
        "Thing": "class",
        "t": "instance",
        "pr": "function",
        "meth": "function",
        "bm": "function",
        "part": "function",
    }
    assert got["f"]["type"] == "function" and got["f"]["preview"].startswith("<function ")
    assert "<lambda>" in got["lam"]["preview"]
    assert got["Thing"]["type"] == "type" and "Thing" in got["Thing"]["preview"]
    assert got["t"]["type"].endswith("test_functions_classes_instances_and_kinds.<locals>.Thing")
    assert got["t"]["type"].startswith(__name__ + ".")
    assert got["part"]["preview"].startswith("functools.partial(")
    assert all(e["error"] is None for e in got.values())


def test_modules_hidden_unless_requested():
    ns = {"os": os, "json": json, "x": 1}
    assert [e["name"] for e in ins.list_variables(ns)] == ["x"]
    got = by_name(ins.list_variables(ns, include_modules=True))
    assert got["os"]["kind"] == "module" and got["os"]["preview"].startswith("<module 'os'")


def test_ipython_and_private_names_hidden():
    ns = {
        n: 1
        for n in [
            "In",
            "Out",
            "_",
            "__",
            "___",
            "_i",
            "_ii",
            "_iii",
            "_i3",
            "_7",
            "_ih",
            "_oh",
            "_dh",
            "exit",
            "quit",
            "get_ipython",
            "__builtins__",
            "__name__",
            "_private",
            "visible",
        ]
    }
    assert [e["name"] for e in ins.list_variables(ns)] == ["visible"]
    shared = object()
    ns = {"open": shared, "mine": 1}
    assert [e["name"] for e in ins.list_variables(ns, hidden={"open": shared})] == ["mine"]
    assert len(ins.list_variables(ns, hidden={"open": object()})) == 2  # rebound by the user


def test_sorted_and_filter():
    ns = {"beta": 1, "Alpha": 2, "alphabet": 3, "gamma": 4}
    assert [e["name"] for e in ins.list_variables(ns)] == ["Alpha", "alphabet", "beta", "gamma"]
    assert [e["name"] for e in ins.list_variables(ns, filter="ALPHA")] == ["Alpha", "alphabet"]
    assert [e["name"] for e in ins.list_variables(ns, filter="*a")] == ["Alpha", "beta", "gamma"]
    globbed = [e["name"] for e in ins.list_variables(ns, filter="[ab]*")]
    assert globbed == ["Alpha", "alphabet", "beta"]


# --------------------------------------------------------------- numpy/pandas
def test_numpy_arrays():
    np = pytest.importorskip("numpy")
    e = one(np.arange(12, dtype=np.float64).reshape(3, 4))
    assert (e["type"], e["kind"], e["shape"], e["len"], e["dtype"], e["size"]) == (
        "numpy.ndarray",
        "data",
        [3, 4],
        3,
        "float64",
        96,
    )
    assert e["preview"].startswith("[[0.0, 1.0, 2.0, 3.0], [4.0")
    big = one(np.zeros((3000, 3000)))
    assert big["size"] == 3000 * 3000 * 8 and "…" in big["preview"]
    assert len(big["preview"]) <= ins.PREVIEW_CHARS
    deep = one(np.zeros((4,) * 12))
    assert deep["preview"].startswith("flat ") and deep["shape"] == [4] * 12
    scalar = one(np.float32(1.5))
    assert scalar["kind"] == "data" and scalar["dtype"] == "float32" and scalar["size"] == 4
    assert one(np.sum)["kind"] == "function" and one(np.add)["kind"] == "function"


def test_numpy_object_array_with_hostile_items():
    np = pytest.importorskip("numpy")

    class Bad:
        def __repr__(self):
            raise ValueError("no")

    arr = np.empty(3, dtype=object)
    arr[:] = [Bad(), Bad(), Bad()]
    e = one(arr)
    assert e["shape"] == [3] and e["preview"].startswith("<repr failed")


def test_dataframe_and_series():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    df = pd.DataFrame(
        {"a": np.arange(1000), "b": np.ones(1000), "c": ["x"] * 1000, "d": 1, "e": 2.0}
    )
    e = one(df)
    assert e["type"].startswith("pandas.") and e["type"].endswith("DataFrame")
    assert (e["kind"], e["shape"], e["len"], e["dtype"]) == ("data", [1000, 5], 1000, None)
    assert e["preview"] == "DataFrame 1000×5: a, b, c, d, e"
    assert e["size"] == int(df.memory_usage(deep=False).sum())
    s = one(df["b"])
    assert s["type"].endswith("Series") and s["shape"] == [1000] and s["dtype"] == "float64"
    assert s["preview"].startswith("Series 1000 float64: [1.0, 1.0")
    assert s["preview"].endswith("…]")
    strs = one(df["c"])
    assert strs["error"] is None and "'x'" in strs["preview"]
    idx = one(df.index)
    assert idx["kind"] == "data" and idx["len"] == 1000


def test_wide_dataframe_size_is_estimated_and_fast():
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    cols = ins.MAX_FRAME_COLUMNS_FOR_MEMORY * 5
    df = pd.DataFrame(np.zeros((10, cols)), columns=[f"c{i}" for i in range(cols)])
    t0 = time.perf_counter()
    e = one(df)
    elapsed = time.perf_counter() - t0
    print(f"wide frame described in {elapsed * 1000:.2f} ms")
    assert e["shape"] == [10, cols] and e["size"] == 10 * cols * 8
    assert e["preview"].startswith(f"DataFrame 10×{cols}: c0, c1,")
    assert e["preview"].endswith("…")
    assert elapsed < 1.0


# ----------------------------------------------------------------- robustness
class ReprRaises:
    def __repr__(self):
        raise ValueError("boom")


class ReprSleeps:
    def __repr__(self):
        time.sleep(10)
        return "never"


class LenRaises:
    def __len__(self):
        raise RuntimeError("no len")


class GetattrRaises:
    def __getattr__(self, name):
        raise KeyError(name)


class GetattrJunk:
    def __getattr__(self, name):
        return 42  # claims nbytes, shape, dtype, __len__, ... are all 42


class PropertyRaises:
    @property
    def shape(self):
        raise RuntimeError("property")

    @property
    def nbytes(self):
        raise RuntimeError("property")


class LiesAboutClass:
    @property
    def __class__(self):
        raise RuntimeError("class trick")


class ReprNotStr:
    def __repr__(self):
        return 42


class SizeofRaises:
    def __sizeof__(self):
        raise ValueError("sizeof")


def test_hostile_objects_degrade():
    ns = {
        "r": ReprRaises(),
        "l": LenRaises(),
        "g": GetattrRaises(),
        "j": GetattrJunk(),
        "p": PropertyRaises(),
        "c": LiesAboutClass(),
        "n": ReprNotStr(),
        "s": SizeofRaises(),
        "inner": [1, ReprRaises()],
    }
    got = by_name(ins.list_variables(ns))
    assert got["r"]["preview"] == "<repr failed: ValueError>"
    assert got["r"]["error"] == "repr failed: ValueError"
    assert got["l"]["len"] is None and got["l"]["error"] == "len failed: RuntimeError"
    assert got["l"]["preview"].startswith("<")
    for name in ("g", "j", "p", "c"):
        assert got[name]["error"] is None, got[name]
        assert got[name]["kind"] == "instance" and got[name]["shape"] is None
        assert got[name]["size"] is not None and got[name]["len"] is None
    assert got["c"]["type"].endswith("LiesAboutClass")
    assert got["n"]["preview"] == "<repr failed: TypeError>"
    assert got["s"]["size"] is None and "size failed: ValueError" in got["s"]["error"]
    assert got["inner"]["preview"] == "<repr failed: ValueError>"
    payload = json.loads(ins.listing_payload(ns))
    assert payload["count"] == len(ns)


def test_hanging_repr_does_not_block_and_is_cached():
    hang = ReprSleeps()
    ns = {"a": 1, "hang": hang, "z": ReprRaises()}
    t0 = time.perf_counter()
    got = by_name(ins.list_variables(ns))
    first = time.perf_counter() - t0
    assert got["hang"]["preview"] == "<repr timed out>" and got["hang"]["error"]
    assert got["a"]["preview"] == "1" and got["z"]["preview"] == "<repr failed: ValueError>"
    threads_before = ins._stuck_threads
    t0 = time.perf_counter()
    again = by_name(ins.list_variables(ns))
    second = time.perf_counter() - t0
    print(f"hanging repr: first listing {first * 1000:.1f} ms, second {second * 1000:.1f} ms")
    assert again["hang"]["preview"] == "<repr timed out>"
    assert ins._stuck_threads == threads_before  # known hung: no new thread
    assert first < 1.0 and second < 0.5


def test_hung_thread_cap_skips(monkeypatch):
    monkeypatch.setattr(ins, "_stuck_threads", ins.MAX_ABANDONED_THREADS + 100)
    e = one(ReprRaises())
    assert e["preview"] == "<repr skipped>" and e["error"]
    assert one(5)["preview"] == "5"  # trusted values still inline


def test_list_budget_skips_the_rest(monkeypatch):
    monkeypatch.setattr(ins, "LIST_BUDGET_S", 0.15)
    slow = [
        type("Slow", (), {"__repr__": lambda self: time.sleep(0.03) or "slow"})() for _ in range(20)
    ]
    t0 = time.perf_counter()
    got = ins.list_variables({f"s{i:02}": o for i, o in enumerate(slow)})
    elapsed = time.perf_counter() - t0
    previews = [e["preview"] for e in got]
    assert previews[0] == "slow" and previews[-1] == "<repr skipped>"
    assert elapsed < 1.0


# ------------------------------------------------------------------ scale
@pytest.mark.parametrize("n", [1_000, 10_000])
def test_many_variables(n):
    ns = {}
    for i in range(n):
        ns[f"v{i:05}"] = [i, float(i), f"s{i}", [i], {"k": i}, (i,), None][i % 7]
    ins.list_variables(ns)  # warm-up
    t0 = time.perf_counter()
    payload = json.loads(ins.listing_payload(ns))
    elapsed = time.perf_counter() - t0
    print(f"listing_payload of {n} variables: {elapsed * 1000:.1f} ms")
    assert payload["count"] == n and not payload["truncated"]
    entries = rows_as_entries(payload)
    assert len(entries) == n and entries[0]["name"] == "v00000"
    assert entries == ins.list_variables(ns)
    assert elapsed < 3.0


def test_many_instances_with_custom_repr_share_one_worker():
    class Point:
        def __init__(self, i):
            self.i = i

        def __repr__(self):
            return f"Point({self.i})"

    ns = {f"p{i:05}": Point(i) for i in range(10_000)}
    t0 = time.perf_counter()
    got = ins.list_variables(ns)
    elapsed = time.perf_counter() - t0
    print(f"10k custom-repr instances: {elapsed * 1000:.1f} ms")
    assert got[-1]["preview"] == "Point(9999)"
    assert elapsed < 3.0


def test_listing_truncated():
    ns = {f"v{i:03}": i for i in range(30)}
    payload = json.loads(ins.listing_payload(ns, limit=10))
    assert payload["count"] == 30 and payload["truncated"] and len(payload["rows"]) == 10
    assert [e["name"] for e in rows_as_entries(payload)] == [f"v{i:03}" for i in range(10)]


# --------------------------------------------------------------- caches and fast paths
def test_mutated_list_is_described_again():
    data = [1, 2, 3]
    assert one(data)["preview"] == "[1, 2, 3]"
    data.append(4)
    data[0] = "a"
    e = one(data)
    assert (e["preview"], e["len"]) == ("['a', 2, 3, 4]", 4)


def test_mutated_array_is_described_again():
    np = pytest.importorskip("numpy")
    arr = np.zeros(3)
    assert one(arr)["preview"] == "[0.0, 0.0, 0.0]"
    arr[0] = 7
    assert one(arr)["preview"] == "[7.0, 0.0, 0.0]"


def test_immutable_cache_checks_identity(monkeypatch):
    text = "value"
    fake = ("another object", (1, None, 1, None, "'stale'"))
    monkeypatch.setattr(ins, "_immutables", {id(text): fake})  # as if the id were reused
    assert one(text)["preview"] == "'value'"
    assert ins._immutables[id(text)][0] is text  # replaced by the real description
    assert one(text)["preview"] == "'value'"  # served from the cache now


def test_immutable_cache_holds_only_what_the_last_listing_saw(monkeypatch):
    monkeypatch.setattr(ins, "IMMUTABLE_CACHE_SIZE", 3)
    small, big = "x" * 10, "y" * (ins.IMMUTABLE_CACHE_BYTES * 2)
    ns = {f"v{i}": float(i) for i in range(5)} | {"small": small, "big": big, "lst": [1]}
    ins.list_variables(ns)
    assert len(ins._immutables) == 3 and id(big) not in ins._immutables
    assert all(type(value) in ins._IMMUTABLE for value, _ in ins._immutables.values())
    ins.list_variables({"small": small})
    assert list(ins._immutables) == [id(small)]  # nothing else is kept alive
    ins.list_variables({})
    assert ins._immutables == {}


def test_cached_entries_equal_fresh_ones():
    ns = {"s": "t" * 300, "b": b"bytes", "i": 2**70, "f": 1.25, "c": 1j, "huge": 10**2000}
    first = ins.list_variables(ns)
    assert ins.list_variables(ns) == first
    ins._immutables.clear()
    assert ins.list_variables(ns) == first


def test_strict_preview_matches_and_refuses_user_code():
    values = [
        [1, 2.5, None, True],
        (1,),
        {"a": [1] * 30, 2: (3, "x" * 300)},
        {1, 2},
        frozenset({"a"}),
        [[[[1]]]],
        {"k": {"n": {"m": {"deep": 1}}}},
        list(range(50)),
        ["s" * 150, "t" * 150],
        [2**80, -(2**80)],
        [],
    ]
    for value in values:
        assert ins._preview(value, strict=True) == ins._preview(value)

    class Custom:
        def __repr__(self):
            return "custom"

    for hostile in ([1, Custom()], {"a": Custom()}, {Custom(): 1}, ([1], [Custom()])):
        with pytest.raises(ins._Untrusted):
            ins._preview(hostile, strict=True)
    assert ins._preview([[[[Custom()]]]], strict=True) == "[[[[…]]]]"  # not shown: not run


def test_arrays_of_several_dtypes_in_one_listing():
    np = pytest.importorskip("numpy")
    ns = {
        "a": np.arange(3),
        "b": np.arange(3.0),
        "c": np.zeros(2, dtype=">i4"),
        "d": np.zeros(2, dtype=[("x", "f4"), ("y", "i2")]),
        "e": np.arange(4.0),
    }
    got = by_name(ins.list_variables(ns))
    assert [got[k]["dtype"] for k in "abcde"] == [str(ns[k].dtype) for k in "abcde"]
    assert got["b"]["preview"] == "[0.0, 1.0, 2.0]" and got["c"]["preview"] == "[0, 0]"
    assert got["d"]["error"] is None and got["d"]["shape"] == [2]


def test_listing_result_is_the_payload_as_json():
    ns = {"a": 1, "s": "x", "lst": [1, 2]}
    result = ins.listing_result(ns)
    bundle = result._repr_mimebundle_()
    assert bundle["application/json"] == json.loads(ins.listing_payload(ns))
    assert "listing" not in bundle["text/plain"] and len(bundle["text/plain"]) < 40


def test_listing_result_is_utf8_encodable():
    weird = type("W", (), {"__repr__": lambda self: "r\udc01"})
    weird.__qualname__ = "W\ud800"
    ns = {"\ud801": 1, "w": weird(), "lst": ["\ud802"], "s": "\udc00 é"}
    value = ins.listing_result(ns)._repr_mimebundle_()["application/json"]
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # strict: no lone surrogates
    got = by_name(rows_as_entries(value))
    assert got["w"]["type"].endswith("W\\ud800") and got["w"]["preview"] == "r\\udc01"
    assert got["s"]["preview"] == "'\\udc00 é'"


# --------------------------------------------------------------- get_value
def test_get_value_json():
    ns = {"d": {"a": [1, 2.5, None, "s"]}, "nan": [float("nan")], "obj": object(), "b": b"x"}
    got = ins.get_value(ns, "d", "json", 1000)
    assert got["value"] == {"a": [1, 2.5, None, "s"]} and "error" not in got
    assert got["size"] == len(json.dumps(ns["d"]))
    assert ins.get_value(ns, "nan", "json", 1000)["value"] == [None]
    assert ins.get_value(ns, "obj", "json", 1000)["error"] == "not_json"
    assert ins.get_value(ns, "b", "json", 1000)["error"] == "not_json"
    assert json.loads(json.dumps(got))["value"] == ns["d"]


def test_get_value_json_numpy_pandas():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    ns = {
        "a": np.arange(6).reshape(2, 3),
        "df": pd.DataFrame({"x": [1, 2], "y": ["a", None]}),
        "s": pd.Series([1.5, float("nan")]),
        "f": np.float64(2.5),
    }
    assert ins.get_value(ns, "a", "json", 1000)["value"] == [[0, 1, 2], [3, 4, 5]]
    records = ins.get_value(ns, "df", "json", 1000)["value"]
    assert records == [{"x": 1, "y": "a"}, {"x": 2, "y": None}]
    assert ins.get_value(ns, "s", "json", 1000)["value"] == [1.5, None]
    assert ins.get_value(ns, "f", "json", 1000)["value"] == 2.5


def test_get_value_too_large_is_estimated_first(monkeypatch):
    np = pytest.importorskip("numpy")
    ns = {"a": np.zeros(10**6), "l": list(range(10**6)), "s": "x" * 5000}
    monkeypatch.setattr(ins, "_to_jsonable", lambda o: pytest.fail("payload was built"))
    for name in ns:
        got = ins.get_value(ns, name, "json", 1000)
        assert got["error"] == "too_large" and got["size"] > 1000
    got = ins.get_value(ns, "s", "repr", 1000)
    assert got["error"] == "too_large"
    monkeypatch.setattr(ins, "_pickler", lambda: pytest.fail("pickled anyway"))
    got = ins.get_value(ns, "a", "pickle", 1000)
    assert got["error"] == "too_large" and got["size"] == 8 * 10**6 and got["estimated"]
    pd = pytest.importorskip("pandas")
    got = ins.get_value({"df": pd.DataFrame({"x": np.zeros(1000), "y": "s"})}, "df", "pickle", 1000)
    assert got["error"] == "too_large" and got["size"] == 8000


def test_get_value_too_large_after_encoding():
    ns = {"l": ["abcdefghij" * 10] * 20}
    got = ins.get_value(ns, "l", "json", 500)
    assert got["error"] == "too_large" and got["size"] == len(json.dumps(ns["l"]))
    got = ins.get_value(ns, "l", "repr", 500)
    assert got["error"] == "too_large" and got["size"] > 500


def test_get_value_repr(monkeypatch):
    monkeypatch.setattr(ins, "REPR_VALUE_BUDGET_S", 0.2)
    ns = {"l": [1, "a", {"k": (2,)}], "r": ReprRaises(), "hang": ReprSleeps(), "t": ReprNotStr}
    got = ins.get_value(ns, "l", "repr", 1000)
    assert got["value"] == repr(ns["l"]) and got["size"] == len(repr(ns["l"]))
    assert ins.get_value(ns, "r", "repr", 1000)["error"] == "repr_failed"
    assert ins.get_value(ns, "t", "repr", 1000)["value"].startswith("<class ")
    t0 = time.perf_counter()
    hung = ins.get_value(ns, "hang", "repr", 1000)
    assert hung["error"] in ("timeout", "skipped")
    assert time.perf_counter() - t0 < 1.0
    assert ins.get_value(ns, "hang", "repr", 1000)["error"] == "timeout"  # remembered, no wait


def test_get_value_pickle_roundtrip():
    pytest.importorskip("dill")
    ns = {"f": lambda x: x + 1, "d": {"a": 1}}
    got = ins.get_value(ns, "d", "pickle", 10_000)
    assert pickle.loads(base64.b64decode(got["data_b64"])) == {"a": 1}
    assert got["size"] == len(base64.b64decode(got["data_b64"]))
    lam = ins.get_value(ns, "f", "pickle", 100_000)
    target: dict = {}
    assert ins.set_value(target, "g", pickle_b64=lam["data_b64"])["ok"]
    assert target["g"](1) == 2
    assert ins.get_value({"b": b"x" * 5000}, "b", "pickle", 1000)["error"] == "too_large"


def test_get_value_bad_names_and_formats():
    ns = {"x": 1, "os": os}
    assert ins.get_value(ns, "__import__('os')", "json", 100)["error"] == "invalid_name"
    assert ins.get_value(ns, "os.system", "repr", 100)["error"] == "invalid_name"
    assert ins.get_value(ns, "class", "repr", 100)["error"] == "invalid_name"
    assert ins.get_value(ns, 3, "repr", 100)["error"] == "invalid_name"
    assert ins.get_value(ns, "missing", "json", 100)["error"] == "not_found"
    assert ins.get_value(ns, "x", "yaml", 100)["error"] == "invalid_format"
    for result in (ins.get_value(ns, "missing", "json", 100), ins.get_value(ns, "x", "json", 100)):
        assert {"name", "format", "size"} <= set(result)


# ---------------------------------------------------------- set/delete
def test_set_and_delete():
    ns: dict = {"x": 1}
    assert ins.set_value(ns, "y", json_value=[1, 2]) == {
        "name": "y",
        "ok": True,
        "created": True,
        "type": "list",
    }
    assert ins.set_value(ns, "x", json_value=None)["created"] is False and ns["x"] is None
    raw = base64.b64encode(pickle.dumps({"a": 1})).decode()
    assert ins.set_value(ns, "z", pickle_b64=raw)["ok"] and ns["z"] == {"a": 1}
    assert ins.set_value(ns, "z", pickle_b64="!!!")["error"] == "bad_payload"
    junk = base64.b64encode(b"junk").decode()
    assert ins.set_value(ns, "z", pickle_b64=junk)["error"] == "unpickle_failed"
    assert ins.set_value(ns, "w")["error"] == "no_value"
    assert ins.delete_value(ns, "y") == {"name": "y", "ok": True} and "y" not in ns
    assert ins.delete_value(ns, "y")["error"] == "not_found"
    assert ins.delete_value(ns, "a b")["error"] == "invalid_name"
    assert ins.set_value(ns, "__import__('os')", json_value=1)["error"] == "invalid_name"


def test_reserved_names_refused():
    ns = {"In": [], "Out": {}, "_": 1, "_i3": "", "get_ipython": print}
    for name in [
        "In",
        "Out",
        "_",
        "__",
        "_i3",
        "_7",
        "_oh",
        "exit",
        "quit",
        "get_ipython",
        "__builtins__",
    ]:
        assert ins.set_value(ns, name, json_value=1)["error"] == "reserved", name
        assert ins.delete_value(ns, name)["error"] == "reserved", name
    assert ns == {"In": [], "Out": {}, "_": 1, "_i3": "", "get_ipython": print}


# ---------------------------------------------------------- module hygiene
def test_module_imports_only_stdlib():
    import ast

    tree = ast.parse(open(ins.__file__, encoding="utf-8").read())
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {
        "__future__",
        "base64",
        "collections",
        "contextlib",
        "gc",
        "fnmatch",
        "functools",
        "itertools",
        "json",
        "keyword",
        "math",
        "sys",
        "threading",
        "time",
        "types",
        "weakref",
        "typing",
    }


def test_runs_from_source_in_fresh_module():
    src = open(ins.__file__, encoding="utf-8").read()
    mod = types.ModuleType("_ks_inspector_copy")
    import sys

    sys.modules[mod.__name__] = mod  # dataclass-free, but mirror the kernel's private entry
    try:
        exec(compile(src, "<inspector>", "exec"), mod.__dict__)
        assert mod.list_variables({"a": math.pi})[0]["preview"] == repr(math.pi)
    finally:
        del sys.modules[mod.__name__]


def test_never_imports_numpy_or_pandas():
    import subprocess
    import sys

    code = (
        "import sys; from kernel_sessions.kernel import inspector as i; "
        "i.list_variables({'a': [1], 'b': object()}); i.get_value({'a': 1}, 'a', 'json', 9); "
        "print(sorted(m for m in ('numpy', 'pandas', 'torch', 'dill') if m in sys.modules))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_real_ipython_namespace_lists_nothing_of_its_own():
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("x = 1\n_ = 2\nimport os", store_history=True)
        shell.run_cell("x", store_history=True)  # fills Out, _, _2, _i2, ...
        assert [e["name"] for e in ins.list_variables(shell.user_ns)] == ["x"]
        hidden = shell.user_ns_hidden
        assert [e["name"] for e in ins.list_variables(shell.user_ns, hidden=hidden)] == ["x"]
        assert ins.set_value(shell.user_ns, "Out", json_value=1)["error"] == "reserved"
    finally:
        InteractiveShell.clear_instance()


class SlowHashMeta(type):
    """A metaclass whose __hash__ hangs: looking the class up in any set or dict would hang."""

    def __hash__(cls):
        time.sleep(10)
        return 0

    def __eq__(cls, other):
        return cls is other


class Trap(metaclass=SlowHashMeta):
    pass


def test_a_metaclass_hash_trap_never_runs_outside_the_watchdog():
    ns = {"a": 1, "trap": Trap(), "cls": Trap, "items": [1, Trap()], "z": "ok"}
    t0 = time.perf_counter()
    got = by_name(ins.list_variables(ns))
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.5, elapsed
    assert got["a"]["preview"] == "1" and got["z"]["preview"] == "'ok'"
    assert got["trap"]["type"].endswith("Trap") and "Trap object" in got["trap"]["preview"]
    assert "items" in got and "cls" in got


def test_gc_paused_restores_the_collector():
    import gc

    assert gc.isenabled()
    with ins.gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), ins.gc_paused():
        raise ValueError
    assert gc.isenabled()
    gc.disable()  # someone else's choice is left as it was
    try:
        with ins.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    # a listing leaves the collector on
    ins.listing_result({"a": [1], "b": {"c": 2}})
    assert gc.isenabled()
