"""Variable-by-variable snapshots of an interactive namespace, stored as content-addressed blobs.

Runs inside the user's kernel (sent in as source), so module level uses the standard library
only: dill is imported when first needed and numpy is never imported here.

Why not ``dill.dump_module``: it is a pure-Python pickler, stops at the first unpicklable object
without naming it, truncates the previous file when it fails, saves IPython's In/Out, copies
every numpy buffer and reopens files in 'w' mode on load. Here each variable (or group of
variables sharing objects) is pickled on its own by the C pickler, protocol 5, with numpy data
written out-of-band without a copy; dill is used only where pickle refuses. Every variable ends
up saved or skipped with a reason, and one failure never affects another variable.

Blob layout (integers little-endian)::

    header   "<4sBBBxIQ": magic b"KSNB", format version, serializer (1 pickle5, 2 dill),
             kind (0 one object, 1 group dict {name: obj}), pad, buffer count n, pickle length
    lengths  n x "<Q": length of each out-of-band buffer
    pickle   the in-band pickle stream
    buffers  the out-of-band buffers, raw; from format 2 on each starts at a multiple of
             BUFFER_ALIGN bytes (zero padding), so arrays mapped straight from the file are
             aligned (format 1: back to back)

A blob is named by the hash (BLAKE3, else SHA-256) of all its bytes and stored at
``<blob_dir>/<hash[:2]>/<hash>``. Large blobs are restored by mapping the file copy-on-write:
the arrays use the page cache's pages directly, no zero-filled allocation, no copy. The pickle
stream is copied out first and the hash covers that copy, so what is unpickled is exactly what
was verified.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import hashlib
import importlib
import io
import json
import os
import pickle
import secrets
import stat
import struct
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any, NamedTuple

BLOB_MAGIC = b"KSNB"
BLOB_VERSION = 2
READABLE_VERSIONS = (1, 2)
BUFFER_ALIGN = 64  # bytes; out-of-band buffers start at multiples of this (format 2)
MMAP_MIN_BYTES = 1 << 20  # blobs at least this large are mapped copy-on-write, not read
HEADER = struct.Struct("<4sBBBxIQ")
BUFFER_LENGTH = struct.Struct("<Q")
PICKLE_PROTOCOL = 5
SER_PICKLE, SER_DILL, SER_MODULE, SER_REF = "pickle5", "dill", "module", "ref"
SERIALIZER_CODES = {SER_PICKLE: 1, SER_DILL: 2}
KIND_SINGLE, KIND_GROUP = 0, 1
FILE_MODE, DIR_MODE = 0o600, 0o700
TMP_SUFFIX = ".tmp"
IO_CHUNK = 16 << 20  # bytes per read/write call (bounds syscalls, not memory)
MAX_OOB_BUFFERS = 1 << 20  # sanity bound checked on a blob header before allocating anything
# Sharing between variables is found by walking each variable's containers (list/tuple/dict/set
# items, instance __dict__, closure cells and defaults): at most ALIAS_WALK_LIMIT objects and
# ALIAS_WALK_DEPTH levels per variable. Sharing beyond that is not seen: such variables are
# saved apart and the shared object comes back as two copies.
ALIAS_WALK_LIMIT = 10_000
ALIAS_WALK_DEPTH = 8
REASON_MAX_CHARS = 300
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
REASON_OPEN_FILE = "open file (not saved: reopening could truncate it)"
_UNSAVABLE = (  # io.IOBase is handled apart: in-memory BytesIO/StringIO pickle fine
    (
        (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType),
        "generator or coroutine (its running state cannot be saved)",
    ),
    ((types.FrameType, types.TracebackType), "frame or traceback (interpreter state)"),
    (
        (_thread.LockType, _thread.RLock, threading.Thread),
        "thread or lock (not saved: OS resource)",
    ),
)
_UNSAVABLE_IF_LOADED = (  # (module, class, reason), looked up only in sys.modules
    ("socket", "socket", "socket (not saved: OS resource)"),
    ("mmap", "mmap", "memory map (not saved: OS resource)"),
    ("sqlite3", "Connection", "database connection (not saved: OS resource)"),
    ("subprocess", "Popen", "subprocess handle (not saved: OS resource)"),
    ("asyncio", "AbstractEventLoop", "event loop (not saved: OS resource)"),
)
_ATOMIC = frozenset(
    {type(None), bool, int, float, complex, str, bytes, range, type(Ellipsis), type(NotImplemented)}
)
_SHA_CHARS = frozenset("0123456789abcdef")
HASH_SHA256, HASH_BLAKE3 = "sha256", "blake3"  # blob names: 64 hex digits of either
STORE_WORKERS = 3  # blobs hashed and written at once (hashing and file I/O release the GIL)
RESULT_SUFFIX = ".result" + TMP_SUFFIX  # a background checkpoint's result (GC removes leftovers)
_single_threaded = False  # set in a forked child: its parent's thread pools do not exist there
PARALLEL_MIN_BYTES = 32 << 20  # below this much data, blobs are handled one after another
BUNDLE_ITEM_BYTES = 256 << 10  # variables pickled smaller than this share blobs...
BUNDLE_BYTES = 8 << 20  # ...of about this size: 10k small variables are a few files, not 10k
TRACKED_BUFFER_BYTES = 1 << 20  # buffers this large may skip hashing when not written since
CACHED_INBAND_BYTES = 64 << 10  # ...if the pickle beside them (compared byte for byte) is small
PREFETCH_PACKAGES = ("numpy", "pandas")  # imported while a restore verifies blobs
DIRTY_MODULE = "_kernel_sessions_dirty"  # where the host installs dirty.py in a kernel
_O_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
_system_roots: tuple[str, ...] | None = None


class _Unsavable(Exception):
    """The object holds something that must not or cannot be saved (file, lock, ...)."""


class _NeedsDill(Exception):
    """The C pickler met a ``__main__`` function or class, which it would save by name only."""


class _LoadError(Exception):
    """A blob could not be restored; the message is the reason reported for its variables."""


class _NotRegular(OSError):
    """A FIFO, device or directory where a blob file should be."""


class _Payload(NamedTuple):
    serializer: str
    kind: int
    inband: memoryview
    buffers: list[memoryview]


class _NamespaceProxy:
    """Stands in for ``__main__`` on load, so dill binds restored functions' globals to ``ns``."""

    def __init__(self, ns: dict) -> None:
        self.__dict__ = ns


