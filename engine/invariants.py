"""Whole-state consistency checks of the numba engine's arrays, for tests.

Raises ``AssertionError`` naming the first broken invariant. Slow (Python loops over the
live orders), so tests run it on small engines after every command.
"""

from __future__ import annotations

import numpy as np

from engine.book import C_FREE_TOP, C_HEAP_N, C_LIVE


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
