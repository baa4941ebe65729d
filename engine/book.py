"""Order book storage and its primitive operations, as numba kernels over preallocated arrays.

Layout
------
* ``orders`` (``ORDER_DTYPE``): one pool of slots shared by every market. A slot is free,
  holds an in-flight taker, or holds a resting order (``live`` = 1 for the last two).
  ``oid = (order_seq << SLOT_BITS) | slot``, so finding an order by id is a mask and a compare.
* ``free``: a LIFO stack of free slots; ``ctr[C_FREE_TOP]`` entries are valid.
* Per market ``m`` and side ``s`` a dense ladder of ``L = mkt[m]["levels"]`` price levels for
  the window ``[base, base + L)``: level index ``i`` is price ``base + i``. The flat arrays
  ``lvl_qty`` (total lots), ``lvl_head`` and ``lvl_tail`` (FIFO ends, -1 = empty) hold level
  ``i`` at ``mkt[m]["lvl_off"] + s * L + i``; orders link through ``next``/``prev``.
* Occupancy: one bit per level in ``bits`` (``L/64`` words per side) and one bit per
  non-zero word in ``summ``; finding the next occupied level is two word scans.
  ``best[m, s]`` caches the best level index (-1 = side empty).
* Each account's resting orders form a list through ``anext``/``aprev`` in ascending oid.
* Good-till-time orders sit in a binary min-heap ``heap`` keyed by ``(expires_at, oid)``;
  ``heap_pos`` is each order's index there (-1 = not in the heap).

Invariants (checked by ``Engine.check_invariants``)
----------
* A level's ``lvl_qty`` is the sum of its orders' ``remaining`` (> 0 each); its bit is set
  iff it is non-empty; ``best`` is the highest occupied bid / lowest occupied ask.
* The book is not crossed at rest; orders in a level are in arrival (``prio``) order.
* Every slot is either on the free stack or live, never both, never twice.

Known limitations
-----------------
* A client-order-id lookup walks the account's order list (O(orders of the account)).
* Re-centring the window costs O(L) and cancels resting orders that fall outside it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SLOT_BITS = 22
SLOT_MASK = (1 << SLOT_BITS) - 1

ORDER_DTYPE = np.dtype(
    [
        ("oid", np.int64),
        ("price", np.int64),
        ("remaining", np.int64),
        ("expires_at", np.int64),
        ("prio", np.int64),
        ("cloid0", np.uint64),
        ("cloid1", np.uint64),
        ("cloid2", np.uint64),
        ("cloid3", np.uint64),
        ("next", np.int32),
        ("prev", np.int32),
        ("anext", np.int32),
        ("aprev", np.int32),
        ("heap_pos", np.int32),
        ("account", np.int32),
        ("market", np.int32),
        ("side", np.uint8),
        ("tif", np.uint8),
        ("stp", np.uint8),
        ("live", np.uint8),
        ("flags", np.uint8),  # OrderFlag bits (REDUCE_ONLY)
    ],
    align=True,
)

CERT_EPOCHS = 8  # margin-certificate epochs alive at once (engine.certificates)

MARKET_DTYPE = np.dtype(
    [
        ("mark", np.int64),
        ("base", np.int64),
        ("levels", np.int64),
        ("lvl_off", np.int64),
        ("bit_off", np.int64),
        ("nwords", np.int64),
        ("sum_off", np.int64),
        ("nsum", np.int64),
        ("atl", np.int64),
        ("min_notional", np.int64),
        ("max_order_lots", np.int64),
        ("band_ppm", np.int64),
        ("slip_ppm", np.int64),
        # risk and prices (docs/risk.md); zero while EngineConfig.risk is off
        ("oracle", np.int64),
        ("max_price", np.int64),
        ("max_pos", np.int64),
        ("maker_ppm", np.int64),
        ("taker_ppm", np.int64),
        ("tier_lo", np.int64, (4,)),
        ("tier_lev", np.int64, (4,)),
        ("imp_ntl", np.int64),
        ("fund_ppm", np.int64),
        ("last_trade", np.int64),
        ("ema_fp", np.int64),
        ("ema_weight", np.int64),
        ("ema_ts", np.int64),
        ("prem_sum", np.int64),
        ("prem_n", np.int64),
        ("next_sample", np.int64),
        ("next_funding", np.int64),
        ("rate_ppb", np.int64),
        ("due", np.int64),
        ("liq_partial", np.int64),
        ("liq_fee_ppm", np.int64),
        ("oi", np.int64),
        ("oi_cap", np.int64),  # atoms of open interest at the mark; 0: no cap
        # closed-hours pricing (docs/modes.md); used when EngineConfig.modes is on
        ("mode", np.int64),  # MarketMode
        ("ext", np.int64),  # the last external price (ticks)
        ("ext_ts", np.int64),  # when it arrived; 0: never
        ("fresh_ts", np.int64),  # start of the current unbroken run of external prices; 0: none
        ("ref", np.int64),  # the discovery band's reference
        ("band_lo", np.int64),
        ("band_hi", np.int64),
        ("res_up", np.int64),  # re-anchors upward since going dark
        ("res_dn", np.int64),
        ("int_ts", np.int64),  # the last internal-pricing step
        ("halt", np.int64),  # 0 running, 1 halted by an admin, 2 by the oracle's breaker
        ("clean", np.int64),  # clean oracle updates since the breaker tripped
        ("pipo_ref", np.int64),  # pre-IPO reference price (ticks); 0: not pre-IPO
        ("pipo_fp", np.int64),  # 8 h EMA of the minutely mark (engine.pricing value form)
        ("pipo_w", np.int64),
        ("pipo_ts", np.int64),
        ("next_min", np.int64),  # the next minutely pre-IPO sample
        ("disc_ppb", np.int64),  # discovery band half-width B (ppb of the reference)
        ("dark_lev", np.int64),  # max leverage for exposure while dark
        ("fund_dark", np.int64),  # FundingDark
        ("ep_mark", np.int64, (CERT_EPOCHS,)),  # the mark at each certificate epoch (engine.certificates)
    ],
    align=True,
)

# ctr: the engine's scalar counters
C_FREE_TOP = 0
C_ORDER_SEQ = 1
C_PRIO_SEQ = 2
C_HEAP_N = 3
C_LIVE = 4
C_BATCH_LEFT = 5
C_RISK = 6  # 1 when EngineConfig.risk is on
C_DEPOSITS = 7  # atoms deposited, ever
C_WITHDRAWALS = 8  # atoms withdrawn, ever
C_FEES = 9  # fee account balance (atoms)
C_NPOS = 10  # open positions (non-zero sizes), all accounts and markets
C_CLOCK = 11  # the last Tick's timestamp
C_MODES = 12  # 1 when EngineConfig.modes is on
C_DMS = 13  # accounts with a dead-man deadline (acc["dms_at"] != 0)
C_RO = 14  # resting reduce-only orders, all accounts and markets
C_RO_DUE = 15  # 1 + the market where a fill closed or flipped a position with reduce-only orders; 0: none
C_NTRIG = 16  # live trigger orders
C_TRIG_SEQ = 17  # trigger ids issued
C_ISO = 18  # (account, market) pairs in isolated margin mode (pos["iso"] == 1)
C_EPOCH = 19  # the newest margin-certificate epoch's serial (engine.certificates); 0: none yet
C_EP_MOVE = 24  # C_EP_MOVE + slot: that epoch's largest mark move so far (ppb, rounded up)
N_COUNTERS = C_EP_MOVE + CERT_EPOCHS

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)


def _debruijn_table() -> np.ndarray:
    table = np.zeros(64, dtype=np.int64)
    for i in range(64):
        table[((1 << i) * 0x03F79D71B4CB0A89 & 0xFFFFFFFFFFFFFFFF) >> 58] = i
    return table


_CTZ_TABLE = _debruijn_table()


@njit(cache=True, _nrt=False)
def ctz(x):
    """Index of the lowest set bit of a non-zero uint64."""
    low = x & (np.uint64(0) - x)
    return _CTZ_TABLE[np.int64((low * _DEBRUIJN) >> np.uint64(58))]


@njit(cache=True, _nrt=False)
def msb(x):
    """Index of the highest set bit of a non-zero uint64."""
    n = 0
    if x >> np.uint64(32):
        x >>= np.uint64(32)
        n += 32
    if x >> np.uint64(16):
        x >>= np.uint64(16)
        n += 16
    if x >> np.uint64(8):
        x >>= np.uint64(8)
        n += 8
    if x >> np.uint64(4):
        x >>= np.uint64(4)
        n += 4
    if x >> np.uint64(2):
        x >>= np.uint64(2)
        n += 2
    if x >> np.uint64(1):
        n += 1
    return n


# ---------------------------------------------------------------------------- occupancy


@njit(cache=True, _nrt=False, inline="always")
def bit_set(mkt, bits, summ, m, side, idx):
    w = idx >> 6
    wi = mkt[m]["bit_off"] + side * mkt[m]["nwords"] + w
    bits[wi] |= _ONE << np.uint64(idx & 63)
    si = mkt[m]["sum_off"] + side * mkt[m]["nsum"] + (w >> 6)
    summ[si] |= _ONE << np.uint64(w & 63)


@njit(cache=True, _nrt=False, inline="always")
def bit_clear(mkt, bits, summ, m, side, idx):
    w = idx >> 6
    wi = mkt[m]["bit_off"] + side * mkt[m]["nwords"] + w
    bits[wi] &= ~(_ONE << np.uint64(idx & 63))
    if bits[wi] == 0:
        si = mkt[m]["sum_off"] + side * mkt[m]["nsum"] + (w >> 6)
        summ[si] &= ~(_ONE << np.uint64(w & 63))


@njit(cache=True, _nrt=False)
def find_up(mkt, bits, summ, m, side, idx):
    """Lowest occupied level index >= idx, or -1."""
    levels = mkt[m]["levels"]
    if idx >= levels:
        return -1
    if idx < 0:
        idx = 0
    woff = mkt[m]["bit_off"] + side * mkt[m]["nwords"]
    soff = mkt[m]["sum_off"] + side * mkt[m]["nsum"]
    w = idx >> 6
    x = bits[woff + w] & (_ALL << np.uint64(idx & 63))
    if x:
        return (w << 6) + ctz(x)
    w += 1
    if w >= mkt[m]["nwords"]:
        return -1
    sw = w >> 6
    y = summ[soff + sw] & (_ALL << np.uint64(w & 63))
    nsum = mkt[m]["nsum"]
    while True:
        if y:
            w2 = (sw << 6) + ctz(y)
            return (w2 << 6) + ctz(bits[woff + w2])
        sw += 1
        if sw >= nsum:
            return -1
        y = summ[soff + sw]


@njit(cache=True, _nrt=False)
def find_down(mkt, bits, summ, m, side, idx):
    """Highest occupied level index <= idx, or -1."""
    if idx < 0:
        return -1
    levels = mkt[m]["levels"]
    if idx >= levels:
        idx = levels - 1
    woff = mkt[m]["bit_off"] + side * mkt[m]["nwords"]
    soff = mkt[m]["sum_off"] + side * mkt[m]["nsum"]
    w = idx >> 6
    x = bits[woff + w] & (_ALL >> np.uint64(63 - (idx & 63)))
    if x:
        return (w << 6) + msb(x)
    w -= 1
    if w < 0:
        return -1
    sw = w >> 6
    y = summ[soff + sw] & (_ALL >> np.uint64(63 - (w & 63)))
    while True:
        if y:
            w2 = (sw << 6) + msb(y)
            return (w2 << 6) + msb(bits[woff + w2])
        sw -= 1
        if sw < 0:
            return -1
        y = summ[soff + sw]


@njit(cache=True, _nrt=False)
def next_level(mkt, bits, summ, m, side, idx):
    """The next worse occupied level after ``idx`` on ``side`` (bids go down, asks up)."""
    if side == 0:
        return find_down(mkt, bits, summ, m, side, idx - 1)
    return find_up(mkt, bits, summ, m, side, idx + 1)


@njit(cache=True, _nrt=False)
def rebuild_occupancy(mkt, lvl_head, bits, summ, best, m, side):
    """Recompute one side's bitmaps and best level from the level heads (O(L))."""
    levels = mkt[m]["levels"]
    off = mkt[m]["lvl_off"] + side * levels
    woff = mkt[m]["bit_off"] + side * mkt[m]["nwords"]
    soff = mkt[m]["sum_off"] + side * mkt[m]["nsum"]
    bits[woff:woff + mkt[m]["nwords"]] = 0
    summ[soff:soff + mkt[m]["nsum"]] = 0
    best[m, side] = -1
    for idx in range(levels):
        if lvl_head[off + idx] != -1:
            bit_set(mkt, bits, summ, m, side, idx)
            if side == 1 and best[m, side] < 0:
                best[m, side] = idx
            if side == 0:
                best[m, side] = idx


