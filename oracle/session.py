"""Session states of a market, and how source signals may downgrade the calendar's answer.

Layout:
  ``Session``          IntEnum with stable numbers (they go into the journal and to numba
                       kernels as plain integers)
  ``OPEN_SESSIONS``    the states in which an external price is expected
  ``downgrade``        apply a source's session hint (e.g. Chainlink ``marketStatus``)
  ``halted_if_silent`` the ``HALTED`` rule of spec/oracle.md §4

Invariants:
  * The calendar decides the scheduled state; signals may only make a market *less* open,
    never open a closed one (``downgrade(s, h)`` is never more open than ``s``).
  * Numbers are stable: never renumber a member, only append.

Known limitations:
  * ``CLOSED_OFF_HOURS`` is not in the spec's list. The spec's states assume the US 24/5
    schedule, where every closure is a weekend or a holiday; a KRX weeknight (15:30–09:00
    Asia/Seoul) is neither, so it gets its own state.
"""

from __future__ import annotations

from enum import IntEnum

NS_PER_SECOND = 1_000_000_000


class Session(IntEnum):
    """What the market underneath is doing. Stable numbers; append only."""

    REGULAR = 1
    PRE = 2
    POST = 3
    OVERNIGHT = 4
    CLOSED_WEEKEND = 5
    CLOSED_HOLIDAY = 6
    HALTED = 7  # the calendar says open, yet every source has been stale for over 60 s
    INTERNAL_ONLY = 8  # pre-IPO: no external price exists at all
    CLOSED_OFF_HOURS = 9  # a trading day's closed hours that are neither weekend nor holiday


OPEN_SESSIONS = frozenset({Session.REGULAR, Session.PRE, Session.POST, Session.OVERNIGHT})
EXTENDED_SESSIONS = frozenset({Session.PRE, Session.POST})

# How open a state is; a hint may only move a market to a lower rank.
_OPENNESS = {
    Session.REGULAR: 3,
    Session.PRE: 2,
    Session.POST: 2,
    Session.OVERNIGHT: 1,
}

HALT_AFTER_NS = 60 * NS_PER_SECOND


def is_open(session: Session) -> bool:
    """True when an external price is expected in this state."""
    return session in OPEN_SESSIONS


def downgrade(scheduled: Session, hint: Session | None) -> Session:
    """The scheduled state, made less open by a source's hint; never more open.

    * no hint, or a closed ``scheduled`` state: ``scheduled`` unchanged;
    * a closed hint while the calendar says open: ``HALTED`` (open by the calendar, yet
      not trading: an unscheduled closure the calendar does not know);
    * an open hint of lower rank (REGULAR > PRE = POST > OVERNIGHT): the hint;
    * an open hint of equal or higher rank: ``scheduled`` (PRE and POST do not swap).
    """
    if hint is None or not is_open(scheduled):
        return scheduled
    if not is_open(hint):
        return Session.HALTED
    if _OPENNESS[hint] < _OPENNESS[scheduled]:
        return hint
    return scheduled


def halted_if_silent(scheduled: Session, silent_for_ns: int, limit_ns: int = HALT_AFTER_NS) -> Session:
    """``HALTED`` when the calendar says open and every source has been stale for more than
    ``limit_ns`` nanoseconds (strictly more); otherwise ``scheduled`` unchanged."""
    if is_open(scheduled) and silent_for_ns > limit_ns:
        return Session.HALTED
    return scheduled
