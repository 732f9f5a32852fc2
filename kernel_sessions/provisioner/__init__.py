"""A jupyter_client kernel provisioner (entry point ``kernel-sessions``) that attaches a kernel
manager to a named session instead of launching a kernel: ``session.<name>`` kernelspecs work in
nbclient, papermill and ``jupyter console`` without a server-side kernel manager."""

from __future__ import annotations

from kernel_sessions.provisioner.provisioner import SessionProvisioner

__all__ = ["SessionProvisioner"]
