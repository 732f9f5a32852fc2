"""Variables of a live session through the manager, in a real kernel shared by the module."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio

from kernel_sessions import KernelSessionManager
from kernel_sessions.core.variables import VariableError
from tests.support.kernels import run, value

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETUP = """
import numpy as np, pandas as pd, time
i = 7
s = "hello"
big = list(range(10**7))
arr = np.arange(12.0).reshape(3, 4)
df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
def f(y):
    return y + 1
lam = lambda z: z * 3
class K:
    pass
k = K()
class BadRepr:
    def __repr__(self):
        raise ValueError("no")
class SlowRepr:
    def __repr__(self):
        time.sleep(10)
        return "slow"
class BadLen:
    def __len__(self):
        raise RuntimeError("len")
class Trap:
    def __getattr__(self, name):
        raise RuntimeError("trap " + name)
bad, slow, badlen, trap = BadRepr(), SlowRepr(), BadLen(), Trap()
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ks(tmp_path_factory):
    d = tmp_path_factory.mktemp("vars")
    mgr = KernelSessionManager(data_dir=str(d / "data"), pool_sizes={"python3": 1}, root_dir=str(d))
    await mgr.start()
    await mgr.create("v")
    kc = mgr.client("v")
    assert (await run(kc, SETUP, timeout=60))["status"] == "ok"
    kc.stop_channels()
    yield mgr
    await mgr.stop(keep_sessions=False)


def by_name(variables: list[dict]) -> dict[str, dict]:
    return {v["name"]: v for v in variables}


async def test_listing_describes_every_kind(ks):
    t0 = time.monotonic()
    v = by_name(await ks.variables("v"))
    assert time.monotonic() - t0 < 5  # the sleeping __repr__ did not hold it up
    assert {"np", "pd", "time"}.isdisjoint(v)  # modules hidden by default
    assert v["i"]["type"] == "int" and v["i"]["preview"] == "7" and v["i"]["kind"] == "data"
    assert v["big"]["len"] == 10**7 and len(v["big"]["preview"]) <= 200
    assert v["arr"]["shape"] == [3, 4] and v["arr"]["size"] == 96 and v["arr"]["dtype"] == "float64"
    assert v["df"]["shape"] == [2, 2] and v["df"]["type"].endswith("DataFrame")
    assert v["f"]["kind"] == "function" and v["lam"]["kind"] == "function"
    assert v["K"]["kind"] == "class" and v["k"]["kind"] == "instance"
    assert "ValueError" in v["bad"]["preview"]
    assert "timed out" in v["slow"]["preview"] or "skipped" in v["slow"]["preview"]
    assert v["badlen"]["len"] is None and v["trap"]["kind"] == "instance"
    mods = by_name(await ks.variables("v", include_modules=True))
    assert mods["np"]["kind"] == "module"
    assert list(by_name(await ks.variables("v", filter="ar*"))) == ["arr"]


async def test_listing_survives_strings_that_are_not_utf8(ks):
    kc = ks.client("v")
    try:
        odd = r"globals()['odd\ud800'] = type('W', (), {'__repr__': lambda s: 'r\udc01'})()"
        assert (await run(kc, odd))["status"] == "ok"
        v = by_name(await ks.variables("v", filter="odd*"))
        assert (await run(kc, r"del globals()['odd\ud800']"))["status"] == "ok"
    finally:
        kc.stop_channels()
    assert list(v) == ["odd\\ud800"] and v["odd\\ud800"]["preview"] == "r\\udc01"


async def test_reading_leaves_no_trace_for_attached_clients(ks):
    kc = ks.client("v")  # a second client, recording everything on iopub
    seen: list[dict] = []
    try:
        before = await value(kc, "[len(In), len(Out)]")
        count = (await run(kc, "pass"))["execution_count"]
        await asyncio.sleep(0.2)
        while True:
            try:
                await kc.get_iopub_msg(timeout=0.2)
            except Exception:
                break
        await ks.variables("v")
        await ks.vars.get("v", "i", "json")
        await ks.vars.set("v", "tmp_var", value=[1, 2])
        await ks.vars.delete("v", "tmp_var")
        while True:
            try:
                seen.append(await kc.get_iopub_msg(timeout=0.5))
            except Exception:
                break
        types = {m["msg_type"] for m in seen}
        assert types <= {"status"}, types  # no execute_input, execute_result or stream
        after = await run(kc, "pass")
        assert after["execution_count"] == count + 1
        # three cells since: two `pass` and this query; none of ours
        assert await value(kc, "[len(In), len(Out)]") == [before[0] + 3, before[1]]
        assert await value(kc, "'_kernel_sessions_inspector' in str(_)") is False
    finally:
        kc.stop_channels()
    assert (await ks.get("v")).state == "idle"


async def test_values_json_repr_pickle_and_limits(ks):
    assert (await ks.vars.get("v", "arr", "json"))["value"][1] == [4.0, 5.0, 6.0, 7.0]
    assert (await ks.vars.get("v", "df", "json"))["value"] == [
        {"a": 1, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert (await ks.vars.get("v", "s", "repr"))["value"] == "'hello'"
    with pytest.raises(VariableError) as e:
        await ks.vars.get("v", "big", "json")
    assert e.value.status == 413 and "format=pickle" in str(e.value)
    with pytest.raises(VariableError) as e:
        await ks.vars.get("v", "__import__('os').system('true')", "json")
    assert e.value.reason == "invalid_name"
    with pytest.raises(VariableError) as e:
        await ks.vars.get("v", "nope", "json")
    assert e.value.status == 404
    with pytest.raises(VariableError) as e:
        await ks.vars.set("v", "Out", value=1)
    assert e.value.reason == "reserved"


async def test_push_and_pull_carry_functions_and_classes(ks):
    class Local:
        def __init__(self) -> None:
            self.v = 5

    await ks.push("v", g=lambda z: z * 2, n=5, obj=Local())
    kc = ks.client("v")
    try:
        assert await value(kc, "[g(4), n, obj.v]") == [8, 5, 5]
    finally:
        kc.stop_channels()
    assert (await ks.pull("v", "f"))(1) == 2
    assert (await ks.pull("v", "lam"))(2) == 6
    assert type(await ks.pull("v", "k")).__name__ == "K"


async def test_busy_kernel_answers_within_a_second(ks):
    kc = ks.client("v")
    try:
        kc.execute("time.sleep(4)")
        await asyncio.sleep(0.3)
        assert (await ks.get("v")).state == "busy"
        t0 = time.monotonic()
        listing = await ks.vars.list("v")
        assert time.monotonic() - t0 <= 1.5
        assert listing["busy"] is True
        assert "i" in by_name(listing["variables"]) or listing["stale"]
        reply = await kc.get_shell_msg(timeout=10)  # the cell still finishes normally
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()


async def test_ten_thousand_variables(ks):
    kc = ks.client("v")
    try:
        await run(kc, "for _n in range(10000): globals()[f'w{_n}'] = _n")
    finally:
        kc.stop_channels()
    t0 = time.monotonic()
    listing = await ks.vars.list("v", filter="w*")
    took = time.monotonic() - t0
    assert listing["count"] == 10000 and not listing["stale"]
    assert took < 10, took
