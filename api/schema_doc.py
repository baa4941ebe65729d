"""The protocol reference: a JSON Schema of every wire type and a Markdown page rendered
from it, both built from the Structs in ``api.protocol`` and the table in ``api.errors``.

Layout
------
* ``schema()``: JSON Schema (2020-12), one entry per root union, shared ``$defs``, and the
  error-code table; served as ``/v1/schema``;
* ``render_markdown()``: the same as a Markdown reference, with the signing and checksum rules;
* ``python -m api.schema_doc [PATH]`` writes it to ``docs/protocol.md`` (or ``PATH``).

Invariants
----------
* Nothing here defines the protocol: every type, field, default and code comes from the
  Structs and the code table, so the reference cannot drift from the code.
* The committed ``docs/protocol.md`` equals ``render_markdown()``; a test fails when it is
  stale, and running this module regenerates it.

Known limitations
-----------------
* The two prose sections (signing, book checksum) are written here by hand, not derived
  from ``api.auth`` and ``api.l2book``; their tests pin the behaviour they describe.
* The rendered text follows msgspec's schema output, so a msgspec upgrade may change the
  page (and fail the staleness test) without any change to the protocol.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import msgspec

from api.errors import error_table
from api.protocol import (
    DECIMAL_PATTERN,
    PROTOCOL_VERSION,
    Action,
    BookResponse,
    OrderStatus,
    Push,
    Query,
    Request,
    SignedAction,
    SignedQuery,
    Subscription,
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_ROOTS = {
    "request": Request,
    "action": Action,
    "subscription": Subscription,
    "signedAction": SignedAction,
    "push": Push,
    "bookResponse": BookResponse,
    "query": Query,
    "signedQuery": SignedQuery,
    "orderStatus": OrderStatus,
}


def schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every wire type: one entry per root union, shared ``$defs``,
    and the error-code table. Served as ``/v1/schema``."""
    roots, components = msgspec.json.schema_components(list(_ROOTS.values()), ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "afterhours wire protocol",
        "version": PROTOCOL_VERSION,
        "roots": dict(zip(_ROOTS, roots)),
        "$defs": components,
        "errors": msgspec.to_builtins(error_table()),
    }


def render_markdown(doc: dict[str, Any] | None = None) -> str:
    """A Markdown protocol reference rendered from ``schema()``: each root union, each type
    with its fields, and the error-code table."""
    doc = doc or schema()
    defs = doc["$defs"]
    lines = [f"# afterhours wire protocol, version {doc['version']}", "", _INTRO, "", *_RULES, ""]
    listed: set[str] = set()
    for root, root_schema in doc["roots"].items():
        names = [ref.rsplit("/", 1)[1] for ref in _refs(root_schema)]
        lines += [f"## {root}", "", f"One of: {', '.join(f'[{n}](#{n.lower()})' for n in names)}.", ""]
        for name in names:
            lines += _render_type(name, defs, listed)
    rest = sorted(set(defs) - listed)
    if rest:
        lines += ["## Shared types", ""]
        for name in rest:
            lines += _render_type(name, defs, listed)
    lines += ["## Error codes", "", "| code | name | stage | message |", "| --- | --- | --- | --- |"]
    lines += [f"| {e['code']} | `{e['name']}` | {e['stage']} | {_cell(e['msg'])} |" for e in doc["errors"]]
    return "\n".join(lines) + "\n"


_INTRO = (
    "JSON over a websocket at `/ws`, one message per text frame; REST under `/v1/`. Client "
    "requests carry `method`; server pushes are `{\"channel\": …, \"data\": …}`. Prices, sizes "
    "and amounts are decimal strings; integers (ids, nonces, sequence numbers, millisecond "
    "times) are below 2^53. Unknown fields and wrong types are rejected. Error codes are "
    "negative; the table is at the end."
)


_RULES = [
    "## Signing",
    "",
    "A signature covers the UTF-8 bytes of `\"\\n\".join([\"AFTERHOURS-SIG-v1\", network, keyId, "
    "str(nonce), str(expiresAfter or 0), sha256_hex(canonical_json(action))])`, where `action` is the "
    "action object exactly as sent (`{\"type\":\"logon\"}` for a logon) and canonical JSON has "
    "sorted keys, `,` and `:` separators, UTF-8 and no floats. Ed25519 keys sign those bytes; HMAC "
    "keys use HMAC-SHA256. Signatures are hex. The nonce is the current time in ms: accepted if "
    "at most 30 s behind and 1 s ahead of the server, unused, above the key's highest evicted "
    "nonce; the server keeps 100 per key.",
    "",
    "## Book checksum",
    "",
    "`checksum` in `l2Delta` is `zlib.crc32` of the string made from the best 10 asks (lowest "
    "first) then the best 10 bids (highest first): for each level, its price string then its "
    "size string as received, each with the `.` removed and leading `0`s stripped. Apply a delta "
    "only if its `prevSeq` is the last `seq` applied; on a gap or a mismatch, resubscribe.",
]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        if "$ref" in node:
            return [node["$ref"]]
        return [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _render_type(name: str, defs: dict[str, Any], listed: set[str]) -> list[str]:
    if name in listed:
        return []
    listed.add(name)
    spec = defs[name]
    lines = [f"### {name}", ""]
    if spec.get("description"):
        lines += [spec["description"], ""]
    required = set(spec.get("required", ()))
    lines += ["| field | type | required |", "| --- | --- | --- |"]
    for field, field_schema in spec.get("properties", {}).items():
        need = "yes" if field in required else f"no (default `{msgspec.json.encode(field_schema.get('default')).decode()}`)"
        lines.append(f"| `{field}` | {_cell(_type_text(field_schema))} | {need} |")
    return lines + [""]


def _type_text(node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(_type_text(option) for option in node["anyOf"])
    if "enum" in node:
        return " or ".join(f'`"{value}"`' for value in node["enum"])
    kind = node.get("type")
    if kind == "array":
        if "prefixItems" in node:
            return "[" + ", ".join(_type_text(item) for item in node["prefixItems"]) + "]"
        limit = f", at most {node['maxItems']}" if "maxItems" in node else ""
        return f"array of {_type_text(node['items'])}{limit}"
    if kind == "string" and node.get("pattern") == DECIMAL_PATTERN:
        return "decimal string"
    if kind == "string":
        return "string" + (f" (`{node['pattern']}`)" if "pattern" in node else "")
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        return "integer" + (f" in [{low}, {high}]" if low is not None and high is not None else "")
    return str(kind)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    """Write ``render_markdown()`` to docs/protocol.md (or ``output``): UTF-8, Unix line ends."""
    parser = argparse.ArgumentParser(prog="python -m api.schema_doc", description="Write the Markdown protocol reference.")
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT,
                        help="where to write the reference (default: docs/protocol.md)")
    args = parser.parse_args(argv)
    args.output.write_text(render_markdown(), encoding="utf-8", newline="\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
