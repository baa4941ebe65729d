"""Stable numeric codes: reject reasons, cancel reasons, and the enums of the command and
event records.

Reject codes are grouped by the stage that produces them (mechanics.md §1):

* 1xxx validation — the command itself is malformed or out of bounds
* 2xxx risk — margin and exposure (the risk engine)
* 3xxx matching — the book cannot do what was asked
* 4xxx market state — the market is not in a state that accepts the command
* 5xxx auth and limits — the gateway

A number, once published, never changes meaning. Every reject has one sentence in
``MESSAGES`` written for a bot author. Kernels read these as plain module-level integers.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Reject(IntEnum):
    PRICE_OFF_TICK = 1001
    SIZE_OFF_LOT = 1002
    SIZE_NOT_POSITIVE = 1003
    SIZE_ABOVE_MAX = 1004
    NOTIONAL_BELOW_MIN = 1005
    PRICE_NOT_POSITIVE = 1006
    PRICE_OUTSIDE_BAND = 1007
    VALUE_OVERFLOW = 1008
    UNKNOWN_MARKET = 1009
    UNKNOWN_ACCOUNT = 1010
    BAD_FIELD = 1011
    EXPIRY_IN_PAST = 1012
    DUPLICATE_CLOID = 1013
    CLOID_INVALID = 1014
    BATCH_TOO_LARGE = 1015
    BATCH_NESTED = 1016
    PRICE_MISSING = 1017
    MARKET_ORDER_WITH_PRICE = 1018
    MARK_INVALID = 1019
    ORDER_ID_MISSING = 1020
    AMOUNT_INVALID = 1021
    ORACLE_PRICE_INVALID = 1022
    PRICE_ABOVE_MAX = 1023
    LEVERAGE_INVALID = 1024
    DEADLINE_IN_PAST = 1025
    TRIGGER_PRICE_INVALID = 1026
    MARGIN_MODE_INVALID = 1027
    MARGIN_AMOUNT_INVALID = 1028

    INSUFFICIENT_MARGIN = 2001
    POSITION_LIMIT = 2002
    WITHDRAW_TOO_LARGE = 2003
    LEVERAGE_NEEDS_MARGIN = 2004
    OI_CAP_REACHED = 2005
    REDUCE_ONLY_WOULD_INCREASE = 2006
    TRIGGER_NEEDS_POSITION = 2007
    MARGIN_MODE_NOT_FLAT = 2008
    NOT_ISOLATED = 2009
    MARGIN_ADD_TOO_LARGE = 2010
    MARGIN_REMOVE_TOO_LARGE = 2011

    FOK_NOT_FILLABLE = 3001
    POST_ONLY_WOULD_CROSS = 3002
    UNKNOWN_ORDER = 3003
    NOT_ORDER_OWNER = 3004
    AMEND_NO_CHANGE = 3005
    BOOK_FULL = 3006
    TRIGGER_BOOK_FULL = 3007
    UNKNOWN_TRIGGER = 3008

    NO_MARK = 4001
    RISK_DISABLED = 4002
    MARKET_HALTED = 4003
    PRICE_OUTSIDE_DISCOVERY_BAND = 4004
    ORACLE_NOT_EXTERNAL = 4005
    MODE_TRANSITION_INVALID = 4006
    MODES_DISABLED = 4007


MESSAGES: dict[Reject, str] = {
    Reject.PRICE_OFF_TICK: "The price is not a multiple of the market's tick size.",
    Reject.SIZE_OFF_LOT: "The size is not a multiple of the market's lot size.",
    Reject.SIZE_NOT_POSITIVE: "The size must be greater than zero.",
    Reject.SIZE_ABOVE_MAX: "The size is above the market's maximum order size.",
    Reject.NOTIONAL_BELOW_MIN: "Price times size is below the market's minimum order notional.",
    Reject.PRICE_NOT_POSITIVE: "The price must be greater than zero.",
    Reject.PRICE_OUTSIDE_BAND: "The price is outside the market's price band around the mark.",
    Reject.VALUE_OVERFLOW: "A price, size or their product is too large to represent.",
    Reject.UNKNOWN_MARKET: "There is no market with this id.",
    Reject.UNKNOWN_ACCOUNT: "There is no account with this id.",
    Reject.BAD_FIELD: "A field has a value outside its allowed set (side, time in force, STP mode or command kind).",
    Reject.EXPIRY_IN_PAST: "The order's expiry time is not after the time it was received.",
    Reject.DUPLICATE_CLOID: "The account already has an open order with this client order id.",
    Reject.CLOID_INVALID: "The client order id must be 1 to 32 bytes of UTF-8 without NUL characters.",
    Reject.BATCH_TOO_LARGE: "A batch may hold at most 50 actions, and no more than the records that follow it.",
    Reject.BATCH_NESTED: "A batch may not contain another batch.",
    Reject.PRICE_MISSING: "A limit order needs a price.",
    Reject.MARKET_ORDER_WITH_PRICE: "A market order takes no price; its limit is the protection price.",
    Reject.MARK_INVALID: "The mark price must be positive, at most 2^40 ticks and, with risk on, at most the market's max_price.",
    Reject.ORDER_ID_MISSING: "Give an order id or a client order id to say which order.",
    Reject.AMOUNT_INVALID: "The amount must be a positive number of whole atoms (1e-6 USD), at most 2^60 atoms, and the balance may not pass 2^61 atoms.",
    Reject.ORACLE_PRICE_INVALID: "The oracle price must be positive and at most the market's max_price.",
    Reject.PRICE_ABOVE_MAX: "The price is above the market's max_price.",
    Reject.LEVERAGE_INVALID: "Leverage must be a whole number from 1 to the maximum of the position's margin tier.",
    Reject.DEADLINE_IN_PAST: "The dead-man deadline must be after the time the command was received (0 clears it).",
    Reject.TRIGGER_PRICE_INVALID: "The trigger price must be positive and at most 2^40 ticks.",
    Reject.MARGIN_MODE_INVALID: "The margin mode must be cross or isolated.",
    Reject.MARGIN_AMOUNT_INVALID: "The margin amount must be a non-zero number of whole atoms (1e-6 USD), at most 2^60 atoms either way.",
    Reject.INSUFFICIENT_MARGIN: "The account's available margin does not cover the initial margin this order adds.",
    Reject.POSITION_LIMIT: "The order could take the position (or the account's total) beyond the engine's position limit.",
    Reject.WITHDRAW_TOO_LARGE: "The withdrawal exceeds the collateral, or would leave equity below max(total initial margin, 10% of position notional).",
    Reject.LEVERAGE_NEEDS_MARGIN: "At this leverage the account's initial margin would exceed its equity.",
    Reject.OI_CAP_REACHED: "The market's open-interest cap is reached (a quarter of it while the market is dark): only orders that reduce a position are accepted.",
    Reject.REDUCE_ONLY_WOULD_INCREASE: "The reduce-only order would open or add to a position: it needs an open position on the other side in that market.",
    Reject.TRIGGER_NEEDS_POSITION: "A position TP/SL (no size) needs an open position that an order on its side would close.",
    Reject.MARGIN_MODE_NOT_FLAT: "The margin mode of a market can only change while the account has no position and no open orders in it.",
    Reject.NOT_ISOLATED: "Margin can only be added to or removed from an open isolated position; this market is cross or the position is flat.",
    Reject.MARGIN_ADD_TOO_LARGE: "The amount exceeds the cross collateral, or would leave cross equity below the account's total initial margin.",
    Reject.MARGIN_REMOVE_TOO_LARGE: "Removing this much would take the isolated margin below zero or the position's equity below its initial margin.",
    Reject.FOK_NOT_FILLABLE: "The fill-or-kill order cannot be filled in full right now; nothing was done.",
    Reject.POST_ONLY_WOULD_CROSS: "The post-only order would take liquidity; it was not placed.",
    Reject.UNKNOWN_ORDER: "No open order with this id exists in this market.",
    Reject.NOT_ORDER_OWNER: "The order belongs to another account.",
    Reject.AMEND_NO_CHANGE: "The amend changes neither price nor size.",
    Reject.BOOK_FULL: "The engine has no room for another open order.",
    Reject.TRIGGER_BOOK_FULL: "The engine has no room for another trigger order.",
    Reject.UNKNOWN_TRIGGER: "No live trigger with this id exists in this market.",
    Reject.NO_MARK: "The market has no mark price yet, so no price band can be checked.",
    Reject.RISK_DISABLED: "This engine runs without accounts and margin (EngineConfig.risk is off).",
    Reject.MARKET_HALTED: "The market is halted: only cancels are accepted until it resumes.",
    Reject.PRICE_OUTSIDE_DISCOVERY_BAND: "The market is dark (no external price) and the price is outside its discovery band around the reference price.",
    Reject.ORACLE_NOT_EXTERNAL: "This pre-IPO market takes no external oracle prices until an admin lists it.",
    Reject.MODE_TRANSITION_INVALID: "The admin action does not apply in the market's current mode (halt a halted market, resume one that is not halted, or list one that is not pre-IPO).",
    Reject.MODES_DISABLED: "This engine runs without closed-hours pricing (EngineConfig.modes is off).",
}


class CancelReason(IntEnum):
    USER = 1
    IOC_REMAINDER = 2
    STP_MAKER = 3
    STP_TAKER = 4
    CANCEL_ALL = 5
    OUT_OF_WINDOW = 6
    LIQUIDATION = 7
    DEAD_MAN = 8  # the account's dead-man deadline passed (ScheduleCancel)
    REDUCE_ONLY = 9  # a reduce-only order with no position left to reduce (it closed or flipped)


class LiquidationStep(IntEnum):
    BOOK = 1  # an IOC at the fillable price: oid, side, price = limit, size = lots sent, remaining = lots filled
    BACKSTOP = 2  # the insurance fund takes the position at the mark: size = signed lots, price = mark
    COLLATERAL = 3  # what is left of the collateral goes to the fund: remaining = atoms (may be < 0)
    FEE = 4  # liquidation fee from the surplus to the fund: remaining = atoms
    ADL = 5  # a counterparty closed against the fund at the mark: size = its signed lots closed, remaining = atoms paid
    FUND_BOOK = 6  # the fund's IOC working its position off: oid, side, price = limit, size = sent, remaining = filled


class CommandKind(IntEnum):
    PLACE = 1
    CANCEL = 2
    CANCEL_ALL = 3
    AMEND = 4
    BATCH = 5
    SET_MARK = 6
    TICK = 7
    DEPOSIT = 8
    WITHDRAW = 9
    SET_LEVERAGE = 10
    ORACLE = 11
    MARKET_ADMIN = 12
    SCHEDULE_CANCEL = 13
    PLACE_TRIGGER = 14
    CANCEL_TRIGGER = 15
    SET_MARGIN_MODE = 16
    ADJUST_MARGIN = 17


class EventKind(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    FILL = 3
    CANCELLED = 4
    EXPIRED = 5
    AMENDED = 6
    LEVEL = 7
    BALANCE = 8  # deposit or withdrawal: size = signed amount (atoms), remaining = new collateral
    LEVERAGE = 9  # size = the account's new leverage in the market
    MARK = 10  # price = new mark, remaining = oracle price (ticks)
    FUNDING = 11  # one position's payment: size = position lots, price = oracle, remaining = credit atoms, oid = rate ppb
    FUNDING_RATE = 12  # a market's settlement: oid = rate ppb, remaining = rounding remainder to the insurance fund
    LIQUIDATION = 13  # reason = step (LiquidationStep); see docs/risk.md
    MODE = 14  # reason = MarketMode, oid = band reference, price = oracle, size = band low, remaining = band high (ticks)
    SCHEDULE = 15  # a dead-man deadline set: account, size = the deadline (ns; 0 = cleared), market = -1
    TRIGGER = 16  # reason = TriggerStep, oid = trigger id, price = trigger price, size = lots (0: the whole position)
    MARGIN = 17  # margin mode set or isolated margin moved: reason = MarginMode, size = atoms into the bucket, remaining = bucket after


class TriggerStep(IntEnum):
    """What a TRIGGER event reports (docs/triggers.md)."""

    PLACED = 1
    FIRED = 2  # the order follows at once, as a new order
    CANCELLED = 3  # by its owner
    POSITION_CLOSED = 4  # a position TP/SL whose position closed or flipped


class MarketMode(IntEnum):
    """Who sets a market's oracle price (oracle.md §5, docs/modes.md)."""

    EXTERNAL = 0  # the oracle service's price
    INTERNAL = 1  # dark: the engine's own, from the book, inside the discovery band
    REOPENING = 2  # external prices are back; the price converges to them
    PRE_IPO = 3  # no external source: an 8 h EMA of the market's own mark
    HALTED = 4  # frozen prices, cancels only


