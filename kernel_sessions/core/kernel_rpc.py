"""Host side of the kernel-side modules: build silent code that installs and calls them.

A module under ``kernel_sessions/kernel/`` is shipped as its source and installed once per
kernel process under a private ``sys.modules`` key (so it works even in kernels whose Python
cannot import ``kernel_sessions``). The generated code is a single expression: it binds no
name in the user namespace and, sent with ``silent=True``, leaves ``In``/``Out``/``_`` and the
execution count alone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

PRIVATE_PREFIX = "_kernel_sessions_"
HELPER_MSG_PREFIX = "kernel-sessions-helper-"  # msg_id prefix of every helper request
WARM_MARK = "_kernel_sessions_warm"  # set by the pool on kernel managers it hands out


def handed_out_warm(km: object) -> bool:
    """True for a kernel that came from a warm pool: it already answered kernel_info."""
    return bool(getattr(km, WARM_MARK, False))


def helper_execute(
    kc: object, code: str, user_expressions: dict | None = None, subshell_id: str | None = None
) -> str:
    """Send a silent, history-less execute on ``kc``'s shell channel; return its msg_id.

    The msg_id carries ``HELPER_MSG_PREFIX``, so watchers can tell the busy/idle this causes
    from a user's execution.
    """
    content = {
        "code": code,
        "silent": True,
        "store_history": False,
        "user_expressions": user_expressions or {},
        "allow_stdin": False,
        "stop_on_error": False,
    }
    msg = kc.session.msg("execute_request", content)  # type: ignore[attr-defined]
    msg["header"]["msg_id"] = msg["msg_id"] = HELPER_MSG_PREFIX + msg["header"]["msg_id"]
    if subshell_id is not None:
        msg["header"]["subshell_id"] = subshell_id
    kc.shell_channel.send(msg)  # type: ignore[attr-defined]
    return msg["header"]["msg_id"]


@functools.cache
def module_source(module: str) -> str:
    return resources.files("kernel_sessions.kernel").joinpath(f"{module}.py").read_text("utf-8")


def install_expr(module: str) -> str:
    """An expression evaluating to the installed module, installing it on first use."""
    return source_install_expr(PRIVATE_PREFIX + module, module_source(module))


def source_install_expr(key: str, src: str) -> str:
    """Install ``src`` as module ``key`` in the kernel (once) and evaluate to it."""
    return (
        f"(__import__('sys').modules.get({key!r}) or "
        "(lambda m, s, sys: (exec(compile(s, m.__name__, 'exec'), m.__dict__), "
        "sys.modules.__setitem__(m.__name__, m), m)[-1])"
        f"(__import__('types').ModuleType({key!r}), {src!r}, __import__('sys')))"
    )


def call_code(module: str, func: str, *args: object, **kwargs: object) -> str:
    """Code calling ``module.func(*args, **kwargs)`` in the kernel; arguments go as JSON."""
    payload = json.dumps([list(args), kwargs])
    return (
        f"(lambda m, a: m.{func}(*a[0], **a[1]))"
        f"({install_expr(module)}, __import__('json').loads({payload!r}))"
    )


def ns_call_code(
    module: str, func: str, *args: object, hidden: bool = False, **kwargs: object
) -> str:
    """Like :func:`call_code`, with the shell's user namespace as first argument.

    ``hidden=True`` also passes IPython's ``user_ns_hidden`` (names IPython put there itself).
    The shell is reached through ``IPython.get_ipython()``, never through a name the user
    could have rebound.
    """
    payload = json.dumps([list(args), kwargs])
    extra = "hidden=ip.user_ns_hidden, " if hidden else ""
    return (
        f"(lambda m, a, ip: m.{func}(ip.user_ns, *a[0], {extra}**a[1]))"
        f"({install_expr(module)}, __import__('json').loads({payload!r}), "
        "__import__('IPython').get_ipython())"
    )


INSTALLER_TEMPLATE = """\
# kernel-sessions: installs the kernel-side module {key} once per kernel process
import sys as _sys, types as _types
if {key!r} not in _sys.modules:
    _m = _types.ModuleType({key!r})
    exec(compile({src!r}, {key!r}, "exec"), _m.__dict__)
    _sys.modules[{key!r}] = _m
"""


def installer_file(module: str, directory: str | os.PathLike[str]) -> Path:
    """A script in ``directory`` that installs ``module`` as ``install_expr`` does, for a
    kernel's start-up line: the command line then names a file instead of carrying the source
    (``ps`` stays readable). Named by content, written once, atomically, 0600."""
    key = PRIVATE_PREFIX + module
    text = INSTALLER_TEMPLATE.format(key=key, src=module_source(module))
    digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
    path = Path(directory) / f"kernel-sessions-{module}-{digest}.py"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    return path


def startup_line(module: str, func: str, directory: str | os.PathLike[str], *args: object) -> str:
    """A short start-up line (``IPKernelApp.exec_lines``) calling ``module.func(*args)``: it
    runs the installer file, then the function (a fresh namespace, nothing bound for the user)."""
    path = installer_file(module, directory)
    if not all(isinstance(a, (bool, int, float, str)) or a is None for a in args):
        raise TypeError("start-up line arguments are plain literals")
    call = ", ".join(repr(a) for a in args)
    # a list whose last item is the call's result (None): nothing is displayed
    return (
        f"[__import__('runpy').run_path({str(path)!r}), "
        f"__import__('sys').modules[{PRIVATE_PREFIX + module!r}].{func}({call})][-1]"
    )
