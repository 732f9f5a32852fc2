"""The package root: what scripts import from it, without paying for jupyter_server."""

from __future__ import annotations

import subprocess
import sys


def test_connect_is_importable_from_the_package_root() -> None:
    import kernel_sessions
    import kernel_sessions.client as client

    assert kernel_sessions.connect is client.connect
    assert kernel_sessions.connect_async is client.connect_async
    assert {"connect", "connect_async"} <= set(kernel_sessions.__all__)


def test_the_root_and_connect_do_not_import_the_server() -> None:
    code = (
        "import sys, kernel_sessions; kernel_sessions.connect; "
        "print('jupyter_server' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out
