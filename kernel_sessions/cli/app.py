"""``jupyter kernel-sessions …``: named kernel sessions from the command line.

Every command talks to a running server's REST API (found as ``discovery.py`` says), except
``serve`` (which runs one), ``install-kernelspec`` (which writes files) and ``exec``/``console``,
which attach to the kernel directly so outputs stream. People get tables and one-line
messages; ``--json`` prints the API's JSON for scripts. Exit codes: 0 ok, 1 a refused request,
a failed cell or no server (one ``error: …`` line on stderr, never a traceback), 2 bad usage,
130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_sessions.cli import render as R
from kernel_sessions.client import ClientError, KernelSessionsClient
from kernel_sessions.core.errors import InvalidSessionName
from kernel_sessions.core.models import validate_name

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_IP, DEFAULT_PORT = "127.0.0.1", 8888


class CliError(Exception):
    """A user error found before any request (bad JSON, missing tool, ...)."""


def _name(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidSessionName as e:
        raise CliError(str(e)) from None


def _api(args: argparse.Namespace) -> KernelSessionsClient:
    return KernelSessionsClient(args.url, args.token)


def _ok(args: argparse.Namespace, obj: Any, human: Callable[[], None]) -> int:
    if args.json:
        R.print_json(obj)
    else:
        human()
    return 0


# -- sessions ---------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    sessions = _api(args).list_sessions()
    return _ok(args, sessions, lambda: R.sessions_table(sessions))


def cmd_create(args: argparse.Namespace) -> int:
    name = _name(args.name)
    source, checkpoint = None, None
    if args.source:
        source, _, checkpoint = args.source.partition(":")
        _name(source)
    tags = dict(_pair(t, "--tag") for t in args.tag or [])
    api = _api(args)

    def create() -> dict:
        return api.create_session(
            name,
            args.kernel,
            ttl=args.ttl,
            tags=tags or None,
            from_session=source,
            checkpoint=checkpoint or None,
        )

    s = (
        R.with_progress(f"forking {source} into {name}", create, show=not args.json)
        if source
        else create()
    )
    return _ok(args, s, lambda: R.say(f"created {s['name']} ({s['kernel']['name']}, {s['state']})"))


def cmd_info(args: argparse.Namespace) -> int:
    s = _api(args).get_session(_name(args.name))
    return _ok(args, s, lambda: R.session_detail(s))


def cmd_delete(args: argparse.Namespace) -> int:
    name = _name(args.name)
    _api(args).delete_session(name, purge=args.purge)
    what = "deleted " + name + (" and its checkpoints" if args.purge else "")
    return _ok(args, {"deleted": name, "purged": args.purge}, lambda: R.say(what))


def cmd_rename(args: argparse.Namespace) -> int:
    s = _api(args).rename_session(_name(args.old), _name(args.new))
    return _ok(args, s, lambda: R.say(f"renamed {args.old} to {s['name']}"))


def cmd_restart(args: argparse.Namespace) -> int:
    s = _api(args).restart(_name(args.name))
    return _ok(args, s, lambda: R.say(f"restarted {s['name']} (empty namespace, same kernel)"))


def cmd_interrupt(args: argparse.Namespace) -> int:
    s = _api(args).interrupt(_name(args.name))
    return _ok(args, s, lambda: R.say(f"interrupted {s['name']}"))


def cmd_exec(args: argparse.Namespace) -> int:
    """Run code; outputs stream when the kernel is reachable (else they come at the end)."""
    name = _name(args.name)
    code = sys.stdin.read() if args.code == "-" else args.code
    api = _api(args)
    if not args.json:
        try:
            kc = api.connect(name, create=False)
        except ClientError as e:
            if e.reason not in ("not_local", "forbidden", "timeout"):
                raise
        else:
            return _stream(api, kc, name, code, args.timeout)
    timeout = args.timeout or 3600.0
    result = api.execute(name, code, timeout)
    if args.json:
        R.print_json(result)
    else:
        for out in result["outputs"]:
            R.show_output(out)
    if result["status"] == "timeout":
        raise ClientError(f"the code ran longer than {timeout:g} s and was interrupted")
    return 0 if result["status"] == "ok" else EXIT_ERROR


def _stream(api: KernelSessionsClient, kc: Any, name: str, code: str, timeout: float | None) -> int:
    def hook(msg: dict) -> None:
        R.show_output({"msg_type": msg["msg_type"], **msg["content"]})

    try:
        reply = kc.execute_interactive(code, timeout=timeout, output_hook=hook, allow_stdin=False)
    except TimeoutError:
        api.interrupt(name)
        raise ClientError(f"the code ran longer than {timeout:g} s and was interrupted") from None
    except KeyboardInterrupt:
        api.interrupt(name)
        R.warn(f"interrupted {name}")
        return EXIT_INTERRUPTED
    finally:
        kc.stop_channels()
    return 0 if reply["content"]["status"] == "ok" else EXIT_ERROR


# -- variables --------------------------------------------------------------------------------


def cmd_vars(args: argparse.Namespace) -> int:
    listing = _api(args).variables(_name(args.name), include_modules=args.all, filter=args.filter)
    return _ok(args, listing, lambda: R.variables_table(listing))


def cmd_get(args: argparse.Namespace) -> int:
    v = _api(args).get_variable(_name(args.name), args.var, args.format)
    text = v["value"] if args.format == "repr" else json.dumps(v["value"], indent=2)
    return _ok(args, v, lambda: R.say(str(text)))


def cmd_set(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except ValueError as e:
        raise CliError(
            f"the value is not valid JSON ({e}); a string needs quotes: '\"text\"'"
        ) from None
    r = _api(args).set_variable(_name(args.name), args.var, value)
    return _ok(args, r, lambda: R.say(f"set {args.name}.{args.var} ({r.get('type', '?')})"))


# -- checkpoints ------------------------------------------------------------------------------


def cmd_checkpoint(args: argparse.Namespace) -> int:
    name, api = _name(args.name), _api(args)
    c = R.with_progress(
        f"checkpointing {name}",
        lambda: api.create_checkpoint(name, label=args.label, variables=args.var or None),
        show=not args.json,
    )
    return _ok(args, c, lambda: R.checkpoint_done(c))


def cmd_checkpoints(args: argparse.Namespace) -> int:
    items = _api(args).checkpoints(_name(args.name), deleted=args.deleted)
    return _ok(args, items, lambda: R.checkpoints_table(items))


def cmd_restore(args: argparse.Namespace) -> int:
    name, api = _name(args.name), _api(args)
    into = _name(args.into) if args.into else None
    cid = args.id or api.latest_checkpoint(name, deleted=into is not None)  # a fork: any name
    r = R.with_progress(
        f"restoring {name} from {cid}",
        lambda: api.restore(name, cid, into=into, variables=args.var or None),
        show=not args.json,
    )
    _ok(args, r, lambda: R.restore_done(r, cid))
    if r.get("failed"):
        R.warn(f"error: {len(r['failed'])} variable(s) could not be restored")
        return EXIT_ERROR
    return 0


# -- kernels, pool, server --------------------------------------------------------------------


def cmd_console(args: argparse.Namespace) -> int:
    """``jupyter console --kernel session.<name>`` with a throwaway kernelspec (the provisioner
    detaches on exit: the session keeps running)."""
    import shutil
    import subprocess

    from kernel_sessions.core.models import spec_name
    from kernel_sessions.provisioner.provisioner import kernelspec_json

    name, api = _name(args.name), _api(args)
    api.get_session(name)  # fail early and clearly on an unknown session
    # beside this Python first: `.venv/bin/jupyter kernel-sessions console` without an active venv
    exe = shutil.which(
        "jupyter-console",
        path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    )
    if exe is None:
        raise CliError(
            "jupyter console is not installed (pip install jupyter-console); "
            f"or use `jupyter kernel-sessions connection-file {name}` with any client"
        )
    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = Path(tmp, "kernels", spec_name(name))
        spec_dir.mkdir(parents=True)
        spec = kernelspec_json(name, url=api.server.url)
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        env = {
            **os.environ,
            "JUPYTER_PATH": os.pathsep.join([tmp, *filter(None, [os.environ.get("JUPYTER_PATH")])]),
            "JUPYTER_TOKEN": api.server.token,
        }
        code = subprocess.call([exe, "--kernel", spec_name(name), *args.extra], env=env)
    # jupyter console's own farewell says "Shutting down kernel": only the console ended
    R.say(f"detached from session {name} (it keeps running)")
    return code


def cmd_connection_file(args: argparse.Namespace) -> int:
    from jupyter_core.paths import jupyter_runtime_dir

    name = _name(args.name)
    info = _api(args).connection_info(name)
    path = Path(args.output or Path(jupyter_runtime_dir()) / f"kernel-session-{name}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the key
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=1)
    os.chmod(path, 0o600)
    return _ok(
        args,
        {"session": name, "path": str(path), "kernel_id": info.get("kernel_id")},
        lambda: R.say(str(path)),
    )


def cmd_pool(args: argparse.Namespace) -> int:
    api = _api(args)
    if args.resize:
        sizes = {}
        for item in args.resize:
            spec, n = _pair(item, "--resize")
            if not n.isdigit():
                raise CliError(f"--resize wants SPEC=N with N a whole number, not {item!r}")
            sizes[spec] = int(n)
        pool = api.resize_pool(sizes)
    else:
        pool = api.pool()
    return _ok(args, pool, lambda: R.pool_table(pool))


def cmd_install_kernelspec(args: argparse.Namespace) -> int:
    from kernel_sessions.core.models import spec_name
    from kernel_sessions.provisioner.provisioner import install_kernelspec

    name = _name(args.name)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    path = install_kernelspec(
        name,
        url=args.url or "",
        display_name=args.display_name,
        kernel_name=args.kernel or "",
        user=prefix is None,
        prefix=prefix,
    )
    return _ok(
        args,
        {"name": spec_name(name), "path": path},
        lambda: R.say(f"installed kernelspec {spec_name(name)} in {path}"),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """A headless jupyter server with the extension (the runtime file lets the CLI find it)."""
    from jupyter_server.serverapp import ServerApp

    argv = [
        "--no-browser",
        f"--ServerApp.ip={args.ip}",
        f"--ServerApp.port={args.port}",
        "--ServerApp.jpserver_extensions=kernel_sessions=True",
        *args.extra,
    ]
    ServerApp.launch_instance(argv=argv)
    return 0


def _pair(item: str, option: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise CliError(f"{option} wants KEY=VALUE, not {item!r}")
    return key, value


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="server URL (default: $JUPYTER_KERNEL_SESSIONS_URL, else the running servers)",
    )
    common.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="server token (default: $JUPYTER_TOKEN, else the server's runtime file)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the API's JSON (for scripts)",
    )
    parser = argparse.ArgumentParser(
        prog="jupyter kernel-sessions",
        parents=[common],
        description="Named, persistent, pooled IPython kernel sessions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, fn: Callable, help: str, *args: tuple[tuple, dict]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        for a, kw in args:
            p.add_argument(*a, **kw)
        p.set_defaults(fn=fn)
        return p

    NAME = (("name",), {"help": "session name"})
    add("list", cmd_list, "list sessions")
    add(
        "create",
        cmd_create,
        "create a session (from the warm pool, or as a fork)",
        NAME,
        (("--kernel",), {"help": "kernelspec (default: the server's)"}),
        (
            ("--from",),
            {
                "dest": "source",
                "metavar": "SESSION[:CHECKPOINT]",
                "help": "fork: start from a checkpoint of SESSION (default: its latest)",
            },
        ),
        (("--ttl",), {"type": float, "help": "idle seconds before it expires"}),
        (("--tag",), {"action": "append", "metavar": "KEY=VALUE"}),
    )
    add("info", cmd_info, "show a session", NAME)
    add(
        "delete",
        cmd_delete,
        "delete a session (its kernel stops)",
        NAME,
        (("--purge",), {"action": "store_true", "help": "delete its checkpoints too"}),
    )
    add("rename", cmd_rename, "rename a session", (("old",), {}), (("new",), {}))
    add("restart", cmd_restart, "restart a session's kernel (empty namespace)", NAME)
    add("interrupt", cmd_interrupt, "interrupt the running cell", NAME)
    add(
        "exec",
        cmd_exec,
        "run code in a session (exit 1 if it raised)",
        NAME,
        (("code",), {"help": "code, or - to read it from stdin"}),
        (("--timeout",), {"type": float, "help": "seconds before the cell is interrupted"}),
    )
    add(
        "vars",
        cmd_vars,
        "list a session's variables (without running a cell)",
        NAME,
        (("--all",), {"action": "store_true", "help": "include modules"}),
        (("--filter",), {"help": "substring or glob"}),
    )
    add(
        "get",
        cmd_get,
        "print a variable's value",
        NAME,
        (("var",), {}),
        (("--format",), {"choices": ["json", "repr"], "default": "json"}),
    )
    add(
        "set",
        cmd_set,
        "set a variable to a JSON value",
        NAME,
        (("var",), {}),
        (("value",), {"metavar": "JSON"}),
    )
    add(
        "checkpoint",
        cmd_checkpoint,
        "checkpoint a session's namespace",
        NAME,
        (("--label",), {}),
        (("--var",), {"action": "append", "help": "only these variables (repeatable)"}),
    )
    add(
        "checkpoints",
        cmd_checkpoints,
        "list a session's checkpoints",
        NAME,
        (
            ("--deleted",),
            {
                "action": "store_true",
                "help": "also when the session was deleted (its checkpoints stay until "
                "purged; restore one with --into NEW)",
            },
        ),
    )
    add(
        "restore",
        cmd_restore,
        "restore a checkpoint (default: the latest)",
        NAME,
        (("id",), {"nargs": "?", "help": "checkpoint id"}),
        (("--into",), {"metavar": "NEW", "help": "into a new session (a fork)"}),
        (("--var",), {"action": "append", "help": "only these variables (repeatable)"}),
    )
    add("console", cmd_console, "open jupyter console on a session (other options go to it)", NAME)
    add(
        "connection-file",
        cmd_connection_file,
        "write a connection file for the session's kernel (jupyter console --existing FILE)",
        NAME,
        (("-o", "--output"), {"help": "where (default: the runtime dir)"}),
    )
    add(
        "pool",
        cmd_pool,
        "show or resize the warm pool",
        (("--resize",), {"action": "append", "metavar": "SPEC=N"}),
    )
    ks = add(
        "install-kernelspec",
        cmd_install_kernelspec,
        "install kernelspec session.NAME (for nbclient, papermill, jupyter console)",
        NAME,
        (("--display-name",), {}),
        (("--kernel",), {"help": "kernelspec of the session if it gets created"}),
    )
    where = ks.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="the user's data dir (default)")
    where.add_argument("--sys-prefix", action="store_true", help="this environment")
    where.add_argument("--prefix", help="PREFIX/share/jupyter/kernels")
    add(
        "serve",
        cmd_serve,
        "run a headless jupyter server with kernel sessions (other options "
        "go to jupyter server, e.g. --allow-root)",
        (("--ip",), {"default": DEFAULT_IP}),
        (("--port",), {"type": int, "default": DEFAULT_PORT}),
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "fn", None) not in (cmd_serve, cmd_console):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    for opt, default in (("url", None), ("token", None), ("json", False)):
        if not hasattr(args, opt):
            setattr(args, opt, default)
    if not getattr(args, "fn", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.fn(args)
    except (ClientError, CliError) as e:
        R.warn(f"error: {e}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