def _describe(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = type(exc).__name__
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 3] + "..."


def _type_name(obj: object) -> str:
    t = type(obj)  # never obj.__class__: that may run (and break in) user code
    try:
        mod, qual = getattr(t, "__module__", None), getattr(t, "__qualname__", t.__name__)
    except Exception:  # a metaclass whose attributes raise
        return type.__repr__(t)[:REASON_MAX_CHARS]
    return qual if mod in (None, "builtins") else f"{mod}.{qual}"


class _Skip(NamedTuple):
    """Why a variable was not saved; ``failed``: something went wrong (the checkpoint is then
    partial), as opposed to objects that are never saved by nature (locks, open files)."""

    reason: str
    failed: bool = True
    errno: str | None = None


def _write_problem(exc: BaseException) -> _Skip:
    """A failed blob write, without the file name (no absolute paths in reasons)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return _Skip(f"write failed: {exc.strerror or 'error'} ({name})", True, name)
    return _Skip("write failed: " + _describe(exc), True, None)


def _open_regular(path: str) -> Any:
    """``path`` opened for reading only if it is a regular file: O_NONBLOCK, so a FIFO or a
    device never blocks the open, and O_NOFOLLOW; raises _NotRegular otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _O_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular("not a regular file")
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _regular_size(path: str) -> int | None:
    """Size of ``path`` if it is a regular file (not followed if a link), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _unsavable_reason(t: type, cache: dict[type, str | None]) -> str | None:
    """Why instances of ``t`` are never saved, or None; cached per type (called per object)."""
    if t not in cache:
        table = list(_UNSAVABLE)
        for modname, attr, why in _UNSAVABLE_IF_LOADED:
            cls = getattr(sys.modules.get(modname), attr, None)
            table += [((cls,), why)] if isinstance(cls, type) else []
        try:
            if issubclass(t, io.IOBase) and not issubclass(t, (io.BytesIO, io.StringIO)):
                table.insert(0, ((io.IOBase,), REASON_OPEN_FILE))
            cache[t] = next((why for bases, why in table if issubclass(t, bases)), None)
        except Exception:  # a metaclass with a broken __subclasscheck__
            cache[t] = None
    return cache[t]


class _FastPickler(pickle.Pickler):
    """C pickler refusing unsavable objects and handing ``__main__`` code over to dill."""

    reasons: dict[type, str | None]

    def reducer_override(self, obj: Any) -> Any:  # not called for builtin containers/atoms
        reason = _unsavable_reason(type(obj), self.reasons)
        if reason:
            raise _Unsavable("contains " + reason)
        is_code = issubclass(type(obj), (type, types.FunctionType))
        if is_code and getattr(obj, "__module__", None) == "__main__":
            raise _NeedsDill(getattr(obj, "__qualname__", "?"))
        return NotImplemented


def _serialize(obj: Any, kind: int, main: Any, reasons: dict[type, str | None]) -> _Payload:
    """Pickle ``obj``, C pickler first, then dill; raises _Unsavable or the pickler's error.

    ``main`` is the ``__main__`` module when its namespace is the one saved: dill then stores
    functions' globals as a reference to it, so restored functions see the live namespace.
    Otherwise dill copies only the globals each function uses (``recurse``).
    """
    buffers: list[memoryview] = []

    def keep(pb: pickle.PickleBuffer) -> bool:
        try:
            buffers.append(pb.raw())  # zero-copy view of e.g. an ndarray's data
            return False
        except BufferError:  # not contiguous: pickle copies it in-band
            return True

    out = io.BytesIO()
    try:
        pickler = _FastPickler(out, protocol=PICKLE_PROTOCOL, buffer_callback=keep)
        pickler.reasons = reasons
        pickler.dump(obj)
        return _Payload(SER_PICKLE, kind, out.getbuffer(), buffers)
    except _Unsavable:
        raise
    except Exception as exc:
        first = exc
    buffers.clear()
    try:
        import dill
    except ImportError:
        raise _Unsavable(f"{_describe(first)} (dill is not installed)") from None

    def guard(o: Any) -> Any:
        reason = _unsavable_reason(type(o), reasons)
        if reason:
            raise _Unsavable("contains " + reason)
        return NotImplemented

    out = io.BytesIO()
    pickler = dill.Pickler(
        out, protocol=PICKLE_PROTOCOL, buffer_callback=keep, recurse=main is None, byref=False
    )
    pickler.reducer_override = guard  # the pure-Python pickler looks it up on the instance
    if main is not None:
        pickler._main = main  # dill captured __main__ at its import; IPython may have swapped it
    pickler.dump(obj)
    return _Payload(SER_DILL, kind, out.getbuffer(), buffers)


def preferred_hash() -> str:
    """BLAKE3 when the kernel can import it (an order of magnitude faster than SHA-256 on CPUs
    without SHA extensions, and multi-threaded), else SHA-256. Recorded per variable."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        return HASH_SHA256
    return HASH_BLAKE3


