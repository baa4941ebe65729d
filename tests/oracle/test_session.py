"""Session states and the downgrade rules (spec/oracle.md §4)."""

from __future__ import annotations

import pytest

from oracle.session import HALT_AFTER_NS, OPEN_SESSIONS, Session, downgrade, halted_if_silent

S = Session
NS = 1_000_000_000


def test_session_numbers_are_stable():
    assert {s.name: s.value for s in Session} == {
        "REGULAR": 1, "PRE": 2, "POST": 3, "OVERNIGHT": 4, "CLOSED_WEEKEND": 5,
        "CLOSED_HOLIDAY": 6, "HALTED": 7, "INTERNAL_ONLY": 8, "CLOSED_OFF_HOURS": 9,
    }
    assert OPEN_SESSIONS == {S.REGULAR, S.PRE, S.POST, S.OVERNIGHT}


@pytest.mark.parametrize(
    ("scheduled", "hint", "expected"),
    [
        (S.REGULAR, None, S.REGULAR),
        (S.REGULAR, S.REGULAR, S.REGULAR),
        (S.REGULAR, S.POST, S.POST),  # an early close the calendar missed
        (S.REGULAR, S.OVERNIGHT, S.OVERNIGHT),
        (S.REGULAR, S.CLOSED_HOLIDAY, S.HALTED),  # a closure the calendar does not know
        (S.PRE, S.REGULAR, S.PRE),  # never upgraded
        (S.PRE, S.POST, S.PRE),
        (S.OVERNIGHT, S.REGULAR, S.OVERNIGHT),
        (S.CLOSED_WEEKEND, S.REGULAR, S.CLOSED_WEEKEND),  # never opens a closed market
        (S.CLOSED_HOLIDAY, S.OVERNIGHT, S.CLOSED_HOLIDAY),
        (S.INTERNAL_ONLY, S.REGULAR, S.INTERNAL_ONLY),
    ],
)
def test_hints_only_downgrade(scheduled, hint, expected):
    assert downgrade(scheduled, hint) == expected


@pytest.mark.parametrize("scheduled", list(Session))
@pytest.mark.parametrize("hint", [None, *Session])
def test_a_hint_never_opens_or_widens(scheduled, hint):
    result = downgrade(scheduled, hint)
    if scheduled not in OPEN_SESSIONS:
        assert result == scheduled
    elif result in OPEN_SESSIONS:
        assert result in (scheduled, hint)


def test_halted_after_sixty_seconds_of_silence_while_open():
    assert HALT_AFTER_NS == 60 * NS
    assert halted_if_silent(S.REGULAR, 60 * NS) == S.REGULAR
    assert halted_if_silent(S.REGULAR, 60 * NS + 1) == S.HALTED
    assert halted_if_silent(S.OVERNIGHT, 3600 * NS) == S.HALTED
    assert halted_if_silent(S.CLOSED_WEEKEND, 3600 * NS) == S.CLOSED_WEEKEND
