"""Prometheus metrics on the server's ``/metrics`` (jupyter_server serves the default registry).

Gauges and counters are read live from the session manager and the pool at scrape time by one
custom collector, so nothing polls in the background and nothing goes stale. The collector is
registered once per process and follows whichever manager the extension installed last (test
processes start many servers).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from kernel_sessions.core.models import DELETED, STATES

PREFIX = "kernel_sessions"
CREATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CREATE_SECONDS = Histogram(
    f"{PREFIX}_create_seconds",
    "Seconds from a session create request until its kernel answers.",
    ["kernel_name"],
    buckets=CREATE_BUCKETS,
)

_current: weakref.ref | None = None


class SessionsCollector(Collector):
    """Sessions by state, pool ready/target and hits/misses per kernelspec."""

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        ks = _current() if _current is not None else None
        return iter(self._families(ks))

    @staticmethod
    def _families(ks: Any = None) -> list[Any]:
        spec = ["kernel_name"]
        states = GaugeMetricFamily(
            f"{PREFIX}_sessions", "Named sessions by state.", labels=["state"]
        )
        ready = GaugeMetricFamily(f"{PREFIX}_pool_ready", "Warm spares ready.", labels=spec)
        target = GaugeMetricFamily(f"{PREFIX}_pool_target", "Warm spares wanted.", labels=spec)
        hits = CounterMetricFamily(
            f"{PREFIX}_pool_hits", "Kernel starts served by a spare.", labels=spec
        )
        misses = CounterMetricFamily(
            f"{PREFIX}_pool_misses",
            "Kernel starts of a pooled spec that found no spare.",
            labels=spec,
        )
        if ks is not None:
            counts = dict.fromkeys((s for s in STATES if s != DELETED), 0)
            for model in list(getattr(ks, "_sessions", {}).values()):
                counts[model.state] = counts.get(model.state, 0) + 1
            for state, n in counts.items():
                states.add_metric([state], n)
            for spec, st in ks.pool_stats().items():
                ready.add_metric([spec], st["ready"])
                target.add_metric([spec], st["target"])
                hits.add_metric([spec], st["hits"])
                misses.add_metric([spec], st["misses"])
        return [states, ready, target, hits, misses]


_COLLECTOR = SessionsCollector()
_registered = False


def install(ks: Any) -> None:
    """Report on ``ks`` from now on (registering the collector on first use)."""
    global _current, _registered
    _current = weakref.ref(ks)
    if not _registered:
        REGISTRY.register(_COLLECTOR)
        _registered = True


def uninstall(ks: Any) -> None:
    """Stop reporting on ``ks`` (if it is still the current one)."""
    global _current
    if _current is not None and _current() is ks:
        _current = None
