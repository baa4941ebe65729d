"""The gateway benchmark: the node's websocket gateway under load from separate processes
over loopback, beside a bare aiohttp + msgspec echo server as the ceiling.

Run ``python -m benchmarks.gateway`` (``--quick`` for a short run, ``--help`` for options).

Method
------
1. The server runs in its own process (``serve``): either the echo server (decode a request
   with ``api.protocol``, answer a post with one ``resting``/``cancelled`` status per
   action, no engine) or a real node (``node_server``: sequencer, journal with fsync, engine,
   gateway), listening on 127.0.0.1. The node's numba compile happens before the
   measurements and is excluded.
2. Load generators (``benchmarks/gateway_load.py``) run in ``--procs`` other processes,
   each with its own event loop; every connection is open and logged on before a common
   start time, and only what completes inside the window of ``--seconds`` counts.
3. Requests alternate a post-only sell far above the market with the cancel of that order
   by ``cloid``, so the book does not grow; batches carry 25 places and the 25 cancels of
   the previous batch's places.
4. Sections: ``echo`` (round trips/s against the echo server), ``roundtrip`` (one order per
   post, each connection waiting for its answer before the next), ``batch`` (50 actions per
   post, ``--depth`` posts in flight per connection; actions/s counts statuses), ``rate``
   (ack latency p50/p99 at a fixed total rate, open loop, from the scheduled send time),
   ``fanout`` (100 ``l2Delta`` subscribers while one driver changes the book; frames/s
   summed over subscribers; delivery latency from the push's ``time``), ``fanout_stuck``
   (the same plus one subscriber that never reads).

Known limitations
-----------------
* Generators and server share the machine's cores; on a small machine the generators are
  part of what is measured. ``procs`` and the CPU count are printed with the figures.
* Delivery latency has millisecond resolution (the push's ``time`` field).
* The node is run with rate limits raised for the load (documented in ``node_server``);
  the default per-connection limits would cap every figure at 50 requests/s per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from typing import Any, Sequence

import msgspec
from aiohttp import WSMsgType, web

from api import protocol as p
from benchmarks.gateway_load import generate
from engine.codes import MAX_BATCH_ACTIONS

TARGETS = {"roundtrip_per_s": 30_000, "batch_actions_per_s": 200_000, "fanout_frames_per_s": 150_000,
           "stuck_p99_change_pct": 10.0}
MARKET = "NVDA"
FAR_PRICE = "1000"  # for the echo server; the node's is derived from its market's mark


# ------------------------------------------------------------------------------- servers


def echo_app() -> web.Application:
    """The ceiling: a websocket that decodes each request and answers it, nothing else."""
    encode = msgspec.json.Encoder().encode
    oids = iter(range(1, 1 << 62))

    def status(action: p.BatchItem) -> p.ActionStatus:
        if isinstance(action, p.Place):
            return p.Resting(next(oids), action.cloid)
        return p.Cancelled(action.oid or 0, action.cloid)

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=p.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        seq = 0
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            req = p.decode_request(msg.data)
            if isinstance(req, p.Post):
                seq += 1
                items = req.action.actions if isinstance(req.action, p.Batch) else [req.action]
                answer: Any = p.PostPush(p.PostResult(req.id, p.PostOk(seq, [status(a) for a in items])))
            elif isinstance(req, p.Logon):
                answer = p.LogonPush(p.LogonOk(1, req.keyId, ["read", "trade"]))
            elif isinstance(req, (p.Subscribe, p.Unsubscribe)):
                answer = p.SubscriptionResponsePush(p.SubscriptionAck(req.__struct_config__.tag, req.subscription))
            else:
                answer = p.PongPush(p.Pong(int(time.time() * 1000)))
            await ws.send_str(encode(answer).decode())
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    return app


BENCH_ACCOUNT = 1
BENCH_LIMITS = dict(messages_per_s=10_000_000, messages_burst=10_000_000, orders_per_s=10_000_000,
                    orders_burst=10_000_000, cancels_per_s=10_000_000, cancels_burst=10_000_000,
                    connects_per_ip_per_s=100_000, connects_per_ip_burst=100_000)


async def node_server(workdir: str) -> tuple[web.Application, dict]:
    """A real node's gateway app over a journaled, fsyncing sequencer, and what the
    generators need (signer, network, market, a price above the book inside the band).

    One market (NVDA, tick 0.01, lot 0.001, oracle 100.00), margin checks on, one account
    with $100M. The per-connection and per-key rate limits are raised (``BENCH_LIMITS``):
    at the defaults (50 messages/s a connection) the figures would measure the limiter.
    Raises ``NotImplementedError`` while the gateway is absent from the tree."""
    try:
        from api.gateway import GatewayConfig, create_app
        from api.nonce_log import NonceLog
        from api.ratelimit import Limits
        from api.sequencer import Sequencer
    except ImportError as exc:
        raise NotImplementedError(f"no gateway in this tree ({exc})") from None
    from decimal import Decimal

    from api.auth import KeyStore, NonceStore
    from engine.commands import Deposit, OracleUpdate
    from engine.engine import Engine
    from engine.journal import JournaledEngine
    from engine.spec import EngineConfig, MarketSpec

    spec = MarketSpec(market_id=0, symbol=MARKET, tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                      max_order_lots=10_000_000, ladder_levels=4096)
    config = EngineConfig(max_orders=1 << 18, max_accounts=16, risk=True, modes=True)
    setup = [OracleUpdate(market=0, price=Decimal("100.00")), Deposit(account=BENCH_ACCOUNT, amount=Decimal(10**8))]
    await asyncio.to_thread(lambda: Engine([spec], config).apply(setup))  # compile (or load) the kernels first
    journaled = await asyncio.to_thread(JournaledEngine.open, os.path.join(workdir, "journal"), [spec], config)
    nonce_log = NonceLog.open(workdir)
    sequencer = Sequencer(journaled, clock_ns=time.time_ns, tick_interval_s=None, nonce_log=nonce_log)
    await sequencer.start()
    await sequencer.submit_many(setup)
    keys = KeyStore()
    signer = keys.create_ed25519(BENCH_ACCOUNT, ("read", "trade"), key_id="bench")
    app = create_app(sequencer, keys, NonceStore.load(nonce_log.state()), [spec], Limits(**BENCH_LIMITS),
                     config=GatewayConfig(network="local"))

    async def stop_sequencer(_app: web.Application) -> None:
        await sequencer.stop()

    app.on_cleanup.append(stop_sequencer)
    return app, {"signer": signer.export(), "network": "local", "market": MARKET, "price": "109.00", "size": "1"}


def serve(kind: str, conn, workdir: str) -> None:
    """Server process entry: start, report the port (or the error), run until told to stop."""

    async def main() -> None:
        try:
            app, info = (echo_app(), {}) if kind == "echo" else await node_server(workdir)
        except Exception as exc:
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
            return
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        conn.send({"url": f"ws://127.0.0.1:{port}/ws", **info})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await runner.cleanup()

    asyncio.run(main())


# ------------------------------------------------------------------------------- running


class Server:
    def __init__(self, ctx, kind: str, workdir: str):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(kind, child, workdir), daemon=True)
        self.proc.start()
        if not self.conn.poll(600):
            raise RuntimeError(f"the {kind} server did not start")
        self.info = self.conn.recv()
        if "error" in self.info:
            self.proc.join(5)
            raise NotImplementedError(self.info["error"])

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


_last_nonce = 0
_next_conn = 0  # connections are numbered across the run, so no two orders share a cloid


def nonce_block(n: int) -> int:
    """The first of ``n`` logon nonces no one has used: increasing across the whole run (the
    node refuses a nonce below one it evicted) and 5 s behind the clock: inside its window
    (30 s back) even when the generators take long to start on a loaded machine."""
    global _last_nonce
    base = max(int(time.time() * 1000) - 5_000, _last_nonce + 1)
    _last_nonce = base + n
    return base


def run_tasks(ctx, tasks: list[dict], seconds: float) -> list[dict]:
    """Start one generator process per task; once all are connected, give them a common
    start time; collect their results."""
    pipes, procs = [], []
    for task in tasks:
        global _next_conn
        n = task.get("connections", 1)
        task = {**task, "nonce_base": nonce_block(n), "conn_base": _next_conn}
        _next_conn += n
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=generate, args=({**task, "seconds": seconds}, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    for pipe in pipes:
        if not pipe.poll(120):
            raise RuntimeError("a generator did not get ready")
        ready = pipe.recv()
        if ready != "ready":
            raise RuntimeError(ready.get("error", ready))
    start = time.time() + 0.2
    for pipe in pipes:
        pipe.send(start)
    results = []
    for pipe, proc in zip(pipes, procs):
        results.append(pipe.recv() if pipe.poll(seconds + 60) else {"error": "no result"})
        proc.join(5)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("; ".join(errors))
    return results


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50), "p99": pick(0.99), "n": len(ordered)}


def merged(results: list[dict], seconds: float) -> dict:
    lat = [x for r in results for x in r.get("lat_us", ())]
    keys = ("answers", "actions", "refused", "rejected", "frames", "closed", "sent", "unanswered")
    out = {k: sum(r.get(k, 0) for r in results) for k in keys}
    out["per_s"] = out["answers"] / seconds
    out["actions_per_s"] = out["actions"] / seconds
    out["frames_per_s"] = out["frames"] / seconds
    out["latency_us"] = percentiles(lat)
    refusal = next((r["refusal"] for r in results if "refusal" in r), None)
    if refusal:
        out["first_refusal"] = refusal
    return out


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts) if total // parts or i < total % parts]


def closed_loop(ctx, base: dict, args, *, batch: int, depth: int) -> dict:
    tasks = [{**base, "kind": "roundtrip", "connections": n, "batch": batch, "depth": depth}
             for n in split(args.connections, args.procs)]
    return merged(run_tasks(ctx, tasks, args.seconds), args.seconds)


def open_loop(ctx, base: dict, args, rate: int) -> dict:
    parts = split(args.connections, args.procs)
    tasks = [{**base, "kind": "rate", "connections": n, "rate": rate / len(parts)} for n in parts]
    out = merged(run_tasks(ctx, tasks, args.seconds), args.seconds)
    out["rate"] = rate
    return out


def fan_out(ctx, base: dict, args, stuck: bool) -> dict:
    sub = {"type": "l2Delta", "market": base["market"]}
    tasks = [{**base, "kind": "subscribe", "connections": n, "subscription": sub, "signer": None}
             for n in split(args.subscribers, args.procs)]
    tasks.append({**base, "kind": "drive", "connections": 1, "depth": args.drive_depth})
    if stuck:
        tasks.append({**base, "kind": "stuck", "connections": 1, "subscription": sub, "signer": None})
    results = run_tasks(ctx, tasks, args.seconds)
    subs = merged([r for r in results if r["kind"] == "subscribe"], args.seconds)
    subs["driver_per_s"] = merged([r for r in results if r["kind"] == "drive"], args.seconds)["per_s"]
    subs["stuck_closed"] = sum(r.get("closed", 0) for r in results if r["kind"] == "stuck")
    return subs


def run(args: argparse.Namespace) -> dict:
    ctx = mp.get_context("spawn")
    workdir = tempfile.mkdtemp(prefix="gateway-bench-")
    result: dict = {"environment": environment(args), "seconds": args.seconds}
    echo = Server(ctx, "echo", workdir)
    try:
        base = {"url": echo.info["url"], "market": MARKET, "price": FAR_PRICE, "size": "1"}
        result["echo"] = closed_loop(ctx, base, args, batch=1, depth=1)
    finally:
        echo.stop()
    try:
        node = Server(ctx, "node", workdir)
    except NotImplementedError as exc:
        result["node_skipped"] = str(exc)
        return result
    try:
        base = {"url": node.info["url"], "market": node.info["market"], "price": node.info["price"],
                "size": node.info["size"], "signer": node.info["signer"], "network": node.info["network"]}
        result["roundtrip"] = closed_loop(ctx, base, args, batch=1, depth=1)
        result["batch"] = closed_loop(ctx, base, args, batch=MAX_BATCH_ACTIONS, depth=args.depth)
        result["rate"] = [open_loop(ctx, base, args, rate) for rate in args.rates]
        result["fanout"] = fan_out(ctx, base, args, stuck=False)
        result["fanout_stuck"] = fan_out(ctx, base, args, stuck=True)
    finally:
        node.stop()
    result["targets"] = targets(result)
    return result


def targets(r: dict) -> dict:
    values = {
        "roundtrip_per_s": r["roundtrip"]["per_s"],
        "batch_actions_per_s": r["batch"]["actions_per_s"],
        "fanout_frames_per_s": r["fanout"]["frames_per_s"],
    }
    base_p99, stuck_p99 = r["fanout"]["latency_us"]["p99"], r["fanout_stuck"]["latency_us"]["p99"]
    if base_p99 and stuck_p99 is not None:
        values["stuck_p99_change_pct"] = 100.0 * (stuck_p99 - base_p99) / base_p99
    out = {}
    for name, value in values.items():
        want = TARGETS[name]
        met = abs(value) < want if name == "stuck_p99_change_pct" else value >= want
        out[name] = {"value": value, "target": want, "met": met}
    return out


def environment(args) -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "procs": args.procs, "connections": args.connections, "subscribers": args.subscribers}


# ------------------------------------------------------------------------------- output


def _lat(r: dict) -> str:
    lat = r["latency_us"]
    return "-" if lat["p50"] is None else f"p50 {lat['p50']:,.0f} us, p99 {lat['p99']:,.0f} us"


def table(r: dict) -> str:
    env = r["environment"]
    lines = [f"gateway benchmark: {r['seconds']} s per section, {env['procs']} generator processes, "
             f"{env['connections']} connections, {env['cpus']} CPUs (shared by server and generators)", ""]
    lines.append(f"  echo server (ceiling)      {r['echo']['per_s']:>12,.0f} round trips/s   {_lat(r['echo'])}")
    if "node_skipped" in r:
        lines.append(f"  node sections skipped: {r['node_skipped']}")
        return "\n".join(lines)
    rt, b = r["roundtrip"], r["batch"]
    refused = {name: r[name]["refused"] for name in ("roundtrip", "batch") if r[name]["refused"]}
    if refused:
        lines.append(f"  refused posts (counted in the figures): {refused}")
    lines.append(f"  single-order round trips   {rt['per_s']:>12,.0f} /s              {_lat(rt)}")
    lines.append(f"  batched order actions      {b['actions_per_s']:>12,.0f} actions/s       {_lat(b)} per post")
    for x in r["rate"]:
        lines.append(f"  ack latency at {x['rate']:>6,}/s   answered {x['answers']:>8,} (refused {x['refused']:,}), "
                     f"unanswered {x['unanswered']:,}   {_lat(x)}")
    for name in ("fanout", "fanout_stuck"):
        f = r[name]
        extra = f", stuck client closed: {f['stuck_closed']}" if name == "fanout_stuck" else ""
        lines.append(f"  {name:<26} {f['frames_per_s']:>12,.0f} frames/s  delivery {_lat(f)}; "
                     f"driver {f['driver_per_s']:,.0f} posts/s{extra}")
    lines += ["", "targets"]
    for name, t in r["targets"].items():
        lines.append(f"  {name:<24} {t['value']:>14,.1f}  target {t['target']:>10,}  {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=None, help="window per section (default 5; 1 with --quick)")
    parser.add_argument("--procs", type=int, default=None, help="generator processes (default 2)")
    parser.add_argument("--connections", type=int, default=None, help="connections for round trips (default 64)")
    parser.add_argument("--subscribers", type=int, default=100, help="fan-out subscribers (default 100)")
    parser.add_argument("--depth", type=int, default=4, help="batched posts in flight per connection (default 4)")
    parser.add_argument("--drive-depth", type=int, default=16, help="fan-out driver's posts in flight (default 16)")
    parser.add_argument("--rates", type=int, nargs="+", default=[1_000, 10_000], help="fixed rates for ack latency")
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    args.procs = args.procs or 2
    args.connections = args.connections or (16 if args.quick else 64)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gateway", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = resolve(parser.parse_args(argv))
    result = run(args)
    print(json.dumps(result, sort_keys=True) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
