"""Whole-state consistency checks of the numba engine's arrays, for tests.

Raises ``AssertionError`` naming the first broken invariant. Slow (Python loops over the
live orders), so tests run it on small engines after every command.

Risk state (engine/risk.py): conservation to the atom ``Σ collateral (insurance fund
included) + Σ isolated margin + fees − Σ cost = deposits − withdrawals``; only open
isolated positions hold margin, and ``C_ISO`` counts the isolated pairs (never the fund's);
per market long lots = short lots = ``oi``; each position's order exposure (``bid_*``/``ask_*``) equals the sums over its
account's resting orders; open-position counts agree; the insurance fund never rests an order
(its IOCs are filled or cancelled within their tick). Sums are taken in Python integers,
so a wrapped int64 shows up as a broken equation rather than a silent one. Dead-man
deadlines are positive and ``C_DMS`` counts them; every resting reduce-only order's account
holds a position on the other side of it, and ``ro_n``/``C_RO`` count them. Every live margin
certificate is a lower bound of what the scan would certify now (``engine.certificates``).
"""

from __future__ import annotations

import numpy as np

from engine.book import (
    C_DEPOSITS,
    C_DMS,
    C_FEES,
    C_FREE_TOP,
    C_ISO,
    C_HEAP_N,
    C_LIVE,
    C_NPOS,
    C_RISK,
    C_RO,
    C_RO_DUE,
    C_WITHDRAWALS,
)
from engine.certificates import check_certificates
from engine.codes import OrderFlag


