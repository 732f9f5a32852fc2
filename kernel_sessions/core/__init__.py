"""The session core: names and models, errors, the durable registry, the session manager and
its state machine, liveness (death, restarts, heartbeats) and expiry, re-adoption, per-kernel
watchers, calls into the kernel-side code, variables and cell execution.

Nothing here imports tornado or jupyter_server, nor any layer above (pool, checkpoint,
server): the manager gets its kernel manager and its checkpoint service through traitlets
``Type`` traits, the way Jupyter applications are configured.
"""