def _hasher(alg: str) -> Any:
    if alg == HASH_BLAKE3:
        import blake3

        return blake3.blake3(max_threads=1 if _single_threaded else blake3.blake3.AUTO)
    if alg == HASH_SHA256:
        return hashlib.sha256()
    raise ValueError(f"unknown blob hash {alg!r}")


def _run_all(jobs: list[Callable[[], Any]], total_bytes: int) -> list[Any]:
    """Run ``jobs`` (results in order; an exception is returned in its place), in a few threads
    when there is enough data for hashing and I/O of one blob to overlap another's."""

    def attempt(job: Callable[[], Any]) -> Any:
        try:
            return job()
        except Exception as exc:
            return exc

    if len(jobs) < 2 or total_bytes < PARALLEL_MIN_BYTES or _single_threaded:
        return [attempt(job) for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=STORE_WORKERS) as pool:
        return list(pool.map(attempt, jobs))


def blob_path(blob_dir: str, sha: str) -> str:
    """Path of blob ``sha``; anything but 64 lowercase hex digits is refused (no path tricks)."""
    if not isinstance(sha, str) or len(sha) != 64 or not _SHA_CHARS.issuperset(sha):
        raise ValueError(f"invalid blob id: {sha!r}")
    return os.path.join(blob_dir, sha[:2], sha)


