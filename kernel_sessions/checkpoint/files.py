"""File access of the checkpoint store: atomic writes, the store lock, and reads of regular
files only. Everything here takes plain paths and knows nothing of manifests or keys; it is
apart so that the rules every read and write follows (temp file + fsync + rename, O_NONBLOCK
and O_NOFOLLOW with an fstat check so a FIFO or device planted in the store is refused, errors
without absolute paths) live in one place that another backend could replace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import threading
from collections.abc import Iterator
from typing import BinaryIO

from kernel_sessions.core.errors import (
    CheckpointError,
    CheckpointStorageError,
    CheckpointStorageFull,
)
from kernel_sessions.kernel.snapshot import DIR_MODE, FILE_MODE, TMP_SUFFIX

STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
O_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


def storage_error(exc: OSError, what: str) -> CheckpointError:
    """A store write that failed, as the error the REST layer shows (507 when full)."""
    if exc.errno in STORAGE_FULL_ERRNOS:
        return CheckpointStorageFull(
            f"{what}: the checkpoint store is full ({os_problem(exc)});"
            " earlier checkpoints are intact"
        )
    return CheckpointStorageError(
        f"{what}: the checkpoint store cannot be written "
        f"({os_problem(exc)}); earlier checkpoints are intact"
    )


class NotRegularFile(OSError):
    """A FIFO, device, socket or directory where the store expects a regular file."""


def os_problem(exc: OSError) -> str:
    """An OSError as text without the file name (messages never show absolute paths)."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or (str(exc) if exc.errno is None else "") or type(exc).__name__
    return f"{text} ({name})" if name else text


def stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


class LocalFS:
    """Every file operation of the store, on a local directory tree.

    Kept in one small class so that an fsspec-backed twin (same methods) can serve ``s3://``
    roots later; nothing else in the store's modules touches ``os`` for files.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._held = False

    join = staticmethod(os.path.join)

    def ensure_dir(self, path: str) -> None:
        """mkdir -p with 0700 on every directory created (chmod: no umask can widen it)."""
        if not os.path.isdir(path):
            parent = os.path.dirname(os.path.abspath(path))
            self.ensure_dir(parent)
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, DIR_MODE)
                os.chmod(path, DIR_MODE)
                self._fsync_dir(parent)

    @staticmethod
    def _fsync_dir(path: str) -> None:
        with contextlib.suppress(OSError):  # Windows and some filesystems refuse it
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _write_temp(self, path: str, data: bytes) -> str:
        tmp = os.path.join(
            os.path.dirname(path),
            f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(6)}{TMP_SUFFIX}",
        )
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_FLAGS, FILE_MODE)
        try:
            os.chmod(tmp, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.remove(tmp)
            raise
        os.close(fd)
        return tmp

    def write_atomic(self, path: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Replace ``path`` by ``data`` (readers see the old file or the new one, never a mix).

        ``exclusive``: only if ``path`` does not exist yet (link() is atomic); False if it did.
        """
        tmp = self._write_temp(path, data)
        try:
            if exclusive:
                os.link(tmp, path)
            else:
                os.replace(tmp, path)
        except FileExistsError:
            return False
        finally:
            self.remove(tmp)
        self._fsync_dir(os.path.dirname(path))
        return True

    @staticmethod
    def _open_regular(path: str) -> int:
        """An fd of ``path`` only if it is a regular file: O_NONBLOCK, so opening a FIFO or a
        device never blocks, and O_NOFOLLOW; anything else raises NotRegularFile."""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | O_FLAGS)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise NotRegularFile(errno.EINVAL, "not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, path: str, limit: int) -> tuple[bytes, os.stat_result]:
        """Content and fstat of the same open file (no symlink followed, no race on the stat)."""
        with os.fdopen(self._open_regular(path), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > limit:
                raise ValueError(f"larger than {limit} bytes")
            return f.read(limit + 1), st

    def open_read(self, path: str) -> BinaryIO:
        return os.fdopen(self._open_regular(path), "rb", buffering=0)

    def stat(self, path: str) -> os.stat_result | None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return os.stat(path, follow_symlinks=False)
        return None

    def listdir(self, path: str) -> list[str]:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return sorted(os.listdir(path))
        return []

    def remove(self, path: str) -> bool:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            return True
        return False

    def remove_dir(self, path: str) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(path)  # only if empty

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)
        self._fsync_dir(os.path.dirname(dst))

    @contextlib.contextmanager
    def lock(self, path: str) -> Iterator[None]:
        """Exclusive between threads (re-entrant) and, where flock exists, between processes."""
        with self._lock:
            fd = None
            if not self._held:  # flock on a second fd would deadlock a re-entrant call
                fd = os.open(path, os.O_RDWR | os.O_CREAT | O_FLAGS, FILE_MODE)
                with contextlib.suppress(ImportError):
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._held = True
            try:
                yield
            finally:
                if fd is not None:
                    self._held = False
                    os.close(fd)  # releases the flock
