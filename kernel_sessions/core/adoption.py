"""Re-adopting session kernels that a previous manager process started.

Session kernels run ``independent=True`` and their connection info and pid are in the
registry, so a new manager can take them back under the *same kernel id*. jupyter_client's
``LocalProvisioner`` manages its kernel through a ``Popen``; for a kernel that is not our child
we give it a stand-in with the same surface, driven by the pid (checked against the process's
create time so a recycled pid is never mistaken for the kernel).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timezone
from typing import Any

import psutil
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import KernelProvisionerFactory

from kernel_sessions.core.models import SessionModel

ADOPT_PROBE_TIMEOUT = 2.0  # seconds a recorded kernel gets to answer kernel_info
CREATE_TIME_SLACK = 1.0  # seconds of float noise allowed between create-time readings


def process_create_time(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


class AdoptedProcess:
    """The part of ``subprocess.Popen`` that ``LocalProvisioner`` uses, for a foreign pid."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, create_time: float | None) -> None:
        self.pid = pid
        self.create_time = create_time
        self.returncode: int | None = None

    def _alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            if self.create_time and abs(proc.create_time() - self.create_time) > CREATE_TIME_SLACK:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def poll(self) -> int | None:
        if self.returncode is None and not self._alive():
            self.returncode = -1  # not our child: its real exit status is not ours to read
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"process {self.pid} still running")
            time.sleep(0.05)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self._alive():
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def kernel_answers(connection_info: dict[str, Any], timeout: float) -> bool:
    """True when a kernel at ``connection_info`` replies to kernel_info within ``timeout``."""
    kc = AsyncKernelClient()
    kc.load_connection_info(connection_info)
    kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
    try:
        msg_id = kc.kernel_info()
        await kc._async_recv_reply(msg_id, timeout=timeout)
        return True
    except (asyncio.TimeoutError, TimeoutError, RuntimeError):
        return False
    finally:
        kc.stop_channels()


async def adopt(mkm: Any, model: SessionModel, cwd: str) -> Any | None:
    """Put the recorded kernel of ``model`` back into ``mkm`` under its kernel id.

    Returns the kernel manager, or None when the kernel is gone (dead pid or no answer).
    """
    info = model.connection_info
    if not info or not model.pid:
        return None
    create_time = process_create_time(model.pid)
    if create_time is None or (
        model.pid_create_time and abs(create_time - model.pid_create_time) > CREATE_TIME_SLACK
    ):
        return None
    if not await kernel_answers(info, ADOPT_PROBE_TIMEOUT):
        return None
    km = mkm.kernel_manager_factory(
        connection_file=os.path.join(mkm.connection_dir, f"kernel-{model.kernel_id}.json"),
        parent=mkm,
        log=mkm.log,
        kernel_name=model.kernel_name,
        **({"kernel_spec_manager": mkm.kernel_spec_manager} if mkm.kernel_spec_manager else {}),
    )
    km.load_connection_info(info)
    km.kernel_id = model.kernel_id
    km.write_connection_file()
    prov = KernelProvisionerFactory.instance(parent=mkm).create_provisioner_instance(
        model.kernel_id, km.kernel_spec, parent=km
    )
    prov.connection_info = km.get_connection_info()
    prov.ports_cached = False
    prov.process = AdoptedProcess(model.pid, create_time)
    prov.pid = model.pid
    try:
        prov.pgid = os.getpgid(model.pid)
    except OSError:
        prov.pgid = None
    prov.cwd = cwd
    km.provisioner = prov
    km._launch_args = {"independent": True, "cwd": cwd}
    km._connect_control_socket()
    km.start_restarter()
    if not km.ready.done():
        km.ready.set_result(None)
    # as if this manager had started it: later shutdowns and restarts get fresh `ready` futures
    km._attempted_start = True
    mkm._kernels[model.kernel_id] = km
    _server_bookkeeping(mkm, model.kernel_id, km)
    return km


def _server_bookkeeping(mkm: Any, kernel_id: str, km: Any) -> None:
    """Record what jupyter_server's MappingKernelManager records for kernels it starts itself
    (activity, connections, ports, dead callback); without it ``/api/kernels`` fails (500)."""
    if not hasattr(mkm, "start_watching_activity"):
        return
    km.execution_state = "idle"
    km.reason = ""
    km.last_activity = datetime.now(timezone.utc)  # what jupyter_server's utcnow() gives
    mkm._kernel_connections[kernel_id] = 0
    mkm._kernel_ports[kernel_id] = km.ports
    mkm.start_watching_activity(kernel_id)
    mkm.add_restart_callback(kernel_id, lambda: mkm._handle_kernel_died(kernel_id), "dead")
