"""Fix-ups applied inside a pooled kernel when it is handed out.

A spare is started before anyone knows its working directory, environment or whether it should
die with the server, so those are applied after hand-out. Everything here runs from a silent
execute: it binds nothing in the user namespace and never prints.
"""

from __future__ import annotations

import os
import threading

POLLER_THREAD_NAME = "kernel-sessions-parent-poller"
PARENT_POLL_INTERVAL = 1.0  # seconds between checks that the parent process is still there
_released = threading.Event()


def apply(cwd: str | None = None, env: dict[str, str] | None = None, parent_pid: int = 0) -> None:
    """Move the kernel to ``cwd``, merge ``env``; tie its life to ``parent_pid`` or untie it."""
    if env:
        os.environ.update({str(k): str(v) for k, v in env.items()})
    if cwd:
        os.chdir(cwd)
    if parent_pid:
        watch_parent(parent_pid)
    else:
        release_parent()


def watch_parent(parent_pid: int, strict: bool = False) -> None:
    """Exit when ``parent_pid`` goes, as ipykernel does for kernels started with JPY_PARENT_PID.

    Spares start independent (so that a session can outlive the server) but are tied to the
    pool's process right away, so a killed server leaves no spare behind; the tie is cut on
    hand-out to a session and kept for an ordinary notebook kernel. Unlike ipykernel's poller,
    this one can be stopped. ``strict`` (a spare's start-up line): if the parent is already
    gone, exit now.
    """
    _released.clear()
    if any(t.name == POLLER_THREAD_NAME and t.is_alive() for t in threading.enumerate()):
        return
    if os.getppid() != parent_pid:
        if strict:
            os._exit(1)
        return
    threading.Thread(
        target=_poll_parent, args=(parent_pid,), name=POLLER_THREAD_NAME, daemon=True
    ).start()


def release_parent() -> None:
    """Let the kernel outlive the process that started it."""
    _released.set()


def _poll_parent(parent_pid: int) -> None:
    while not _released.wait(PARENT_POLL_INTERVAL):
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent is gone: nothing would ever shut this kernel down


def warmup(code: str) -> None:
    """Run pool warm-up code (e.g. ``import numpy``) in a scratch namespace.

    Modules land in ``sys.modules`` so the user's first import is instant, but no name is bound
    in the user namespace.
    """
    exec(compile(code, "<kernel-sessions-warmup>", "exec"), {"__name__": "__warmup__"})
