"""Checkpoints of real session kernels: fidelity, restore and fork, policies, crashes, tampering.

One manager per test on a temporary data dir; the kernels come from its pool.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_sessions import KernelSessionManager
from kernel_sessions.core.errors import CheckpointFailed, CheckpointInvalid, SessionBusy
from tests.support import SCRIPTS
from tests.support.kernels import run, value, wait_for

TRICKY = """
import functools, threading
import numpy as np
import pandas as pd
from math import pi
arr = np.arange(12.0).reshape(3, 4)
df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
shared = [1, 2]
holder = {"k": shared}
square = lambda v: v * v
def make_adder(n):
    def add(v):
        return v + n
    return add
add5 = make_adder(5)
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2
p = Point(3, 4)
pow2 = functools.partial(pow, 2)
lock = threading.Lock()
gen = (i for i in range(3))
reader = open(__import__("os").devnull)
"""

CHECKS = {
    "arr.sum()": 66.0,
    "df['b'].tolist()": ["x", "y", "z"],
    "holder['k'] is shared": True,
    "square(7)": 49,
    "add5(1)": 6,
    "p.norm2()": 25,
    "isinstance(p, Point)": True,
    "pow2(10)": 1024,
    "round(pi, 5)": 3.14159,
    "np.__name__": "numpy",
}


@pytest.fixture
async def ks(tmp_path):
    made = KernelSessionManager(
        data_dir=str(tmp_path / "data"), pool_sizes={"python3": 2}, root_dir=str(tmp_path)
    )
    made.checkpointing.auto_checkpoint = False
    await made.start()
    yield made
    await made.stop(keep_sessions=False)


async def execute(ks: KernelSessionManager, name: str, code: str) -> dict:
    kc = ks.client(name)
    try:
        content = await run(kc, code)
        assert content["status"] == "ok", content
        return content
    finally:
        kc.stop_channels()


async def values(ks: KernelSessionManager, name: str, exprs: list[str]) -> list:
    kc = ks.client(name)
    try:
        return [await value(kc, e) for e in exprs]
    finally:
        kc.stop_channels()


async def test_tricky_namespace_round_trips_through_a_fork(ks):
    await ks.create("src")
    await execute(ks, "src", TRICKY)
    manifest = await ks.checkpoint("src", label="tricky")
    skipped = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"lock", "gen", "reader"}, skipped  # reported, never dropped silently
    assert "generator" in skipped["gen"] and "open file" in skipped["reader"]
    assert manifest["variables"]["np"]["serializer"] == "module"
    assert manifest["variables"]["pi"]["serializer"] in ("ref", "pickle5")
    assert manifest["variables"]["square"]["serializer"] == "dill"

    report = await ks.restore("src", manifest["id"], into="dst")
    assert report["failed"] == [] and report["session"].name == "dst"
    assert set(report["restored"]) == set(manifest["variables"])
    assert report["session"].reason.startswith("forked from src checkpoint ")
    assert await values(ks, "dst", list(CHECKS)) == list(CHECKS.values())
    # the source is untouched, and the fork is a session of its own
    await execute(ks, "dst", "shared.append(3)")
    assert await values(ks, "src", ["holder['k']"]) == [[1, 2]]


async def test_restore_in_place_keeps_ipython_state_and_rolls_the_namespace_back(ks):
    await ks.create("r")
    await execute(ks, "r", "x = 1\ny = [1]")
    first = await ks.checkpoint("r")
    await execute(ks, "r", "x = 2\nz = 'new'\ny.append(2)")
    await execute(ks, "r", "x")
    kid = ks.kernel_id("r")
    before = await values(ks, "r", ["len(In)", "get_ipython().execution_count"])
    report = await ks.restore("r", first["id"])
    assert sorted(report["restored"]) == ["x", "y"] and report["removed"] == ["z"]
    after = await values(
        ks,
        "r",
        ["x", "y", "'z' in globals()", "len(In)", "get_ipython().execution_count", "Out[3]", "_"],
    )
    assert after[:3] == [1, [1], False]
    assert after[3] >= before[0] and after[4] >= before[1]  # history and count go on
    assert after[5] == 2 and after[6] == 2  # Out and _ untouched by the restore
    assert ks.kernel_id("r") == kid
    # only chosen variables
    await execute(ks, "r", "x = 3\ny = None")
    report = await ks.restore("r", first["id"], variables=["y"])
    assert report["restored"] == ["y"] and report["removed"] == []
    assert await values(ks, "r", ["x", "y"]) == [3, [1]]


async def test_checkpoint_of_a_busy_session_waits_then_refuses(ks):
    await ks.create("b")
    kc = ks.client("b")
    try:
        kc.execute("import time; time.sleep(3)")
        await wait_for(lambda: ks._sessions["b"].state == "busy", 5)
        with pytest.raises(SessionBusy, match="running cell"):
            await ks.checkpoint("b", timeout=0.3)
        manifest = await ks.checkpoint("b", timeout=20)  # waits for the cell to finish
        assert manifest["session"] == "b" and (await ks.get("b")).state == "idle"
    finally:
        kc.stop_channels()


async def test_unchanged_variables_cost_no_new_bytes(ks):
    await ks.create("inc")
    await execute(ks, "inc", "import numpy as np\nbig = np.ones(2_000_000)\nsmall = [1]")
    first = await ks.checkpoint("inc")
    assert first["new_bytes"] >= 16_000_000
    await execute(ks, "inc", "small.append(2)")
    second = await ks.checkpoint("inc")
    assert second["variables"]["big"]["blob"] == first["variables"]["big"]["blob"]
    assert second["new_bytes"] < 10_000
    assert [c["id"] for c in await ks.checkpoints("inc")] == [second["id"], first["id"]]

    # a write in place (same array, same address) is seen, whether or not the OS tracks it
    await execute(ks, "inc", "big[1_234_567] = 7.0")
    third = await ks.checkpoint("inc")
    assert third["variables"]["big"]["blob"] != second["variables"]["big"]["blob"]
    assert 16_000_000 <= third["new_bytes"] < 16_100_000
    await ks.restore("inc", second["id"])
    assert await values(ks, "inc", ["float(big[1_234_567])", "float(big.sum())"]) == [1.0, 2e6]
    await ks.restore("inc", third["id"])
    assert await values(ks, "inc", ["float(big[1_234_567])", "float(big.sum())"]) == [7.0, 2e6 + 6]


async def test_auto_checkpoint_after_activity(ks):
    ks.checkpointing.auto_checkpoint = True
    ks.checkpointing.auto_checkpoint_delay = 0.3
    model = await ks.create("auto")
    await execute(ks, "auto", "v = 'saved by itself'")
    await wait_for(lambda: model.last_checkpoint is not None and model.state == "idle", 10)
    manifest = await ks.checkpointing.get("auto", model.last_checkpoint)
    assert "v" in manifest["variables"]


async def test_kernel_killed_mid_checkpoint_keeps_the_previous_one_and_auto_restores(ks):
    events: list[dict] = []
    ks.observe(events.append)
    model = await ks.create("crash")
    await execute(ks, "crash", "x = 'before'")
    good = await ks.checkpoint("crash")
    await execute(
        ks,
        "crash",
        "import numpy as np\nx = 'after'\nbig = np.random.default_rng(0).random(60_000_000)",
    )
    blob_dir = Path(ks.checkpointing.store.blob_dir)
    pid = model.pid
    task = asyncio.ensure_future(ks.checkpoint("crash"))
    await wait_for(lambda: model.state == "checkpointing", 10)
    await wait_for(lambda: any(p.name.endswith(".tmp") for p in blob_dir.rglob("*")), 20, 0.01)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(CheckpointFailed, match="died"):
        await task
    assert [c["id"] for c in await ks.checkpoints("crash")] == [good["id"]]
    # jupyter_client's restarter brings the kernel back; the session's namespace follows
    await wait_for(lambda: model.state == "idle" and "auto-restored" in model.reason, 30)
    assert await values(ks, "crash", ["x", "'big' in globals()"]) == ["before", False]
    restored = [
        e
        for e in events
        if e["to"] == "idle" and "checkpoint" in e and e["reason"].startswith("auto-restored")
    ]
    assert restored and restored[-1]["checkpoint"] == good["id"]
    assert restored[-1]["checkpoint_created"].startswith(good["id"][:4])


async def test_server_killed_mid_checkpoint_leaves_the_previous_checkpoint(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "checkpoint_and_die.py"), str(data)],
        stdout=subprocess.PIPE,
        text=True,
    )
    kernel_pid = None
    try:
        line: list[str] = []
        while line[:1] != ["dumping"]:  # the kernel's banner shares this stdout
            text = proc.stdout.readline()
            assert text, "the script ended early"
            line = text.split()
        kernel_pid = int(line[1])
        blob_dir = data / "checkpoints" / "blobs"
        await wait_for(lambda: any(p.name.endswith(".tmp") for p in blob_dir.rglob("*")), 20, 0.01)
        proc.kill()  # the manager dies while the kernel writes
        proc.wait(10)
        ks = KernelSessionManager(data_dir=str(data), pool_sizes={"python3": 0})
        await ks.start()
        try:
            [summary] = await ks.checkpoints("w")
            assert summary["label"] == "first" and summary["valid"]
            report = await ks.restore("w", summary["id"], timeout=60)
            assert report["failed"] == []
            assert await values(ks, "w", ["x", "'big' in globals()"]) == [1, False]
        finally:
            await ks.stop(keep_sessions=False)
    finally:
        if proc.poll() is None:
            proc.kill()
        if kernel_pid:
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(kernel_pid, signal.SIGKILL)


def _malicious_blob(marker: Path) -> bytes:
    """A well-formed blob whose pickle would create ``marker`` when loaded."""
    import pickle
    import struct

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    inband = pickle.dumps(Boom(), protocol=5)
    return struct.pack("<4sBBBxIQ", b"KSNB", 1, 1, 0, 0, len(inband)) + inband


async def test_tampered_truncated_swapped_or_planted_checkpoints_are_refused(ks, tmp_path):
    marker = tmp_path / "pwned"
    for name in ("t", "other"):
        await ks.create(name)
        await execute(ks, name, "x = [1, 2, 3]\ny = 'text'")
    good = await ks.checkpoint("t")
    theirs = await ks.checkpoint("other")
    store = ks.checkpointing.store
    blob = (
        Path(store.blob_dir) / good["variables"]["x"]["blob"][:2] / good["variables"]["x"]["blob"]
    )
    original = blob.read_bytes()

    def refused(exc_info: pytest.ExceptionInfo) -> None:
        assert "signature mismatch" in str(exc_info.value), exc_info.value
        assert not marker.exists()

    await execute(ks, "t", "x = 'unchanged'")
    for damaged in (
        original[:-3] + bytes([original[-3] ^ 1]) + original[-2:],  # flipped byte
        original[: len(original) // 2],  # truncated
        _malicious_blob(marker),
    ):  # a planted pickle under the old name
        blob.write_bytes(damaged)
        with pytest.raises(CheckpointInvalid) as exc_info:
            await ks.restore("t", good["id"])
        refused(exc_info)
        assert await values(ks, "t", ["x"]) == ["unchanged"]  # nothing was bound either
    blob.write_bytes(original)

    # a manifest edited to point at a planted blob (valid name for its content): bad signature
    planted = _malicious_blob(marker)
    sha = __import__("hashlib").sha256(planted).hexdigest()
    (Path(store.blob_dir) / sha[:2]).mkdir(exist_ok=True, mode=0o700)
    (Path(store.blob_dir) / sha[:2] / sha).write_bytes(planted)
    manifest_path = Path(store.root) / "manifests" / "t" / f"{good['id']}.json"
    doc = json.loads(manifest_path.read_text())
    doc["manifest"]["variables"]["x"]["blob"] = sha
    manifest_path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointInvalid) as exc_info:
        await ks.restore("t", good["id"])
    refused(exc_info)
    assert exc_info.value.reason == "tampered"

    # another session's manifest copied into this session's folder
    src = Path(store.root) / "manifests" / "other" / f"{theirs['id']}.json"
    (manifest_path.parent / src.name).write_bytes(src.read_bytes())
    with pytest.raises(CheckpointInvalid) as exc_info:
        await ks.restore("t", theirs["id"])
    refused(exc_info)
    assert exc_info.value.reason == "wrong_session"
    listed = {c["id"]: c for c in await ks.checkpoints("t")}
    assert not listed[good["id"]]["valid"] and not listed[theirs["id"]]["valid"]


async def test_files_are_private_even_under_umask_000(ks):
    old = os.umask(0)
    try:
        await ks.create("perm")
        await execute(ks, "perm", "import numpy as np\na = np.zeros(10)\nf = lambda: 1")
        await ks.checkpoint("perm", label="p")
    finally:
        os.umask(old)
    root = Path(ks.checkpointing.store.root)
    paths = [root, *root.rglob("*")]
    assert len(paths) > 5
    for path in paths:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))


async def test_hibernate_and_wake_on_variables(ks):
    model = await ks.create("h")
    await execute(ks, "h", "x = 'kept'")
    kid = model.kernel_id
    await ks.hibernate("h")
    assert model.state == "hibernated" and kid not in ks.kernel_manager
    names = [v["name"] for v in await ks.variables("h")]  # an attach wakes it
    assert names == ["x"] and (model.state, model.kernel_id) == ("idle", kid)
    assert model.reason.startswith("woken: restored checkpoint")


async def test_delete_keeps_checkpoints_unless_purged_and_rename_moves_them(ks):
    await ks.create("old")
    await execute(ks, "old", "x = 1")
    await ks.checkpoint("old")
    await ks.rename("old", "new")
    [summary] = await ks.checkpoints("new")
    assert summary["valid"] and await ks.checkpoints("old") == []
    await ks.delete("new")
    assert len(await ks.checkpoints("new")) == 1
    await ks.create("new")
    report = await ks.restore("new")  # a new session of that name can restore them
    assert report["restored"] == ["x"]
    await ks.delete("new", purge=True)
    assert await ks.checkpoints("new") == []


async def test_background_checkpoint_lets_cells_run_and_restores(ks):
    ks.checkpointing.background_checkpoints = True
    model = await ks.create("bg")
    await execute(
        ks,
        "bg",
        "import numpy as np\nbig = np.random.default_rng(1).random(40_000_000)"
        "\nx = [1, 2]\nf = lambda v: v + 1",
    )
    task = asyncio.ensure_future(ks.checkpoint("bg"))
    await wait_for(lambda: model.state == "checkpointing", 10, 0.005)
    await wait_for(lambda: ks.checkpointing.last_pause_ms is not None, 10, 0.005)
    # the kernel runs a cell while the fork writes the snapshot of the moment it was taken
    await execute(ks, "bg", "x.append(3)")
    assert not task.done(), "the checkpoint finished before the cell: make the namespace larger"
    manifest = await task
    assert ks.checkpointing.last_pause_ms < 1000
    assert set(manifest["variables"]) == {"np", "big", "x", "f"} and manifest["skipped"] == []
    assert model.state == "idle"
    assert not [p for p in Path(ks.checkpointing.store.blob_dir).iterdir() if p.is_file()]
    report = await ks.restore("bg", manifest["id"], into="bg2")
    assert report["failed"] == []
    assert await values(ks, "bg2", ["x", "f(1)", "big.shape[0]"]) == [[1, 2], 2, 40_000_000]
    assert await values(ks, "bg", ["x"]) == [[1, 2, 3]]
