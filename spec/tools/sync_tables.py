#!/usr/bin/env python3
"""Rewrite the generated blocks of spec/state-machines.md from refrpc.core.tables.

Each table in ``refrpc.core.tables.ALL_TABLES`` has one block in
spec/state-machines.md, delimited by

    <!-- BEGIN GENERATED: <table-name> -->
    <!-- END GENERATED: <table-name> -->

Everything between the markers is produced here; everything outside them is
prose and is left alone. The tables are the single source of truth: the code
runs them and the spec shows them.

Usage:
    python3 spec/tools/sync_tables.py           # rewrite the blocks
    python3 spec/tools/sync_tables.py --check   # exit 1 if a block is out of date

Pure standard library (Python 3.11+); imports refrpc.core.tables from pyimpl/src.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Mapping

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "spec" / "state-machines.md"
sys.path.insert(0, str(REPO / "pyimpl" / "src"))

BLOCK_RE = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
    re.S,
)

Table = Mapping[str, Mapping[str, tuple[str, str]]]


def load_tables() -> dict[str, Table]:
    from refrpc.core import tables  # noqa: PLC0415  (path set up above)

    return dict(tables.ALL_TABLES)


def states_of(table: Table) -> list[str]:
    """Every state, in order of first appearance (as a source or a target)."""
    seen: dict[str, None] = {}
    for state, row in table.items():
        seen.setdefault(state, None)
        for nxt, _req in row.values():
            seen.setdefault(nxt, None)
    return list(seen)


def render_block(name: str, table: Table) -> str:
    """The generated Markdown for one table (without the markers)."""
    out: list[str] = []
    out.append(f"Generated from `refrpc.core.tables.ALL_TABLES[{name!r}]`; do not edit by hand.")
    out.append("")
    out.append("| State | Event | Next state | Requirement |")
    out.append("|---|---|---|---|")
    for state, row in table.items():
        for event, (nxt, req) in row.items():
            out.append(f"| `{state}` | `{event}` | `{nxt}` | {req} |")
    out.append("")
    states = states_of(table)
    terminal = [s for s in states if not table.get(s)]
    out.append("States: " + ", ".join(f"`{s}`" for s in states) + ".")
    out.append("")
    for state, row in table.items():
        if not row:
            out.append(f"- `{state}` has no outgoing transitions.")
            continue
        moves = "; ".join(
            (f"`{event}` keeps it in `{nxt}`" if nxt == state else f"`{event}` leads to `{nxt}`") + f" ({req})"
            for event, (nxt, req) in row.items()
        )
        out.append(f"- From `{state}`: {moves}.")
    if terminal:
        out.append("")
        out.append("Terminal states (no event leaves them): " + ", ".join(f"`{s}`" for s in terminal) + ".")
    out.append("")
    out.append("Any (state, event) pair not listed above is illegal.")
    out.append("")
    return "\n".join(out)


def sync(text: str, tables: dict[str, Table]) -> tuple[str, list[str]]:
    """The document with every block regenerated, and problems found."""
    problems: list[str] = []
    found: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name = m.group("name")
        found.append(name)
        if name not in tables:
            problems.append(f"block {name!r} names no table in ALL_TABLES")
            return m.group(0)
        return m.group(1) + render_block(name, tables[name]) + m.group(4)

    new = BLOCK_RE.sub(repl, text)
    for name in tables:
        if name not in found:
            problems.append(f"table {name!r} has no generated block in {DOC.name}")
    dups = {n for n in found if found.count(n) > 1}
    for name in sorted(dups):
        problems.append(f"table {name!r} has more than one generated block")
    return new, problems


def main(argv: list[str]) -> int:
    check = "--check" in argv
    text = DOC.read_text(encoding="utf-8")
    new, problems = sync(text, load_tables())
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 2 if not check else 1
    if check:
        if new != text:
            print("spec/state-machines.md is out of date: run python3 spec/tools/sync_tables.py", file=sys.stderr)
            return 1
        print("spec/state-machines.md is in sync with refrpc.core.tables")
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
        print("rewrote generated blocks in spec/state-machines.md")
    else:
        print("spec/state-machines.md already in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
