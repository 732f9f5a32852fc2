"""Warm kernel pools for jupyter_client's and jupyter_server's multi-kernel managers.

Spares are *pending start tasks* kept per kernelspec, outside ``_kernels``: that keeps them out
of ``list_kernels()`` (so out of ``/api/kernels`` and JupyterLab), out of the culler, and out of
anything that iterates the running kernels. Every ``start_kernel`` for a pooled kernelspec is
served from the pool; the working directory, environment and parent-death behaviour the caller
asked for are applied inside the kernel after hand-out (see ``kernel/fixup.py``). A kernel that
has been handed out never returns to the pool.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.multikernelmanager import (
    AsyncMultiKernelManager,
    MultiKernelManager,
)
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import Dict, Float, Integer, Unicode, observe
from traitlets.config import LoggingConfigurable

from kernel_sessions.core.errors import KernelLimitError
from kernel_sessions.core.kernel_rpc import WARM_MARK, call_code, helper_execute, startup_line
from kernel_sessions.core.watch import fresh_client

POOL_CHECK_INTERVAL = 1.0  # seconds between liveness / ttl sweeps of the spares
SPARE_READY_TIMEOUT = 60.0  # seconds a spare may take to answer kernel_info
FIXUP_TIMEOUT = 10.0  # seconds for the hand-out fix-up execute
ACQUIRE_SAMPLES = 200  # acquire latencies kept for the p50
HELPER_IDLE_TIMEOUT = 1.0  # seconds to wait for a helper's idle status after its reply
# start_kernel keywords that a hand-out can honour; anything else gets a cold start
POOLABLE_KWARGS = frozenset({"cwd", "env", "kernel_id", "independent"})

PoolObserver = Callable[[str, dict], None]


@dataclass
class _Spare:
    kernel_name: str
    kernel_id: str
    km: Any
    task: asyncio.Task
    created: float = field(default_factory=time.monotonic)
    client: Any = None
    cwd: str = ""


@dataclass
class _Stats:
    hits: int = 0
    misses: int = 0
    refills: int = 0
    replaced: int = 0
    acquire_ms: deque = field(default_factory=lambda: deque(maxlen=ACQUIRE_SAMPLES))


class PoolMixin(LoggingConfigurable):
    """Warm pool behaviour shared by the standalone and the jupyter_server manager."""

    pool_sizes = Dict(
        {"python3": 2},
        config=True,
        help="Spare kernels to keep warm per kernelspec name, e.g. {'python3': 2}.",
    )
    pool_warmup_code = Dict(
        {},
        config=True,
        help="Code run in each spare of a kernelspec before hand-out, e.g. "
        "{'python3': 'import numpy'}; it runs in a scratch namespace, so it only warms "
        "sys.modules and binds nothing the user sees.",
    )
    pool_fill_delay = Float(
        0.0, config=True, help="Seconds to wait after a hand-out before starting its replacement."
    )
    pool_ttl = Float(
        0.0, config=True, help="Recycle spares older than this many seconds (0: never)."
    )
    max_kernels = Integer(
        0,
        config=True,
        help="Most kernels at once, spares and pending starts included (0: no limit).",
    )
    pool_cwd = Unicode(
        "", config=True, help="Directory spares start in (default: the process's cwd)."
    )

    # -- lifecycle --------------------------------------------------------------------------

    def _pool_init(self) -> None:
        self._pool: dict[str, deque[_Spare]] = {}
        self._pool_stats: dict[str, _Stats] = {}
        self._pool_tasks: set[asyncio.Task] = set()
        self._discards: set[asyncio.Future] = set()
        self._handing_out = 0  # spares taken from a queue and not yet registered as kernels
        self._pool_monitor: asyncio.Task | None = None
        self._pool_started = False
        self._pool_stopping = False
        self._pool_observers: list[PoolObserver] = []

    def observe_pool(self, callback: PoolObserver) -> None:
        """Call ``callback(kind, data)`` on every hit, miss, refill and replacement."""
        self._pool_observers.append(callback)

    def _pool_event(self, kind: str, **data: Any) -> None:
        for cb in list(self._pool_observers):
            try:
                cb(kind, data)
            except Exception:  # an observer never breaks the pool
                self.log.exception("pool observer failed")

    async def start_pool(self) -> None:
        """Fill every pool and start the monitor; idempotent."""
        if self._pool_started or self._pool_stopping:
            return
        self._pool_started = True
        for name in self.pool_sizes:
            self._refill(name)
        self._pool_monitor = asyncio.create_task(self._monitor())

    async def stop_pool(self) -> None:
        """Shut every spare down; the pool does not refill afterwards."""
        self._pool_stopping = True
        tasks = [t for t in (self._pool_monitor, *self._pool_tasks) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for spare in [s for q in self._pool.values() for s in q]:
            self._retire(spare)
        self._pool.clear()
        await asyncio.gather(*list(self._discards), return_exceptions=True)

    async def shutdown_all(self, now: bool = False) -> None:
        await self.stop_pool()
        # a start that failed leaves its id in _pending_kernels, and jupyter_server's
        # shutdown_kernel raises 404 for it (stock never got here: see __bool__)
        for kid, task in list(self._pending_kernels.items()):
            if kid not in self._kernels and task.done():
                self._pending_kernels.pop(kid, None)
        await super().shutdown_all(now=now)  # type: ignore[misc]

    @observe("pool_sizes")
    def _pool_sizes_changed(self, change: dict) -> None:
        if not getattr(self, "_pool_started", False) or self._pool_stopping:
            return
        for name in set(change["old"]) | set(change["new"]):
            self._refill(name)

    # -- counting ---------------------------------------------------------------------------

    def __bool__(self) -> bool:
        """Always true: ``MultiKernelManager.__len__`` counts running kernels only, and
        ``ServerApp.cleanup_kernels`` skips ``shutdown_all`` for a falsy manager, which left the
        (independent) spares running after a server that had no kernels."""
        return True

    def _spare_count(self) -> int:
        return sum(len(q) for q in self._pool.values())

    def kernel_count(self) -> int:
        """All kernels: running, pending starts and spares."""
        pending = [k for k in self._pending_kernels if k not in self._kernels]
        # a spare being handed out is in no queue and not yet a kernel; a discarded one is
        # still a process until its shutdown ends: both count, or concurrent starts overshoot
        return (
            len(self._kernels)
            + len(pending)
            + self._spare_count()
            + self._handing_out
            + len(self._discards)
        )

    def _check_limit(self, extra: int = 1) -> None:
        if self.max_kernels and self.kernel_count() + extra > self.max_kernels:
            raise KernelLimitError(
                f"kernel limit reached: {self.max_kernels} kernels (max_kernels), "
                "spares and pending starts included"
            )

    # -- spares -----------------------------------------------------------------------------

    def _refill(self, kernel_name: str) -> None:
        """Start or stop spares until the pool of ``kernel_name`` has its target size."""
        if self._pool_stopping:
            return
        queue = self._pool.setdefault(kernel_name, deque())
        self._pool_stats.setdefault(kernel_name, _Stats())
        target = int(self.pool_sizes.get(kernel_name, 0))
        while len(queue) > target:
            spare = queue.pop()  # newest first: the oldest are the warmest
            self._retire(spare)
        while len(queue) < target:
            if self.max_kernels and self.kernel_count() >= self.max_kernels:
                break
            queue.append(self._new_spare(kernel_name))
            self._pool_stats[kernel_name].refills += 1
            self._pool_event("refill", kernel_name=kernel_name, ready=len(queue), target=target)

    def _refill_later(self, kernel_name: str) -> None:
        async def later() -> None:
            if self.pool_fill_delay > 0:
                await asyncio.sleep(self.pool_fill_delay)
            self._refill(kernel_name)

        self._spawn(later())

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._pool_tasks.add(task)
        task.add_done_callback(self._pool_tasks.discard)
        return task

    def _new_spare(self, kernel_name: str) -> _Spare:
        km, kernel_name, kernel_id = MultiKernelManager.pre_start_kernel(self, kernel_name, {})
        spare = _Spare(kernel_name, kernel_id, km, task=None)  # type: ignore[arg-type]
        spare.task = asyncio.create_task(self._launch_spare(spare))
        return spare

    async def _launch_spare(self, spare: _Spare) -> _Spare:
        cwd = spare.cwd = self.pool_cwd or getattr(self, "root_dir", "") or os.getcwd()
        await spare.km.start_kernel(
            kernel_id=spare.kernel_id, independent=True, cwd=cwd, **self._tie_at_start(spare.km)
        )
        kc = fresh_client(spare.km)
        kc.start_channels(stdin=False, hb=False, control=False)
        spare.client = kc
        await kc.wait_for_ready(timeout=SPARE_READY_TIMEOUT)
        # tied to this process until hand-out: a killed server leaves no spare behind
        await self._silent(
            kc, call_code("fixup", "apply", parent_pid=os.getpid()), SPARE_READY_TIMEOUT
        )
        code = self.pool_warmup_code.get(spare.kernel_name)
        if code:
            await self._silent(kc, call_code("fixup", "warmup", code), SPARE_READY_TIMEOUT)
        return spare

    @staticmethod
    def _tie_at_start(km: Any) -> dict[str, Any]:
        """An IPython kernel ties itself to this process while it starts (a start-up line), so
        a server killed before the spare answers leaves no kernel behind; other kernels are
        tied once they answer (``_launch_spare``)."""
        try:
            argv = km.kernel_spec.argv
        except Exception:
            return {}
        if not any("ipykernel" in str(arg) for arg in argv):
            return {}
        folder = os.path.dirname(km.connection_file) or jupyter_runtime_dir()
        line = startup_line("fixup", "watch_parent", folder, os.getpid(), True)
        extra = [f"--IPKernelApp.exec_lines={line}"]
        if os.name == "posix":
            # a spare starts independent (no JPY_PARENT_PID), so ipykernel would print its
            # console banner ("NOTE: When using the `ipython kernel` entry point…") into the
            # server log; on POSIX a parent handle of 1 silences it and starts no poller
            extra.append("--IPKernelApp.parent_handle=1")
        return {"extra_arguments": extra}

    @staticmethod
    async def _silent(kc: Any, code: str, timeout: float) -> dict:
        msg_id = helper_execute(kc, code)
        reply = await kc._async_recv_reply(msg_id, timeout=timeout)
        if reply["content"].get("status") != "ok":
            raise RuntimeError(f"kernel-side helper failed: {reply['content'].get('evalue')}")
        # the helper's idle status trails its reply: wait for it, so that it never reaches an
        # activity watcher subscribing after hand-out (jupyter_server would flip a new kernel
        # from "starting" to "idle" at a random moment, unlike a cold-started one)
        deadline = time.monotonic() + HELPER_IDLE_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await kc.get_iopub_msg(timeout=left)
            except Exception:  # queue.Empty
                break
            if (
                msg["msg_type"] == "status"
                and msg["parent_header"].get("msg_id") == msg_id
                and msg["content"].get("execution_state") == "idle"
            ):
                break
        return reply

    async def _discard(self, spare: _Spare) -> None:
        """Stop a spare that was never handed out (its client first: nothing may cancel that)."""
        if not spare.task.done():
            spare.task.cancel()
        await asyncio.gather(spare.task, return_exceptions=True)
        if spare.client is not None:
            spare.client.stop_channels()
            spare.client = None
        try:
            if spare.km.has_kernel:
                await spare.km.shutdown_kernel(now=True)
            else:
                await spare.km.cleanup_resources()
        except Exception:
            self.log.debug("spare %s: shutdown failed", spare.kernel_id, exc_info=True)

    def _retire(self, spare: _Spare) -> None:
        """Discard ``spare`` in the background; ``stop_pool`` waits for it, never cancels it."""
        task = asyncio.ensure_future(self._discard(spare))
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    async def _monitor(self) -> None:
        """Replace spares that died or outlived ``pool_ttl``."""
        while not self._pool_stopping:
            await asyncio.sleep(POOL_CHECK_INTERVAL)
            for name, queue in list(self._pool.items()):
                for spare in list(queue):
                    if not spare.task.done():
                        continue
                    expired = self.pool_ttl and time.monotonic() - spare.created > self.pool_ttl
                    failed = spare.task.cancelled() or spare.task.exception() is not None
                    alive = not failed and await spare.km.is_alive()
                    if expired or not alive:
                        if spare in queue:
                            queue.remove(spare)
                        self._pool_stats[name].replaced += 1
                        self._pool_event(
                            "replace",
                            kernel_name=name,
                            kernel_id=spare.kernel_id,
                            why="expired" if alive else "died",
                        )
                        self._retire(spare)
                        self._refill(name)

    # -- hand-out ---------------------------------------------------------------------------

    async def _take_spare(self, kernel_name: str) -> _Spare | None:
        """Oldest live spare of ``kernel_name`` (awaiting it if still starting), or None."""
        queue = self._pool.get(kernel_name)
        while queue:
            spare = queue.popleft()
            self._handing_out += 1  # the caller ends the count once the hand-out is over
            try:
                await spare.task
                if await spare.km.is_alive():
                    return spare
            except asyncio.CancelledError:
                self._retire(spare)
                self._handing_out -= 1
                raise
            except Exception:
                self.log.warning("spare %s failed to start", spare.kernel_id, exc_info=True)
            self._retire(spare)
            self._handing_out -= 1
        return None

    async def _pool_or_cold_start(self, *, kernel_name: str | None = None, **kwargs: Any) -> str:
        """Serve ``start_kernel`` from the pool when the spec is pooled, else start cold."""
        kernel_name = kernel_name or self.default_kernel_name
        requested_id = kwargs.get("kernel_id")
        poolable = (
            self.pool_sizes.get(kernel_name, 0) > 0
            and set(kwargs) <= POOLABLE_KWARGS
            and not (requested_id and requested_id in self)
            and not self._pool_stopping
        )
        if poolable:
            if not self._pool_started:
                await self.start_pool()
            t0 = time.perf_counter()
            spare = await self._take_spare(kernel_name)
            stats = self._pool_stats.setdefault(kernel_name, _Stats())
            if spare is not None:
                try:
                    kernel_id = await self._hand_out(spare, kwargs)
                except BaseException as exc:  # (retired: counted as a discard from here on)
                    self._retire(spare)
                    if not isinstance(exc, Exception):
                        raise
                    self.log.warning("hand-out of %s failed", spare.kernel_id, exc_info=True)
                else:
                    stats.hits += 1
                    stats.acquire_ms.append((time.perf_counter() - t0) * 1000)
                    self._pool_event("hit", kernel_name=kernel_name, kernel_id=kernel_id)
                    self._refill_later(kernel_name)
                    return kernel_id
                finally:
                    self._handing_out -= 1  # a kernel now, or a discard
            stats.misses += 1
            self._pool_event("miss", kernel_name=kernel_name)
            self._refill_later(kernel_name)
        self._check_limit()
        return await MultiKernelManager._async_start_kernel(self, kernel_name=kernel_name, **kwargs)

    async def _hand_out(self, spare: _Spare, kwargs: dict[str, Any]) -> str:
        km = spare.km
        kernel_id = kwargs.get("kernel_id") or spare.kernel_id
        independent = bool(kwargs.get("independent", False))
        env = {k: v for k, v in (kwargs.get("env") or {}).items() if os.environ.get(k) != v}
        cwd = kwargs.get("cwd")
        if cwd and os.path.realpath(cwd) == os.path.realpath(spare.cwd):
            cwd = None  # already there: spare the ~10 ms round trip
        parent_pid = 0 if independent else os.getpid()
        if cwd or env:
            code = call_code(
                "fixup", "apply", cwd=str(cwd) if cwd else None, env=env, parent_pid=parent_pid
            )
            await self._silent(spare.client, code, FIXUP_TIMEOUT)
        elif independent:  # only cut the tie to this process: no need to wait for it
            helper_execute(spare.client, call_code("fixup", "release_parent"))
        spare.client.stop_channels()
        spare.client = None
        # a restart must give what a cold start with these arguments would have given
        launch = {k: v for k, v in kwargs.items() if k != "kernel_id"}
        launch.setdefault("independent", False)
        km._launch_args.pop("extra_arguments", None)  # a restart must not tie it again
        km._launch_args.update(launch)
        if kernel_id != spare.kernel_id:
            km.kernel_id = kernel_id
            if km.provisioner is not None:
                km.provisioner.kernel_id = kernel_id
        if cwd and km.provisioner is not None and hasattr(km.provisioner, "cwd"):
            km.provisioner.cwd = str(cwd)  # jupyter_server's /api/resolvePath reads it
        setattr(km, WARM_MARK, True)
        self._kernels[kernel_id] = km
        return kernel_id

    # -- stats ------------------------------------------------------------------------------

    def pool_stats(self) -> dict[str, dict[str, Any]]:
        """Per kernelspec: target, ready, starting, hits, misses, hit_rate, acquire p50 ms."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(self.pool_sizes) | set(self._pool) | set(self._pool_stats)):
            queue = self._pool.get(name, deque())
            st = self._pool_stats.get(name, _Stats())
            ready = sum(
                1
                for s in queue
                if s.task.done() and not s.task.cancelled() and s.task.exception() is None
            )
            total = st.hits + st.misses
            out[name] = {
                "target": int(self.pool_sizes.get(name, 0)),
                "ready": ready,
                "starting": len(queue) - ready,
                "hits": st.hits,
                "misses": st.misses,
                "hit_rate": (st.hits / total) if total else None,
                "acquire_p50_ms": statistics.median(st.acquire_ms) if st.acquire_ms else None,
                "refills": st.refills,
                "replaced": st.replaced,
            }
        return out

    # -- letting a kernel go without stopping it ---------------------------------------------

    def release_kernel(self, kernel_id: str) -> None:
        """Forget a running kernel without stopping it (an independent kernel lives on)."""
        km = self._kernels.pop(kernel_id, None)
        if km is None:
            return
        km.stop_restarter()
        km._close_control_socket()


