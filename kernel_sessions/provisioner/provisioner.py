"""A jupyter_client kernel provisioner that attaches to a named session instead of launching.

``jupyter kernel-sessions install-kernelspec etl`` writes a kernelspec ``session.etl`` whose
``metadata.kernel_provisioner`` names this provisioner (entry point ``kernel-sessions`` in the
``jupyter_client.kernel_provisioners`` group), so stock tools run against the session by kernel
name, outside any server: ``KernelManager(kernel_name="session.etl")``, nbclient,
``papermill -k session.etl``, ``jupyter console --kernel session.etl``.

"Launching" asks the server (REST) for the session's connection info, creating the session
from the warm pool if it is missing. Everything a kernel manager does to end its kernel only
detaches:

- ``KernelManager.shutdown_kernel`` sends ``shutdown_request`` on the control channel itself,
  so the control port handed out is a small proxy (``ControlProxy``) that forwards everything
  to the kernel except ``shutdown_request``, which it answers itself;
- ``kill``/``terminate`` and the SIGINT a kernel manager sends before shutting down are not
  passed on; an interrupt at any other time goes to the session (REST ``interrupt``);
- ``restart_kernel`` restarts the session (same kernel, empty namespace), as restarting a
  session's kernel from JupyterLab does.

``poll`` asks the server whether the session still runs the kernel we attached to. The server's
token is never written into the kernelspec: it comes from ``JUPYTER_TOKEN`` or from the running
server's runtime file (see ``discovery``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.provisioning.provisioner_base import KernelProvisionerBase
from jupyter_client.session import Session
from traitlets import Bool, Float, Unicode

from kernel_sessions.client.discovery import ClientError
from kernel_sessions.core.models import DISPLAY_SUFFIX, GONE, spec_name, validate_name

PROVISIONER_NAME = "kernel-sessions"
DELIM = b"<IDS|MSG>"
POLL_CACHE_SECONDS = 1.0  # poll() is called often; ask the server at most this often
PROXY_START_TIMEOUT = 10.0
PROXY_STOP_TIMEOUT = 5.0


class ControlProxy:
    """Forwards a kernel's control channel, answering ``shutdown_request`` itself.

    ROUTER (clients) <-> DEALER (kernel) in a thread of its own: identities pass through as
    the envelope, so replies find their client. Owns its zmq context; ``stop`` wakes the thread
    through an inproc socket, so detaching costs no polling delay.
    """

    def __init__(
        self, target: str, key: bytes, signature_scheme: str, ip: str = "127.0.0.1"
    ) -> None:
        self.target, self.ip = target, ip
        self.session = Session(key=key, signature_scheme=signature_scheme)
        self.port = 0
        self.context = zmq.Context()
        self._wake = f"inproc://kernel-sessions-control-{id(self)}"
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name="kernel-sessions-control", daemon=True
        )

    def start(self) -> int:
        self._thread.start()
        if not self._ready.wait(PROXY_START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"control proxy failed to start: {self._error}")
        return self.port

    def stop(self) -> None:
        if self._thread.is_alive():
            wake = self.context.socket(zmq.PAIR)
            wake.linger = 0
            wake.connect(self._wake)
            wake.send(b"stop")
            self._thread.join(PROXY_STOP_TIMEOUT)
            wake.close()
        self.context.term()

    def _run(self) -> None:
        try:
            stop = self.context.socket(zmq.PAIR)
            stop.linger = 0
            stop.bind(self._wake)
            front = self.context.socket(zmq.ROUTER)
            front.linger = 0
            self.port = front.bind_to_random_port(f"tcp://{self.ip}")
            back = self.context.socket(zmq.DEALER)
            back.linger = 0
            back.connect(self.target)
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        for sock in (front, back, stop):
            poller.register(sock, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                if back in ready:
                    front.send_multipart(back.recv_multipart())
                if front in ready:
                    frames = front.recv_multipart()
                    if not self._answered(front, frames):
                        back.send_multipart(frames)
        finally:
            for sock in (front, back, stop):
                sock.close()

    def _answered(self, front: zmq.Socket, frames: list[bytes]) -> bool:
        """Answer a ``shutdown_request`` (the session must outlive its callers)."""
        try:
            i = frames.index(DELIM)
            header = json.loads(frames[i + 2])
        except (ValueError, IndexError):
            return False
        if header.get("msg_type") != "shutdown_request":
            return False
        try:
            content = json.loads(frames[i + 5])
        except (ValueError, IndexError):
            content = {}
        parent = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        self.session.send(
            front,
            "shutdown_reply",
            {"status": "ok", "restart": bool(content.get("restart"))},
            parent=parent,
            ident=frames[:i],
        )
        return True


class SessionProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Attaches a kernel manager to a named session (see the module docstring)."""

    session = Unicode(config=True, help="Name of the session to attach to.")
    url = Unicode("", config=True, help="Server URL (default: discovery, see discovery.py).")
    create = Bool(True, config=True, help="Create the session if it does not exist.")
    session_kernel_name = Unicode(
        "", config=True, help="Kernelspec of a session created on attach (default: the server's)."
    )
    ready_timeout = Float(60.0, config=True, help="Seconds to wait for the session's kernel.")

    _attached = False
    _restart_next = False
    _kernel_id = ""
    _proxy: ControlProxy | None = None
    _checked_at = 0.0
    _alive = True

    def _api(self) -> Any:
        from kernel_sessions.client import KernelSessionsClient

        if getattr(self, "_client", None) is None:
            self._client = KernelSessionsClient(self.url or None)
        return self._client

    @property
    def has_process(self) -> bool:
        return self._attached

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)
        validate_name(self.session)
        kwargs["cmd"] = list(self.kernel_spec.argv) if self.kernel_spec else []
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> dict[str, Any]:
        """Attach: the session's connection info, its control port behind the proxy."""
        info = await asyncio.to_thread(self._attach)
        self._stop_proxy()
        target = f"{info['transport']}://{info['ip']}:{info['control_port']}"
        key = info["key"].encode()
        self._proxy = ControlProxy(target, key, info["signature_scheme"], info["ip"])
        port = await asyncio.to_thread(self._proxy.start)
        self.connection_info = {
            "transport": info["transport"],
            "ip": info["ip"],
            "key": key,
            "signature_scheme": info["signature_scheme"],
            "shell_port": info["shell_port"],
            "iopub_port": info["iopub_port"],
            "stdin_port": info["stdin_port"],
            "hb_port": info["hb_port"],
            "control_port": port,
        }
        self._kernel_id = info["kernel_id"]
        self._attached, self._alive, self._checked_at = True, True, time.monotonic()
        self.log.info("attached to session %r (kernel %s)", self.session, self._kernel_id)
        return self.connection_info

    def _attach(self) -> dict[str, Any]:
        """Connection info, creating the session (or waiting for one being created) as
        ``connect(name)`` does."""
        from kernel_sessions.client.attach import _connection

        api = self._api()
        if self._restart_next:
            self._restart_next = False
            api.restart(self.session)
        return _connection(api, self.session, self.create, self.session_kernel_name or None)[1]

    async def poll(self) -> int | None:
        """None while the session runs the kernel we attached to; 0 once detached."""
        if not self._attached:
            return 0
        if time.monotonic() - self._checked_at > POLL_CACHE_SECONDS:
            self._alive = await asyncio.to_thread(self._session_alive)
            self._checked_at = time.monotonic()
        return None if self._alive else 1

    def _session_alive(self) -> bool:
        try:
            s = self._api().get_session(self.session)
        except ClientError as e:
            return e.status is None  # the server is unreachable: the kernel may well be fine
        return s["state"] not in GONE and s["kernel"]["id"] == self._kernel_id

    async def wait(self) -> int | None:
        while (code := await self.poll()) is None:
            await asyncio.sleep(0.1)
        return code

    async def send_signal(self, signum: int) -> None:
        """SIGINT interrupts the session, except the one sent on the way to a shutdown."""
        if signum == 0 or not self._attached:
            return
        if signum == signal.SIGINT:
            if getattr(self.parent, "shutting_down", False):
                return
            await asyncio.to_thread(self._api().interrupt, self.session)
            return
        self._detach()  # SIGTERM, SIGKILL, ...: the caller wants it gone from its view

    async def kill(self, restart: bool = False) -> None:
        self._detach(restart)

    async def terminate(self, restart: bool = False) -> None:
        self._detach(restart)

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._detach(restart)  # the proxy answered the request; the session runs on

    def _detach(self, restart: bool = False) -> None:
        if self._attached:
            self.log.info("detached from session %r (it keeps running)", self.session)
        self._attached = False
        self._restart_next = self._restart_next or restart

    async def cleanup(self, restart: bool = False) -> None:
        self._stop_proxy()
        if not restart and getattr(self, "_client", None) is not None:
            self._client.close()
            self._client = None

    def _stop_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        return 1.0  # nothing to wait for: detaching is immediate

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        return self.ready_timeout

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info.update(session=self.session, url=self.url)
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.session = provisioner_info.get("session", self.session)
        self.url = provisioner_info.get("url", self.url)