# ---------------------------------------------------------------------------- levels


@njit(cache=True, _nrt=False, inline="always")
def level_link(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot):
    """Append a slot at the tail of its price level (it gets the worst priority there)."""
    m = orders[slot]["market"]
    side = orders[slot]["side"]
    idx = orders[slot]["price"] - mkt[m]["base"]
    li = mkt[m]["lvl_off"] + side * mkt[m]["levels"] + idx
    tail = lvl_tail[li]
    orders[slot]["prev"] = tail
    orders[slot]["next"] = -1
    if tail == -1:
        lvl_head[li] = slot
        bit_set(mkt, bits, summ, m, side, idx)
        b = best[m, side]
        if b < 0 or (side == 0 and idx > b) or (side == 1 and idx < b):
            best[m, side] = idx
    else:
        orders[tail]["next"] = slot
    lvl_tail[li] = slot
    lvl_qty[li] += orders[slot]["remaining"]
    count[m, side] += 1


@njit(cache=True, _nrt=False, inline="always")
def level_unlink(orders, mkt, lvl_qty, lvl_head, lvl_tail, bits, summ, best, count, slot):
    """Take a slot out of its level's FIFO, keeping the level total and occupancy right."""
    m = orders[slot]["market"]
    side = orders[slot]["side"]
    idx = orders[slot]["price"] - mkt[m]["base"]
    li = mkt[m]["lvl_off"] + side * mkt[m]["levels"] + idx
    prev = orders[slot]["prev"]
    nxt = orders[slot]["next"]
    if prev == -1:
        lvl_head[li] = nxt
    else:
        orders[prev]["next"] = nxt
    if nxt == -1:
        lvl_tail[li] = prev
    else:
        orders[nxt]["prev"] = prev
    lvl_qty[li] -= orders[slot]["remaining"]
    count[m, side] -= 1
    if lvl_head[li] == -1:
        bit_clear(mkt, bits, summ, m, side, idx)
        if best[m, side] == idx:
            best[m, side] = next_level(mkt, bits, summ, m, side, idx)


