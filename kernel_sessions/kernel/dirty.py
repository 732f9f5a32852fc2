"""Which large buffers were written since the last checkpoint, asked of the Linux kernel.

An incremental checkpoint must know whether a 128 MiB array changed. Hashing it again reads
all of it (memory bandwidth: ~0.1 s per GiB here); asking the kernel costs microseconds.
Linux >= 6.7 tracks writes per page for us: a range registered with a userfaultfd in
*asynchronous write-protect* mode (``UFFD_FEATURE_WP_ASYNC``) has its pages' write-protection
dropped by the kernel itself on the first write, with no fault handler and no signal, and
``PAGEMAP_SCAN`` on ``/proc/self/pagemap`` lists the pages written since, write-protecting them
again in the same call. This is what CRIU and Wine use; it needs no privilege
(``UFFD_USER_MODE_ONLY``) and never changes what the program sees: writes simply succeed.

Anything unexpected (another OS or architecture, an older kernel, seccomp refusing
``userfaultfd``, a file-backed or shared mapping, a range freed and mapped again) makes
:meth:`PageTracker.unchanged` answer False, and the caller hashes as before. It can only ever
answer True for pages that stayed mapped, registered and unwritten since it last looked, and
whose bytes are still present (a zapped page would read back as zeros without a write).

Standard library only: this module runs inside the user's kernel.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct
import sys
import threading
from typing import Any

TRACK_MIN_BYTES = 1 << 20  # smaller buffers are cheaper to hash than to track
MAX_TRACKED = 4096  # ranges registered at once (each may split a mapping in two or three)
SCAN_REGIONS = 64  # page regions fetched per PAGEMAP_SCAN call


def _ioctl(fd: int, request: int, arg: Any) -> Any:
    """``fcntl.ioctl``, imported on use: only a tracker that opened (so fcntl exists) calls it."""
    import fcntl

    return fcntl.ioctl(fd, request, arg)


_SYSCALL_USERFAULTFD = {"x86_64": 323, "aarch64": 282}  # others: not tracked
_UFFD_USER_MODE_ONLY = 1
_UFFD_API = 0xAA
_UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
_UFFD_FEATURE_WP_ASYNC = 1 << 15
_UFFDIO_API = 0xC018AA3F  # _IOWR(0xAA, 0x3F, struct uffdio_api)
_UFFDIO_REGISTER = 0xC020AA00  # _IOWR(0xAA, 0x00, struct uffdio_register)
_UFFDIO_REGISTER_MODE_WP = 1 << 1
_UFFDIO_WRITEPROTECT = 0xC018AA06  # _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
_UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
_PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)
_PM_SCAN_WP_MATCHING = 1 << 0  # write-protect again the pages reported
_PM_SCAN_CHECK_WPASYNC = 1 << 1  # fail unless the whole range is registered for async WP
_PAGE_IS_WRITTEN = 1 << 1
_PAGE_IS_FILE = 1 << 2
_PAGE_IS_PRESENT = 1 << 3
_PAGE_IS_SWAPPED = 1 << 4
_PAGE_IS_PFNZERO = 1 << 5
_SCAN_ARG = struct.Struct(
    "12Q"
)  # size flags start end walk_end vec vec_len max_pages inv mask anyof ret


class _Region(ctypes.Structure):
    _fields_ = [
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("categories", ctypes.c_uint64),
    ]


class PageTracker:
    """Write tracking for page ranges of this process; one per process, made lazily.

    ``unchanged(address, nbytes)`` answers "was any byte of this buffer written since the
    previous call for the same buffer?" (False the first time), and re-arms the tracking.
    Partial pages at either end are not tracked: their bytes are kept and compared instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._uffd = -1
        self._pagemap = -1
        self._pid = os.getpid()
        self._page = mmap.PAGESIZE
        # (start, end) -> [edge bytes, written]: "written" is set when a scan or arming of an
        # overlapping range re-protected pages this range has not been asked about yet
        self._ranges: dict[tuple[int, int], list[Any]] = {}
        self._vec = (_Region * SCAN_REGIONS)()
        self.available = self._open()

    def _open(self) -> bool:
        number = _SYSCALL_USERFAULTFD.get(platform.machine())
        if not sys.platform.startswith("linux") or number is None:
            return False
        try:
            import fcntl  # here, not at the top: a platform without it just hashes

            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK | _UFFD_USER_MODE_ONLY)
            if fd < 0:
                return False
            self._uffd = fd
            wanted = _UFFD_FEATURE_WP_ASYNC | _UFFD_FEATURE_WP_UNPOPULATED
            api = bytearray(struct.pack("QQQ", _UFFD_API, wanted, 0))
            fcntl.ioctl(fd, _UFFDIO_API, api)
            if struct.unpack("QQQ", api)[1] & wanted != wanted:
                return self._close()
            self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            return True
        except Exception:  # no userfaultfd, no PAGEMAP_SCAN, seccomp, ...: hash instead
            return self._close()

    def _close(self) -> bool:
        for fd in (self._uffd, self._pagemap):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._uffd = self._pagemap = -1
        self._ranges.clear()
        return False

    def unchanged(self, address: int, nbytes: int) -> bool:
        """True only if nothing in ``[address, address + nbytes)`` was written (or lost) since
        the previous call for this same range; then and otherwise, tracking is re-armed."""
        if not self.available or nbytes < TRACK_MIN_BYTES or os.getpid() != self._pid:
            return False  # a forked child inherits no registration: it hashes
        page = self._page
        start = -(-address // page) * page
        end = (address + nbytes) // page * page
        if end <= start:
            return False
        key = (start, end)
        edges = (
            ctypes.string_at(address, start - address),
            ctypes.string_at(end, address + nbytes - end),
        )
        with self._lock:
            known = self._ranges.get(key)
            if known is None:
                return self._arm(key, edges)
            try:
                clean = self._scan_written(start, end)
                if not clean:
                    self._overlapping_written(key)
                clean = clean and self._scan_present(start, end) and self._scan_private(start, end)
            except OSError:  # unmapped, mapped again, or never registered: start over
                self._ranges.pop(key, None)
                return self._arm(key, edges)
            clean = clean and not known[1] and known[0] == edges
            self._ranges[key] = [edges, False]
            return clean

    def _arm(self, key: tuple[int, int], edges: tuple[bytes, bytes]) -> bool:
        """Register and write-protect a new range; always False (nothing known before)."""
        if len(self._ranges) >= MAX_TRACKED:
            return False
        start, end = key
        try:
            _ioctl(
                self._uffd,
                _UFFDIO_REGISTER,
                bytearray(struct.pack("QQQQ", start, end - start, _UFFDIO_REGISTER_MODE_WP, 0)),
            )
            if not self._scan_private(start, end):  # shared: others' writes go unseen
                return False
            self._overlapping_written(key)  # their written pages are about to be re-protected
            self._protect(start, end)
        except OSError:  # e.g. a mapping userfaultfd cannot register: not tracked
            return False
        self._ranges[key] = [edges, False]
        return False

    def _protect(self, start: int, end: int) -> None:
        if start < end:
            _ioctl(
                self._uffd,
                _UFFDIO_WRITEPROTECT,
                bytearray(struct.pack("QQQ", start, end - start, _UFFDIO_WRITEPROTECT_MODE_WP)),
            )

    def _overlapping_written(self, key: tuple[int, int]) -> None:
        """Pages of ``key`` are being re-protected: ranges sharing them must not miss it."""
        start, end = key
        for (s, e), state in self._ranges.items():
            if s < end and start < e and (s, e) != key:
                state[1] = True

    def _scan(
        self, start: int, end: int, flags: int, inverted: int, mask: int, anyof: int, report: int
    ) -> bool:
        """True if no page of ``[start, end)`` matches; raises OSError if the scan fails."""
        vec = self._vec
        while start < end:
            arg = bytearray(
                _SCAN_ARG.pack(
                    _SCAN_ARG.size,
                    flags,
                    start,
                    end,
                    0,
                    ctypes.addressof(vec),
                    SCAN_REGIONS,
                    0,
                    inverted,
                    mask,
                    anyof,
                    report,
                )
            )
            found = _ioctl(self._pagemap, _PAGEMAP_SCAN, arg)
            if found and not flags & _PM_SCAN_WP_MATCHING:
                return False
            walk_end = _SCAN_ARG.unpack(arg)[4]
            if found:  # the rest, not walked, must be write-protected again too
                self._protect(walk_end, end)
                return False
            if walk_end <= start:
                raise OSError("PAGEMAP_SCAN made no progress")
            start = walk_end
        return True

    def _scan_written(self, start: int, end: int) -> bool:
        return self._scan(
            start,
            end,
            _PM_SCAN_WP_MATCHING | _PM_SCAN_CHECK_WPASYNC,
            0,
            _PAGE_IS_WRITTEN,
            0,
            _PAGE_IS_WRITTEN,
        )

    def _scan_present(self, start: int, end: int) -> bool:
        """No page dropped (not present and not swapped out) or reading as the zero page."""
        gone = self._scan(
            start,
            end,
            _PM_SCAN_CHECK_WPASYNC,
            _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
            _PAGE_IS_PRESENT | _PAGE_IS_SWAPPED,
            0,
            _PAGE_IS_PRESENT,
        )
        return gone and self._scan(
            start, end, _PM_SCAN_CHECK_WPASYNC, 0, 0, _PAGE_IS_PFNZERO, _PAGE_IS_PFNZERO
        )

    def _scan_private(self, start: int, end: int) -> bool:
        """No page is file-backed or shared memory, which other processes could write."""
        return self._scan(start, end, 0, 0, _PAGE_IS_FILE, 0, _PAGE_IS_FILE)

    @staticmethod
    def address(view: Any) -> int | None:
        return buffer_address(view)


_tracker: PageTracker | None = None
_tracker_lock = threading.Lock()


def tracker() -> PageTracker:
    """This process's tracker (a forked child gets a fresh, empty one)."""
    global _tracker
    with _tracker_lock:
        if _tracker is None or _tracker._pid != os.getpid():
            _tracker = PageTracker()
        return _tracker


def buffer_address(view: Any) -> int | None:
    """Address of a writable contiguous buffer's first byte, or None (then: hashed)."""
    try:
        flat = memoryview(view).cast("B")
        if flat.readonly or not flat.nbytes:  # ctypes maps writable buffers only
            return None
        return ctypes.addressof(ctypes.c_char.from_buffer(flat))
    except Exception:
        return None


__all__ = ["PageTracker", "tracker", "buffer_address", "TRACK_MIN_BYTES"]
