"""Checkpoint store, host side: signed manifests over content-addressed blobs.

Layout under ``root``::

    key                              HMAC-SHA256 key (0600, created on first use)
    blobs/<sha[:2]>/<sha>            written by the kernel (kernel/snapshot.py), shared by sessions
    manifests/<session>/<id>.json    {"manifest": {...}, "hmac": hex}, written here, last

This process never unpickles: it signs what a dump produced and, before a restore, checks the
signature, the owner session and every blob's sha256; the kernel checks the hashes again before
unpickling. All writes are temp file + fsync + rename + fsync of the directory, so a crash
leaves the previous checkpoints intact and never a half checkpoint visible. Methods block on
file I/O: call them from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO, Iterator

from jupyter_core.paths import jupyter_data_dir
from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .errors import (
    CheckpointError,
    CheckpointInvalid,
    CheckpointKeyError,
    CheckpointNotFound,
)
from .kernel.snapshot import (  # GC must know the kernel's temps; hashes name the blobs
    DIR_MODE,
    FILE_MODE,
    HASH_SHA256,
    TMP_SUFFIX,
    _hasher,
)
from .models import validate_name

MANIFEST_FORMAT = 1
KEY_BYTES = 32
LOOSE_MODE_BITS = 0o077  # any group/other bit on the key file makes it unusable
MANIFEST_SUFFIX = ".json"
LOCK_NAME = ".lock"
GC_GRACE_SECONDS = 600  # an unreferenced blob younger than this may belong to a running dump
STALE_TEMP_SECONDS = GC_GRACE_SECONDS  # a temp file untouched this long is a crash leftover
MAX_MANIFEST_BYTES = 64 << 20  # refuse to read (and sign) anything bigger
MAX_LABEL_CHARS = 200
IO_CHUNK = 16 << 20
HMAC_CONTEXT = b"kernel-sessions checkpoint manifest v1\n"  # domain separation for the key
ID_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
CHECKPOINT_ID_RULE = r"^[0-9]{8}T[0-9]{6}\.[0-9]{6}Z-[0-9a-f]{8}$"
_ID_RE = re.compile(CHECKPOINT_ID_RULE)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_O_FLAGS = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)


def validate_checkpoint_id(checkpoint_id: object) -> str:
    """Return ``checkpoint_id`` if it is one we could have generated; it becomes a file name."""
    if not isinstance(checkpoint_id, str) or not _ID_RE.fullmatch(checkpoint_id):
        raise CheckpointError(f"invalid checkpoint id {str(checkpoint_id)[:80]!r}: ids match "
                              f"{CHECKPOINT_ID_RULE}", reason="invalid_checkpoint_id")
    return checkpoint_id


def new_checkpoint_id(micros: int) -> str:
    """``<UTC time to the microsecond>-<8 hex>``: string order is time order."""
    stamp = (_EPOCH + timedelta(microseconds=micros)).strftime(ID_TIME_FORMAT)
    return f"{stamp}-{secrets.token_hex(4)}"


def _id_micros(checkpoint_id: str) -> int:
    stamp = datetime.strptime(checkpoint_id.split("-")[0], ID_TIME_FORMAT)
    return (stamp.replace(tzinfo=timezone.utc) - _EPOCH) // timedelta(microseconds=1)


def canonical(obj: Any) -> bytes:
    """The one byte form that is signed (ASCII, sorted keys, no NaN: stable across Pythons)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


