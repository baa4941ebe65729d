"""The protocol reference: the schema covers every wire Struct, the Markdown page covers every
type, channel and code, and the committed docs/protocol.md is what the code renders now."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from api import errors, schema_doc
from api import protocol as p

COMMITTED_REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_schema_has_every_root_and_every_struct():
    doc = schema_doc.schema()
    assert set(doc["roots"]) == {"request", "action", "subscription", "signedAction", "push", "bookResponse", "query",
                                 "signedQuery", "orderStatus"}
    structs = {t.__name__ for t in vars(p).values()
               if isinstance(t, type) and issubclass(t, msgspec.Struct) and t.__module__ == p.__name__}
    assert structs - set(doc["$defs"]) == {"_Envelope"}
    assert doc["$defs"]["Place"]["additionalProperties"] is False
    assert doc["$defs"]["Place"]["properties"]["price"]["anyOf"][0]["pattern"] == p.DECIMAL_PATTERN
    json.dumps(doc)  # plain JSON


def test_markdown_reference_lists_every_type_channel_and_code():
    text = schema_doc.render_markdown()
    for name in schema_doc.schema()["$defs"]:
        assert f"### {name}\n" in text
    for channel in ("l2Book", "l2Delta", "trades", "market", "liquidations", "orderUpdates", "userFills",
                    "userFundings", "positions", "account", "subscriptionResponse", "pong", "error", "post"):
        assert f'`"{channel}"`' in text
    for row in errors.error_table():
        assert f"| {row.code} | `{row.name}` |" in text
    assert "AFTERHOURS-SIG-v1" in text and "zlib.crc32" in text


def test_committed_reference_is_not_stale():
    committed = COMMITTED_REFERENCE.read_text(encoding="utf-8")
    assert committed == schema_doc.render_markdown(), (
        "docs/protocol.md differs from render_markdown(); regenerate it with `python -m api.schema_doc`")


def test_the_script_writes_the_reference_to_docs_by_default(tmp_path, capsys):
    assert schema_doc.DEFAULT_OUTPUT == COMMITTED_REFERENCE
    target = tmp_path / "protocol.md"
    assert schema_doc.main([str(target)]) == 0
    assert target.read_bytes() == schema_doc.render_markdown().encode("utf-8")
    assert str(target) in capsys.readouterr().out
