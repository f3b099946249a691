"""docs/conformance.md lists every case of the suite, by area, with what it checks."""

from __future__ import annotations

import re
from pathlib import Path

from refrpc_conformance import REGISTRY

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def test_every_case_is_listed_in_the_conformance_docs():
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## What the cases check"):text.index("## Reading the report")]
    listed = set(re.findall(r"`([a-z]+/)?([A-Z][A-Za-z0-9-]+)`", section))
    names = {name for _, name in listed}
    missing = [case_id for case_id in REGISTRY if case_id.split("/", 1)[1] not in names]
    assert not missing, f"cases missing from docs/conformance.md: {missing}"
    unknown = sorted(n for n in names if re.match(r"[A-Z]+-\d{3}-", n) and n not in {c.split("/", 1)[1] for c in REGISTRY})
    assert not unknown, f"docs/conformance.md lists cases that do not exist: {unknown}"
