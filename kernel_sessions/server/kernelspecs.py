"""The kernel provider: every named session is offered as a pseudo kernelspec ``session.<name>``.

JupyterLab's launcher and kernel menus, and anything else that lists kernelspecs, then show
``etl (session)`` beside ``Python 3``; starting that "kernel" attaches to the session (see
``server_kernels.SessionMappingKernelManager``), and a notebook saved with kernelspec
``session.etl`` re-attaches to ``etl`` when it is reopened.

Pseudo specs exist exactly while their session does and are never on disk:
``find_kernel_specs`` (used by ``jupyter kernelspec list/remove``) does not see them, so removing
``session.etl`` can never delete the real spec's directory it borrows its logo from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from traitlets import Instance

from kernel_sessions.core.errors import InvalidSessionName
from kernel_sessions.core.models import DISPLAY_SUFFIX, session_name_of, spec_name

if TYPE_CHECKING:
    from kernel_sessions.core.manager import KernelSessionManager
    from kernel_sessions.core.models import SessionModel


def current_sessions(ks: KernelSessionManager | None) -> list[SessionModel]:
    """The manager's live sessions, synchronously.

    Kernelspec lookups are synchronous in jupyter_client (``KernelManager.kernel_spec``), so
    this reads the manager's in-memory table instead of awaiting ``ks.list()``.
    """
    if ks is None:
        return []
    return ks.models()


class SessionKernelSpecManager(KernelSpecManager):
    """jupyter_client's ``KernelSpecManager`` plus one ``session.<name>`` spec per session.

    Set as ``ServerApp.kernel_spec_manager_class``; the extension sets ``kernel_sessions``.
    A pseudo spec is the session's real spec (same argv, language, logo and resources) with the
    display name ``<name> (session)`` and ``metadata.kernel_sessions`` naming the session.
    """

    kernel_sessions = Instance(
        "kernel_sessions.core.manager.KernelSessionManager",
        allow_none=True,
        help="The session manager whose sessions are offered as kernelspecs (set at runtime).",
    )

    def _session_spec(self, model: SessionModel) -> KernelSpec:
        real = super().get_kernel_spec(model.kernel_name)
        metadata: dict[str, Any] = dict(real.metadata or {})
        metadata["kernel_sessions"] = {"session": model.name, "kernel_name": model.kernel_name}
        return self.kernel_spec_class(
            argv=list(real.argv),
            name=spec_name(model.name),
            display_name=model.name + DISPLAY_SUFFIX,
            language=real.language,
            env=dict(real.env or {}),
            interrupt_mode=real.interrupt_mode,
            kernel_protocol_version=real.kernel_protocol_version,
            metadata=metadata,
            resource_dir=real.resource_dir,
        )

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """A real spec, or the pseudo spec of an existing session (else ``NoSuchKernel``)."""
        try:
            name = session_name_of(kernel_name)
        except InvalidSessionName:
            raise NoSuchKernel(kernel_name) from None
        if name is None:
            return super().get_kernel_spec(kernel_name)
        model = next((m for m in current_sessions(self.kernel_sessions) if m.name == name), None)
        if model is None:
            raise NoSuchKernel(kernel_name)
        return self._session_spec(model)

    def get_all_specs(self) -> dict[str, Any]:
        """The real specs followed by one pseudo spec per named session whose real spec exists.

        Sessions a process owns by lease (auto sessions of scripts' ``connect()``) are left out:
        they would fill the launcher with ``auto-host-pid-…`` entries. Their spec still resolves
        by name (``get_kernel_spec``), so attaching to one explicitly works.
        """
        specs = super().get_all_specs()
        for model in current_sessions(self.kernel_sessions):
            if model.owner:
                continue
            try:
                spec = self._session_spec(model)
            except NoSuchKernel:
                self.log.warning("session %s: kernelspec %r is gone", model.name, model.kernel_name)
                continue
            specs[spec.name] = {"resource_dir": spec.resource_dir, "spec": spec.to_dict()}
        return specs
