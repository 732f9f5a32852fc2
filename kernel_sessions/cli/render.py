"""How ``jupyter kernel-sessions`` shows things to people: rich tables, one-line messages,
kernel outputs, and a progress line for calls that take more than a second.

Scripts use ``--json`` instead, which prints the API's own JSON and nothing else.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

T = TypeVar("T")
PROGRESS_AFTER = 1.0  # seconds before a long call shows a progress line
PIPE_WIDTH = 200  # columns for tables when stdout is not a terminal
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
STATE_STYLES = {
    "idle": "green",
    "busy": "yellow",
    "starting": "cyan",
    "checkpointing": "cyan",
    "restoring": "cyan",
    "hibernated": "blue",
    "unresponsive": "magenta",
    "dead": "red",
    "deleted": "red",
}


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=not tty,
        width=None if tty else PIPE_WIDTH,
        no_color=not tty,
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def say(message: str) -> None:
    """A one-line result for people (stdout)."""
    sys.stdout.write(message + "\n")


def warn(message: str) -> None:
    sys.stderr.write(message + "\n")


# -- values ---------------------------------------------------------------------------------


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def ago(value: str | None) -> str:
    """``3s ago``, ``5m ago``, ``2h ago``, ``4d ago``; ``in 20s`` for the future."""
    when = parse_time(value)
    if when is None:
        return "-"
    delta = (datetime.now(timezone.utc) - when).total_seconds()
    future, delta = delta < 0, abs(delta)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if delta >= size or unit == "s":
            text = f"{int(delta // size)}{unit}"
            return f"in {text}" if future else f"{text} ago"
    return "-"


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def table(*columns: str) -> Table:
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


# -- objects --------------------------------------------------------------------------------


def attached_count(s: dict) -> int:
    """Clients attached to a session, each once: an open notebook or console holds one of the
    kernel's websocket connections, so the two are not added up."""
    return max(len(s.get("notebooks", [])), int(s["kernel"].get("connections", 0) or 0))


def sessions_table(sessions: list[dict]) -> None:
    if not sessions:
        say("no sessions")
        return
    t = table("NAME", "STATE", "KERNEL", "MEMORY", "ACTIVE", "ATTACHED", "OWNER", "TAGS")
    for s in sessions:
        tags = ",".join(f"{k}={v}" for k, v in sorted(s.get("tags", {}).items()))
        t.add_row(
            s["name"],
            state_text(s["state"]),
            s["kernel"]["name"],
            human_bytes(s.get("memory_rss")),
            ago(s.get("last_activity")),
            str(attached_count(s)),
            s.get("owner") or "-",
            tags or "-",
        )
    console().print(t)


def session_detail(s: dict) -> None:
    k = s["kernel"]
    rows = [
        ("name", s["name"]),
        ("state", f"{s['state']} ({s['reason']})" if s.get("reason") else s["state"]),
        (
            "kernel",
            (
                f"{k['name']} {k['id'] or '-'} ({k.get('execution_state') or '-'}, "
                f"{k.get('connections', 0)} connections)"
            ),
        ),
        ("created", f"{s['created']} ({ago(s['created'])})"),
        ("last activity", ago(s.get("last_activity"))),
        ("restarts", str(s.get("restarts", 0))),
        ("memory", human_bytes(s.get("memory_rss"))),
        ("ttl", "never expires" if s.get("ttl") is None else f"{s['ttl']:g} s idle"),
        ("owner", s.get("owner") or "-"),
        ("lease expires", ago(s.get("lease_expires")) if s.get("lease_expires") else "-"),
        ("tags", ", ".join(f"{a}={b}" for a, b in sorted(s.get("tags", {}).items())) or "-"),
        ("notebooks", ", ".join(n.get("path") or n["id"] for n in s.get("notebooks", [])) or "-"),
        ("last checkpoint", s.get("last_checkpoint") or "-"),
    ]
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for key, value in rows:
        t.add_row(key, value)
    console().print(t)


def variables_table(listing: dict) -> None:
    variables = listing.get("variables", [])
    if listing.get("stale"):
        warn("note: the session is busy; this is its last listing")
    if not variables:
        say("no variables")
        return
    t = table("NAME", "TYPE", "SIZE", "SHAPE", "PREVIEW")
    for v in variables:
        shape = v.get("shape")
        length = v.get("len")
        dims = "×".join(map(str, shape)) if shape else ("" if length is None else str(length))
        t.add_row(
            v["name"],
            v["type"],
            human_bytes(v.get("size")),
            dims or "-",
            (v.get("preview") or v.get("error") or "").replace("\n", " "),
        )
    console().print(t)
    if listing.get("truncated"):
        warn(f"note: {listing.get('count')} variables, not all shown")