class PooledMultiKernelManager(PoolMixin, AsyncMultiKernelManager):
    """``AsyncMultiKernelManager`` whose ``start_kernel`` is served from warm pools."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool_init()

    async def start_kernel(self, *, kernel_name: str | None = None, **kwargs: Any) -> str:
        return await self._pool_or_cold_start(kernel_name=kernel_name, **kwargs)

    async def __aenter__(self) -> PooledMultiKernelManager:
        await self.start_pool()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown_all()


class _PooledStart(MultiKernelManager):
    """Stands in as jupyter_server's ``pinned_superclass`` so its start goes through the pool.

    ``MappingKernelManager.start_kernel`` calls ``self.pinned_superclass._async_start_kernel``
    directly, bypassing the MRO; pinning this class routes that call to the pool while keeping
    all of jupyter_server's own bookkeeping around it.
    """

    async def _async_start_kernel(self, **kwargs: Any) -> str:  # type: ignore[override]
        return await self._pool_or_cold_start(**kwargs)  # type: ignore[attr-defined]


def _mapping_base() -> type:
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    return AsyncMappingKernelManager


class PooledMappingKernelManager(PoolMixin, _mapping_base()):  # type: ignore[misc]
    """jupyter_server's ``AsyncMappingKernelManager`` with warm pools.

    Use as ``ServerApp.kernel_manager_class``: every notebook kernel of a pooled kernelspec
    comes from the pool.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool_init()
        self.pinned_superclass = _PooledStart
        try:
            from tornado.ioloop import IOLoop

            IOLoop.current().add_callback(self.start_pool)
        except RuntimeError:  # no loop yet: the first start_kernel fills the pool
            pass
