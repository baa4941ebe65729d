"""The gateway's settings (defaults locked) and the Prometheus text it serves."""

from __future__ import annotations

import msgspec
import pytest

from api.gateway import GatewayConfig
from api.metrics import Metrics


def test_gateway_config_defaults_are_locked():
    assert msgspec.structs.asdict(GatewayConfig()) == {
        "network": "local", "max_connections": 10_000, "close_grace_s": 5.0, "l2book_interval_ms": 100,
        "liveness_interval_ms": 500, "recent_per_account": 100, "cloid_cache": 10_000, "send_buffer_bytes": None}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"network": "local", "surprise": 1}, GatewayConfig)
    with pytest.raises(ValueError):
        GatewayConfig(max_connections=0)


def test_metrics_render_the_text_exposition_format():
    metrics = Metrics()
    metrics.gauge("up", "Whether it is up.", lambda: 1)
    metrics.counter("rejects_total", "Rejects by code.")
    metrics.histogram("batch", "Commands per batch.", (1, 10))
    metrics.inc("rejects_total", code=-1001)
    metrics.inc("rejects_total", 2, code=-5201)
    for size in (1, 5, 50):
        metrics.observe("batch", size)
    assert metrics.render().splitlines() == [
        "# HELP up Whether it is up.", "# TYPE up gauge", "up 1",
        "# HELP rejects_total Rejects by code.", "# TYPE rejects_total counter",
        'rejects_total{code="-1001"} 1', 'rejects_total{code="-5201"} 2',
        "# HELP batch Commands per batch.", "# TYPE batch histogram",
        'batch_bucket{le="1"} 1', 'batch_bucket{le="10"} 2', 'batch_bucket{le="+Inf"} 3',
        "batch_sum 56", "batch_count 3",
    ]
    assert metrics.value("rejects_total", code=-5201) == 2
    with pytest.raises(KeyError):
        metrics.inc("undeclared_total")
