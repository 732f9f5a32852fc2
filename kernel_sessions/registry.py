"""Durable record of sessions: one SQLite row per session.

Lives in the Jupyter *data* dir (the runtime dir may be cleaned by systemd), in a 0700 directory
as a 0600 file whatever the umask, because rows carry kernel connection keys. WAL plus a busy
timeout lets a CLI read while the server writes. A corrupt file is moved aside and a fresh one
started: losing the record is better than a server that will not start.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

from .errors import SessionExists, SessionNotFound
from .models import SessionModel

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

log = logging.getLogger(__name__)


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
        secure_dir(self.path.parent)
        self._conn = self._open()

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
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        for suffix in ("-wal", "-shm"):
            side = Path(str(self.path) + suffix)
            if side.exists():
                os.chmod(side, FILE_MODE)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except sqlite3.DatabaseError as e:
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            )
            log.error("session registry %s is unreadable (%s); moved aside to %s", self.path, e,
                      aside)
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, str(aside) + suffix)
            return self._connect()

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
        d = {c: row[c] for c in row.keys() if c in _COLUMNS}
        for c in _JSON_COLUMNS:
            d[c] = json.loads(d[c]) if d.get(c) else {}
        return SessionModel(**d)

    def insert(self, model: SessionModel) -> None:
        row = self._to_row(model)
        try:
            self._conn.execute(
                f"INSERT INTO sessions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        except sqlite3.IntegrityError:
            raise SessionExists(f"session {model.name!r} already exists") from None

    def save(self, model: SessionModel) -> None:
        """Write every field of an existing row."""
        row = self._to_row(model)
        sets = ", ".join(f"{c}=?" for c in row if c != "name")
        cur = self._conn.execute(
            f"UPDATE sessions SET {sets} WHERE name=?",
            [v for c, v in row.items() if c != "name"] + [model.name],
        )
        if cur.rowcount == 0:
            raise SessionNotFound(f"no session named {model.name!r}")

    def get(self, name: str) -> SessionModel:
        row = self._conn.execute("SELECT * FROM sessions WHERE name=?", (name,)).fetchone()
        if row is None:
            raise SessionNotFound(f"no session named {name!r}")
        return self._from_row(row)

    def list(self) -> list[SessionModel]:
        return [self._from_row(r) for r in self._conn.execute("SELECT * FROM sessions ORDER BY name")]

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

    def delete(self, name: str) -> None:
        self._conn.execute("DELETE FROM sessions WHERE name=?", (name,))
        self._conn.execute("DELETE FROM renamed WHERE new=?", (name,))

    def names(self) -> Iterable[str]:
        return [r[0] for r in self._conn.execute("SELECT name FROM sessions ORDER BY name")]