def _fsync_dir(path: str) -> None:
    if os.name == "nt":
        return
    with contextlib.suppress(OSError):  # some filesystems refuse directory fsync
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _ensure_dir(path: str) -> None:
    """Create ``path`` 0o700, chmod'ed too so that no umask can widen it."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _write_all(fd: int, data: memoryview | bytes) -> None:
    with memoryview(data) as view, view.cast("B") as flat:
        offset = 0
        while offset < flat.nbytes:
            offset += os.write(fd, flat[offset : offset + IO_CHUNK])


def _layout(version: int, start: int, lengths: list[int]) -> tuple[list[int], int]:
    """Offsets of the out-of-band buffers that follow the pickle at ``start``, and the end."""
    offsets, offset = [], start
    for n in lengths:
        if version >= 2:
            offset += -offset % BUFFER_ALIGN
        offsets.append(offset)
        offset += n
    return offsets, offset


def _tracked_key(
    payload: _Payload, header: bytes, alg: str, tracker: Any
) -> tuple[tuple | None, bool]:
    """``(key, unchanged)``: the hash-cache key of a payload whose buffers are all large enough
    to track (else None), and whether none of them was written since it was last asked.

    Asking the tracker re-arms it, so this must run before the buffers are hashed: a write
    made while (or after) they are hashed is then seen by the next checkpoint.
    """
    if (
        tracker is None
        or not payload.buffers
        or payload.inband.nbytes > CACHED_INBAND_BYTES
        or any(b.nbytes < TRACKED_BUFFER_BYTES for b in payload.buffers)
    ):
        return None, False
    addresses = [tracker.address(b) for b in payload.buffers]
    if None in addresses:
        return None, False
    # every buffer is asked (no short cut): asking is what re-arms its tracking
    unchanged = [tracker.unchanged(a, b.nbytes) for a, b in zip(addresses, payload.buffers)]
    return (alg, header, bytes(payload.inband), tuple(addresses)), all(unchanged)


def _store(
    blob_dir: str, payload: _Payload, alg: str = HASH_SHA256, tracker: Any = None
) -> tuple[str, int, bool]:
    """Write ``payload`` as a blob unless an identical one exists: (sha, size, written).

    Hashing comes first, so an unchanged variable costs no write; then temp file, fsync,
    rename, fsync of the directory: a blob is never seen half-written. With a ``tracker``
    (``dirty.PageTracker``), a payload whose large buffers the OS says were not written since
    the previous checkpoint reuses that checkpoint's hash: nothing is read.
    """
    lengths = [b.nbytes for b in payload.buffers]
    header = HEADER.pack(
        BLOB_MAGIC,
        BLOB_VERSION,
        SERIALIZER_CODES[payload.serializer],
        payload.kind,
        len(lengths),
        payload.inband.nbytes,
    )
    header += b"".join(BUFFER_LENGTH.pack(n) for n in lengths)
    chunks: list[Any] = [header, payload.inband]
    offset = len(header) + payload.inband.nbytes
    offsets, size = _layout(BLOB_VERSION, offset, lengths)
    for at, buf in zip(offsets, payload.buffers):
        if at > offset:
            chunks.append(bytes(at - offset))
        chunks.append(buf)
        offset = at + buf.nbytes
    key, unchanged = _tracked_key(payload, header, alg, tracker)
    hit = _hashes.get(key) if unchanged else None
    if hit is not None and hit[1] == size:
        if _regular_size(blob_path(blob_dir, hit[0])) == size:
            _hashes_next[key] = hit
            return hit[0], size, False
    digest = _hasher(alg)
    for chunk in chunks:
        digest.update(chunk)
    sha = digest.hexdigest()
    final = blob_path(blob_dir, sha)
    if key is not None:
        _hashes_next[key] = (sha, size)
    if _regular_size(final) == size:  # a FIFO or device planted there is replaced
        return sha, size, False
    subdir = os.path.dirname(final)
    _ensure_dir(subdir)
    tmp = os.path.join(subdir, f".{sha[:16]}.{os.getpid()}.{secrets.token_hex(6)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_FLAGS, FILE_MODE)
    try:
        try:
            os.chmod(tmp, FILE_MODE)
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(subdir)
    return sha, size, True


def _origin(modname: str) -> str | None:
    """File of a module from outside stdlib/site-packages (a later kernel may lack it on
    sys.path), else None."""
    global _system_roots
    if _system_roots is None:
        paths = sysconfig.get_paths()
        roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        _system_roots = tuple(os.path.realpath(r) + os.sep for r in roots if r)
    path = getattr(sys.modules.get(modname), "__file__", None)
    if not isinstance(path, str):
        return None
    real = os.path.realpath(path)
    parts = set(real.split(os.sep))
    system = "site-packages" in parts or "dist-packages" in parts or real.startswith(_system_roots)
    return None if system else real


def _entry(serializer: str, obj: object, **fields: Any) -> dict[str, Any]:
    return {
        "blob": None,
        "serializer": serializer,
        "size": 0,
        "group": None,
        "hash": None,
        "type": _type_name(obj),
        "module": None,
        "attr": None,
        "origin": None,
        **fields,
    }


def _by_reference(obj: object) -> dict[str, Any] | None:
    """Entry re-importing ``obj`` by name (module, or module-level function/class), or None."""
    try:
        if isinstance(obj, types.ModuleType):
            modname, qualname = obj.__name__, None
        elif callable(obj):
            modname, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if not isinstance(qualname, str) or "<" in qualname:
                return None
        else:
            return None
        module = sys.modules.get(modname) if isinstance(modname, str) else None
        if modname == "__main__" or getattr(module, "__spec__", None) is None:
            return None  # not importable by name in another process
        target = module
        for part in qualname.split(".") if qualname else ():
            target = getattr(target, part)
        if target is not obj:
            return None
    except Exception:
        return None
    kind = SER_MODULE if qualname is None else SER_REF
    return _entry(kind, obj, module=modname, attr=qualname, origin=_origin(modname))


def _children(obj: Any) -> Iterator[Any]:
    """Objects directly held by ``obj``, read without running user code (no __iter__ calls)."""
    if isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            with contextlib.suppress(ValueError):  # empty cell
                yield cell.cell_contents
        yield from obj.__defaults__ or ()
        yield from (obj.__kwdefaults__ or {}).values()
        return
    if isinstance(obj, dict):
        yield from dict.values(obj)
    for base in (list, tuple, set, frozenset):
        if isinstance(obj, base):
            yield from base.__iter__(obj)
    try:
        attrs = object.__getattribute__(obj, "__dict__")
    except Exception:
        return
    if isinstance(attrs, dict):
        yield from dict.values(attrs)


def _reachable_ids(obj: Any, keepalive: list[Any]) -> set[int]:
    """ids of the objects reachable from ``obj`` whose identity matters (bounded walk).

    Atoms, and classes/functions/modules pickled by name, never need grouping. A ``__main__``
    class counts as reachable from its instances: dill saves such classes by value, so a class
    and its instances saved apart would come back with two different classes.
    """
    seen: set[int] = set()
    stack, budget = [(obj, 0)], ALIAS_WALK_LIMIT
    while stack and budget > 0:
        o, depth = stack.pop()
        budget -= 1
        t = type(o)
        if t in _ATOMIC or id(o) in seen or (t is tuple and not o):
            continue
        if (
            isinstance(o, (type, types.ModuleType, types.BuiltinFunctionType))
            or (t is types.FunctionType and o.__closure__ is None)
        ) and getattr(o, "__module__", None) != "__main__":
            continue
        seen.add(id(o))
        keepalive.append(o)  # ids stay unique while the walked objects are alive
        if getattr(t, "__module__", None) == "__main__":
            seen.add(id(t))
        if depth < ALIAS_WALK_DEPTH and not isinstance(o, type):
            with contextlib.suppress(Exception):  # mutated container, odd __dict__: stop here
                stack.extend((c, depth + 1) for c in islice(_children(o), budget))
    return seen


def _alias_groups(ns: dict, names: list[str]) -> list[list[str]]:
    """Partition ``names`` so that variables sharing an object land in the same group."""
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = n = parent[parent[n]]
        return n

    owner: dict[int, str] = {}
    keepalive: list[Any] = []
    for name in names:
        try:
            reachable = _reachable_ids(ns[name], keepalive)
        except Exception:  # e.g. a __class__ or __getattribute__ that raises: saved alone
            reachable = {id(ns[name])}
            keepalive.append(ns[name])
        for oid in reachable:
            other = owner.setdefault(oid, name)
            if other != name:
                parent[find(name)] = find(other)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def _select(
    ns: dict,
    names: list[str] | None,
    exclude: Callable[[str, object], bool] | None,
    skipped: list[dict[str, Any]],
) -> list[str]:
    """Names to save. Without ``names``: no _private names, nor IPython's own (what %who hides)."""
    if names is None:
        shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
        own = getattr(shell, "user_ns", None) is ns
        hidden = getattr(shell, "user_ns_hidden", {}) if own else {}
        candidates = [
            n
            for n in list(ns)
            if isinstance(n, str)
            and not n.startswith("_")
            and n not in IPYTHON_NAMES
            and not (n in hidden and hidden[n] is ns[n])
        ]
    else:  # explicitly asked for: no name filter, but report what cannot be done
        candidates = [n for n in dict.fromkeys(names) if n in ns]
        skipped += [
            {"name": n, "type": None, "reason": "not defined"}
            for n in dict.fromkeys(names)
            if n not in ns
        ]
    selected = []
    for n in candidates:
        if exclude is not None and exclude(n, ns[n]):
            if names is not None:
                skipped.append({"name": n, "type": _type_name(ns[n]), "reason": "excluded"})
        else:
            selected.append(n)
    return selected


