"""Which requirements the suite checks, and why some cannot be checked on the wire.

``refrpc-conformance --coverage`` prints, for every requirement of the index, the
cases that cite it, or the reason it is not testable on the wire, or that no case
checks it yet. A requirement is listed in :data:`NOT_ON_THE_WIRE` only when no
sequence of messages and control requests can tell an implementation that keeps it
from one that breaks it; the implementation's own tests must cover it.
"""

from __future__ import annotations

from typing import Iterable

from ._case import CaseSpec
from ._requirements import Requirements

#: Requirement id -> why no case can check it through the wire and the control channel.
NOT_ON_THE_WIRE: dict[str, str] = {
    "SEC-020": (
        "what a peer does when its own handling of a message fails for a reason the spec does not name: a "
        "conforming input never causes such a fault, so a case cannot make one happen; an implementation shows it "
        "with its own fault injection (pyimpl: the core test of a handler that raises, and make fuzz)"
    ),
    "SEC-013": "how an operator protects trace files and introspection dumps at rest: nothing on the wire shows it",
    "SES-037": (
        "a permission, not a duty: after LIV-018's handshake timeout a peer either fails later sends to the "
        "remote at once or, with a local setting, greets it again with a fresh Hello, which the remote cannot "
        "tell from a first handshake; every behaviour conforms, so no case can fail (the duties it rests on are "
        "LIV-018's, which its case checks)"
    ),
    "SES-022": (
        "when an initiator sends its first message after the Welcome: every greeting the control requests make an "
        "IUT send has a message queued, which it sends once the Welcome is in, so an IUT that sends it at once "
        "and one that waits for its next heartbeat differ only in timing, and the Heartbeat an initiator with "
        "nothing queued owes cannot be caused from the control channel (pyimpl: the SES-022 core tests in "
        "test_core_session.py)"
    ),
    "SEC-017": (
        "the file-system permissions of the ipc:// directory of a cluster on one host without CURVE: the suite "
        "speaks tcp:// to one process and cannot see the directory"
    ),
}


def coverage(cases: Iterable[CaseSpec], requirements: Requirements) -> list[tuple[str, str, str]]:
    """One row per requirement of the index: (id, "cases" | "not on the wire" | "no case yet", detail)."""
    cited: dict[str, list[str]] = {}
    for spec in cases:
        for req in spec.requirements:
            cited.setdefault(req, []).append(spec.id)
    rows = []
    for req in requirements.ids():
        if req in cited:
            rows.append((req, "cases", ", ".join(cited[req])))
        elif req in NOT_ON_THE_WIRE:
            rows.append((req, "not on the wire", NOT_ON_THE_WIRE[req]))
        else:
            rows.append((req, "no case yet", ""))
    return rows
