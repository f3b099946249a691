"""Checks that keep the written specification (spec/) honest.

The spec is the contract other implementations are written against, and code,
tests, the schema, the conformance suite and the inspector all cite its
requirement ids. These tests make sure that:

1. spec/requirements.json is regenerated whenever the spec changes;
2. no requirement id is defined twice;
3. RFC 2119 keywords appear only inside numbered requirements;
4. every requirement id cited anywhere in the repository is defined in the spec;
5. the state tables in spec/state-machines.md match refrpc.core.tables;
6. the message catalog has exactly one section per message type.

Standard library and pytest only; the repository root is found relative to this file.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec"
TOOLS = SPEC / "tools"

#: Where requirement ids are cited (besides spec/ itself, checked separately).
CITING_DIRS = ("pyimpl/src", "pyimpl/tests", "schema", "conformance", "tools")
#: File types scanned for citations.
CITING_SUFFIXES = {
    ".py", ".pyi", ".capnp", ".md", ".rst", ".txt", ".json", ".toml", ".yaml", ".yml",
    ".cfg", ".ini", ".html", ".js", ".ts", ".css", ".sh",
}
SKIP_DIR_NAMES = {"__pycache__", ".venv", "venv", "node_modules", "_build", "build", "dist", ".pytest_cache", ".hypothesis"}
#: Things that look like requirement ids but are not (hash names, standards).
NOT_REQUIREMENT_PREFIXES = {"SHA", "UTF", "RFC", "BCP", "ISO", "CVE", "PEP", "AES", "TLS", "IEEE", "HTTP", "ECMA", "MD", "CRC"}
ID_RE = re.compile(r"\b([A-Z]{2,5})-(\d{3})\b")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build_index() -> ModuleType:
    return _load("refrpc_spec_build_index", TOOLS / "build_index.py")


@pytest.fixture(scope="module")
def sync_tables() -> ModuleType:
    return _load("refrpc_spec_sync_tables", TOOLS / "sync_tables.py")


@pytest.fixture(scope="module")
def parsed(build_index: ModuleType) -> tuple[list, list[str]]:
    return build_index.parse_spec(SPEC)


@pytest.fixture(scope="module")
def defined_ids(parsed: tuple[list, list[str]]) -> set[str]:
    return {r.id for r in parsed[0]}


# ------------------------------------------------------------------ (1) the index
def test_spec_parses_without_errors(parsed: tuple[list, list[str]]) -> None:
    reqs, errors = parsed
    assert reqs, "no requirements found in spec/*.md"
    assert not errors, "problems in the spec's requirement definitions:\n" + "\n".join(errors)


def test_requirements_json_is_up_to_date(build_index: ModuleType, parsed: tuple[list, list[str]]) -> None:
    reqs, _ = parsed
    expected = build_index.render(reqs)
    index = SPEC / "requirements.json"
    assert index.exists(), "spec/requirements.json is missing: run python3 spec/tools/build_index.py"
    assert index.read_text(encoding="utf-8") == expected, (
        "spec/requirements.json is stale: run python3 spec/tools/build_index.py"
    )


def test_every_requirement_has_a_level(build_index: ModuleType, parsed: tuple[list, list[str]]) -> None:
    bad = [f"{r.id} ({r.file}:{r.first_line}): level {r.level!r}" for r in parsed[0] if r.level not in build_index.LEVELS]
    assert not bad, "requirements without a valid RFC 2119 level:\n" + "\n".join(bad)


# ------------------------------------------------------------------ (2) duplicates
def test_no_duplicate_requirement_ids(parsed: tuple[list, list[str]]) -> None:
    seen: dict[str, str] = {}
    dups: list[str] = []
    for r in parsed[0]:
        where = f"{r.file}:{r.first_line}"
        if r.id in seen:
            dups.append(f"{r.id} defined at {seen[r.id]} and at {where}")
        else:
            seen[r.id] = where
    assert not dups, "requirement ids defined more than once:\n" + "\n".join(dups)


# ------------------------------------------------------------------ (3) keywords
def _exempt_lines(build_index: ModuleType, path: Path, lines: list[str]) -> set[int]:
    """1-based line numbers inside the keyword-definition exemption (README only)."""
    begins = [i for i, line in enumerate(lines, 1) if build_index.EXEMPT_BEGIN in line]
    ends = [i for i, line in enumerate(lines, 1) if build_index.EXEMPT_END in line]
    if not begins and not ends:
        return set()
    assert path.name == "README.md", f"{path.relative_to(REPO)}: the RFC 2119 exemption markers are allowed only in spec/README.md"
    assert len(begins) == 1 and len(ends) == 1 and begins[0] < ends[0], (
        f"{path.relative_to(REPO)}: exactly one exemption region, begin before end"
    )
    assert ends[0] - begins[0] <= 10, "the RFC 2119 exemption must stay a single short paragraph"
    return set(range(begins[0], ends[0] + 1))


def test_rfc2119_keywords_only_inside_requirements(build_index: ModuleType) -> None:
    problems: list[str] = []
    readme_has_exemption = False
    for path in build_index.spec_files(SPEC):
        rel = path.relative_to(REPO).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        reqs, _ = build_index.parse_file(path, rel)
        covered: set[int] = set()
        for r in reqs:
            covered.update(range(r.first_line, r.last_line + 1))
        exempt = _exempt_lines(build_index, path, lines)
        readme_has_exemption |= bool(exempt)
        for number, line in enumerate(lines, 1):
            if number in covered or number in exempt:
                continue
            for m in build_index.KEYWORD_RE.finditer(line):
                problems.append(f"{rel}:{number}: {m.group(1)!r} outside a requirement: {line.strip()[:100]}")
    assert readme_has_exemption, "spec/README.md must define the RFC 2119 keywords inside the exemption markers"
    assert not problems, (
        "RFC 2119 keywords must appear only inside numbered requirements "
        "(write the word in lowercase, or make the sentence a requirement):\n" + "\n".join(problems)
    )


# ------------------------------------------------------------------ (4) citations
def _citing_files() -> list[Path]:
    this = Path(__file__).resolve()
    files: list[Path] = []
    for d in CITING_DIRS:
        root = REPO / d
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.resolve() == this or p.suffix not in CITING_SUFFIXES:
                continue
            if any(part in SKIP_DIR_NAMES for part in p.relative_to(REPO).parts):
                continue
            files.append(p)
    return files


def _citations(paths: list[Path]) -> dict[str, list[str]]:
    """id -> ["file:line", ...] for every requirement-id-shaped token."""
    found: dict[str, list[str]] = {}
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in ID_RE.finditer(line):
                if m.group(1) in NOT_REQUIREMENT_PREFIXES:
                    continue
                found.setdefault(m.group(0), []).append(f"{p.relative_to(REPO).as_posix()}:{number}")
    return found


def _report(undefined: dict[str, list[str]]) -> str:
    out = []
    for rid in sorted(undefined):
        places = undefined[rid]
        shown = ", ".join(places[:5]) + (f", ... ({len(places)} places)" if len(places) > 5 else "")
        out.append(f"  {rid}: cited at {shown}")
    return "\n".join(out)


def test_cited_requirement_ids_are_defined(defined_ids: set[str]) -> None:
    cited = _citations(_citing_files())
    undefined = {rid: where for rid, where in cited.items() if rid not in defined_ids}
    assert not undefined, (
        f"{len(undefined)} requirement id(s) are cited but not defined in spec/*.md "
        "(define them in the spec, or fix the citation):\n" + _report(undefined)
    )


def test_spec_cross_references_are_defined(build_index: ModuleType, defined_ids: set[str]) -> None:
    cited = _citations(build_index.spec_files(SPEC))
    undefined = {rid: where for rid, where in cited.items() if rid not in defined_ids}
    assert not undefined, "the spec cites requirement ids it does not define:\n" + _report(undefined)


# ------------------------------------------------------------------ (5) state tables
def test_state_machines_in_sync_with_tables(sync_tables: ModuleType) -> None:
    doc = SPEC / "state-machines.md"
    text = doc.read_text(encoding="utf-8")
    new, problems = sync_tables.sync(text, sync_tables.load_tables())
    assert not problems, "\n".join(problems)
    assert new == text, "spec/state-machines.md is out of date: run python3 spec/tools/sync_tables.py"


# ------------------------------------------------------------------ (6) message catalog
CATALOG_BEGIN = "<!-- catalog:begin -->"
CATALOG_END = "<!-- catalog:end -->"


def _message_type_names() -> list[str]:
    src = str(REPO / "pyimpl" / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from refrpc.core import messages  # noqa: PLC0415

    return [t.__name__ for t in messages.MESSAGE_TYPES]


def _catalog_headings() -> list[str]:
    lines = (SPEC / "messages.md").read_text(encoding="utf-8").splitlines()
    begins = [i for i, line in enumerate(lines) if line.strip() == CATALOG_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == CATALOG_END]
    assert len(begins) == 1 and len(ends) == 1 and begins[0] < ends[0], (
        f"spec/messages.md must contain {CATALOG_BEGIN} and {CATALOG_END} once each, in that order"
    )
    headings = []
    for line in lines[begins[0] + 1 : ends[0]]:
        m = re.match(r"^###\s+(.+?)\s*$", line)
        if m:
            headings.append(m.group(1))
    return headings


def test_every_message_type_has_a_catalog_section() -> None:
    names = _message_type_names()
    headings = _catalog_headings()
    missing = [n for n in names if n not in headings]
    assert not missing, "message types without a '### Name' section in the catalog of spec/messages.md: " + ", ".join(missing)


def test_every_catalog_section_names_a_message_type() -> None:
    names = set(_message_type_names())
    headings = _catalog_headings()
    extra = [h for h in headings if h not in names]
    assert not extra, "'###' headings in the catalog of spec/messages.md that name no message type: " + ", ".join(extra)
    dups = sorted({h for h in headings if headings.count(h) > 1})
    assert not dups, "message types with more than one catalog section: " + ", ".join(dups)


def test_catalog_follows_schema_union_order() -> None:
    """The catalog lists messages in MESSAGE_TYPES order (the schema's union order)."""
    names = _message_type_names()
    headings = [h for h in _catalog_headings() if h in names]
    assert headings == names, "catalog order differs from MESSAGE_TYPES order"


def test_sec036_key_derivation_example_matches_the_reference() -> None:
    """SEC-036's worked example is what the reference derives: a codec writer checks
    their HMAC labels against it byte for byte."""
    from refrpc.transport._curve import JOIN_LABEL, PEER_LABEL, SERVER_LABEL, ClusterKey

    text = (SPEC / "security.md").read_text(encoding="utf-8")
    block = text.split("**SEC-036**", 1)[1].split("```", 2)[1]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^(server label|peer label|join label|server public|server secret|w1 public|w1 secret)\s+(\S+)", block, re.M)}
    key = ClusterKey(bytes(range(32)), bytes(range(32, 64)))
    public, secret = key.member_keys("w1")
    assert rows == {
        "server label": SERVER_LABEL.hex(), "peer label": PEER_LABEL.hex(), "join label": JOIN_LABEL.hex(),
        "server public": key.server_public.decode(), "server secret": key.server_secret.decode(),
        "w1 public": public.decode(), "w1 secret": secret.decode(),
    }
    assert key.join_proof("w1", public) in block