# hashes of tracked payloads: the last checkpoint's, and this one's (which replace them)
_hashes: dict[tuple, tuple[str, int]] = {}
_hashes_next: dict[tuple, tuple[str, int]] = {}


def write_tracker() -> Any:
    """This process's ``dirty.PageTracker`` if the host installed dirty.py (or it imports
    beside this module), else None."""
    mod = sys.modules.get(DIRTY_MODULE)
    if mod is None and __package__:
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(".dirty", __package__)
    return mod.tracker() if mod is not None else None


def dump_namespace(
    ns: dict,
    blob_dir: str,
    *,
    names: list[str] | None = None,
    exclude: Callable[[str, object], bool] | None = None,
    tracker: Any = None,
) -> dict[str, Any]:
    """Save the user variables of ``ns`` as blobs under ``blob_dir`` (see module docstring).

    ``tracker``: a ``dirty.PageTracker``, so that large buffers not written since the last
    checkpoint are not hashed again.

    Returns {"variables": {name: entry}, "skipped": [{"name", "type", "reason"}],
    "blobs_written": int, "bytes_written": int}.
    """
    result: dict[str, Any] = {
        "variables": {},
        "skipped": [],
        "blobs_written": 0,
        "bytes_written": 0,
    }
    variables, skipped = result["variables"], result["skipped"]
    selected = _select(ns, names, exclude, skipped)
    if not os.path.isdir(blob_dir):
        os.makedirs(os.path.dirname(os.path.abspath(blob_dir)), exist_ok=True)
        _ensure_dir(blob_dir)
    main = sys.modules.get("__main__")
    main = main if getattr(main, "__dict__", None) is ns else None
    reasons: dict[type, str | None] = {}

    def skip(name: str, why: _Skip) -> None:
        entry = {"name": name, "type": _type_name(ns[name]), "reason": why.reason}
        if why.failed:
            entry["failed"] = True
        if why.errno:
            entry["errno"] = why.errno
        skipped.append(entry)

    def attempt(members: list[str]) -> _Payload | _Skip:
        single = len(members) == 1
        obj = ns[members[0]] if single else {m: ns[m] for m in members}
        try:
            return _serialize(obj, KIND_SINGLE if single else KIND_GROUP, main, reasons)
        except _Unsavable as exc:  # by nature (an OS resource inside); "dill is not
            return _Skip(str(exc), failed="dill is not installed" in str(exc))  # installed": failed
        except Exception as exc:
            return _Skip(_describe(exc))

    alg = preferred_hash()
    pending: list[tuple[list[str], _Payload]] = []  # serialized, to be hashed and written

    def save(members: list[str], payload: _Payload) -> None:
        pending.append((members, payload))

    def nbytes(p: _Payload) -> int:
        return p.inband.nbytes + sum(b.nbytes for b in p.buffers)

    def bundle() -> None:
        """Small variables the C pickler took share group blobs (one file and one fsync per
        bundle, not per variable); a bundle that fails to pickle whole stays variable by
        variable. Bundles are loaded whole, like groups of variables sharing objects."""
        small = [
            i
            for i, (m, p) in enumerate(pending)
            if len(m) == 1 and p.serializer == SER_PICKLE and nbytes(p) < BUNDLE_ITEM_BYTES
        ]
        if len(small) < 2:
            return
        chosen = set(small)
        kept = [item for i, item in enumerate(pending) if i not in chosen]
        batches: list[list[tuple[list[str], _Payload]]] = [[]]
        size = 0
        for i in small:
            if batches[-1] and size + nbytes(pending[i][1]) > BUNDLE_BYTES:
                batches.append([])
                size = 0
            batches[-1].append(pending[i])
            size += nbytes(pending[i][1])
        for batch in batches:
            names = [m[0] for m, _ in batch]
            joined = attempt(names) if len(batch) > 1 else None
            if isinstance(joined, _Payload) and joined.serializer == SER_PICKLE:
                kept.append((names, joined))
            else:
                kept.extend(batch)
        pending[:] = kept

    def commit() -> None:
        global _hashes
        bundle()
        size = sum(p.inband.nbytes + sum(b.nbytes for b in p.buffers) for _, p in pending)
        _hashes_next.clear()
        stored = _run_all([lambda p=p: _store(blob_dir, p, alg, tracker) for _, p in pending], size)
        if tracker is not None:
            _hashes = dict(_hashes_next)
        _hashes_next.clear()
        for (members, payload), outcome in zip(pending, stored):
            if isinstance(outcome, BaseException):
                for m in members:
                    skip(m, _write_problem(outcome))
                continue
            sha, size, written = outcome
            result["blobs_written"] += written
            result["bytes_written"] += size if written else 0
            group = min(members) if len(members) > 1 else None
            for m in members:
                variables[m] = _entry(
                    payload.serializer, ns[m], blob=sha, size=size, group=group, hash=alg
                )

    picklable = []
    for name in selected:
        entry = _by_reference(ns[name])
        reason = None if entry else _unsavable_reason(type(ns[name]), reasons)
        if entry:
            variables[name] = entry
        elif reason:
            skip(name, _Skip(reason, failed=False))
        else:
            picklable.append(name)
    for members in _alias_groups(ns, picklable):
        payload = attempt(members)
        if isinstance(payload, _Payload):
            save(members, payload)
            continue
        if len(members) == 1:
            skip(members[0], payload)
            continue
        alone = {}  # the group failed: find the culprits, keep the rest together if possible
        for m in members:
            single = attempt([m])
            if isinstance(single, _Skip):
                skip(m, single)
            else:
                alone[m] = single
        regrouped = attempt(list(alone)) if len(alone) > 1 else None
        if isinstance(regrouped, _Payload):
            save(list(alone), regrouped)
        else:  # identity shared among the rest is lost, but every value is kept
            for m, single in alone.items():
                save([m], single)
    commit()
    return result


