"""Checkpoints, host side: the signed store of content-addressed blobs (format, signing, files,
ledger, garbage collection) and the service that saves, restores, forks, hibernates, wakes and
recovers sessions through the core's public interface (``core.lifecycle.SessionCore``).

Pickled data is never loaded here: blobs are verified on the host and unpickled only inside
a kernel (``kernel/snapshot.py``).
"""
