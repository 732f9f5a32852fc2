"""One data dir, one owner: the lock a server holds before it manages any session kernel.

Two servers on one data dir (a second ``jupyter lab``, or ``jupyter kernel-sessions serve`` next
to one) would both adopt, restart and shut down the same recorded kernels. The owner holds
``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``<data dir>/owner.lock`` through one open file for its
whole life; the kernel drops that lock when the process ends in any way (SIGKILL included), so
there is no stale lock to clean up. The file's contents (pid, process start time, hostname) only
say *who* holds it, for messages: whoever gets the flock overwrites them, so leftovers of a dead
owner are harmless. The file is never unlinked: removing it while a peer has it open would let
two processes lock two different inodes under one name.

``flock`` conflicts between open files even inside one process, so a second manager in the same
process on the same data dir is refused too. The descriptor is close-on-exec, so kernels and
other children never inherit (and so never prolong) the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from kernel_sessions.core.registry import secure_dir

LOCK_NAME = "owner.lock"
LOCK_MODE = 0o600
MAX_OWNER_BYTES = 4096  # the record is a small JSON object; anything bigger is not ours
CREATE_TIME_SLACK = 1.0  # seconds of float noise between two readings of a start time


@dataclass(frozen=True)
class OwnerInfo:
    """Who holds (or last held) the lock, as its holder recorded it."""

    pid: int
    create_time: float
    hostname: str
    since: float = 0.0  # epoch seconds the lock was taken

    @classmethod
    def current(cls) -> OwnerInfo:
        pid = os.getpid()
        return cls(
            pid=pid,
            create_time=psutil.Process(pid).create_time(),
            hostname=socket.gethostname(),
            since=time.time(),
        )

    @classmethod
    def parse(cls, raw: bytes) -> OwnerInfo | None:
        """The record in ``raw``, or None for an empty, partly written or foreign file."""
        try:
            data = json.loads(raw.decode("utf-8"))
            return cls(
                pid=int(data["pid"]),
                create_time=float(data["create_time"]),
                hostname=str(data["hostname"]),
                since=float(data.get("since", 0.0)),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def alive(self) -> bool | None:
        """Whether that process still runs here (same pid *and* start time), None when it runs
        on another host (its pid says nothing here)."""
        if self.hostname != socket.gethostname():
            return None
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > CREATE_TIME_SLACK:
                return False  # the pid was reused
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def describe(self) -> str:
        """``pid 123`` (``pid 123 on host h`` for another host): no paths, safe for clients."""
        if self.hostname != socket.gethostname():
            return f"pid {self.pid} on host {self.hostname}"
        return f"pid {self.pid}"


class OwnershipLock:
    """The ownership lock of one data dir (see the module docstring)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None
        self._read_only = False  # the lock file could only be opened for reading

    def __repr__(self) -> str:
        return f"OwnershipLock({str(self.data_dir)!r}, held={self.held})"

    def __enter__(self) -> OwnershipLock:
        if not self.acquire():
            owner = self.owner()
            raise BlockingIOError(
                errno.EWOULDBLOCK,
                "the data dir has another owner" + (f" ({owner.describe()})" if owner else ""),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # an owner dropped without release() must not keep the lock
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self) -> int:
        nofollow = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        try:
            secure_dir(self.data_dir)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | nofollow, LOCK_MODE)
        except OSError:  # a read-only data dir: an existing lock file still takes a flock
            fd = os.open(self.path, os.O_RDONLY | nofollow)
            self._read_only = True
            return fd
        try:
            os.fchmod(fd, LOCK_MODE)
        except PermissionError:  # another user's file: the flock still decides
            pass
        return fd

    def acquire(self) -> bool:
        """Take the lock without waiting; True when this object holds it (also if it already
        did). On success the file names this process."""
        if self._fd is not None:
            return True
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        if self._read_only:
            self._fd = fd  # held, but nothing can say who holds it
            return True
        try:
            record = OwnerInfo.current().dumps()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops the flock
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Clear the record and drop the lock; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # the next reader sees "nobody", not a stale pid
        except OSError:
            pass
        finally:
            os.close(fd)

    def owner(self) -> OwnerInfo | None:
        """The recorded owner, or None (no file, empty: released, or being written)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            return OwnerInfo.parse(os.pread(fd, MAX_OWNER_BYTES, 0))
        finally:
            os.close(fd)  # a flock lives on the owner's open file, untouched by this close
