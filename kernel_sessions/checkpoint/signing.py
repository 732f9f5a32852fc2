"""The signing key of the checkpoint store and the HMAC over canonical JSON. Kept apart from
the store because the key has rules of its own: it is created on first use (0600), a key file
others could read or replace is refused, and once loaded it is checked (lstat) before every
signature or verification; deleted, replaced or loosened while the server runs, it is
rewritten from the key in memory with a warning, so checkpoints never become unverifiable.
A mixin of ``checkpoints.CheckpointStore`` (it uses the store's layout and file access).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from typing import TYPE_CHECKING, Any

from kernel_sessions.checkpoint.files import os_problem, stat_key
from kernel_sessions.core.errors import CheckpointKeyError
from kernel_sessions.kernel.snapshot import DIR_MODE

if TYPE_CHECKING:
    from kernel_sessions.checkpoint.store import CheckpointStore

KEY_BYTES = 32
LOOSE_MODE_BITS = 0o077  # any group/other bit on the key file makes it unusable
HMAC_CONTEXT = b"kernel-sessions checkpoint manifest v1\n"  # domain separation for the key
MANIFEST_SUFFIX = ".json"  # signed documents (manifests, ledgers) are JSON files
MAX_MANIFEST_BYTES = 64 << 20  # refuse to read (and sign) anything bigger


def canonical(obj: Any) -> bytes:
    """The one byte form that is signed (ASCII, sorted keys, no NaN: stable across Pythons)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def key_problem(data: bytes, st: os.stat_result) -> str | None:
    """Why a key file cannot be used (loose mode, other owner, wrong size), or None."""
    if os.name != "nt" and st.st_mode & LOOSE_MODE_BITS:
        return f"has mode {st.st_mode & 0o777:o}; it must be private (chmod 600)"
    if os.name != "nt" and st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by this user ({os.getuid()})"
    if len(data) != KEY_BYTES:
        return f"is not {KEY_BYTES} bytes long"
    return None


class SigningKeyMixin:
    """The key guard and signatures of ``CheckpointStore`` (state: ``_key``, ``_key_stat``,
    ``_key_lock``, set by the store)."""

    def _load_key(self: CheckpointStore) -> bytes:
        """The HMAC key, created on first use; a key others could read or replace is refused.

        Once loaded, the file is checked before every use (``_guard_key``)."""
        with self._key_lock:
            if self._key is not None:
                self._guard_key()
                return self._key
            path = self._path("key")
            if self._fs.stat(path) is None:
                self._fs.write_atomic(path, secrets.token_bytes(KEY_BYTES), exclusive=True)
            try:
                data, st = self._fs.read(path, KEY_BYTES)
            except (OSError, ValueError) as exc:
                problem = os_problem(exc) if isinstance(exc, OSError) else str(exc)
                raise CheckpointKeyError(f"cannot read the checkpoint key: {problem}") from None
            problem = key_problem(data, st)
            if problem:
                raise CheckpointKeyError(
                    f"the checkpoint key file {problem}; fix it, or delete "
                    "it to make a new one (which invalidates old checkpoints)"
                )
            self._key, self._key_stat = data, stat_key(st)
            return self._key

    def _guard_key(self: CheckpointStore) -> None:
        """The key file must still be the key in memory: deleted, replaced or made readable to
        others, it is rewritten from memory (0600 in a 0700 dir) with a warning, before it is
        used, so nothing this server signed becomes unverifiable. Called with the key lock."""
        path = self._fs.join(self.root, "key")
        st = self._fs.stat(path)
        if st is not None and stat_key(st) == self._key_stat:
            return
        if st is None:
            problem = "was deleted"
        else:
            try:
                data, st = self._fs.read(path, KEY_BYTES)
            except (OSError, ValueError):
                problem = "was replaced by something that is not a readable key"
            else:
                problem = key_problem(data, st) or (
                    None
                    if hmac.compare_digest(data, self._key or b"")
                    else "was replaced by another key"
                )
                if problem is None:  # rewritten with the same bytes, or touched
                    self._key_stat = stat_key(st)
                    return
        self.log.warning(
            "the checkpoint key file %s while the server runs; rewriting it from "
            "the key in memory, which signed the existing checkpoints",
            problem,
        )
        try:
            if self._fs.stat(self.root) is None:
                self._ready = False
            path = self._path("key")
            root_st = self._fs.stat(self.root)
            if (
                os.name != "nt"
                and root_st is not None
                and root_st.st_uid == os.getuid()
                and stat.S_IMODE(root_st.st_mode) != DIR_MODE
            ):
                os.chmod(self.root, DIR_MODE)
            self._fs.write_atomic(path, self._key or b"")
            st = self._fs.stat(path)
            self._key_stat = stat_key(st) if st is not None else None
        except OSError as exc:  # keep signing with the key in memory; say so
            self.log.error("cannot rewrite the checkpoint key file: %s", os_problem(exc))

    def _keyed_mac(self: CheckpointStore, context: bytes, body: Any) -> str:
        """HMAC-SHA256 of ``context`` + the canonical form of ``body`` under the store's key."""
        return hmac.new(self._load_key(), context + canonical(body), hashlib.sha256).hexdigest()

    def _mac(self: CheckpointStore, manifest: Any) -> str:
        return self._keyed_mac(HMAC_CONTEXT, manifest)

    def _sign(self: CheckpointStore, manifest: dict[str, Any]) -> bytes:
        return canonical({"manifest": manifest, "hmac": self._mac(manifest)})
