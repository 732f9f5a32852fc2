"""Garbage collection of the checkpoint store: blobs no manifest names any more, and temp
files a crash left behind. Apart from the store because it is the one operation that walks
the whole tree and deletes data nobody asked to delete, under rules of its own: a grace period
for blobs a running dump may still commit, and blobs of manifests that do not verify are kept
(deleting them would make a lost key irreversible). A mixin of ``checkpoints.CheckpointStore``.
"""

from __future__ import annotations

import contextlib
import json
import stat
import time
from typing import TYPE_CHECKING

from kernel_sessions.checkpoint.blobs import SHA_RE
from kernel_sessions.checkpoint.ledger import LEDGER_DIR
from kernel_sessions.checkpoint.signing import MANIFEST_SUFFIX, MAX_MANIFEST_BYTES
from kernel_sessions.kernel.snapshot import TMP_SUFFIX  # GC must know the kernel's temps

if TYPE_CHECKING:
    from kernel_sessions.checkpoint.store import CheckpointStore

GC_GRACE_SECONDS = 600  # an unreferenced blob younger than this may belong to a running dump
STALE_TEMP_SECONDS = GC_GRACE_SECONDS  # a temp file untouched this long is a crash leftover


class GarbageMixin:
    """``collect_garbage`` of a ``CheckpointStore``."""

    def _referenced(self: CheckpointStore) -> set[object]:
        """Blob ids named by any readable manifest, valid or not (see collect_garbage)."""
        refs: set[object] = set()
        manifests = self._path("manifests")
        for session in self._fs.listdir(manifests):
            folder = self._fs.join(manifests, session)
            for name in self._fs.listdir(folder):
                if name.endswith(MANIFEST_SUFFIX):
                    with contextlib.suppress(
                        OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError
                    ):
                        doc = json.loads(
                            self._fs.read(self._fs.join(folder, name), MAX_MANIFEST_BYTES)[0]
                        )
                        refs.update(e.get("blob") for e in doc["manifest"]["variables"].values())
        return refs

    def collect_garbage(self: CheckpointStore, now: float | None = None) -> int:
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
            folders = [(self.root, False), (self._path(LEDGER_DIR), False)]
            folders += [(self._fs.join(manifests, n), False) for n in self._fs.listdir(manifests)]
            folders += [(self._fs.join(blobs, n), True) for n in self._fs.listdir(blobs)]
            for folder, holds_blobs in folders:
                for name in self._fs.listdir(folder):
                    is_temp = name.endswith(TMP_SUFFIX)
                    if not is_temp and not (
                        holds_blobs and SHA_RE.fullmatch(name) and name not in referenced
                    ):
                        continue
                    path = self._fs.join(folder, name)
                    st = self._fs.stat(path)
                    grace = STALE_TEMP_SECONDS if is_temp else GC_GRACE_SECONDS
                    if (
                        st
                        and stat.S_ISREG(st.st_mode)
                        and now - st.st_mtime > grace
                        and self._fs.remove(path)
                    ):
                        freed += st.st_size
        if freed:
            self.log.info("checkpoint garbage collection freed %d bytes", freed)
        return freed