class _LocalFS:
    """Every file operation of the store, on a local directory tree.

    Kept in one small class so that an fsspec-backed twin (same methods) can serve ``s3://``
    roots later; nothing else in this module touches ``os`` for files.
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
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}."
                           f"{secrets.token_hex(6)}{TMP_SUFFIX}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_FLAGS, FILE_MODE)
        try:
            os.chmod(tmp, FILE_MODE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
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

    def read(self, path: str, limit: int) -> tuple[bytes, os.stat_result]:
        """Content and fstat of the same open file (no symlink followed, no race on the stat)."""
        with os.fdopen(os.open(path, os.O_RDONLY | _O_FLAGS), "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_size > limit:
                raise ValueError(f"{path} is larger than {limit} bytes")
            return f.read(limit + 1), st

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb", buffering=0)

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
                fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_FLAGS, FILE_MODE)
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


class CheckpointStore(LoggingConfigurable):
    """Signed checkpoint manifests per session, over a blob directory the kernel writes into."""

    root = Unicode(config=True, help="Checkpoint directory (default: "
                   "<jupyter data dir>/kernel_sessions/checkpoints).")
    keep_checkpoints = Integer(20, min=0, config=True, help="Unlabelled checkpoints kept per "
                               "session (the newest); labelled ones are always kept. 0: no limit.")

    @default("root")
    def _root_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "kernel_sessions", "checkpoints")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fs = _LocalFS()
        self._key: bytes | None = None
        self._ready = False

    # -- layout and key ------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        if not self._ready:  # made here, 0700, so the kernel's makedirs never creates them
            for sub in ("blobs", "manifests"):
                self._fs.ensure_dir(self._fs.join(self.root, sub))
            self._ready = True
        return self._fs.join(self.root, *parts)

    @property
    def blob_dir(self) -> str:
        """Where the kernel's ``dump_namespace``/``load_namespace`` write and read blobs."""
        return self._path("blobs")

    def _session_dir(self, session: str) -> str:
        return self._path("manifests", validate_name(session))

    def _manifest_path(self, session: str, checkpoint_id: str) -> str:
        return self._fs.join(self._session_dir(session),
                             validate_checkpoint_id(checkpoint_id) + MANIFEST_SUFFIX)

    def _blob_path(self, sha: object) -> str:
        if not isinstance(sha, str) or not _SHA_RE.fullmatch(sha):
            raise CheckpointInvalid(f"invalid blob id {str(sha)[:80]!r}", reason="corrupt")
        return self._fs.join(self.blob_dir, sha[:2], sha)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Held to commit or delete anything: writes, pruning and GC exclude each other."""
        return self._fs.lock(self._path(LOCK_NAME))

    def _load_key(self) -> bytes:
        """The HMAC key, created on first use; a key others could read or replace is refused."""
        if self._key is None:
            path = self._path("key")
            if self._fs.stat(path) is None:
                self._fs.write_atomic(path, secrets.token_bytes(KEY_BYTES), exclusive=True)
            try:
                data, st = self._fs.read(path, KEY_BYTES)
            except (OSError, ValueError) as exc:
                raise CheckpointKeyError(f"cannot read checkpoint key {path}: {exc}") from None
            problem = None
            if os.name != "nt" and st.st_mode & LOOSE_MODE_BITS:
                problem = f"has mode {st.st_mode & 0o777:o}; it must be private (chmod 600)"
            elif os.name != "nt" and st.st_uid != os.getuid():
                problem = f"is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
            elif len(data) != KEY_BYTES:
                problem = f"is not {KEY_BYTES} bytes long"
            if problem:
                raise CheckpointKeyError(f"checkpoint key {path} {problem}; fix it, or delete it "
                                         "to make a new one (which invalidates old checkpoints)")
            self._key = data
        return self._key

    def _mac(self, manifest: Any) -> str:
        return hmac.new(self._load_key(), HMAC_CONTEXT + canonical(manifest),
                        hashlib.sha256).hexdigest()

    def _sign(self, manifest: dict[str, Any]) -> bytes:
        return canonical({"manifest": manifest, "hmac": self._mac(manifest)})

    # -- write and read ------------------------------------------------------------------------

    def write_manifest(self, session: str, dump_result: dict[str, Any], *,
                       label: str | None = None, kernelspec: str | dict[str, Any],
                       versions: dict[str, Any]) -> dict[str, Any]:
        """Sign and commit a checkpoint of blobs the kernel already wrote; returns the manifest.

        Every referenced blob must exist with its recorded size, else nothing is written
        (CheckpointInvalid "missing_blob"). Under the store lock, so GC cannot remove a reused
        blob between that check and the commit. Retention is applied afterwards.
        """
        validate_name(session)
        label = label or None
        if label is not None and (not isinstance(label, str) or len(label) > MAX_LABEL_CHARS
                                  or not label.isprintable()):
            raise CheckpointError(f"a label is printable text of at most {MAX_LABEL_CHARS} "
                                  "characters", reason="invalid_label")
        variables, skipped = dump_result.get("variables"), dump_result.get("skipped", [])
        if not isinstance(variables, dict) or not isinstance(skipped, list) or not all(
                isinstance(k, str) and isinstance(v, dict) for k, v in variables.items()):
            raise CheckpointInvalid("malformed dump result", reason="corrupt")
        with self._locked():
            sizes: dict[str, int] = {}
            for name, entry in variables.items():
                sha = entry.get("blob")
                if sha is not None and sha not in sizes:
                    st = self._fs.stat(self._blob_path(sha))
                    if st is None or st.st_size != entry.get("size"):
                        raise CheckpointInvalid(f"the blob of variable {name!r} is missing or "
                                                "truncated; checkpoint not written",
                                                reason="missing_blob")
                    sizes[sha] = st.st_size
            # ids strictly increase per session, even if the clock steps back: "latest" is the
            # last one written, and pruning right after this write can never remove it
            previous = self.latest(session)  # valid ones only: a planted file cannot skew it
            micros = max(time.time_ns() // 1000, _id_micros(previous["id"]) + 1 if previous else 0)
            manifest = {
                "format": MANIFEST_FORMAT, "id": new_checkpoint_id(micros), "session": session,
                "label": label, "created": micros / 1e6, "kernelspec": kernelspec,
                "versions": dict(versions), "variables": variables, "skipped": skipped,
                "bytes": sum(sizes.values()), "new_bytes": int(dump_result.get("bytes_written", 0)),
                "execution_count": dump_result.get("execution_count"),
            }
            try:
                data = self._sign(manifest)
            except (TypeError, ValueError) as exc:
                raise CheckpointInvalid(f"manifest is not JSON: {exc}", reason="corrupt") from None
            if len(data) > MAX_MANIFEST_BYTES:
                raise CheckpointInvalid(f"manifest over {MAX_MANIFEST_BYTES} bytes", reason="corrupt")
            self._fs.ensure_dir(self._session_dir(session))
            self._fs.write_atomic(self._manifest_path(session, manifest["id"]), data)
            self.prune(session)
        return manifest

    def _load(self, owner: str, checkpoint_id: str) -> dict[str, Any]:
        """Read one manifest file of ``owner``'s directory; its signature, owner and id must hold."""
        path = self._manifest_path(owner, checkpoint_id)
        try:
            data = self._fs.read(path, MAX_MANIFEST_BYTES)[0]
        except FileNotFoundError:
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in session {owner}") from None
        except (OSError, ValueError) as exc:
            raise CheckpointInvalid(f"cannot read checkpoint {checkpoint_id}: {exc}",
                                    reason="corrupt") from None
        try:
            doc = json.loads(data)
            manifest, mac = doc["manifest"], doc["hmac"]
            ok = isinstance(manifest, dict) and hmac.compare_digest(self._mac(manifest), mac)
        except (ValueError, TypeError, KeyError, RecursionError):
            ok = False
        if not ok:
            raise CheckpointInvalid(f"signature mismatch: checkpoint {checkpoint_id} of session "
                                    f"{owner} is tampered, corrupt or signed with another key; "
                                    "nothing was restored", reason="tampered")
        if manifest.get("session") != owner:
            raise CheckpointInvalid(f"signature mismatch: checkpoint {checkpoint_id} was signed "
                                    f"for session {manifest.get('session')!r}, not {owner!r}; "
                                    "nothing was restored", reason="wrong_session")
        if manifest.get("id") != checkpoint_id:
            raise CheckpointInvalid(f"file {checkpoint_id} holds checkpoint "
                                    f"{manifest.get('id')!r}", reason="wrong_id")
        return manifest

    def read_manifest(self, session: str, checkpoint_id: str, *,
                      source_session: str | None = None) -> dict[str, Any]:
        """The authenticated manifest of a checkpoint of ``session``.

        A fork restores another session's checkpoint: it names that session as
        ``source_session``, whose directory is read and whose name the manifest must carry.
        """
        validate_name(session)
        return self._load(session if source_session is None else source_session, checkpoint_id)

    def verify_blobs(self, manifest: dict[str, Any]) -> list[str]:
        """Blob ids of ``manifest`` that are missing or no longer hash to their name."""
        algs = {e.get("blob"): e.get("hash") or HASH_SHA256
                for e in manifest.get("variables", {}).values()
                if isinstance(e, dict) and e.get("blob") is not None}
        bad = []
        for sha in sorted(algs, key=str):
            digest = None
            try:
                digest = _hasher(algs[sha])
                with self._fs.open_read(self._blob_path(sha)) as f:
                    while chunk := f.read(IO_CHUNK):
                        digest.update(chunk)
            except (OSError, ValueError, ImportError, CheckpointInvalid):
                digest = None
            if digest is None or digest.hexdigest() != sha:
                bad.append(str(sha))
        return bad

    # -- listing, deletion, retention ----------------------------------------------------------

    def _ids(self, session: str) -> list[str]:
        """Checkpoint ids of ``session``, newest first (ids sort by time; temp files excluded)."""
        names = self._fs.listdir(self._session_dir(session))
        ids = [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)]
        return sorted((i for i in ids if _ID_RE.fullmatch(i)), reverse=True)

    def list(self, session: str) -> list[dict[str, Any]]:
        """Summaries, newest first; one that fails verification is listed with ``valid: False``
        and its reason, not hidden, so the user sees it."""
        out = []
        for cid in self._ids(session):
            summary: dict[str, Any] = {"id": cid, "valid": True, "label": None, "created": None,
                                       "bytes": None, "new_bytes": None, "variables": None,
                                       "skipped": None}
            try:
                m = self._load(session, cid)
            except CheckpointNotFound:  # deleted meanwhile
                continue
            except CheckpointInvalid as exc:
                summary.update(valid=False, reason=exc.reason, message=str(exc))
            else:
                summary.update({k: m.get(k) for k in ("label", "created", "bytes", "new_bytes")},
                               variables=len(m["variables"]), skipped=len(m["skipped"]))
            out.append(summary)
        return out

    def latest(self, session: str) -> dict[str, Any] | None:
        """The newest valid manifest of ``session`` (what to restore after a crash), or None."""
        for cid in self._ids(session):
            with contextlib.suppress(CheckpointNotFound, CheckpointInvalid):
                return self._load(session, cid)
        return None

    def delete(self, session: str, checkpoint_id: str) -> None:
        path = self._manifest_path(session, checkpoint_id)
        with self._locked():
            if not self._fs.remove(path):
                raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in session {session}")

    def delete_session(self, session: str) -> int:
        """Remove every manifest of ``session`` (blobs go at the next GC); returns how many."""
        folder = self._session_dir(session)
        with self._locked():
            count = len(self._ids(session))
            for name in self._fs.listdir(folder):
                self._fs.remove(self._fs.join(folder, name))
            self._fs.remove_dir(folder)
        return count

    def rename_session(self, old: str, new: str) -> int:
        """Move ``old``'s checkpoints to ``new``, re-signed with the new name; returns how many.

        One checkpoint at a time, the re-signed copy committed before the original goes: a
        crash loses nothing and calling again finishes the job. Invalid manifests are moved
        as they are, never re-signed (that would launder a tampered file).
        """
        if validate_name(new) == validate_name(old):
            return 0
        count = 0
        with self._locked():
            self._fs.ensure_dir(self._session_dir(new))
            for cid in self._ids(old):
                src, dst = self._manifest_path(old, cid), self._manifest_path(new, cid)
                try:
                    manifest = self._load(old, cid)
                except CheckpointNotFound:
                    continue
                except CheckpointInvalid:
                    self._fs.replace(src, dst)
                    continue
                self._fs.write_atomic(dst, self._sign({**manifest, "session": new}))
                self._fs.remove(src)
                count += 1
            self.delete_session(old)  # only temp leftovers remain
        return count

    def prune(self, session: str) -> list[str]:
        """Keep labelled checkpoints and the newest ``keep_checkpoints`` unlabelled ones; invalid
        ones stay for the user to see. Returns the deleted ids."""
        if not self.keep_checkpoints:
            return []
        with self._locked():
            unlabelled = [s["id"] for s in self.list(session) if s["valid"] and not s["label"]]
            doomed = unlabelled[self.keep_checkpoints:]
            for cid in doomed:
                self._fs.remove(self._manifest_path(session, cid))
        return doomed

    def _referenced(self) -> set[object]:
        """Blob ids named by any readable manifest, valid or not (see collect_garbage)."""
        refs: set[object] = set()
        manifests = self._path("manifests")
        for session in self._fs.listdir(manifests):
            folder = self._fs.join(manifests, session)
            for name in self._fs.listdir(folder):
                if name.endswith(MANIFEST_SUFFIX):
                    with contextlib.suppress(OSError, ValueError, TypeError, KeyError,
                                             AttributeError, RecursionError):
                        doc = json.loads(self._fs.read(self._fs.join(folder, name),
                                                       MAX_MANIFEST_BYTES)[0])
                        refs.update(e.get("blob") for e in doc["manifest"]["variables"].values())
        return refs

    def collect_garbage(self, now: float | None = None) -> int:
        """Remove unreferenced blobs and crash-leftover temp files; returns bytes freed.

        Blobs younger than GC_GRACE_SECONDS stay: a running dump writes them before its
        manifest exists (a dump that *reuses* an old blob is covered by write_manifest checking
        blobs under the same lock). Blobs of invalid manifests stay too: if the key was lost,
        deleting their data would make that loss irreversible; deleting the manifest frees them.
        """
        now = time.time() if now is None else now
        freed = 0
        with self._locked():
            referenced = self._referenced()
            manifests, blobs = self._path("manifests"), self.blob_dir
            folders = [(self.root, False)]
            folders += [(self._fs.join(manifests, n), False) for n in self._fs.listdir(manifests)]
            folders += [(self._fs.join(blobs, n), True) for n in self._fs.listdir(blobs)]
            for folder, holds_blobs in folders:
                for name in self._fs.listdir(folder):
                    is_temp = name.endswith(TMP_SUFFIX)
                    if not is_temp and not (holds_blobs and _SHA_RE.fullmatch(name)
                                            and name not in referenced):
                        continue
                    path = self._fs.join(folder, name)
                    st = self._fs.stat(path)
                    grace = STALE_TEMP_SECONDS if is_temp else GC_GRACE_SECONDS
                    if (st and stat.S_ISREG(st.st_mode) and now - st.st_mtime > grace
                            and self._fs.remove(path)):
                        freed += st.st_size
        if freed:
            self.log.info("checkpoint garbage collection freed %d bytes", freed)
        return freed