# ---------------------------------------------------------------------------- accounts


@njit(cache=True, _nrt=False, inline="always")
def acct_link(orders, acct_head, acct_tail, acct_count, slot):
    a = orders[slot]["account"]
    tail = acct_tail[a]
    orders[slot]["aprev"] = tail
    orders[slot]["anext"] = -1
    if tail == -1:
        acct_head[a] = slot
    else:
        orders[tail]["anext"] = slot
    acct_tail[a] = slot
    acct_count[a] += 1


@njit(cache=True, _nrt=False, inline="always")
def acct_unlink(orders, acct_head, acct_tail, acct_count, slot):
    a = orders[slot]["account"]
    prev = orders[slot]["aprev"]
    nxt = orders[slot]["anext"]
    if prev == -1:
        acct_head[a] = nxt
    else:
        orders[prev]["anext"] = nxt
    if nxt == -1:
        acct_tail[a] = prev
    else:
        orders[nxt]["aprev"] = prev
    acct_count[a] -= 1


@njit(cache=True, _nrt=False)
def find_cloid(orders, acct_head, account, c0, c1, c2, c3):
    """The slot of the account's open order with this client order id, or -1."""
    s = acct_head[account]
    while s != -1:
        if (
            orders[s]["cloid0"] == c0
            and orders[s]["cloid1"] == c1
            and orders[s]["cloid2"] == c2
            and orders[s]["cloid3"] == c3
        ):
            return s
        s = orders[s]["anext"]
    return -1


