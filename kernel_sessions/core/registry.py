"""Durable record of sessions: one SQLite row per session.

Lives in the Jupyter *data* dir (the runtime dir may be cleaned by systemd), in a 0700 directory
as a 0600 file whatever the umask, because rows carry kernel connection keys. WAL plus a busy
timeout lets a CLI read while the server writes. A corrupt file is moved aside and a fresh one
started: losing the record is better than a server that will not start. A row that cannot be
read (bad JSON, unknown state, invalid name) is moved to a ``quarantine`` table with its reason,
so one bad row never stops the others from being served. A registry path that cannot be opened
for writing (a directory, a read-only file) falls back to a registry beside it, seeded with the
rows that can still be read.

Writes name the row's ``generation`` as well as its name: a writer holding a session that was
deleted, its name since taken again, matches no row and changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from kernel_sessions.core.errors import SessionExists, SessionNotFound
from kernel_sessions.core.models import STATES, SessionModel, validate_name

BUSY_TIMEOUT_MS = 5000
SCHEMA_VERSION = 1
DIR_MODE = 0o700
FILE_MODE = 0o600
_JSON_COLUMNS = {"tags", "connection_info"}
_COLUMNS = [f.name for f in fields(SessionModel)]
_SQL_TYPES = {
    "restarts": "INTEGER NOT NULL DEFAULT 0",
    "pid": "INTEGER",
    "lease_expires": "REAL",
    "ttl": "REAL",
    "created": "REAL",
    "last_activity": "REAL",
    "pid_create_time": "REAL",
}

FALLBACK_SUFFIX = ".fallback"  # registry used when the configured path cannot be written
QUARANTINE_REASON_CHARS = 200
LIVE_WITHOUT_KERNEL = ("idle", "busy", "checkpointing", "restoring", "unresponsive")

log = logging.getLogger(__name__)


class BadRow(ValueError):
    """A registry row that does not make a session (its message is the quarantine reason)."""


def secure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make the leaf 0700, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def secure_file(path: Path) -> Path:
    """Create ``path`` if missing and make it 0600, whatever the umask."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, FILE_MODE)
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return path


