"""Verification of the blobs a checkpoint manifest names, with the cache that makes it cheap.
A signature only vouches for the manifest; the blobs it points to are checked by hashing them
again, and a listing would hash every blob on every call without the verdicts kept here, per
blob, by the file's (device, inode, size, mtime, ctime, mode): a blob is hashed once, and again
only when its file changes. Apart from the store because the cache and the messages about
missing or altered blobs are the same whether a listing, a restore or pruning asks.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from typing import Any

from kernel_sessions.checkpoint.files import LocalFS, NotRegularFile, os_problem, stat_key
from kernel_sessions.core.errors import CheckpointInvalid
from kernel_sessions.kernel.snapshot import HASH_SHA256

SHA_RE = re.compile(r"^[0-9a-f]{64}$")
IO_CHUNK = 16 << 20
VERIFY_CACHE_ENTRIES = 1 << 16  # blob verdicts remembered (cleared whole when exceeded)


def blob_algs(manifest: dict[str, Any]) -> dict[Any, str]:
    """{blob id: hash algorithm} of the blobs ``manifest`` names."""
    return {
        e.get("blob"): e.get("hash") or HASH_SHA256
        for e in manifest.get("variables", {}).values()
        if isinstance(e, dict) and e.get("blob") is not None
    }


def blob_error(manifest: dict[str, Any], problems: dict[str, str]) -> CheckpointInvalid:
    """The error for a checkpoint whose blobs have ``problems``, naming the variables hit."""
    names = sorted(
        n
        for n, e in manifest.get("variables", {}).items()
        if isinstance(e, dict) and e.get("blob") in problems
    )
    missing = all(p == "missing" for p in problems.values())
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    what = "missing" if missing else "missing or do not match their signed hashes"
    return CheckpointInvalid(
        f"blobs of checkpoint {manifest.get('id')} are {what} (variables {shown})",
        reason="missing_blob" if missing else "tampered",
    )


class BlobVerdicts:
    """What is wrong with each blob (None: nothing), remembered by the file's identity."""

    def __init__(self, fs: LocalFS) -> None:
        self._fs = fs
        self._verdicts: dict[str, tuple[tuple[int, ...], str | None]] = {}  # sha -> (stat, problem)

    def problem(
        self, path: str, sha: object, alg: object, hasher: Callable[[str], Any]
    ) -> str | None:
        """Why the blob ``sha`` at ``path`` does not verify ("missing", "not a regular file",
        "hash mismatch"), or None; ``hasher(alg)`` makes the digest. Hashing is cached by the
        file's identity and times: a changed file is hashed again, an unchanged one never."""
        st = self._fs.stat(path)
        if st is None:
            return "missing"
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        key = stat_key(st)
        cached = self._verdicts.get(str(sha))
        if cached is not None and cached[0] == key:
            return cached[1]
        problem: str | None = None
        try:
            digest = hasher(str(alg))
            with self._fs.open_read(path) as f:
                key = stat_key(os.fstat(f.fileno()))
                while chunk := f.read(IO_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != sha:
                problem = "hash mismatch"
        except FileNotFoundError:
            return "missing"
        except NotRegularFile:
            return "not a regular file"
        except (OSError, ValueError, ImportError) as exc:
            return "unreadable: " + (os_problem(exc) if isinstance(exc, OSError) else str(exc))
        if len(self._verdicts) >= VERIFY_CACHE_ENTRIES:
            self._verdicts.clear()
        self._verdicts[str(sha)] = (key, problem)
        return problem

    def present(self, manifest: dict[str, Any], blob_path: Callable[[object], str]) -> bool:
        """Cheap check (no hashing): every blob is a regular file of its recorded size, and
        not known to be altered. ``blob_path`` raises CheckpointInvalid for a bad blob id."""
        for entry in manifest.get("variables", {}).values():
            sha = entry.get("blob") if isinstance(entry, dict) else None
            if sha is None:
                continue
            try:
                st = self._fs.stat(blob_path(sha))
            except CheckpointInvalid:
                return False
            if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != entry.get("size"):
                return False
            cached = self._verdicts.get(str(sha))
            if cached is not None and cached[0] == stat_key(st) and cached[1] is not None:
                return False
        return True