def _bits_of(occupied: np.ndarray) -> np.ndarray:
    """Pack a boolean level array into the engine's uint64 words (bit i of word w = level 64w+i)."""
    words = occupied.reshape(-1, 64).astype(np.uint64)
    return (words << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def _check_side(engine, m: int, side: int, seen: set[int]) -> None:
    rec = engine.mkt[m]
    levels = int(rec["levels"])
    off = int(rec["lvl_off"]) + side * levels
    heads = engine.lvl_head[off : off + levels]
    occupied = heads != -1
    words = _bits_of(occupied)
    woff = int(rec["bit_off"]) + side * int(rec["nwords"])
    assert np.array_equal(engine.bits[woff : woff + int(rec["nwords"])], words), f"bitmap wrong m={m} side={side}"
    summary = _bits_of(np.pad(words != 0, (0, int(rec["nsum"]) * 64 - len(words))))
    soff = int(rec["sum_off"]) + side * int(rec["nsum"])
    assert np.array_equal(engine.summ[soff : soff + int(rec["nsum"])], summary), f"summary bitmap wrong m={m}"
    idx = np.flatnonzero(occupied)
    expect_best = -1 if len(idx) == 0 else int(idx[-1] if side == 0 else idx[0])
    assert engine.best[m, side] == expect_best, f"best[{m},{side}]={engine.best[m, side]} expected {expect_best}"
    assert np.all(engine.lvl_qty[off : off + levels][~occupied] == 0), "an empty level has a non-zero total"
    n_orders = 0
    for i in idx:
        total = 0
        prev = -1
        last_prio = -1
        s = int(heads[i])
        while s != -1:
            o = engine.orders[s]
            assert s not in seen, f"slot {s} is in two places"
            seen.add(s)
            assert o["live"] == 1, f"slot {s} is in a level but not live"
            assert int(o["prev"]) == prev, f"slot {s} has a broken prev link"
            assert int(o["market"]) == m and int(o["side"]) == side, f"slot {s} is in the wrong book"
            assert int(o["price"]) == int(rec["base"]) + int(i), f"slot {s} is at the wrong level"
            assert o["remaining"] > 0, f"slot {s} rests with remaining {o['remaining']}"
            assert o["prio"] > last_prio, f"level {i} is not in arrival order"
            last_prio = int(o["prio"])
            total += int(o["remaining"])
            prev = s
            s = int(o["next"])
            n_orders += 1
        assert int(engine.lvl_tail[off + i]) == prev, f"level {i} tail is wrong"
        assert int(engine.lvl_qty[off + i]) == total, f"level {i} total != sum of its orders"
    assert int(engine.count[m, side]) == n_orders, f"count[{m},{side}] wrong"


def _check_accounts(engine, resting: set[int]) -> None:
    listed: set[int] = set()
    for a in np.flatnonzero(engine.acct_head != -1):
        s = int(engine.acct_head[a])
        prev, last_oid, n = -1, -1, 0
        while s != -1:
            o = engine.orders[s]
            assert s in resting and int(o["account"]) == a, f"account {a} lists slot {s} wrongly"
            assert int(o["aprev"]) == prev, f"account {a} list has a broken link"
            assert int(o["oid"]) > last_oid, f"account {a} list is not in oid order"
            listed.add(s)
            last_oid, prev, n = int(o["oid"]), s, n + 1
            s = int(o["anext"])
        assert int(engine.acct_tail[a]) == prev and int(engine.acct_count[a]) == n, f"account {a} tail/count wrong"
    assert listed == resting, "account lists and the book disagree"
    assert int(engine.acct_count.sum()) == len(resting), "account counts disagree with the book"


def _check_heap(engine, resting: set[int]) -> None:
    n = int(engine.ctr[C_HEAP_N])
    heap = [int(s) for s in engine.heap[:n]]
    key = lambda s: (int(engine.orders[s]["expires_at"]), int(engine.orders[s]["oid"]))  # noqa: E731
    for i, s in enumerate(heap):
        assert int(engine.orders[s]["heap_pos"]) == i, "heap position index wrong"
        if i:
            assert key(heap[(i - 1) // 2]) <= key(s), "heap order violated"
    expect = {s for s in resting if engine.orders[s]["expires_at"] != 0}
    assert set(heap) == expect and len(heap) == len(expect), "expiry heap disagrees with the book"


def _check_risk(engine, resting: set[int]) -> None:
    acc, pos, mkt, ctr = engine.acc, engine.pos, engine.mkt, engine.ctr
    nm = len(engine.specs)
    assert not np.any(mkt["due"]), "a market is left marked due for settlement"
    bad = int(check_certificates(acc, pos, mkt, ctr))
    assert bad == -1, (f"margin certificate of account {bad} is not a lower bound" if bad >= 0
                       else f"a certificate epoch's largest move is below market {-2 - bad}'s move")
    if ctr[C_RISK] == 0:
        assert int(ctr[C_DEPOSITS]) == int(ctr[C_WITHDRAWALS]) == int(ctr[C_FEES]) == int(ctr[C_NPOS]) == 0, \
            "risk counters moved while risk is off"
        assert not np.any(acc["collateral"]) and not np.any(pos["size"]), "balances or positions while risk is off"
        assert not np.any(pos["bid_lots"]) and not np.any(pos["ask_lots"]), "order exposure while risk is off"
        assert not np.any(mkt["oi"]), "open interest while risk is off"
        assert not np.any(acc["dms_at"]) and int(ctr[C_DMS]) == 0, "a dead-man deadline while risk is off"
        assert int(ctr[C_RO]) == 0 and not np.any(engine.orders["flags"][list(resting)]), \
            "a reduce-only order while risk is off"
        return
    assert len(acc) == len(engine.acct_head) + 1, "the insurance fund row is missing"
    fund = len(acc) - 1
    assert all(int(engine.orders[s]["account"]) != fund for s in resting), "the insurance fund has a resting order"
    collateral = sum(int(x) for x in acc["collateral"])
    margin = sum(int(x) for x in pos["margin"].reshape(-1))
    cost = sum(int(x) for x in pos["cost"].reshape(-1))
    fees, deposits, withdrawals = int(ctr[C_FEES]), int(ctr[C_DEPOSITS]), int(ctr[C_WITHDRAWALS])
    assert collateral + margin + fees - cost == deposits - withdrawals, (
        f"conservation: collateral {collateral} + margin {margin} + fees {fees} - cost {cost} != "
        f"deposits {deposits} - withdrawals {withdrawals}")
    iso = pos["iso"]
    assert np.all((iso == 0) | (iso == 1)), "a margin mode outside {cross, isolated}"
    assert not np.any(iso[-1]), "the insurance fund has an isolated position"
    assert int(ctr[C_ISO]) == int(iso.sum()), "the isolated-pair counter is wrong"
    assert not np.any(pos["margin"][(iso == 0) | (pos["size"] == 0)]), "margin held by a cross or flat position"
    for m in range(nm):
        sizes = [int(x) for x in pos["size"][:, m]]
        longs = sum(s for s in sizes if s > 0)
        shorts = -sum(s for s in sizes if s < 0)
        assert longs == shorts == int(mkt[m]["oi"]), f"market {m}: long {longs}, short {shorts}, oi {mkt[m]['oi']}"
    fields = ("bid_lots", "bid_ntl", "ask_lots", "ask_ntl")
    expect: dict[tuple[int, int], list[int]] = {}
    for s in resting:
        o = engine.orders[s]
        a, m, side = int(o["account"]), int(o["market"]), int(o["side"])
        lots = int(o["remaining"])
        sums = expect.setdefault((a, m), [0, 0, 0, 0])
        sums[2 * side] += lots
        sums[2 * side + 1] += lots * int(o["price"]) * int(mkt[m]["atl"])
    with_orders = np.zeros(pos.shape, dtype=bool)
    for (a, m), sums in expect.items():
        with_orders[a, m] = True
        have = [int(pos[a, m][f]) for f in fields]
        assert have == sums, f"account {a} market {m}: order exposure {have}, its resting orders give {sums}"
    for f in fields:
        assert not np.any(pos[f][~with_orders]), f"{f} is non-zero for a position without resting orders"
    _check_reduce_only(engine, resting)
    _check_deadlines(engine)
    open_positions = (pos["size"] != 0).sum(axis=1)
    assert np.array_equal(acc["npos"], open_positions), "an account's npos differs from its open positions"
    assert int(ctr[C_NPOS]) == int(open_positions.sum()), "the open-position counter is wrong"
    assert not np.any(pos["cost"][pos["size"] == 0]), "a cost basis without a position"


def _check_reduce_only(engine, resting: set[int]) -> None:
    pos = engine.pos
    counts = np.zeros(pos.shape, dtype=np.int64)
    for s in resting:
        o = engine.orders[s]
        if not int(o["flags"]) & OrderFlag.REDUCE_ONLY:
            continue
        a, m, side = int(o["account"]), int(o["market"]), int(o["side"])
        counts[a, m] += 1
        size = int(pos[a, m]["size"])
        assert (size < 0) if side == 0 else (size > 0), f"reduce-only slot {s} has no position to reduce"
    assert np.array_equal(pos["ro_n"], counts), "a position's reduce-only order count is wrong"
    assert int(engine.ctr[C_RO]) == int(counts.sum()), "the reduce-only counter is wrong"
    assert int(engine.ctr[C_RO_DUE]) == 0, "a reduce-only sweep was left pending"


def _check_deadlines(engine) -> None:
    deadlines = engine.acc["dms_at"]
    assert not np.any(deadlines < 0), "a negative dead-man deadline"
    assert deadlines[-1] == 0, "the insurance fund has a dead-man deadline"
    assert int(engine.ctr[C_DMS]) == int((deadlines != 0).sum()), "the dead-man counter is wrong"


def check_engine(engine) -> None:
    seen: set[int] = set()
    for m in range(len(engine.specs)):
        for side in (0, 1):
            _check_side(engine, m, side, seen)
        bb, ba = engine.best[m]
        if bb >= 0 and ba >= 0:
            assert bb < ba, f"market {m} is crossed at rest"
    top = int(engine.ctr[C_FREE_TOP])
    free = engine.free[:top]
    assert len(set(free.tolist())) == top, "a slot is twice on the free stack"
    assert not np.any(engine.orders["live"][free]), "a free slot is live"
    live = set(np.flatnonzero(engine.orders["live"]).tolist())
    assert len(live) + top == len(engine.orders), "slots are lost: neither free nor live"
    assert int(engine.ctr[C_LIVE]) == len(live), "live counter wrong"
    assert live == seen, "a live slot is not in the book (or the reverse)"
    _check_accounts(engine, seen)
    _check_heap(engine, seen)
    _check_risk(engine, seen)
