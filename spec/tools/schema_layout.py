#!/usr/bin/env python3
"""Generate the compiled layout of schema/refrpc.capnp: spec/schema-layout.json and
spec/schema-layout.md.

The layout is what the Cap'n Proto compiler decides for each struct: how many
64-bit words its data section has, how many pointers, where each field sits, the
union discriminants, and every field's default. A codec written by hand (without
the compiler) needs exactly these numbers. They come from the compiler itself:
`capnp compile -o- schema/refrpc.capnp` writes a CodeGeneratorRequest, which this
script reads with the `schema.capnp` that pycapnp ships.

Usage:
    python3 spec/tools/schema_layout.py           # (re)write both files
    python3 spec/tools/schema_layout.py --check   # exit 1 if either is stale

Needs the `capnp` compiler on PATH (`make capnp`) and pycapnp (`make .venv/.stamp-install`).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schema" / "refrpc.capnp"
JSON_PATH = REPO / "spec" / "schema-layout.json"
MD_PATH = REPO / "spec" / "schema-layout.md"

#: Bits per value of each fixed-size type (offsets are counted in these units).
BITS = {
    "void": 0, "bool": 1, "int8": 8, "int16": 16, "int32": 32, "int64": 64,
    "uint8": 8, "uint16": 16, "uint32": 32, "uint64": 64, "float32": 32, "float64": 64, "enum": 16,
}
NO_DISCRIMINANT = 0xFFFF


def compile_request() -> tuple[Any, bytes]:
    """The compiler's CodeGeneratorRequest for the schema: (the schema.capnp module, its bytes)."""
    import capnp  # pycapnp

    capnp_bin = shutil.which("capnp")
    if capnp_bin is None:
        raise SystemExit("the capnp compiler is not on PATH (`make capnp` installs it)")
    here = Path(capnp.__file__).parent  # pycapnp ships schema.capnp and the c++.capnp it imports as /capnp/c++.capnp
    schema_capnp = capnp.SchemaParser().load(str(here / "schema.capnp"), imports=[str(here.parent)])
    data = subprocess.run([capnp_bin, "compile", "-o-", str(SCHEMA)], capture_output=True, check=True, timeout=60).stdout
    return schema_capnp, data


def _type(t: Any, names: dict[int, str]) -> str:
    which = t.which()
    if which == "list":
        return f"List({_type(t.list.elementType, names)})"
    if which == "enum":
        return names.get(t.enum.typeId, hex(t.enum.typeId))
    if which == "struct":
        return names.get(t.struct.typeId, hex(t.struct.typeId))
    return {"text": "Text", "data": "Data", "anyPointer": "AnyPointer"}.get(which) or (
        "U" + which[1:].capitalize() if which.startswith("uint") else which[0].upper() + which[1:])


def _default(v: Any, type_which: str, enums: dict[int, list[str]], enum_id: int) -> Any:
    which = v.which()
    if which in ("void",):
        return None
    if which in ("text", "data", "list", "struct", "anyPointer"):
        return None  # pointer defaults: none in this schema besides null
    value = getattr(v, which)
    if which == "enum":
        names = enums.get(enum_id, [])
        return names[value] if value < len(names) else value
    if which in ("float32", "float64") and isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return value


def build() -> dict[str, Any]:
    schema_capnp, data = compile_request()
    # The reader borrows ``data``: everything is read inside this block.
    with schema_capnp.CodeGeneratorRequest.from_bytes(data, traversal_limit_in_words=1 << 30) as req:
        return _build(req)


