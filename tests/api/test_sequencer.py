"""The sequencer against a real journal in a temporary directory, with real fsyncs: acks only
after the fsync, group commit, order, listeners, restart, disk failures, the stamp clock and
journaled nonces."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pytest

from api.auth import NonceStore
from api.nonce_log import LOG_NAME, NonceLog
from api.sequencer import Ack, Batch, Sequencer, SequencerUnavailable
from engine.codes import EventKind, Reject
from engine.commands import Deposit, OracleUpdate, Place, Tick, to_records
from engine.engine import Engine
from engine.journal import FileOps, Journal, JournaledEngine
from engine.spec import EngineConfig, MarketSpec
from oracle.session import Session
from oracle.update import OracleUpdate as ServiceUpdate

NVDA = MarketSpec(market_id=0, symbol="NVDA", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                  max_order_lots=10_000_000)
TSLA = MarketSpec(market_id=1, symbol="TSLA", tick_size=Decimal("0.01"), lot_size=Decimal("0.001"),
                  max_order_lots=10_000_000)
SPECS = [NVDA, TSLA]
CONFIG = EngineConfig(max_orders=1 << 12, max_accounts=64, risk=True, modes=True)
T0 = 1_780_000_000_000_000_000


@pytest.fixture(scope="module", autouse=True)
def warm_kernels() -> None:
    Engine(SPECS, CONFIG).apply(SETUP + [Tick(ts_ns=T0)])


SETUP = [
    OracleUpdate(market=0, price=Decimal("180"), ts_ns=T0),
    OracleUpdate(market=1, price=Decimal("250"), ts_ns=T0),
    Deposit(account=1, amount=Decimal("100000")),
    Deposit(account=2, amount=Decimal("100000")),
]


def order(i: int, account: int = 1) -> Place:
    side = "buy" if i % 2 == 0 else "sell"
    price = Decimal("179.00") - Decimal(i % 50) / 100 if side == "buy" else Decimal("181.00") + Decimal(i % 50) / 100
    return Place(market=0, account=account, side=side, size=Decimal("0.100"), price=price)


class Clock:
    """A clock that returns the given instants in turn, then keeps the last one."""

    def __init__(self, *instants: int):
        self.instants = list(instants)

    def __call__(self) -> int:
        return self.instants.pop(0) if len(self.instants) > 1 else self.instants[0]


def open_sequencer(directory, *, fileops=None, clock=None, nonce_log=None, max_batch=4096) -> Sequencer:
    journaled = JournaledEngine.open(str(directory), SPECS, CONFIG, fileops=fileops)
    return Sequencer(journaled, clock_ns=clock or (lambda: T0), tick_interval_s=None, max_batch=max_batch,
                     nonce_log=nonce_log)


def on_disk_last_seq(directory) -> int:
    with Journal.open(str(directory), read_only=True) as journal:
        return journal.last_seq


def test_an_ack_is_on_disk_when_it_returns(tmp_path):
    async def main():
        seq = open_sequencer(tmp_path)
        await seq.start()
        acks = [await seq.submit(cmd) for cmd in SETUP]
        for i in range(5):
            ack = await seq.submit(order(i))
            assert on_disk_last_seq(tmp_path) >= ack.seq  # another reader sees it on disk
            acks.append(ack)
        await seq.stop()
        return acks

    acks = asyncio.run(main())
    assert [a.seq for a in acks] == list(range(1, 10))
    assert all(isinstance(a, Ack) for a in acks)
    accepted = acks[-1].events[acks[-1].events["kind"] == EventKind.ACCEPTED]
    assert len(accepted) == 1


def test_concurrent_submits_share_few_group_commits_in_order(tmp_path):
    batches: list[Batch] = []

    async def main():
        seq = open_sequencer(tmp_path)
        seq.add_listener(batches.append)
        await seq.start()
        await seq.submit_many(SETUP)
        acks = await asyncio.gather(*(seq.submit(order(i)) for i in range(300)))
        hash_live = seq.engine.state_hash()
        await seq.stop()
        return acks, hash_live, seq.batches

    acks, hash_live, n_batches = asyncio.run(main())
    assert [a.seq for a in acks] == list(range(len(SETUP) + 1, len(SETUP) + 301))  # submit order
    assert n_batches <= 5  # one for the setup, then a handful of group commits for 300 commands
    # one frame, one fsync per group commit: the journal holds as many frames as batches
    with Journal.open(str(tmp_path), read_only=True) as journal:
        assert sum(1 for _ in journal.batches()) == n_batches
    oids = [int(a.events[a.events["kind"] == EventKind.ACCEPTED]["oid"][0]) for a in acks]
    assert oids == sorted(oids)
    assert hash_live


def test_listeners_see_every_event_once_and_acks_carry_their_own(tmp_path):
    seen: list[Batch] = []

    async def main():
        seq = open_sequencer(tmp_path)
        seq.add_listener(seen.append)
        await seq.start()
        acks = list(await seq.submit_many(SETUP))
        acks += await asyncio.gather(*(seq.submit(order(i, account=1 + i % 2)) for i in range(60)))
        acks.append(await seq.submit(Place(market=0, account=2, side="sell", size=Decimal("1"),
                                           price=Decimal("178"), tif="ioc")))  # fills against bids
        await seq.stop()
        return acks

    acks = asyncio.run(main())
    assert [b.first_seq for b in seen] == sorted(b.first_seq for b in seen)
    assert [b.first_seq + len(b.commands) for b in seen[:-1]] == [b.first_seq for b in seen[1:]]
    listener_events = np.concatenate([b.events for b in seen])
    ack_events = np.concatenate([a.events for a in acks])
    assert len(listener_events) == len(ack_events) and (listener_events == ack_events).all()  # once, in order
    assert (acks[-1].events["kind"] == EventKind.FILL).sum() >= 1


def test_a_restart_resumes_from_the_journal(tmp_path):
    async def first():
        seq = open_sequencer(tmp_path)
        await seq.start()
        await seq.submit_many(SETUP)
        await asyncio.gather(*(seq.submit(order(i)) for i in range(40)))
        await seq.snapshot()
        await asyncio.gather(*(seq.submit(order(i)) for i in range(40, 50)))
        out = seq.seq, seq.engine.state_hash()
        await seq.stop()
        return out

    async def second():
        seq = open_sequencer(tmp_path)
        assert seq.journaled.recovered is not None and seq.journaled.recovered.snapshot_seq == 44
        out = seq.seq, seq.engine.state_hash()
        await seq.start()
        ack = await seq.submit(order(50))
        await seq.stop()
        return out, ack.seq

    before = asyncio.run(first())
    after, next_seq = asyncio.run(second())
    assert after == before
    assert next_seq == before[0] + 1


class FailingFsync(FileOps):
    """Real files; after ``ok`` successful fsyncs every fsync fails with EIO."""

    def __init__(self, ok: int, error: int = errno.EIO):
        self.ok, self.error = ok, error

    def fsync(self, fd) -> None:
        if self.ok <= 0:
            raise OSError(self.error, os.strerror(self.error))
        self.ok -= 1
        super().fsync(fd)


@pytest.mark.parametrize("error, words", [(errno.EIO, "I/O error during fsync"), (errno.ENOSPC, "disk full")])
def test_an_fsync_failure_degrades_and_acknowledges_nothing(tmp_path, error, words):
    async def main():
        ops = FailingFsync(ok=1_000, error=error)
        seq = open_sequencer(tmp_path, fileops=ops)
        await seq.start()
        await seq.submit_many(SETUP)
        hash_ok, seq_ok = seq.engine.state_hash(), seq.seq
        ops.ok = 0
        results = await asyncio.gather(*(seq.submit(order(i)) for i in range(5)), return_exceptions=True)
        assert all(isinstance(r, SequencerUnavailable) for r in results)
        assert not seq.healthy and words in seq.degraded_reason
        assert seq.engine.state_hash() == hash_ok and seq.seq == seq_ok  # nothing applied
        with pytest.raises(SequencerUnavailable, match="accepts no actions"):
            await seq.submit(order(9))
        await seq.stop()
        return seq_ok, str(results[0])

    seq_ok, message = asyncio.run(main())
    assert words in message
    recovered = JournaledEngine.open(str(tmp_path), SPECS, CONFIG)
    assert recovered.seq >= seq_ok  # acknowledged commands are there (an unacked frame may be too)
    recovered.close()


def test_stamps_never_go_backwards_when_the_host_clock_steps_back(tmp_path):
    clock = Clock(T0 + 5_000, T0 + 9_000, T0 + 1_000, T0 + 2_000, T0 + 12_000)

    async def main():
        seq = open_sequencer(tmp_path, clock=clock)
        await seq.start()
        acks = [await seq.submit(cmd) for cmd in SETUP]
        acks.append(await seq.submit(Tick(ts_ns=0)))
        await seq.stop()
        return acks

    async def after_restart():  # the host clock is now behind the journal's last stamp
        seq = open_sequencer(tmp_path, clock=Clock(T0))
        await seq.start()
        ack = await seq.submit(Tick(ts_ns=0))
        await seq.stop()
        return ack

    acks = asyncio.run(main())
    assert [a.ts_ns for a in acks] == [T0 + 5_000, T0 + 9_000, T0 + 9_000, T0 + 9_000, T0 + 12_000]
    acks.append(asyncio.run(after_restart()))
    assert acks[-1].ts_ns == T0 + 12_000
    with Journal.open(str(tmp_path), read_only=True) as journal:
        frames = list(journal.batches())
        assert [f.ts_ns for f in frames] == [a.ts_ns for a in acks]
        assert [int(Journal.records_of(f)["ts"][0]) for f in frames] == [a.ts_ns for a in acks]


def test_a_nonce_is_journaled_and_refused_after_a_restart(tmp_path):
    async def main():
        seq = open_sequencer(tmp_path / "journal", nonce_log=NonceLog.open(str(tmp_path)))
        await seq.start()
        await seq.submit_many(SETUP, nonce=("k1", 1_000))
        await seq.submit(order(0), nonce=("k1", 1_001))
        await seq.record_nonce("k2", 1_002)  # a logon: no engine command
        await seq.stop()

    asyncio.run(main())
    store = NonceStore.load(NonceLog.open(str(tmp_path)).state())
    now_ms = 2_000
    assert store.check("k1", 1_000, now_ms) is not None
    assert store.check("k1", 1_001, now_ms) is not None
    assert store.check("k2", 1_002, now_ms) is not None
    assert store.check("k1", 1_003, now_ms) is None


def test_the_nonce_log_compacts_and_keeps_what_consume_would(tmp_path):
    reference = NonceStore()
    log = NonceLog.open(str(tmp_path))
    for n in range(1, 131):
        reference.consume("k", 10_000 + n, 10_000 + n)
        log.append([("k", 10_000 + n)])
        if n == 60:
            log.compact()
    log.close()
    assert NonceLog.open(str(tmp_path)).state() == reference.export()


def test_a_torn_nonce_line_is_truncated(tmp_path):
    log = NonceLog.open(str(tmp_path))
    log.append([("k", 5)])
    log.close()
    with open(tmp_path / LOG_NAME, "ab") as f:
        f.write(b'[["k",6]]\t0000')  # a crash mid-write
    reopened = NonceLog.open(str(tmp_path))
    assert reopened.torn_bytes > 0
    assert [e.kept for e in reopened.state().keys] == [[5]]


def test_a_nonce_log_fsync_failure_degrades_before_the_journal(tmp_path):
    async def main():
        ops = FailingFsync(ok=0)
        seq = open_sequencer(tmp_path / "journal", nonce_log=NonceLog.open(str(tmp_path), fileops=ops))
        await seq.start()
        with pytest.raises(SequencerUnavailable, match="nonce log failed: I/O error during fsync"):
            await seq.submit(SETUP[0], nonce=("k", 1))
        assert not seq.healthy
        await seq.stop()

    asyncio.run(main())
    assert on_disk_last_seq(tmp_path / "journal") == 0  # the command never reached the journal


def test_oracle_updates_and_timer_ticks_enter_the_engine(tmp_path):
    seen: list[Batch] = []

    async def main():
        journaled = JournaledEngine.open(str(tmp_path), SPECS, CONFIG)
        seq = Sequencer(journaled, clock_ns=lambda: T0, tick_interval_s=0.01)
        seq.add_listener(seen.append)
        await seq.start()
        seq.submit_oracle(ServiceUpdate(market=1, ts_ns=T0, price_e9=250_123_456_789, conf_e9=1, n_sources=3,
                                        session=Session.REGULAR))
        for _ in range(200):
            await asyncio.sleep(0.01)
            kinds = np.concatenate([b.commands["kind"] for b in seen]) if seen else []
            if len(seen) >= 3:
                break
        oracle = seq.engine.oracle(1)
        await seq.stop()
        return oracle, kinds

    oracle, kinds = asyncio.run(main())
    assert oracle == 25012  # ticks of 0.01, the nearest
    assert len(kinds) >= 3


def test_bad_records_are_refused_before_queueing(tmp_path):
    async def main():
        seq = open_sequencer(tmp_path)
        await seq.start()
        with pytest.raises(TypeError):
            await seq.submit(np.zeros(1, dtype=np.int64))
        ack = await seq.submit(to_records([Place(market=5, account=1, side="buy", size=Decimal("1"),
                                                 price=Decimal("1"))], SPECS))
        await seq.stop()
        with pytest.raises(SequencerUnavailable, match="not running"):
            await seq.submit(order(1))
        return ack

    ack = asyncio.run(main())
    assert ack.events["kind"][0] == EventKind.REJECTED
    assert ack.events["code"][0] == Reject.UNKNOWN_MARKET


def test_kill_9_loses_no_acknowledged_command_or_nonce(tmp_path):
    driver = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sequencer_crash_driver.py")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, driver, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    acked: list[tuple[int, int]] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        while len(acked) < 150:
            line = proc.stdout.readline()
            assert line, "the driver died"
            acked.append(tuple(int(x) for x in line.split()[1:]))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
    acked += [tuple(int(x) for x in line.split()[1:]) for line in rest.splitlines() if line.startswith("ack ")]
    recovered = JournaledEngine.open(str(tmp_path / "journal"), SPECS, CONFIG)
    assert recovered.seq >= max(s for s, _ in acked)
    recovered.close()
    store = NonceStore.load(NonceLog.open(str(tmp_path)).state())
    assert all(store.check("crash", n, n) is not None for _, n in acked)  # every acked nonce is used up


def test_a_failing_listener_does_not_stop_the_engine_or_the_others(tmp_path):
    seen: list[Batch] = []

    def broken(batch: Batch) -> None:
        raise RuntimeError("a bug in a listener")

    async def main():
        seq = open_sequencer(tmp_path)
        seq.add_listener(broken)
        seq.add_listener(seen.append)
        await seq.start()
        acks = await seq.submit_many(SETUP)
        ack = await seq.submit(order(0))
        healthy = seq.healthy
        await seq.stop()
        return acks, ack, healthy

    acks, ack, healthy = asyncio.run(main())
    assert healthy and ack.seq == len(SETUP) + 1 and len(seen) == 2
