"""Helpers shared by the tests: live servers, kernels, fault tools."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO / "kernel_sessions" / "kernel"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
