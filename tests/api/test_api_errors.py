"""The error-code table: gateway and engine codes, one sentence each, negative on the wire."""

from __future__ import annotations

import pytest

from api import errors
from engine.codes import Reject

G = errors.GatewayCode


def test_codes_are_unique_grouped_and_each_has_a_sentence():
    rows = errors.error_table()
    codes = [row.code for row in rows]
    assert len(codes) == len(set(codes)) and all(code < 0 for code in codes)
    assert {row.name for row in rows} >= {c.name for c in G} | {r.name for r in Reject}
    assert all(5000 < c < 6000 for c in G)
    assert all(row.msg.endswith((".", ")")) and len(row.msg) > 20 for row in rows)
    assert set(errors.GATEWAY_MESSAGES) == set(G)


def test_message_for_accepts_either_sign_and_refuses_unknown_numbers():
    assert errors.message_for(-1001) == errors.message_for(1001)
    with pytest.raises(KeyError):
        errors.message_for(4242)