# ---------------------------------------------------------------------------- expiry heap


@njit(cache=True, _nrt=False)
def _heap_less(orders, a, b):
    ea = orders[a]["expires_at"]
    eb = orders[b]["expires_at"]
    return ea < eb or (ea == eb and orders[a]["oid"] < orders[b]["oid"])


@njit(cache=True, _nrt=False)
def _heap_place(orders, heap, i, slot):
    heap[i] = slot
    orders[slot]["heap_pos"] = i


@njit(cache=True, _nrt=False)
def _sift_up(orders, heap, i):
    slot = heap[i]
    while i > 0:
        parent = (i - 1) >> 1
        if not _heap_less(orders, slot, heap[parent]):
            break
        _heap_place(orders, heap, i, heap[parent])
        i = parent
    _heap_place(orders, heap, i, slot)


@njit(cache=True, _nrt=False)
def _sift_down(orders, heap, n, i):
    slot = heap[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and _heap_less(orders, heap[child + 1], heap[child]):
            child += 1
        if not _heap_less(orders, heap[child], slot):
            break
        _heap_place(orders, heap, i, heap[child])
        i = child
    _heap_place(orders, heap, i, slot)


@njit(cache=True, _nrt=False)
def heap_push(orders, heap, ctr, slot):
    n = ctr[C_HEAP_N]
    heap[n] = slot
    orders[slot]["heap_pos"] = n
    ctr[C_HEAP_N] = n + 1
    _sift_up(orders, heap, n)


@njit(cache=True, _nrt=False)
def heap_remove(orders, heap, ctr, slot):
    i = orders[slot]["heap_pos"]
    n = ctr[C_HEAP_N] - 1
    ctr[C_HEAP_N] = n
    orders[slot]["heap_pos"] = -1
    if i == n:
        return
    last = heap[n]
    _heap_place(orders, heap, i, last)
    if i > 0 and _heap_less(orders, last, heap[(i - 1) >> 1]):
        _sift_up(orders, heap, i)
    else:
        _sift_down(orders, heap, n, i)


# ---------------------------------------------------------------------------- slots


@njit(cache=True, _nrt=False, inline="always")
def slot_alloc(free, ctr):
    """Pop a free slot, or -1 when the pool is exhausted."""
    top = ctr[C_FREE_TOP]
    if top == 0:
        return -1
    ctr[C_FREE_TOP] = top - 1
    return free[top - 1]


@njit(cache=True, _nrt=False, inline="always")
def slot_release(orders, free, ctr, slot):
    orders[slot]["live"] = 0
    top = ctr[C_FREE_TOP]
    free[top] = slot
    ctr[C_FREE_TOP] = top + 1
    ctr[C_LIVE] -= 1