def _build(req: Any) -> dict[str, Any]:
    nodes = {n.id: n for n in req.nodes}
    names: dict[int, str] = {}

    def name_of(node: Any) -> str:
        if node.id in names:
            return names[node.id]
        prefix = node.displayName[node.displayNamePrefixLength:]
        parent = nodes.get(node.scopeId)
        if parent is not None and parent.which() in ("struct", "enum", "interface") and not parent.isGeneric:
            full = f"{name_of(parent)}.{prefix}"
        else:
            full = prefix
        names[node.id] = full
        return full

    # Groups get their names from the field that holds them.
    for n in nodes.values():
        if n.which() == "struct":
            for f in n.struct.fields:
                if f.which() == "group":
                    names[f.group.typeId] = f"{name_of(n)}.{f.name}"
    for n in nodes.values():
        name_of(n)

    enums: dict[int, list[str]] = {}
    for n in nodes.values():
        if n.which() == "enum":
            enums[n.id] = [e.name for e in sorted(n.enum.enumerants, key=lambda e: e.codeOrder)]

    file_node = next(n for n in nodes.values() if n.which() == "file")
    structs: list[dict[str, Any]] = []
    enum_list: list[dict[str, Any]] = []
    consts: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        for nested in node.nestedNodes:
            child = nodes.get(nested.id)
            if child is None:
                continue
            emit(child)
            walk(child)
        if node.which() == "struct":
            for f in node.struct.fields:
                if f.which() == "group":
                    group = nodes[f.group.typeId]
                    emit(group)
                    walk(group)

    def emit(node: Any) -> None:
        which = node.which()
        if which == "struct":
            s = node.struct
            fields = []
            for f in sorted(s.fields, key=lambda f: f.codeOrder):
                entry: dict[str, Any] = {"name": f.name, "ordinal": f.ordinal.explicit if f.ordinal.which() == "explicit" else None}
                if f.discriminantValue != NO_DISCRIMINANT:
                    entry["discriminant"] = f.discriminantValue
                if f.which() == "group":
                    entry["group"] = names[f.group.typeId]
                else:
                    t = f.slot.type
                    tw = t.which()
                    entry["type"] = _type(t, names)
                    if tw in BITS:
                        bits = BITS[tw]
                        entry["section"] = "data"
                        entry["offset"] = f.slot.offset
                        entry["bits"] = bits
                        if bits:
                            entry["bitOffset"] = f.slot.offset * bits
                        default = _default(f.slot.defaultValue, tw, enums, t.enum.typeId if tw == "enum" else 0)
                        if f.slot.hadExplicitDefault and default not in (0, False, None, "0.0"):
                            entry["default"] = default
                    else:
                        entry["section"] = "pointers"
                        entry["offset"] = f.slot.offset
                fields.append(entry)
            item: dict[str, Any] = {
                "name": names[node.id],
                "id": f"0x{node.id:016x}",
                "dataWords": s.dataWordCount,
                "pointers": s.pointerCount,
            }
            if s.isGroup:
                item["groupOf"] = names[node.scopeId]
            if s.discriminantCount:
                item["unionMembers"] = s.discriminantCount
                item["discriminantOffset"] = s.discriminantOffset
                item["discriminantBitOffset"] = s.discriminantOffset * 16
            item["fields"] = fields
            structs.append(item)
        elif which == "enum":
            enum_list.append({
                "name": names[node.id], "id": f"0x{node.id:016x}",
                "enumerants": [{"name": e.name, "value": i} for i, e in enumerate(sorted(node.enum.enumerants, key=lambda e: e.codeOrder))],
            })
        elif which == "const":
            c = node.const
            tw = c.type.which()
            consts.append({"name": names[node.id], "type": _type(c.type, names),
                           "value": _default(c.value, tw, enums, c.type.enum.typeId if tw == "enum" else 0)})

    walk(file_node)
    return {
        "schema": "schema/refrpc.capnp",
        "fileId": f"0x{file_node.id:016x}",
        "generatedBy": "spec/tools/schema_layout.py from `capnp compile -o-`",
        "structs": structs,
        "enums": enum_list,
        "constants": consts,
    }


