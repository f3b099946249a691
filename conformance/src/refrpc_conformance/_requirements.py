"""The spec's requirements, read from ``spec/requirements.json``.

Cases quote the text of the requirements they check, and a failed check is
graded by the requirement's level: a missed MUST fails the case, a missed SHOULD
makes it NON-STRICT (CNF-014, section 4 of conformance-hooks.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

#: Levels whose violation fails a case.
ABSOLUTE_LEVELS = frozenset({"MUST", "MUST NOT", "REQUIRED", "SHALL", "SHALL NOT"})
#: Levels whose violation makes a case NON-STRICT.
RECOMMENDED_LEVELS = frozenset({"SHOULD", "SHOULD NOT", "RECOMMENDED"})


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of the spec, as the index lists it."""

    id: str
    #: The strongest keyword of the paragraph: "MUST", "SHOULD", "MAY", ...
    level: str
    #: The paragraph, in markdown.
    text: str
    #: The spec file that defines it, relative to the repository root.
    file: str = ""
    #: The section heading it sits under.
    section: str = ""


class Requirements:
    """The requirement index, by id.

    Args:
        entries: The requirements.
        source: Where they were read from, for messages.
    """

    def __init__(self, entries: list[Requirement], source: str = "") -> None:
        self._by_id = {r.id: r for r in entries}
        self.source = source

    def __contains__(self, req_id: object) -> bool:
        return req_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        """Every requirement id, in the index's order."""
        return list(self._by_id)

    def get(self, req_id: str) -> Requirement | None:
        """The requirement, or None if the index does not define it."""
        return self._by_id.get(req_id)

    def level(self, req_id: str) -> str:
        """The requirement's level; MUST for an id the index does not know."""
        req = self._by_id.get(req_id)
        return req.level if req else "MUST"

    def text(self, req_id: str) -> str:
        """The requirement's text, or a placeholder when the index is missing."""
        req = self._by_id.get(req_id)
        return req.text if req else f"({req_id}: text not available, spec/requirements.json not found)"


def find_requirements_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Where ``requirements.json`` is: an explicit path, ``$REFRPC_SPEC_DIR``, or the
    ``spec/`` directory of the checkout this package was installed from."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("REFRPC_SPEC_DIR")
    if env:
        return Path(env) / "requirements.json"
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "spec" / "requirements.json"
        if candidate.is_file():
            return candidate
    return None


def load_requirements(path: str | os.PathLike[str] | None = None) -> Requirements:
    """Read the requirement index; an empty index if it cannot be found.

    Args:
        path: ``requirements.json`` itself; by default :func:`find_requirements_file`.
    """
    found = find_requirements_file(path)
    if found is None or not found.is_file():
        if path:
            raise FileNotFoundError(f"requirement index not found: {path}")
        return Requirements([], source="")
    data = json.loads(found.read_text(encoding="utf-8"))
    entries = [
        Requirement(
            id=item["id"],
            level=item.get("level", "MUST"),
            text=item.get("text", ""),
            file=item.get("file", ""),
            section=item.get("section", ""),
        )
        for item in data.get("requirements", [])
    ]
    return Requirements(entries, source=str(found))