def _read_into(f: io.RawIOBase, buf: bytearray, digest: Any) -> bool:
    """Fill ``buf`` from ``f``, hashing as it goes (if ``digest``); False if the file ended."""
    view, offset = memoryview(buf), 0
    while offset < len(buf):
        got = f.readinto(view[offset : offset + IO_CHUNK])
        if not got:
            return False
        if digest is not None:
            digest.update(view[offset : offset + got])
        offset += got
    return True


def _read_verified(
    blob_dir: str, sha: str, alg: str = HASH_SHA256
) -> tuple[int, int, bytes, list[memoryview]]:
    """Blob ``sha`` checked against its hash: (serializer code, kind, pickle, buffers).

    A large blob is mapped copy-on-write and its buffers are views of the mapping (writes to
    the restored arrays stay private); a small one is read into memory. The pickle stream is
    copied out *before* hashing and the hash covers the copy. Raises _LoadError.
    """
    try:
        digest = _hasher(alg)
        f = _open_regular(blob_path(blob_dir, sha))
    except (ValueError, ImportError) as exc:
        raise _LoadError(str(exc)) from None
    except FileNotFoundError:
        raise _LoadError("missing blob") from None
    except _NotRegular:
        raise _LoadError("not a regular file") from None
    except OSError as exc:
        raise _LoadError("cannot open blob: " + (exc.strerror or _describe(exc))) from None
    with f:
        size = os.fstat(f.fileno()).st_size
        try:
            if size >= MMAP_MIN_BYTES:
                import mmap

                data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            else:
                data = bytearray(size)
                if not _read_into(f, data, None):
                    raise _LoadError("hash mismatch")  # the file shrank while being read
        except (OSError, ValueError) as exc:
            raise _LoadError("cannot read blob: " + _describe(exc)) from None
    view = memoryview(data)
    fields, lengths, prefix = None, [], b""
    if size >= HEADER.size:
        head = bytes(view[: HEADER.size])
        magic, version, code, kind, count, inband_len = HEADER.unpack(head)
        table_end = HEADER.size + BUFFER_LENGTH.size * count
        if (
            magic == BLOB_MAGIC
            and version in READABLE_VERSIONS
            and kind <= KIND_GROUP
            and code in SERIALIZER_CODES.values()
            and count <= MAX_OOB_BUFFERS
            and table_end + inband_len <= size
        ):
            prefix = bytes(view[: table_end + inband_len])  # private: what gets unpickled
            lengths = [n for (n,) in BUFFER_LENGTH.iter_unpack(prefix[HEADER.size : table_end])]
            offsets, end = _layout(version, len(prefix), lengths)
            if end == size and prefix[: HEADER.size] == head:  # the same header, read twice
                fields = (code, kind, inband_len)
    if fields is None:
        digest.update(view)
        raise _LoadError("hash mismatch" if digest.hexdigest() != sha else "corrupt blob")
    digest.update(prefix)
    digest.update(view[len(prefix) :])
    if digest.hexdigest() != sha:
        raise _LoadError("hash mismatch")
    buffers = [view[at : at + n] for at, n in zip(offsets, lengths)]
    return fields[0], fields[1], prefix[len(prefix) - fields[2] :], buffers


