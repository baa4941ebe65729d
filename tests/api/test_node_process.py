"""``afterhours node`` as a real process: it prints its addresses, answers /v1/health over a
socket, exits cleanly on SIGTERM, and a restart resumes the journal where it stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from api.config import NodeConfig
from engine.commands import Deposit, OracleUpdate, Tick
from engine.engine import Engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTUP_S = 240  # a cold numba cache compiles the engine first


@pytest.fixture(scope="module", autouse=True)
def warm_kernels() -> None:
    """Compile (or load) the engine here first, so the node processes load the kernels from
    numba's on-disk cache instead of each compiling them."""
    cfg = NodeConfig(max_orders=4096, max_accounts=64)
    engine = Engine(cfg.market_specs(), cfg.engine_config())
    engine.apply([Deposit(account=1, amount=1), OracleUpdate(market=0, price=180, ts_ns=1), Tick(ts_ns=2)])
    engine.state_hash()


def start_node(data_dir: str, config: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "node", "--port", "0", "--data-dir", data_dir, "--config", config,
         "--no-bots", "--no-oracle"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(proc: subprocess.Popen, pattern: str, timeout_s: float) -> tuple[re.Match, list[str]]:
    deadline = time.monotonic() + timeout_s
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found, lines
    proc.kill()
    pytest.fail(f"the node did not print {pattern!r}; it printed:\n{''.join(lines)}{proc.stdout.read()}")


def stop(proc: subprocess.Popen) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out.splitlines()


def test_the_node_process_serves_health_stops_on_sigterm_and_resumes(tmp_path):
    data_dir = str(tmp_path / "data")
    config = tmp_path / "node.toml"
    config.write_text('tick_interval_s = 0.2\nmax_orders = 4096\nmax_accounts = 64\n')

    proc = start_node(data_dir, str(config))
    found, _ = read_until(proc, r"REST\s+(http://127\.0\.0\.1:(\d+)/v1)", STARTUP_S)
    with urllib.request.urlopen(found.group(1) + "/health", timeout=10) as resp:
        health = json.loads(resp.read())
    assert resp.status == 200 and health["status"] == "ok" and health["seq"] >= 1
    stopped = [line for line in stop(proc) if "stopped at seq" in line]
    assert stopped, "no final line"
    seq, state_hash = re.search(r"stopped at seq (\d+), state hash (\w+)", stopped[0]).groups()
    assert int(seq) >= health["seq"]

    proc = start_node(data_dir, str(config))
    found, lines = read_until(proc, r"REST\s+(http://127\.0\.0\.1:(\d+)/v1)", STARTUP_S)
    assert f"resumed from the journal at seq {seq}, state hash {state_hash}" in "".join(lines)
    with urllib.request.urlopen(found.group(1) + "/health", timeout=10) as resp:
        assert json.loads(resp.read())["seq"] >= int(seq)
    stop(proc)