# -- kernelspecs ------------------------------------------------------------------------------


def kernelspec_json(
    session: str,
    *,
    url: str = "",
    display_name: str | None = None,
    kernel_name: str = "",
    language: str = "python",
) -> dict[str, Any]:
    """``kernel.json`` of ``session.<name>``: this provisioner, the session, never a token."""
    config: dict[str, Any] = {"session": validate_name(session)}
    if url:
        config["url"] = url
    if kernel_name:
        config["session_kernel_name"] = kernel_name
    return {
        # never run while the provisioner is installed; explains itself if it is not
        "argv": [sys.executable, "-m", "kernel_sessions.provisioner.provisioner", session],
        "display_name": display_name or session + DISPLAY_SUFFIX,
        "language": language,
        "interrupt_mode": "signal",  # signals reach send_signal, hence the session
        "metadata": {
            "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME, "config": config},
            "kernel_sessions": {"session": session},
        },
    }


def install_kernelspec(
    session: str,
    *,
    url: str = "",
    display_name: str | None = None,
    kernel_name: str = "",
    user: bool = True,
    prefix: str | None = None,
) -> str:
    """Write kernelspec ``session.<name>`` (logos from the real kernelspec); return its path."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    language, resources = "python", None
    try:
        real = ksm.get_kernel_spec(kernel_name or "python3")
        language, resources = real.language or language, real.resource_dir
    except NoSuchKernel:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        for logo in ("logo-32x32.png", "logo-64x64.png", "logo-svg.svg"):
            if resources and (Path(resources) / logo).is_file():
                shutil.copy(Path(resources) / logo, Path(tmp) / logo)
        spec = kernelspec_json(
            session, url=url, display_name=display_name, kernel_name=kernel_name, language=language
        )
        (Path(tmp) / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
        return ksm.install_kernel_spec(
            tmp, spec_name(session), user=user and prefix is None, prefix=prefix
        )


if __name__ == "__main__":  # the kernelspec's argv: only reached without the provisioner
    print(
        f"kernelspec session.{sys.argv[1] if len(sys.argv) > 1 else '?'} needs the "
        f"'{PROVISIONER_NAME}' kernel provisioner (pip install kernel-sessions; "
        "jupyter_client >= 7)",
        file=sys.stderr,
    )
    sys.exit(1)