class Registry:
    """SQLite table of sessions. Methods are synchronous: each is one short local transaction."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.degraded: str | None = None  # why the configured path is not the one in use
        try:
            secure_dir(self.path.parent)
            self._conn = self._open()
        except (OSError, sqlite3.Error) as e:  # a directory, a read-only file, dir or mount
            self._conn = self._fall_back(e)

    # -- opening ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        secure_file(self.path)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("quick_check failed")
        self._create_tables(conn)
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, FILE_MODE)
        return conn

    @staticmethod
    def _create_tables(conn: sqlite3.Connection) -> None:
        cols = ", ".join(
            f"{c} {_SQL_TYPES.get(c, 'TEXT')}" + (" PRIMARY KEY" if c == "name" else "")
            for c in _COLUMNS
        )
        conn.execute(f"CREATE TABLE IF NOT EXISTS sessions ({cols})")
        have = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
        for c in _COLUMNS:  # forward-compatible: new model fields become new columns
            if c not in have:
                conn.execute(f"ALTER TABLE sessions ADD COLUMN {c} {_SQL_TYPES.get(c, 'TEXT')}")
        conn.execute("CREATE TABLE IF NOT EXISTS renamed (old TEXT PRIMARY KEY, new TEXT NOT NULL)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS quarantine (name TEXT, row TEXT NOT NULL, "
            "reason TEXT NOT NULL, at REAL NOT NULL)"
        )
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            )
            log.error(
                "session registry %s is unreadable (%s); moved aside to %s", self.path, e, aside
            )
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, str(aside) + suffix)
            return self._connect()

    def _fall_back(self, error: BaseException) -> sqlite3.Connection:
        """Open a registry beside the configured one (or in memory), with the rows that can
        still be read from it, so sessions are served rather than the server refusing."""
        original = self.path
        detail = getattr(error, "strerror", None) or str(error)  # no paths: it is shown to users
        self.degraded = (
            f"session registry {original.name} cannot be written "
            f"({type(error).__name__}: {detail}); using {original.name}"
            f"{FALLBACK_SUFFIX}"
        )
        log.error("%s", self.degraded)
        rows: list[dict[str, Any]] = []
        if original.is_file():
            rows = self._read_only_rows(original)
        self.path = original.with_name(original.name + FALLBACK_SUFFIX)
        try:
            conn = self._connect()
        except (OSError, sqlite3.Error):
            self.degraded += " in memory (not kept across restarts)"
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.row_factory = sqlite3.Row
            self._create_tables(conn)
        for row in rows:
            cols = [c for c in row if c in _COLUMNS]
            conn.execute(
                f"INSERT OR IGNORE INTO sessions ({', '.join(cols)}) VALUES "
                f"({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )
        return conn

    @staticmethod
    def _read_only_rows(path: Path) -> list[dict[str, Any]]:
        """The rows of the registry at ``path`` without writing anything. On read-only media a
        WAL database opens only as ``immutable`` (no shared-memory file can be made)."""
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                ro = sqlite3.connect(f"file:{path}?{query}", uri=True)
                try:
                    ro.row_factory = sqlite3.Row
                    return [dict(r) for r in ro.execute("SELECT * FROM sessions")]
                finally:
                    ro.close()
            except sqlite3.Error as e:
                error = e
        log.error("session registry %s is not readable either: %s", path.name, error)
        return []

    def close(self) -> None:
        self._conn.close()

    # -- rows ---------------------------------------------------------------------------

    @staticmethod
    def _to_row(model: SessionModel) -> dict[str, Any]:
        d = {c: getattr(model, c) for c in _COLUMNS}
        for c in _JSON_COLUMNS:
            d[c] = json.dumps(d[c])
        return d

    @staticmethod
    def _from_row(row: sqlite3.Row) -> SessionModel:
        """The session of a row, or BadRow saying what is wrong with it."""
        d = {c: row[c] for c in row.keys() if c in _COLUMNS}
        try:
            validate_name(d.get("name"))
        except ValueError:
            raise BadRow("invalid session name") from None
        if d.get("state") not in STATES:
            raise BadRow(f"unknown state {str(d.get('state'))[:40]!r}")
        for c in _JSON_COLUMNS:
            try:
                d[c] = json.loads(d[c]) if d.get(c) else {}
            except (TypeError, ValueError, RecursionError):
                raise BadRow(f"column {c} is not JSON") from None
            if not isinstance(d[c], dict):
                raise BadRow(f"column {c} is not a JSON object")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in d["tags"].items()):
            raise BadRow("tags are not strings")
        d["generation"] = d.get("generation") or ""
        try:
            return SessionModel(**d)
        except TypeError as e:
            raise BadRow(f"unreadable row: {e}") from None

    def insert(self, model: SessionModel) -> None:
        row = self._to_row(model)
        try:
            self._conn.execute(
                f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        except sqlite3.IntegrityError:
            raise SessionExists(f"session {model.name!r} already exists") from None

    def save(self, model: SessionModel) -> bool:
        """Write every field of the model's row; False if that row is gone (deleted, or its
        name taken by a newer session): a stale writer changes nothing."""
        row = self._to_row(model)
        sets = ", ".join(f"{c}=?" for c in row if c not in ("name", "generation"))
        cur = self._conn.execute(
            f"UPDATE sessions SET {sets} WHERE name=? AND COALESCE(generation, '')=?",
            [v for c, v in row.items() if c not in ("name", "generation")]
            + [model.name, model.generation],
        )
        return cur.rowcount > 0

    def set_generation(self, name: str, generation: str) -> None:
        """Give a row written before generations existed one (once)."""
        self._conn.execute(
            "UPDATE sessions SET generation=? WHERE name=? AND COALESCE(generation, '')=''",
            (generation, name),
        )

    def get(self, name: str) -> SessionModel:
        row = self._conn.execute("SELECT * FROM sessions WHERE name=?", (name,)).fetchone()
        if row is None:
            raise SessionNotFound(f"no session named {name!r}")
        return self._from_row(row)

    def list(self) -> list[SessionModel]:
        """Every readable session; unreadable rows are moved to quarantine (see module doc)."""
        out = []
        for r in self._conn.execute(
            "SELECT rowid AS _rowid, * FROM sessions ORDER BY name"
        ).fetchall():
            try:
                out.append(self._from_row(r))
            except BadRow as e:
                self.quarantine_row(r, str(e))
        return out

    def quarantine_row(self, row: sqlite3.Row, reason: str) -> None:
        """Move a row aside (kept whole, with why) so it no longer counts as a session."""
        d = {k: row[k] for k in row.keys() if k != "_rowid"}
        name = d.get("name") if isinstance(d.get("name"), str) else None
        reason = reason[:QUARANTINE_REASON_CHARS]
        log.error("session registry: row %r quarantined: %s", (name or "")[:80], reason)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO quarantine (name, row, reason, at) VALUES (?, ?, ?, ?)",
                (name, json.dumps(d, default=repr), reason, time.time()),
            )
            conn.execute("DELETE FROM sessions WHERE rowid=?", (row["_rowid"],))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def quarantined(self) -> list[dict[str, Any]]:
        """Rows set aside at startup: ``{name, reason, at}``, oldest first."""
        return [
            {"name": r["name"], "reason": r["reason"], "at": r["at"]}
            for r in self._conn.execute("SELECT name, reason, at FROM quarantine ORDER BY at")
        ]

    def rename(self, old: str, new: str) -> None:
        """Rename, and remember where ``old`` went (and where every earlier name of it went),
        so notebooks saved with kernelspec ``session.<old>`` find the session again."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute("UPDATE sessions SET name=? WHERE name=?", (new, old))
            if cur.rowcount == 0:
                raise SessionNotFound(f"no session named {old!r}")
            conn.execute("DELETE FROM renamed WHERE old=?", (new,))
            conn.execute("UPDATE renamed SET new=? WHERE new=?", (new, old))
            conn.execute("INSERT OR REPLACE INTO renamed (old, new) VALUES (?, ?)", (old, new))
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise SessionExists(f"session {new!r} already exists") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def renamed_to(self, old: str) -> str | None:
        """The current name of a session once called ``old`` (None if it was not renamed, or if
        a session of that name exists again)."""
        row = self._conn.execute("SELECT new FROM renamed WHERE old=?", (old,)).fetchone()
        return row[0] if row else None

    def forget_name(self, name: str) -> None:
        """``name`` is taken by a new session: it no longer redirects to a renamed one."""
        self._conn.execute("DELETE FROM renamed WHERE old=?", (name,))

    def delete(self, name: str, generation: str | None = None) -> None:
        """Remove the row of ``name`` (only that generation's, when given)."""
        if generation is None:
            cur = self._conn.execute("DELETE FROM sessions WHERE name=?", (name,))
        else:
            cur = self._conn.execute(
                "DELETE FROM sessions WHERE name=? AND COALESCE(generation, '')=?",
                (name, generation),
            )
        if cur.rowcount:
            self._conn.execute("DELETE FROM renamed WHERE new=?", (name,))

    def names(self) -> Iterable[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM sessions ORDER BY name")]
