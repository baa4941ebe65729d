"""Integer constants for the kernels, taken once from the IntEnums of ``engine.codes``.

numba freezes module-level integers into the compiled code; IntEnum members passed as
arguments would defeat the cache (STYLE.md), so kernels use these plain names.
"""

from __future__ import annotations

from engine.codes import (
    AdminAction,
    CancelReason,
    CommandKind,
    EventKind,
    FundingDark,
    LiquidationStep,
    MarginMode,
    MarketMode,
    OracleFlag,
    OrderFlag,
    Reject,
    Stp,
    Tif,
    TriggerStep,
)

INT64_MAX = (1 << 63) - 1
PPM = 1_000_000

K_PLACE = int(CommandKind.PLACE)
K_CANCEL = int(CommandKind.CANCEL)
K_CANCEL_ALL = int(CommandKind.CANCEL_ALL)
K_AMEND = int(CommandKind.AMEND)
K_BATCH = int(CommandKind.BATCH)
K_SET_MARK = int(CommandKind.SET_MARK)
K_TICK = int(CommandKind.TICK)
K_DEPOSIT = int(CommandKind.DEPOSIT)
K_WITHDRAW = int(CommandKind.WITHDRAW)
K_SET_LEVERAGE = int(CommandKind.SET_LEVERAGE)
K_ORACLE = int(CommandKind.ORACLE)
K_MARKET_ADMIN = int(CommandKind.MARKET_ADMIN)
K_SCHEDULE_CANCEL = int(CommandKind.SCHEDULE_CANCEL)
K_PLACE_TRIGGER = int(CommandKind.PLACE_TRIGGER)
K_CANCEL_TRIGGER = int(CommandKind.CANCEL_TRIGGER)
K_SET_MARGIN_MODE = int(CommandKind.SET_MARGIN_MODE)
K_ADJUST_MARGIN = int(CommandKind.ADJUST_MARGIN)

E_ACCEPTED = int(EventKind.ACCEPTED)
E_REJECTED = int(EventKind.REJECTED)
E_FILL = int(EventKind.FILL)
E_CANCELLED = int(EventKind.CANCELLED)
E_EXPIRED = int(EventKind.EXPIRED)
E_AMENDED = int(EventKind.AMENDED)
E_LEVEL = int(EventKind.LEVEL)
E_BALANCE = int(EventKind.BALANCE)
E_LEVERAGE = int(EventKind.LEVERAGE)
E_MARK = int(EventKind.MARK)
E_FUNDING = int(EventKind.FUNDING)
E_FUNDING_RATE = int(EventKind.FUNDING_RATE)
E_LIQUIDATION = int(EventKind.LIQUIDATION)
E_MODE = int(EventKind.MODE)
E_SCHEDULE = int(EventKind.SCHEDULE)
E_TRIGGER = int(EventKind.TRIGGER)
E_MARGIN = int(EventKind.MARGIN)
MM_CROSS = int(MarginMode.CROSS)
MM_ISOLATED = int(MarginMode.ISOLATED)
TS_PLACED = int(TriggerStep.PLACED)
TS_FIRED = int(TriggerStep.FIRED)
TS_CANCELLED = int(TriggerStep.CANCELLED)
TS_POSITION_CLOSED = int(TriggerStep.POSITION_CLOSED)
MODE_EXTERNAL = int(MarketMode.EXTERNAL)
MODE_INTERNAL = int(MarketMode.INTERNAL)
MODE_REOPENING = int(MarketMode.REOPENING)
MODE_PRE_IPO = int(MarketMode.PRE_IPO)
MODE_HALTED = int(MarketMode.HALTED)
OF_CLOSED = int(OracleFlag.CLOSED)
OF_BREAKER = int(OracleFlag.BREAKER)
OF_ALL = int(OracleFlag.CLOSED | OracleFlag.BREAKER)
FL_REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
FL_ALL = int(OrderFlag.REDUCE_ONLY)
ADMIN_HALT = int(AdminAction.HALT)
ADMIN_RESUME = int(AdminAction.RESUME)
ADMIN_LIST = int(AdminAction.LIST)
FD_NORMAL = int(FundingDark.NORMAL)
FD_SCALED = int(FundingDark.SCALED)
FD_PAUSED = int(FundingDark.PAUSED)
LQ_BOOK = int(LiquidationStep.BOOK)
LQ_BACKSTOP = int(LiquidationStep.BACKSTOP)
LQ_COLLATERAL = int(LiquidationStep.COLLATERAL)
LQ_FEE = int(LiquidationStep.FEE)
LQ_ADL = int(LiquidationStep.ADL)
LQ_FUND_BOOK = int(LiquidationStep.FUND_BOOK)

TIF_GTC = int(Tif.GTC)
TIF_IOC = int(Tif.IOC)
TIF_FOK = int(Tif.FOK)
TIF_ALO = int(Tif.ALO)
TIF_MARKET = int(Tif.MARKET)

STP_MAKER = int(Stp.EXPIRE_MAKER)
STP_TAKER = int(Stp.EXPIRE_TAKER)
STP_BOTH = int(Stp.EXPIRE_BOTH)

