"""The one route table of the REST API (the catch-all last)."""

from __future__ import annotations

from kernel_sessions.server.handlers.checkpoints import (
    CheckpointHandler,
    CheckpointsHandler,
    RestoreHandler,
)
from kernel_sessions.server.handlers.leases import LeaseHandler
from kernel_sessions.server.handlers.registry import RegistryHandler
from kernel_sessions.server.handlers.sessions import (
    API_ROOT,
    ConnectionHandler,
    ExecuteHandler,
    InterruptHandler,
    NotFoundHandler,
    PoolHandler,
    RestartHandler,
    SessionHandler,
    SessionsHandler,
    SpecHandler,
    WakeHandler,
)
from kernel_sessions.server.handlers.variables import VariableHandler, VariablesHandler

SESSION = rf"/{API_ROOT}/sessions/(?P<name>[^/]+)"
CHECKPOINT = rf"{SESSION}/checkpoints/(?P<checkpoint_id>[^/]+)"

default_handlers: list[tuple[str, type]] = [
    (rf"/{API_ROOT}/spec.yaml", SpecHandler),
    (rf"/{API_ROOT}/sessions", SessionsHandler),
    (SESSION, SessionHandler),
    (rf"{SESSION}/restart", RestartHandler),
    (rf"{SESSION}/interrupt", InterruptHandler),
    (rf"{SESSION}/wake", WakeHandler),
    (rf"{SESSION}/execute", ExecuteHandler),
    (rf"{SESSION}/connection", ConnectionHandler),
    (rf"{SESSION}/variables", VariablesHandler),
    (rf"{SESSION}/variables/(?P<var>[^/]+)", VariableHandler),
    (rf"{SESSION}/checkpoints", CheckpointsHandler),
    (CHECKPOINT, CheckpointHandler),
    (rf"{CHECKPOINT}/restore", RestoreHandler),
    (rf"{SESSION}/lease", LeaseHandler),
    (rf"/{API_ROOT}/pool", PoolHandler),
    (rf"/{API_ROOT}/registry", RegistryHandler),
    (rf"/{API_ROOT}(?:/(?P<rest>.*))?", NotFoundHandler),
]
