#!/usr/bin/env python3
"""Generate spec/requirements.json from the requirement definitions in spec/*.md.

The one syntax for a requirement (spec/README.md, "Requirement ids"): a paragraph
or a list item whose first token is the id in bold, e.g.

    **OWN-004** The owner MUST NOT reclaim the value while ...

    - **BOR-005** When all of P's holds on X are zero, P MUST send ...

The requirement's text runs to the end of that paragraph or list item (a blank
line, the next list item, a heading, a table or a code fence ends it). Its level
is the first RFC 2119 keyword in the text. Every requirement contains at least
one keyword; SHALL is not used by this specification.

Usage:
    python3 spec/tools/build_index.py           # (re)write spec/requirements.json
    python3 spec/tools/build_index.py --check   # exit 1 if the file is stale

Pure standard library (Python 3.11+). The functions are imported by
pyimpl/tests/test_spec.py, so keep their signatures stable.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parents[1]
INDEX_PATH = SPEC_DIR / "requirements.json"
INDEX_VERSION = "0.1"

#: A requirement id: 2..5 capital letters, a dash, three digits.
ID_PATTERN = r"[A-Z]{2,5}-\d{3}"
#: The start of a requirement definition: optional list marker, then **ID**.
DEF_RE = re.compile(r"^(?P<indent>\s*)(?:[-*+]\s+|\d+[.)]\s+)?\*\*(?P<id>" + ID_PATTERN + r")\*\*\s*(?P<rest>.*)$")
#: RFC 2119 / RFC 8174 keywords, longest first so "MUST NOT" wins over "MUST".
KEYWORD_RE = re.compile(
    r"\b(MUST NOT|SHALL NOT|SHOULD NOT|NOT RECOMMENDED|MUST|SHALL|SHOULD|MAY|REQUIRED|RECOMMENDED|OPTIONAL)\b"
)
LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY", "REQUIRED", "RECOMMENDED", "OPTIONAL")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s+)")
#: Markers that exempt the keyword-definition paragraph of spec/README.md.
EXEMPT_BEGIN = "<!-- rfc2119-exempt:begin -->"
EXEMPT_END = "<!-- rfc2119-exempt:end -->"


@dataclass(frozen=True)
class Requirement:
    id: str
    level: str
    text: str
    file: str
    section: str
    #: 1-based line numbers of the definition, inclusive (not written to the index).
    first_line: int
    last_line: int


def spec_files(spec_dir: Path = SPEC_DIR) -> list[Path]:
    """The Markdown files of the specification, in a stable order."""
    return sorted(p for p in spec_dir.glob("*.md") if p.is_file())


def _ends_block(line: str) -> bool:
    s = line.strip()
    return (
        not s
        or s.startswith("#")
        or s.startswith("|")
        or s.startswith("```")
        or s.startswith("<!--")
        or bool(LIST_ITEM_RE.match(line))
    )


def parse_file(path: Path, rel: str) -> tuple[list[Requirement], list[str]]:
    """Requirements defined in one Markdown file, plus errors found."""
    lines = path.read_text(encoding="utf-8").splitlines()
    reqs: list[Requirement] = []
    errors: list[str] = []
    section = ""
    in_code = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            in_code = not in_code
            i += 1
            continue
        if in_code:
            i += 1
            continue
        h = HEADING_RE.match(line)
        if h:
            section = h.group(2).strip()
            i += 1
            continue
        m = DEF_RE.match(line)
        if not m:
            i += 1
            continue
        first = i
        parts = [m.group("rest").strip()]
        i += 1
        while i < len(lines) and not _ends_block(lines[i]) and not DEF_RE.match(lines[i]):
            parts.append(lines[i].strip())
            i += 1
        text = " ".join(p for p in parts if p)
        rid = m.group("id")
        kw = KEYWORD_RE.search(text)
        where = f"{rel}:{first + 1}"
        if kw is None:
            errors.append(f"{where}: {rid} has no RFC 2119 keyword")
            level = ""
        elif kw.group(1).startswith("SHALL"):
            errors.append(f"{where}: {rid} uses SHALL; this specification uses MUST")
            level = ""
        elif kw.group(1) == "NOT RECOMMENDED":
            errors.append(f"{where}: {rid} uses NOT RECOMMENDED; write SHOULD NOT")
            level = ""
        else:
            level = kw.group(1)
        if not text:
            errors.append(f"{where}: {rid} has no text")
        reqs.append(Requirement(rid, level, text, rel, section, first + 1, i))
    if in_code:
        errors.append(f"{rel}: unterminated code fence")
    return reqs, errors


def parse_spec(spec_dir: Path = SPEC_DIR) -> tuple[list[Requirement], list[str]]:
    """All requirement definitions in spec/*.md and every error (duplicates included)."""
    reqs: list[Requirement] = []
    errors: list[str] = []
    for path in spec_files(spec_dir):
        r, e = parse_file(path, path.relative_to(spec_dir.parent).as_posix())
        reqs.extend(r)
        errors.extend(e)
    seen: dict[str, Requirement] = {}
    for r in reqs:
        if r.id in seen:
            first = seen[r.id]
            errors.append(f"{r.file}:{r.first_line}: duplicate definition of {r.id} (first at {first.file}:{first.first_line})")
        else:
            seen[r.id] = r
    return reqs, errors


def _sort_key(rid: str) -> tuple[str, int]:
    prefix, number = rid.rsplit("-", 1)
    return prefix, int(number)


def render(reqs: list[Requirement]) -> str:
    """The text of requirements.json for these requirements (sorted by id)."""
    ordered = sorted(reqs, key=lambda r: _sort_key(r.id))
    doc = {
        "version": INDEX_VERSION,
        "requirements": [
            {"id": r.id, "level": r.level, "text": r.text, "file": r.file, "section": r.section}
            for r in ordered
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    reqs, errors = parse_spec()
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return 2
    text = render(reqs)
    if check:
        current = INDEX_PATH.read_text(encoding="utf-8") if INDEX_PATH.exists() else ""
        if current != text:
            print(f"{INDEX_PATH.relative_to(SPEC_DIR.parent)} is stale: run python3 spec/tools/build_index.py", file=sys.stderr)
            return 1
        print(f"{INDEX_PATH.relative_to(SPEC_DIR.parent)} is up to date ({len(reqs)} requirements)")
        return 0
    INDEX_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {INDEX_PATH.relative_to(SPEC_DIR.parent)} ({len(reqs)} requirements)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
