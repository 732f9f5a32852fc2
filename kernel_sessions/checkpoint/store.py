"""Checkpoint store, host side: signed manifests over content-addressed blobs.

Layout under ``root``::

    key                              HMAC-SHA256 key (0600, created on first use)
    blobs/<sha[:2]>/<sha>            written by the kernel (kernel/snapshot.py), shared by sessions
    manifests/<session>/<id>.json    {"manifest": {...}, "hmac": hex}, written here, last
    ledger/<session>.json            {"ledger": {"session", "live": [ids]}, "hmac": hex}: the
                                     checkpoints of the session that exist (see below)

This process never unpickles: it signs what a dump produced and, before a restore, checks the
signature, the owner session and every blob's sha256; the kernel checks the hashes again before
unpickling. All writes are temp file + fsync + rename + fsync of the directory, so a crash
leaves the previous checkpoints intact and never a half checkpoint visible. Methods block on
file I/O: call them from a worker thread in async code.

Robustness rules:

- *Partial checkpoints.* A manifest records ``partial: true`` when a variable could not be
  saved because something failed (a write error such as ENOSPC, an object that breaks
  pickling), as opposed to variables that are never saved by nature (locks, open files,
  generators). ``choose`` (automatic restore, wake) takes the newest checkpoint that fully
  verifies *and* is complete, falling back to the newest verifying partial one only when no
  complete one verifies; pruning always keeps the newest complete checkpoint.
- *Verification* covers the blobs, not only the signature: ``list`` shows ``valid: false`` for
  a checkpoint whose blobs are missing or altered; verdicts are cached (checkpoint_blobs.py).
- *The key* is checked before every use and rewritten from memory if the file is deleted,
  replaced or loosened while a server runs (checkpoint_signing.py).
- *Deletions are final*: a signed ledger of live ids per session refuses a manifest copied
  back after its deletion (checkpoint_ledger.py).
- *Only regular files are read*, opened so that a FIFO or device planted in the store never
  blocks (checkpoint_files.py).
- Errors carry no absolute paths (only names inside the store).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import threading
import time
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from kernel_sessions.checkpoint.blobs import SHA_RE, BlobVerdicts, blob_algs, blob_error
from kernel_sessions.checkpoint.files import STORAGE_FULL_ERRNOS, LocalFS, os_problem, storage_error
from kernel_sessions.checkpoint.gc import GC_GRACE_SECONDS, GarbageMixin
from kernel_sessions.checkpoint.ids import (
    ID_RE,
    id_micros,
    new_checkpoint_id,
    validate_checkpoint_id,
)
from kernel_sessions.checkpoint.ledger import LedgerMixin
from kernel_sessions.checkpoint.signing import (
    MANIFEST_SUFFIX,
    MAX_MANIFEST_BYTES,
    SigningKeyMixin,
    canonical,
)
from kernel_sessions.core.errors import CheckpointError, CheckpointInvalid, CheckpointNotFound
from kernel_sessions.core.models import validate_name
from kernel_sessions.kernel.snapshot import _hasher

__all__ = [  # the names other modules import from here (some are defined beside this module)
    "GC_GRACE_SECONDS",
    "MAX_LABEL_CHARS",
    "STORAGE_FULL_ERRNOS",
    "CheckpointStore",
    "canonical",
    "failed_names",
    "is_partial",
    "validate_checkpoint_id",
]

MANIFEST_FORMAT = 1
LOCK_NAME = ".lock"
MAX_LABEL_CHARS = 200


def is_partial(manifest: dict[str, Any]) -> bool:
    """Did a variable fail to save (not skipped by nature)? Manifests from before the flag
    count as partial when a blob write failed."""
    if "partial" in manifest:
        return bool(manifest["partial"])
    return any(
        isinstance(s, dict) and str(s.get("reason", "")).startswith("write failed")
        for s in manifest.get("skipped", [])
    )


def failed_names(manifest: dict[str, Any]) -> list[str]:
    """Names of the variables a partial checkpoint failed to save."""
    return [
        str(s.get("name"))
        for s in manifest.get("skipped", [])
        if isinstance(s, dict)
        and (s.get("failed") or str(s.get("reason", "")).startswith("write failed"))
    ]


class CheckpointStore(SigningKeyMixin, LedgerMixin, GarbageMixin, LoggingConfigurable):
    """Signed checkpoint manifests per session, over a blob directory the kernel writes into."""

    root = Unicode(
        config=True,
        help="Checkpoint directory (default: <jupyter data dir>/kernel_sessions/checkpoints).",
    )
    keep_checkpoints = Integer(
        20,
        min=0,
        config=True,
        help="Unlabelled checkpoints kept per "
        "session (the newest); labelled ones are always kept. 0: no limit.",
    )

    @default("root")
    def _root_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "kernel_sessions", "checkpoints")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fs = LocalFS()
        self._key: bytes | None = None
        self._key_stat: tuple[int, ...] | None = None
        self._key_lock = threading.RLock()  # the key's state: see checkpoint_signing.py
        self._ready = False
        self._ledgers: dict[str, tuple[tuple[int, ...], frozenset[str]]] = {}  # checkpoint_ledger
        self._blob_verdicts = BlobVerdicts(self._fs)

    # -- layout --------------------------------------------------------------------------------

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
        return self._fs.join(
            self._session_dir(session), validate_checkpoint_id(checkpoint_id) + MANIFEST_SUFFIX
        )

    def _blob_path(self, sha: object) -> str:
        if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
            raise CheckpointInvalid(f"invalid blob id {str(sha)[:80]!r}", reason="corrupt")
        return self._fs.join(self.blob_dir, sha[:2], sha)

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Held to commit or delete anything: writes, pruning and GC exclude each other."""
        return self._fs.lock(self._path(LOCK_NAME))

    # -- write and read ------------------------------------------------------------------------

    def write_manifest(
        self,
        session: str,
        dump_result: dict[str, Any],
        *,
        label: str | None = None,
        kernelspec: str | dict[str, Any],
        versions: dict[str, Any],
    ) -> dict[str, Any]:
        """Sign and commit a checkpoint of blobs the kernel already wrote; returns the manifest.

        Every referenced blob must exist with its recorded size, else nothing is written
        (CheckpointInvalid "missing_blob"). Under the store lock, so GC cannot remove a reused
        blob between that check and the commit. Retention is applied afterwards.
        """
        validate_name(session)
        label = label or None
        if label is not None and (
            not isinstance(label, str) or len(label) > MAX_LABEL_CHARS or not label.isprintable()
        ):
            raise CheckpointError(
                f"a label is printable text of at most {MAX_LABEL_CHARS} characters",
                reason="invalid_label",
            )
        variables, skipped = dump_result.get("variables"), dump_result.get("skipped", [])
        if (
            not isinstance(variables, dict)
            or not isinstance(skipped, list)
            or not all(isinstance(k, str) and isinstance(v, dict) for k, v in variables.items())
        ):
            raise CheckpointInvalid("malformed dump result", reason="corrupt")
        with self._locked():
            sizes: dict[str, int] = {}
            for name, entry in variables.items():
                sha = entry.get("blob")
                if sha is not None and sha not in sizes:
                    st = self._fs.stat(self._blob_path(sha))
                    if st is None or st.st_size != entry.get("size"):
                        raise CheckpointInvalid(
                            f"the blob of variable {name!r} is missing or "
                            "truncated; checkpoint not written",
                            reason="missing_blob",
                        )
                    sizes[sha] = st.st_size
            # ids strictly increase per session, even if the clock steps back: "latest" is the
            # last one written, and pruning right after this write can never remove it
            previous = self.latest(session)  # valid ones only: a planted file cannot skew it
            micros = max(time.time_ns() // 1000, id_micros(previous["id"]) + 1 if previous else 0)
            manifest = {
                "format": MANIFEST_FORMAT,
                "id": new_checkpoint_id(micros),
                "session": session,
                "label": label,
                "created": micros / 1e6,
                "kernelspec": kernelspec,
                "versions": dict(versions),
                "variables": variables,
                "skipped": skipped,
                "bytes": sum(sizes.values()),
                "new_bytes": int(dump_result.get("bytes_written", 0)),
                "execution_count": dump_result.get("execution_count"),
            }
            failed = [s for s in skipped if isinstance(s, dict) and s.get("failed")]
            manifest["partial"] = bool(failed)
            try:
                data = self._sign(manifest)
            except (TypeError, ValueError) as exc:
                raise CheckpointInvalid(f"manifest is not JSON: {exc}", reason="corrupt") from None
            if len(data) > MAX_MANIFEST_BYTES:
                raise CheckpointInvalid(
                    f"manifest over {MAX_MANIFEST_BYTES} bytes", reason="corrupt"
                )
            try:
                self._fs.ensure_dir(self._session_dir(session))
                self._ledger_change(session, add={manifest["id"]})  # before the file: see _live
                self._fs.write_atomic(self._manifest_path(session, manifest["id"]), data)
            except OSError as exc:
                raise storage_error(exc, "checkpoint not written") from None
            try:
                self.prune(session)
            except (OSError, CheckpointError) as exc:
                self.log.warning(
                    "pruning the checkpoints of session %s failed: %s",
                    session,
                    os_problem(exc) if isinstance(exc, OSError) else exc,
                )
        return manifest

    def _load(self, owner: str, checkpoint_id: str, *, ledger: bool = True) -> dict[str, Any]:
        """Read one manifest file of ``owner``'s directory; its signature, owner and id must
        hold, and (``ledger``) it must not have been deleted."""
        path = self._manifest_path(owner, checkpoint_id)
        try:
            data = self._fs.read(path, MAX_MANIFEST_BYTES)[0]
        except FileNotFoundError:
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in session {owner}") from None
        except (OSError, ValueError) as exc:
            problem = os_problem(exc) if isinstance(exc, OSError) else str(exc)
            raise CheckpointInvalid(
                f"cannot read checkpoint {checkpoint_id}: {problem}", reason="corrupt"
            ) from None
        try:
            doc = json.loads(data)
            manifest, mac = doc["manifest"], doc["hmac"]
            ok = isinstance(manifest, dict) and hmac.compare_digest(self._mac(manifest), mac)
        except (ValueError, TypeError, KeyError, RecursionError):
            ok = False
        if not ok:
            raise CheckpointInvalid(
                f"signature mismatch: checkpoint {checkpoint_id} of session "
                f"{owner} is tampered, corrupt or signed with another key; "
                "nothing was restored",
                reason="tampered",
            )
        if manifest.get("session") != owner:
            raise CheckpointInvalid(
                f"signature mismatch: checkpoint {checkpoint_id} was signed "
                f"for session {manifest.get('session')!r}, not {owner!r}; "
                "nothing was restored",
                reason="wrong_session",
            )
        if manifest.get("id") != checkpoint_id:
            raise CheckpointInvalid(
                f"file {checkpoint_id} holds checkpoint {manifest.get('id')!r}", reason="wrong_id"
            )
        if ledger and checkpoint_id not in self._live(owner):
            raise CheckpointInvalid(
                f"checkpoint {checkpoint_id} of session {owner} was deleted; "
                "this manifest is a copy put back and is refused",
                reason="deleted",
            )
        return manifest

    def read_manifest(
        self, session: str, checkpoint_id: str, *, source_session: str | None = None
    ) -> dict[str, Any]:
        """The authenticated manifest of a checkpoint of ``session``.

        A fork restores another session's checkpoint: it names that session as
        ``source_session``, whose directory is read and whose name the manifest must carry.
        """
        validate_name(session)
        return self._load(session if source_session is None else source_session, checkpoint_id)

    def _blob_problem(self, sha: object, alg: object) -> str | None:
        """Why blob ``sha`` does not verify, or None (see BlobVerdicts.problem). The hash
        function is looked up here on each call: this module's ``_hasher``."""
        try:
            path = self._blob_path(sha)
        except CheckpointInvalid:
            return "invalid blob id"
        return self._blob_verdicts.problem(path, sha, alg, _hasher)

    def blob_problems(self, manifest: dict[str, Any]) -> dict[str, str]:
        """{blob id: problem} for the blobs of ``manifest`` that do not verify."""
        algs = blob_algs(manifest)
        out = {}
        for sha in sorted(algs, key=str):
            problem = self._blob_problem(sha, algs[sha])
            if problem is not None:
                out[str(sha)] = problem
        return out

    def verify_blobs(self, manifest: dict[str, Any]) -> list[str]:
        """Blob ids of ``manifest`` that are missing or no longer hash to their name."""
        return sorted(self.blob_problems(manifest))

    def verify(self, session: str, checkpoint_id: str) -> dict[str, Any]:
        """The manifest if everything verifies: signature, owner, ledger and every blob."""
        manifest = self.read_manifest(session, checkpoint_id)
        problems = self.blob_problems(manifest)
        if problems:
            raise blob_error(manifest, problems)
        return manifest

    def choose(
        self, session: str, exclude: set[str] | frozenset[str] = frozenset()
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What an automatic restore or a wake takes: the newest checkpoint that verifies fully
        and is complete; only if none is, the newest one that verifies (partial).

        Returns ``(manifest or None, passed_over)``, passed_over being the newer checkpoints
        not taken, newest first, as ``{"id", "reason", "names"}``: names are the variables the
        passed-over checkpoint knew (None when its manifest cannot be trusted).
        """
        passed: list[dict[str, Any]] = []
        fallback: tuple[dict[str, Any], int] | None = None
        for cid in self._ids(session):
            if cid in exclude:
                continue
            try:
                manifest = self._load(session, cid)
            except CheckpointNotFound:
                continue
            except CheckpointInvalid as exc:
                passed.append({"id": cid, "reason": exc.reason, "names": None})
                continue
            names = sorted(set(manifest.get("variables", {})) | set(failed_names(manifest)))
            problems = self.blob_problems(manifest)
            if problems:
                passed.append(
                    {"id": cid, "reason": blob_error(manifest, problems).reason, "names": names}
                )
            elif is_partial(manifest):
                if fallback is None:
                    fallback = (manifest, len(passed))
                passed.append({"id": cid, "reason": "partial", "names": names})
            else:
                return manifest, passed
        if fallback is not None:
            return fallback[0], passed[: fallback[1]]
        return None, passed

    # -- listing, deletion, retention ----------------------------------------------------------

    def _ids(self, session: str) -> list[str]:
        """Checkpoint ids of ``session``, newest first (ids sort by time; temp files excluded)."""
        names = self._fs.listdir(self._session_dir(session))
        ids = [n[: -len(MANIFEST_SUFFIX)] for n in names if n.endswith(MANIFEST_SUFFIX)]
        return sorted((i for i in ids if ID_RE.fullmatch(i)), reverse=True)

    def list(self, session: str, *, blobs: bool = True) -> list[dict[str, Any]]:
        """Summaries, newest first; one that fails verification (signature, ledger, or with
        ``blobs`` its blobs' hashes, cached) is listed with ``valid: False`` and its reason, not
        hidden, so the user sees it."""
        out = []
        for cid in self._ids(session):
            summary: dict[str, Any] = {
                "id": cid,
                "valid": True,
                "label": None,
                "created": None,
                "bytes": None,
                "new_bytes": None,
                "variables": None,
                "skipped": None,
                "partial": None,
            }
            try:
                m = self._load(session, cid)
            except CheckpointNotFound:  # deleted meanwhile
                continue
            except CheckpointInvalid as exc:
                summary.update(valid=False, reason=exc.reason, message=str(exc))
            else:
                summary.update(
                    {k: m.get(k) for k in ("label", "created", "bytes", "new_bytes")},
                    variables=len(m["variables"]),
                    skipped=len(m["skipped"]),
                    partial=is_partial(m),
                )
                problems = self.blob_problems(m) if blobs else {}
                if problems:
                    exc = blob_error(m, problems)
                    summary.update(valid=False, reason=exc.reason, message=str(exc))
                if not blobs:
                    summary["manifest"] = m
            out.append(summary)
        return out

    def latest(self, session: str) -> dict[str, Any] | None:
        """The newest valid manifest of ``session`` (what to restore after a crash), or None."""
        for cid in self._ids(session):
            with contextlib.suppress(CheckpointNotFound, CheckpointInvalid):
                return self._load(session, cid)
        return None

    def delete(self, session: str, checkpoint_id: str) -> None:
        """Delete a checkpoint: recorded in the ledger first, so a copy put back is refused."""
        path = self._manifest_path(session, checkpoint_id)
        with self._locked():
            if self._fs.stat(path) is None:
                raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in session {session}")
            try:
                self._ledger_change(session, remove={checkpoint_id})
            except OSError as exc:
                raise storage_error(exc, "checkpoint not deleted") from None
            if not self._fs.remove(path):
                raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in session {session}")

    def delete_session(self, session: str) -> int:
        """Remove every manifest of ``session`` (blobs go at the next GC); returns how many."""
        folder = self._session_dir(session)
        with self._locked():
            count = len(self._ids(session))
            if count or self._fs.stat(self._ledger_path(session)) is not None:
                self._ledger_change(session, clear=True)  # kept (empty): copies are refused
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
            moves = []
            for cid in self._ids(old):
                src, dst = self._manifest_path(old, cid), self._manifest_path(new, cid)
                try:
                    manifest = self._load(old, cid)
                except CheckpointNotFound:
                    continue
                except CheckpointInvalid:
                    if self._fs.stat(dst) is None:
                        self._fs.replace(src, dst)
                    else:  # a rename interrupted after re-signing: the new copy stays
                        self._fs.remove(src)
                    continue
                moves.append((cid, manifest))
            if moves:  # ledgers first (new, then old), files after: see _live
                self._ledger_change(new, add={cid for cid, _ in moves})
            for cid, manifest in moves:
                self._fs.write_atomic(
                    self._manifest_path(new, cid), self._sign({**manifest, "session": new})
                )
                count += 1
            self.delete_session(old)  # ledger emptied, then the originals and temp leftovers
        return count

    def prune(self, session: str) -> list[str]:
        """Keep labelled checkpoints, the newest ``keep_checkpoints`` unlabelled ones and, in
        any case, the newest complete one whose blobs are all there (partial checkpoints never
        push it out); invalid ones stay for the user to see. Returns the deleted ids."""
        if not self.keep_checkpoints:
            return []
        with self._locked():
            valid = [s for s in self.list(session, blobs=False) if s["valid"]]
            keeper = next(
                (
                    s["id"]
                    for s in valid
                    if not s["partial"]
                    and self._blob_verdicts.present(s["manifest"], self._blob_path)
                ),
                None,
            )
            unlabelled = [s["id"] for s in valid if not s["label"]]
            doomed = [cid for cid in unlabelled[self.keep_checkpoints :] if cid != keeper]
            if doomed:
                self._ledger_change(session, remove=set(doomed))
            for cid in doomed:
                self._fs.remove(self._manifest_path(session, cid))
        return doomed
