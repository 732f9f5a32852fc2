"""Kernel-side modules shipped as code: installed once, no names bound, arguments as JSON."""

from __future__ import annotations

import os
import sys

from kernel_sessions.core.kernel_rpc import PRIVATE_PREFIX, call_code, install_expr


def test_call_code_installs_once_and_binds_nothing(tmp_path, monkeypatch):
    key = PRIVATE_PREFIX + "fixup"
    monkeypatch.delitem(sys.modules, key, raising=False)
    monkeypatch.chdir(os.getcwd())
    monkeypatch.setenv("KS_PROBE", "old")
    ns: dict = {}
    exec(call_code("fixup", "apply", cwd=str(tmp_path), env={"KS_PROBE": "new"}), ns)
    assert os.getcwd() == str(tmp_path)
    assert os.environ["KS_PROBE"] == "new"
    assert set(ns) == {"__builtins__"}
    first = sys.modules[key]
    exec(call_code("fixup", "warmup", "import colorsys"), ns)
    assert sys.modules[key] is first  # installed once
    assert "colorsys" in sys.modules and set(ns) == {"__builtins__"}


def test_install_expr_is_one_expression():
    compile(install_expr("fixup"), "<test>", "eval")
    compile(call_code("fixup", "apply", cwd="x\"'\n", env={}), "<test>", "eval")
