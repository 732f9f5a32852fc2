"""The ledger of live checkpoint ids, per session, which makes deletions final. A signed file
``ledger/<session>.json`` lists the checkpoints of a session that exist; it is updated (under
the store lock) before a manifest is written and before one is removed, so a manifest file
copied back after its deletion is refused with reason ``deleted``. A session without a valid
ledger (a store from before ledgers, or a ledger lost or altered) gets one made from the
manifests that verify, with a warning. Apart from the store because it is a second signed
document with its own cache and recovery; a mixin of ``checkpoints.CheckpointStore`` (state:
``_ledgers``, set by the store).
"""

from __future__ import annotations

import contextlib
import hmac
import json
from typing import TYPE_CHECKING, Any

from kernel_sessions.checkpoint.files import os_problem, stat_key
from kernel_sessions.checkpoint.signing import MANIFEST_SUFFIX, MAX_MANIFEST_BYTES, canonical
from kernel_sessions.core.errors import CheckpointInvalid, CheckpointNotFound
from kernel_sessions.core.models import validate_name

if TYPE_CHECKING:
    from kernel_sessions.checkpoint.store import CheckpointStore

LEDGER_CONTEXT = b"kernel-sessions checkpoint ledger v1\n"
LEDGER_DIR = "ledger"


class LedgerMixin:
    """Reading, writing and repairing the ledgers of a ``CheckpointStore``."""

    def _ledger_path(self: CheckpointStore, session: str) -> str:
        return self._fs.join(self._path(LEDGER_DIR), validate_name(session) + MANIFEST_SUFFIX)

    def _ledger_mac(self: CheckpointStore, body: Any) -> str:
        return self._keyed_mac(LEDGER_CONTEXT, body)

    def _read_ledger(self: CheckpointStore, session: str) -> frozenset[str] | None:
        """The live ids of ``session`` from its signed ledger; None if there is no valid one."""
        path = self._ledger_path(session)
        st = self._fs.stat(path)
        if st is None:
            return None
        cached = self._ledgers.get(session)
        if cached is not None and cached[0] == stat_key(st):
            return cached[1]
        try:
            data, st = self._fs.read(path, MAX_MANIFEST_BYTES)
            doc = json.loads(data)
            body, mac = doc["ledger"], doc["hmac"]
            live = body["live"]
            ok = (
                isinstance(mac, str)
                and hmac.compare_digest(self._ledger_mac(body), mac)
                and body.get("session") == session
                and isinstance(live, list)
                and all(isinstance(i, str) for i in live)
            )
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            ok = False
        if not ok:
            self.log.warning(
                "the checkpoint ledger of session %s is unreadable or its signature "
                "does not match; it is made again from the manifests that verify",
                session,
            )
            return None
        ids = frozenset(live)
        self._ledgers[session] = (stat_key(st), ids)
        return ids

    def _write_ledger(self: CheckpointStore, session: str, live: set[str] | frozenset[str]) -> None:
        body = {"session": session, "live": sorted(live)}
        path = self._ledger_path(session)
        self._fs.ensure_dir(self._path(LEDGER_DIR))
        self._fs.write_atomic(path, canonical({"ledger": body, "hmac": self._ledger_mac(body)}))
        st = self._fs.stat(path)
        if st is not None:
            self._ledgers[session] = (stat_key(st), frozenset(live))

    def _live(self: CheckpointStore, session: str) -> frozenset[str]:
        """Ids of ``session``'s checkpoints that were written and not deleted since."""
        live = self._read_ledger(session)
        if live is not None:
            return live
        with self._locked():
            live = self._read_ledger(session)
            if live is not None:
                return live
            ids = self._ids(session)
            if not ids:
                return frozenset()
            live = frozenset(cid for cid in ids if self._signed(session, cid) is not None)
            self.log.warning(
                "session %s: no checkpoint ledger; made one of the %d checkpoint(s) that verify",
                session,
                len(live),
            )
            try:
                self._write_ledger(session, live)
            except OSError as exc:
                self.log.warning(
                    "cannot write the checkpoint ledger of session %s: %s", session, os_problem(exc)
                )
            return live

    def _ledger_change(
        self: CheckpointStore,
        session: str,
        *,
        add: set[str] | frozenset[str] = frozenset(),
        remove: set[str] | frozenset[str] = frozenset(),
        clear: bool = False,
    ) -> None:
        """Record written (``add``) or deleted ids; before the manifest files change. Ids whose
        file is gone (a crash between the two steps, or a file deleted by hand) are dropped."""
        with self._locked():
            live = set() if clear else set(self._live(session))
            live = {
                i
                for i in (live - set(remove))
                if self._fs.stat(self._manifest_path(session, i)) is not None
            } | set(add)
            self._write_ledger(session, live)

    def _signed(self: CheckpointStore, owner: str, checkpoint_id: str) -> dict[str, Any] | None:
        """The manifest if its signature, owner and id hold (the ledger is not consulted)."""
        with contextlib.suppress(CheckpointNotFound, CheckpointInvalid):
            return self._load(owner, checkpoint_id, ledger=False)
        return None
