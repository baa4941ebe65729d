"""Prometheus metrics for the node, in the text exposition format (version 0.0.4).

Layout
------
``Metrics`` holds counters and histograms declared up front (name, help, label names) and
gauges read from callables when scraped; ``render()`` is the body of ``GET /metrics``.
``NODE_METRICS`` declares what the gateway records: engine lag, batch sizes, journal fsync
time, connections, messages in and out, rejects by code, conflations, slow consumers.

Invariants
----------
* Output is deterministic: families in declaration order, series in label order.
* Recording never allocates a new family: an undeclared name raises ``KeyError`` (a bug).

Known limitations
-----------------
* One process, no multiprocess aggregation; histograms use fixed buckets.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable

Labels = tuple[tuple[str, str], ...]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class _Histogram:
    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        at = bisect.bisect_left(self.buckets, value)
        if at < len(self.counts):
            self.counts[at] += 1
        self.total += value
        self.count += 1


class Metrics:
    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, tuple[float, ...] | None]] = {}  # name -> (type, help, buckets)
        self._series: dict[str, dict[Labels, float | _Histogram]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def counter(self, name: str, help_text: str) -> None:
        self._families[name] = ("counter", help_text, None)
        self._series[name] = {}

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self._families[name] = ("histogram", help_text, buckets)
        self._series[name] = {}

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._families[name] = ("gauge", help_text, None)
        self._gauges[name] = read

    def inc(self, name: str, value: float = 1, **labels: object) -> None:
        series = self._series[name]
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        series[key] = series.get(key, 0) + value  # type: ignore[operator]

    def observe(self, name: str, value: float, **labels: object) -> None:
        series = self._series[name]
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        hist = series.get(key)
        if hist is None:
            hist = series[key] = _Histogram(self._families[name][2] or LATENCY_BUCKETS)
        hist.observe(value)  # type: ignore[union-attr]

    def value(self, name: str, **labels: object) -> float:
        """A counter's current value (0 if never recorded); for tests and health."""
        key = tuple(sorted((k, str(v)) for k, v in labels.items()))
        got = self._series[name].get(key, 0)
        return got.count if isinstance(got, _Histogram) else got

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, _) in self._families.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            if kind == "gauge":
                lines.append(f"{name} {_num(self._gauges[name]())}")
                continue
            for labels, value in sorted(self._series[name].items()):
                if isinstance(value, _Histogram):
                    lines += _render_histogram(name, labels, value)
                else:
                    lines.append(f"{name}{_labels(labels)} {_num(value)}")
        return "\n".join(lines) + "\n"


def _render_histogram(name: str, labels: Labels, hist: _Histogram) -> list[str]:
    out, running = [], 0
    for bound, count in zip(hist.buckets, hist.counts):
        running += count
        out.append(f"{name}_bucket{_labels(labels + (('le', _num(bound)),))} {running}")
    out.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {hist.count}")
    out.append(f"{name}_sum{_labels(labels)} {_num(hist.total)}")
    out.append(f"{name}_count{_labels(labels)} {hist.count}")
    return out


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels)
    return "{" + body + "}"


def _num(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def node_metrics(connections: Callable[[], float], engine_lag_s: Callable[[], float]) -> Metrics:
    """The gateway's metrics: gauges read from the given callables, the rest recorded."""
    m = Metrics()
    m.gauge("afterhours_connections", "Open websocket connections.", connections)
    m.gauge("afterhours_engine_lag_seconds", "Wall time since the last batch the engine applied.", engine_lag_s)
    m.histogram("afterhours_batch_commands", "Commands per engine batch.", SIZE_BUCKETS)
    m.histogram("afterhours_journal_fsync_seconds", "Time to journal (append and fsync) one batch.", LATENCY_BUCKETS)
    m.histogram("afterhours_post_seconds", "Time from a post's receipt to its answer.", LATENCY_BUCKETS)
    m.counter("afterhours_connections_opened_total", "Websocket connections accepted.")
    m.counter("afterhours_connections_closed_total", "Websocket connections closed, by reason.")
    m.counter("afterhours_messages_in_total", "Websocket messages received, by method.")
    m.counter("afterhours_messages_out_total", "Websocket frames written to clients.")
    m.counter("afterhours_published_total", "Channel messages published (encoded once), by channel.")
    m.counter("afterhours_rejects_total", "Errors and rejected actions sent to clients, by code.")
    m.counter("afterhours_slow_consumers_total", "Connections closed as slow consumers (1013).")
    m.counter("afterhours_conflations_total", "Times a full outbound queue was conflated to book snapshots.")
    m.counter("afterhours_http_requests_total", "REST requests, by route and status.")
    return m