class OracleFlag(IntFlag):
    """Bits of an oracle update's ``flags`` that the engine acts on."""

    NONE = 0
    CLOSED = 1  # the calendar says the session is closed: the market goes dark at once
    BREAKER = 2  # the oracle's circuit breaker tripped: the market halts until 5 clean updates


class AdminAction(IntEnum):
    HALT = 1  # cancels only, prices frozen
    RESUME = 2  # back to pre-IPO, or dark until external prices reopen the market
    LIST = 3  # a pre-IPO market gets external prices: conversion is a reopen


class FundingDark(IntEnum):
    """Funding at a settlement that finds the market dark (mechanics.md §4)."""

    NORMAL = 0
    SCALED = 1  # the hour's rate × 0.5, rounded toward zero
    PAUSED = 2  # no funding


class MarginMode(IntEnum):
    """How a position is margined (mechanics.md §2, docs/risk.md "Isolated margin")."""

    CROSS = 0  # the account's collateral backs every cross position together
    ISOLATED = 1  # the position has its own margin bucket and is liquidated alone


class OrderFlag(IntFlag):
    """Bits of a place record's (and an order's) ``flags``."""

    NONE = 0
    REDUCE_ONLY = 1  # may only reduce the account's position in the market (docs/risk.md)


class Side(IntEnum):
    BUY = 0
    SELL = 1


class Tif(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    ALO = 3
    MARKET = 4  # an IOC whose limit is the protection price


class Stp(IntEnum):
    EXPIRE_MAKER = 0
    EXPIRE_TAKER = 1
    EXPIRE_BOTH = 2


MAX_BATCH_ACTIONS = 50
MAX_MARK_TICKS = 1 << 40


def message(code: int) -> str:
    """The sentence for a reject code; raises KeyError for a number that is not a code."""
    try:
        return MESSAGES[Reject(code)]
    except ValueError:
        raise KeyError(code) from None