def verify_blob(blob_dir: str, sha: str, alg: str = HASH_SHA256) -> bool:
    """True if blob ``sha`` exists and its content hashes (``alg``) to ``sha``."""
    try:
        with _open_regular(blob_path(blob_dir, sha)) as f:
            digest = _hasher(alg)
            while chunk := f.read(IO_CHUNK):
                digest.update(chunk)
    except (OSError, ValueError):
        return False
    return digest.hexdigest() == sha


def _unpickle(code: int, inband: bytes, buffers: list[memoryview], ns: dict) -> Any:
    """Unpickle a verified blob's content; dill's ``__main__`` is ``ns`` (see _NamespaceProxy)."""
    try:
        if code == SERIALIZER_CODES[SER_PICKLE]:
            return pickle.loads(inband, buffers=buffers)
        import dill

        unpickler = dill.Unpickler(io.BytesIO(inband), buffers=buffers, ignore=True)
        unpickler._main = _NamespaceProxy(ns)
        return unpickler.load()
    except Exception as exc:
        raise _LoadError("unpickling failed: " + _describe(exc)) from None


def _import(modname: str, origin: str | None) -> types.ModuleType:
    """Import ``modname``; if that fails and it came from a known file, retry with the file's
    root appended to sys.path (appended, so it never shadows installed packages)."""
    try:
        return importlib.import_module(modname)
    except ImportError:
        if not origin:
            raise
        root = os.path.dirname(origin)
        for _ in range(modname.count(".") + os.path.basename(origin).startswith("__init__.")):
            root = os.path.dirname(root)
        if not os.path.isdir(root) or root in sys.path:
            raise
        sys.path.append(root)
        importlib.invalidate_caches()
        return importlib.import_module(modname)


def _prefetch(heads: list[dict[str, Any]], size: int) -> threading.Thread | None:
    """Import the data libraries the blobs' types need (numpy: ~0.1 s in a fresh kernel) in a
    thread, while the blobs are read and verified; unpickling would import them anyway, after.

    Only ``PREFETCH_PACKAGES``, named by the types of an authenticated manifest, and only
    when the blobs (``size`` bytes) are large enough for the overlap to matter.
    """
    wanted = {str(e.get("module") or e.get("type") or "").partition(".")[0] for e in heads}
    missing = sorted(p for p in wanted & set(PREFETCH_PACKAGES) if p not in sys.modules)
    if not missing or size < PARALLEL_MIN_BYTES or _single_threaded:
        return None

    def run() -> None:
        for package in missing:
            with contextlib.suppress(Exception):  # unpickling reports what really fails
                importlib.import_module(package)

    thread = threading.Thread(target=run, name="kernel-sessions-restore-imports", daemon=True)
    thread.start()
    return thread


def load_namespace(
    ns: dict, blob_dir: str, entries: dict[str, dict[str, Any]], *, names: list[str] | None = None
) -> dict[str, Any]:
    """Restore variables from ``entries`` (a manifest's "variables", already authenticated).

    Every blob's sha256 is checked before anything at all is unpickled: one missing or altered
    blob refuses the whole restore ("refused": True, nothing bound, nothing executed). A group
    blob is loaded whole but only the requested names are bound; a failed name leaves ``ns``
    untouched. Returns {"restored": [names], "failed": [{"name", "reason"}], "refused": bool}.
    """
    restored: list[str] = []
    failed: list[dict[str, str]] = []
    units: dict[tuple[Any, ...], list[str]] = {}
    refs: list[tuple[str, dict[str, Any]]] = []  # modules and names imported from them
    for name in dict.fromkeys(entries if names is None else names):
        entry = entries.get(name)
        if not isinstance(entry, dict):
            failed.append({"name": name, "reason": "not in snapshot"})
        elif entry.get("serializer") in (SER_MODULE, SER_REF):
            refs.append((name, entry))
        elif entry.get("group") is None:  # equal values share a blob, never an object
            units[("single", name)] = [name]
        else:
            units.setdefault(("group", entry["group"], entry.get("blob")), []).append(name)
    # every blob is read and its hash checked before anything at all is unpickled
    keys = list(units)
    heads = [entries[units[k][0]] for k in keys]
    size = sum(e.get("size") or 0 for e in heads if isinstance(e.get("size"), int))
    importing = _prefetch(heads + [e for _, e in refs], size)
    outcomes = _run_all(
        [
            lambda e=e: _read_verified(blob_dir, e.get("blob"), e.get("hash") or HASH_SHA256)
            for e in heads
        ],
        size,
    )
    if importing is not None:
        importing.join()
    read: dict[tuple[Any, ...], tuple[int, int, bytes, list[memoryview]]] = {}
    refused = []
    for key, outcome in zip(keys, outcomes):
        if isinstance(outcome, BaseException):
            reason = str(outcome) if isinstance(outcome, _LoadError) else _describe(outcome)
            refused += [{"name": m, "reason": reason} for m in units[key]]
        else:
            read[key] = outcome
    if refused:
        return {"restored": [], "failed": failed + refused, "refused": True}
    for name, entry in refs:
        try:
            obj: Any = _import(entry["module"], entry.get("origin"))
            for part in entry["attr"].split(".") if entry["serializer"] == SER_REF else ():
                obj = getattr(obj, part)
            ns[name] = obj
            restored.append(name)
        except Exception as exc:
            failed.append({"name": name, "reason": "import failed: " + _describe(exc)})
    for key, members in units.items():
        code, kind, inband, buffers = read.pop(key)
        try:
            if kind != (KIND_GROUP if key[0] == "group" else KIND_SINGLE):
                raise _LoadError("corrupt blob (unexpected kind)")
            obj = _unpickle(code, inband, buffers, ns)
        except _LoadError as exc:
            failed += [{"name": m, "reason": str(exc)} for m in members]
            continue
        for m in members:
            if kind == KIND_GROUP and not (isinstance(obj, dict) and m in obj):
                failed.append({"name": m, "reason": "missing from its group blob"})
                continue
            ns[m] = obj[m] if kind == KIND_GROUP else obj
            restored.append(m)
    return {"restored": restored, "failed": failed, "refused": False}