def pool_table(pool: dict) -> None:
    t = table(
        "KERNELSPEC", "TARGET", "READY", "STARTING", "HITS", "MISSES", "HIT RATE", "ACQUIRE P50"
    )
    for spec, p in sorted(pool.get("pools", {}).items()):
        rate = "-" if p.get("hit_rate") is None else f"{p['hit_rate']:.0%}"
        p50 = "-" if p.get("acquire_p50_ms") is None else f"{p['acquire_p50_ms']:.1f} ms"
        t.add_row(
            spec,
            str(p["target"]),
            str(p["ready"]),
            str(p["starting"]),
            str(p["hits"]),
            str(p["misses"]),
            rate,
            p50,
        )
    console().print(t)
    limit = pool.get("max_kernels")
    say(f"max kernels: {limit if limit else 'no limit'}")


def checkpoints_table(items: list[dict]) -> None:
    if not items:
        say("no checkpoints")
        return
    t = table("ID", "LABEL", "CREATED", "VARIABLES", "SIZE", "NEW", "VALID")
    for c in items:
        valid = (
            "yes" if c.get("valid", True) else f"no: {c.get('reason') or c.get('message') or ''}"
        )
        skipped = f" (+{c['skipped_count']} skipped)" if c.get("skipped_count") else ""
        t.add_row(
            c["id"],
            c.get("label") or "-",
            ago(c.get("created")),
            f"{c.get('variable_count', 0)}{skipped}",
            human_bytes(c.get("bytes")),
            human_bytes(c.get("new_bytes")),
            valid,
        )
    console().print(t)


def checkpoint_done(c: dict) -> None:
    say(
        f"checkpoint {c['id']} of {c['session']}: {c.get('variable_count', 0)} variables, "
        f"{human_bytes(c.get('bytes'))} ({human_bytes(c.get('new_bytes'))} new)"
    )
    for s in c.get("skipped", []):
        warn(f"skipped {s['name']} ({s.get('type', '?')}): {s.get('reason', '')}")


def restore_done(r: dict, checkpoint: str) -> None:
    session = r.get("session", {}).get("name", "?")
    say(
        f"restored {len(r.get('restored', []))} variables of checkpoint {checkpoint} into {session}"
    )
    removed = r.get("removed", [])
    if removed:
        say(
            f"removed {len(removed)} variable(s) the checkpoint does not have: "
            + ", ".join(removed)
        )
    for f in r.get("failed", []):
        warn(f"not restored {f['name']}: {f.get('reason', '')}")


# -- kernel outputs -------------------------------------------------------------------------


def _plain(text: str, stream: Any) -> str:
    return text if stream.isatty() else ANSI.sub("", text)


def show_output(out: dict) -> None:
    """One nbformat output, or the content of one iopub message, on stdout/stderr."""
    kind = out.get("output_type") or out.get("msg_type")
    if kind == "stream":
        stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
        stream.write(out.get("text", ""))
        stream.flush()
    elif kind in ("execute_result", "display_data"):
        text = (out.get("data") or {}).get("text/plain")
        if text is not None:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
    elif kind == "error":
        tb = out.get("traceback") or [f"{out.get('ename')}: {out.get('evalue')}"]
        sys.stderr.write(_plain("\n".join(tb), sys.stderr) + "\n")
        sys.stderr.flush()


# -- progress -------------------------------------------------------------------------------


def with_progress(label: str, fn: Callable[[], T], *, show: bool = True) -> T:
    """Run ``fn``; if it takes over a second, show ``label`` with the elapsed time (stderr,
    terminals only) until it returns."""
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
            error.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(PROGRESS_AFTER)
    if worker.is_alive():
        start = time.monotonic() - PROGRESS_AFTER
        err = console(stderr=True)
        if show and sys.stderr.isatty():
            with err.status(label) as status:
                while worker.is_alive():
                    worker.join(0.2)
                    status.update(f"{label} {time.monotonic() - start:.0f}s")
        else:
            worker.join()
    if error:
        raise error[0]
    return result[0]