def _cell(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def render_md(layout: dict[str, Any]) -> str:
    lines = [
        "# Compiled schema layout",
        "",
        "<!-- Generated by spec/tools/schema_layout.py from `capnp compile -o- schema/refrpc.capnp`; do not edit. -->",
        "",
        "This document is informative and generated: it is what the Cap'n Proto compiler",
        "decides for [`../schema/refrpc.capnp`](../schema/refrpc.capnp), written out for an",
        "implementer who writes a codec without the compiler. The same numbers are in",
        "[`schema-layout.json`](schema-layout.json) for programs. `make spec-layout`",
        "regenerates both, and a test fails when they are stale.",
        "",
        "How to read it (the Cap'n Proto encoding specification defines the rest):",
        "",
        "- Each struct has a data section of `dataWords` 64-bit words followed by",
        "  `pointers` pointers. A data field's `offset` counts in units of its own size:",
        "  field bits start at `offset × bits` from the start of the data section (given",
        "  as `bitOffset`); bits are numbered little-endian, so a `Bool` at bit offset *b*",
        "  is bit *b* mod 8 of byte *b* div 8. A pointer field's `offset` is its index",
        "  among the struct's pointers.",
        "- A struct with a union stores the discriminant as a UInt16 at",
        "  `discriminantOffset` (in 16-bit units; `discriminantBitOffset` in bits). A",
        "  field with a `discriminant` is a union member, valid only when the stored",
        "  discriminant equals it.",
        "- A group is laid out inside the struct that holds it (same data and pointer",
        "  sections); the row `groupOf` names that struct.",
        "- **Defaults are XOR-encoded.** A data field with a non-zero default (the",
        "  `default` column) stores `value XOR default` on the wire: a writer stores",
        "  0 for the default value, and a reader XORs what it finds with the default.",
        "  For example `RefDescriptor.sizeHint` (default -1) is stored as 0 when it is -1",
        "  and as `0xFFFFFFFFFFFFFFFF XOR n` otherwise; `SubmitTask.attempt` (default 1)",
        "  is stored as 0 for attempt 1. For a `Float64` the XOR applies to its IEEE 754",
        "  bits; for a `Bool` with default true the stored bit is inverted.",
        "- Enum values are UInt16 ordinals in the order the table lists them.",
        "",
        "Struct sections only grow between minor versions: Cap'n Proto reads a field that",
        "lies beyond a received struct's sections as its default, which is how older and",
        "newer peers read each other (GEN-002).",
        "",
    ]
    lines.append("## Structs")
    lines.append("")
    for s in layout["structs"]:
        title = f"### {s['name']}"
        lines.append(title)
        lines.append("")
        facts = [f"id `{s['id']}`", f"data words {s['dataWords']}", f"pointers {s['pointers']}"]
        if "groupOf" in s:
            facts.append(f"a group inside `{s['groupOf']}` (the sizes are that struct's)")
        if "unionMembers" in s:
            facts.append(f"union of {s['unionMembers']} members, discriminant at offset {s['discriminantOffset']} "
                         f"(bit {s['discriminantBitOffset']})")
        lines.append("; ".join(facts) + ".")
        lines.append("")
        if s["fields"]:
            lines.append("| Field | @ | Type | Section | Offset | Bit offset | Discriminant | Default |")
            lines.append("|---|---|---|---|---|---|---|---|")
            for f in s["fields"]:
                typ = f"group `{f['group']}`" if "group" in f else f"`{f['type']}`"
                lines.append(
                    f"| `{f['name']}` | {_cell(f['ordinal'])} | {typ} | {_cell(f.get('section'))} | {_cell(f.get('offset'))} | "
                    f"{_cell(f.get('bitOffset'))} | {_cell(f.get('discriminant'))} | {_cell(f.get('default'))} |"
                )
            lines.append("")
    lines.append("## Enums")
    lines.append("")
    for e in layout["enums"]:
        lines.append(f"### {e['name']}")
        lines.append("")
        lines.append(f"id `{e['id']}`: " + ", ".join(f"`{x['name']}` = {x['value']}" for x in e["enumerants"]) + ".")
        lines.append("")
    if layout["constants"]:
        lines.append("## Constants")
        lines.append("")
        lines.append("| Name | Type | Value |")
        lines.append("|---|---|---|")
        for c in layout["constants"]:
            lines.append(f"| `{c['name']}` | `{c['type']}` | {_cell(c['value'])} |")
        lines.append("")
    return "\n".join(lines)


def render() -> tuple[str, str]:
    layout = build()
    return json.dumps(layout, indent=1) + "\n", render_md(layout)


def main(argv: list[str]) -> int:
    js, md = render()
    if "--check" in argv:
        stale = [p.name for p, text in ((JSON_PATH, js), (MD_PATH, md)) if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"stale: {', '.join(stale)}; run python3 spec/tools/schema_layout.py", file=sys.stderr)
            return 1
        return 0
    JSON_PATH.write_text(js, encoding="utf-8")
    MD_PATH.write_text(md, encoding="utf-8")
    print(f"wrote {JSON_PATH.relative_to(REPO)} and {MD_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