# -- entry points called by the session manager (JSON in, JSON text out) -----------------------

VERSION_MODULES = ("dill", "numpy", "pandas", "ipykernel", "IPython")


def _shell() -> Any:
    return getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()


def _versions() -> dict[str, str | None]:
    """Versions that decide whether a blob loads elsewhere; only modules already imported."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSION_MODULES:
        mod = sys.modules.get(name)
        version = getattr(mod, "__version__", None) if mod is not None else None
        out[name] = str(version) if version else None
    return out


def checkpoint_payload(
    ns: dict, blob_dir: str, names: list[str] | None = None, track_writes: bool = False
) -> str:
    """``dump_namespace`` of the shell's namespace, plus what a manifest records beside it.

    ``track_writes``: skip hashing large buffers the OS says were not written since the
    previous checkpoint (see dirty.py).
    """
    tracker = write_tracker() if track_writes and not _single_threaded else None
    result = dump_namespace(ns, blob_dir, names=names, tracker=tracker)
    shell = _shell()
    result["execution_count"] = getattr(shell, "execution_count", None)
    result["versions"] = _versions()
    return json.dumps(result)


def checkpoint_in_background(
    ns: dict, blob_dir: str, result_path: str, names: list[str] | None = None
) -> str:
    """Fork; the child dumps the namespace as it is at this instant (the fork's copy-on-write
    pages) and writes ``checkpoint_payload``'s JSON to ``result_path`` atomically, then exits.

    The kernel is paused only for the fork itself. The child runs single-threaded (its
    parent's threads and thread pools do not exist in it) and never touches the kernel's
    sockets; a thread of the parent reaps it. Returns JSON ``{"pid", "pause_ms"}``, or
    ``{"error"}`` where there is no fork.
    """
    if not hasattr(os, "fork"):
        return json.dumps({"error": "no fork on this platform"})
    import time

    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never return into the kernel's code
        status = 1
        try:
            global _single_threaded
            _single_threaded = True
            payload = checkpoint_payload(ns, blob_dir, names)
            tmp = f"{result_path}.{os.getpid()}{TMP_SUFFIX}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_FLAGS, FILE_MODE)
            try:
                _write_all(fd, payload.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, result_path)
            status = 0
        finally:
            os._exit(status)
    pause_ms = (time.perf_counter() - started) * 1000
    threading.Thread(
        target=os.waitpid, args=(pid, 0), daemon=True, name="kernel-sessions-checkpoint-reaper"
    ).start()
    return json.dumps({"pid": pid, "pause_ms": pause_ms})


def restore_payload(
    ns: dict,
    blob_dir: str,
    entries: dict[str, dict[str, Any]],
    names: list[str] | None = None,
    execution_count: int | None = None,
    prune: bool = False,
    keep: list[str] | None = None,
) -> str:
    """``load_namespace`` into the shell's namespace; the execution count never goes back.

    In a fresh kernel the prompt numbers then continue from the checkpointed session's. With
    ``prune`` (a whole-checkpoint restore into a live kernel) the user variables the checkpoint
    does not know (neither saved nor in ``keep``, its skipped names) are removed, so the
    namespace is the checkpoint's again; they are listed under "removed".
    """
    result = load_namespace(ns, blob_dir, entries, names=names)
    result["removed"] = []
    if prune and not result["refused"]:
        known = set(entries) | set(keep or ())
        for name in _select(ns, None, None, []):
            if name not in known:
                del ns[name]
                result["removed"].append(name)
    shell = _shell()
    if (
        isinstance(execution_count, int)
        and shell is not None
        and getattr(shell, "execution_count", 0) < execution_count
    ):
        shell.execution_count = execution_count
    return json.dumps(result)