CR_USER = int(CancelReason.USER)
CR_IOC = int(CancelReason.IOC_REMAINDER)
CR_STP_MAKER = int(CancelReason.STP_MAKER)
CR_STP_TAKER = int(CancelReason.STP_TAKER)
CR_CANCEL_ALL = int(CancelReason.CANCEL_ALL)
CR_WINDOW = int(CancelReason.OUT_OF_WINDOW)
CR_LIQUIDATION = int(CancelReason.LIQUIDATION)
CR_DEAD_MAN = int(CancelReason.DEAD_MAN)
CR_REDUCE_ONLY = int(CancelReason.REDUCE_ONLY)

R_SIZE_NOT_POSITIVE = int(Reject.SIZE_NOT_POSITIVE)
R_SIZE_ABOVE_MAX = int(Reject.SIZE_ABOVE_MAX)
R_NOTIONAL_BELOW_MIN = int(Reject.NOTIONAL_BELOW_MIN)
R_PRICE_NOT_POSITIVE = int(Reject.PRICE_NOT_POSITIVE)
R_PRICE_OUTSIDE_BAND = int(Reject.PRICE_OUTSIDE_BAND)
R_VALUE_OVERFLOW = int(Reject.VALUE_OVERFLOW)
R_UNKNOWN_MARKET = int(Reject.UNKNOWN_MARKET)
R_UNKNOWN_ACCOUNT = int(Reject.UNKNOWN_ACCOUNT)
R_BAD_FIELD = int(Reject.BAD_FIELD)
R_EXPIRY_IN_PAST = int(Reject.EXPIRY_IN_PAST)
R_DUPLICATE_CLOID = int(Reject.DUPLICATE_CLOID)
R_BATCH_TOO_LARGE = int(Reject.BATCH_TOO_LARGE)
R_BATCH_NESTED = int(Reject.BATCH_NESTED)
R_MARK_INVALID = int(Reject.MARK_INVALID)
R_FOK_NOT_FILLABLE = int(Reject.FOK_NOT_FILLABLE)
R_POST_ONLY = int(Reject.POST_ONLY_WOULD_CROSS)
R_UNKNOWN_ORDER = int(Reject.UNKNOWN_ORDER)
R_NOT_OWNER = int(Reject.NOT_ORDER_OWNER)
R_AMEND_NO_CHANGE = int(Reject.AMEND_NO_CHANGE)
R_BOOK_FULL = int(Reject.BOOK_FULL)
R_NO_MARK = int(Reject.NO_MARK)
R_ORDER_ID_MISSING = int(Reject.ORDER_ID_MISSING)
R_AMOUNT_INVALID = int(Reject.AMOUNT_INVALID)
R_ORACLE_INVALID = int(Reject.ORACLE_PRICE_INVALID)
R_PRICE_ABOVE_MAX = int(Reject.PRICE_ABOVE_MAX)
R_LEVERAGE_INVALID = int(Reject.LEVERAGE_INVALID)
R_DEADLINE_IN_PAST = int(Reject.DEADLINE_IN_PAST)
R_INSUFFICIENT_MARGIN = int(Reject.INSUFFICIENT_MARGIN)
R_POSITION_LIMIT = int(Reject.POSITION_LIMIT)
R_WITHDRAW_TOO_LARGE = int(Reject.WITHDRAW_TOO_LARGE)
R_LEVERAGE_NEEDS_MARGIN = int(Reject.LEVERAGE_NEEDS_MARGIN)
R_RISK_DISABLED = int(Reject.RISK_DISABLED)
R_OI_CAP = int(Reject.OI_CAP_REACHED)
R_REDUCE_ONLY = int(Reject.REDUCE_ONLY_WOULD_INCREASE)
R_MARKET_HALTED = int(Reject.MARKET_HALTED)
R_OUTSIDE_DISCOVERY = int(Reject.PRICE_OUTSIDE_DISCOVERY_BAND)
R_ORACLE_NOT_EXTERNAL = int(Reject.ORACLE_NOT_EXTERNAL)
R_MODE_TRANSITION = int(Reject.MODE_TRANSITION_INVALID)
R_MODES_DISABLED = int(Reject.MODES_DISABLED)
R_TRIGGER_PRICE = int(Reject.TRIGGER_PRICE_INVALID)
R_TRIGGER_POSITION = int(Reject.TRIGGER_NEEDS_POSITION)
R_TRIGGER_FULL = int(Reject.TRIGGER_BOOK_FULL)
R_UNKNOWN_TRIGGER = int(Reject.UNKNOWN_TRIGGER)
R_MARKET_WITH_PRICE = int(Reject.MARKET_ORDER_WITH_PRICE)
R_MARGIN_MODE_INVALID = int(Reject.MARGIN_MODE_INVALID)
R_MARGIN_AMOUNT_INVALID = int(Reject.MARGIN_AMOUNT_INVALID)
R_MARGIN_MODE_NOT_FLAT = int(Reject.MARGIN_MODE_NOT_FLAT)
R_NOT_ISOLATED = int(Reject.NOT_ISOLATED)
R_MARGIN_ADD = int(Reject.MARGIN_ADD_TOO_LARGE)
R_MARGIN_REMOVE = int(Reject.MARGIN_REMOVE_TOO_LARGE)
