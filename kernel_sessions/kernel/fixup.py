"""Fix-ups applied inside a pooled kernel when it is handed out.

A spare is started before anyone knows its working directory, environment or whether it should
die with the server, so those are applied after hand-out. Everything here runs from a silent
execute: it binds nothing in the user namespace and never prints.
"""

from __future__ import annotations

import os
import sys
import threading

POLLER_THREAD_NAME = "kernel-sessions-parent-poller"


def apply(cwd: str | None = None, env: dict[str, str] | None = None, parent_pid: int = 0) -> None:
    """Move the kernel to ``cwd``, merge ``env`` and, if asked, tie its life to ``parent_pid``."""
    if env:
        os.environ.update({str(k): str(v) for k, v in env.items()})
    if cwd:
        os.chdir(cwd)
        # Imports relative to the notebook's folder must work as in a cold-started kernel,
        # whose sys.path[0] is '' (the cwd at import time).
    if parent_pid:
        watch_parent(parent_pid)


def watch_parent(parent_pid: int) -> None:
    """Exit when ``parent_pid`` goes, as ipykernel does for kernels started with JPY_PARENT_PID.

    Spares start independent so that sessions can outlive the server; an ordinary notebook
    kernel must not, so it gets ipykernel's own parent poller after hand-out.
    """
    if any(t.name == POLLER_THREAD_NAME for t in threading.enumerate()):
        return
    if os.getppid() != parent_pid:
        return
    try:
        from ipykernel.parentpoller import ParentPollerUnix
    except ImportError:  # not an ipykernel: nothing to tie
        return
    if sys.platform == "win32":
        return
    poller = ParentPollerUnix(parent_pid=parent_pid)
    poller.name = POLLER_THREAD_NAME
    poller.start()


def warmup(code: str) -> None:
    """Run pool warm-up code (e.g. ``import numpy``) in a scratch namespace.

    Modules land in ``sys.modules`` so the user's first import is instant, but no name is bound
    in the user namespace.
    """
    exec(compile(code, "<kernel-sessions-warmup>", "exec"), {"__name__": "__warmup__"})
