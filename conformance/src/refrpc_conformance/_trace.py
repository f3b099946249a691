"""The wire trace of a case: every message the suite's peers sent or received.

A failed check is reported with the trace of its case (CNF-014), so each record
keeps the decoded envelope (or why it could not be decoded) and a one-line
summary readable without the schema at hand.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refrpc.codec import PortableRef, decode_portable
from refrpc.core.messages import Encoding, Envelope, Value

#: Bytes fields longer than this are shown by length only.
_SHOW_BYTES = 24


@dataclass
class TraceRecord:
    """One message, in or out, as the suite saw it."""

    #: Seconds since the case started.
    t: float
    #: "in" (the IUT to the suite) or "out" (the suite to the IUT).
    direction: str
    #: The suite peer that sent or received it.
    local: str
    #: The other side's PeerId, when known.
    remote: str
    #: Message type name ("SubmitTask"), or "?" for frames that did not decode.
    type: str
    seq: int = 0
    ack: int = 0
    #: A one-line rendering of the body.
    summary: str = ""
    #: What happened to it: "delivered", "duplicate", "buffered", "sent",
    #: "malformed: ...", "not sent: silent", ...
    disposition: str = ""
    #: The size of each frame in bytes.
    frame_sizes: list[int] = field(default_factory=list)
    #: The decoded envelope, when there is one (not serialized in reports).
    envelope: Envelope | None = None
    #: Frame 0 exactly as it crossed the socket, and the suite peer's incarnation:
    #: what a canonical trace record needs (TRC-005; see :func:`write_canonical`).
    frame0: bytes = b""
    local_incarnation: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "direction": self.direction,
            "local": self.local,
            "remote": self.remote,
            "type": self.type,
            "seq": self.seq,
            "ack": self.ack,
            "summary": self.summary,
            "disposition": self.disposition,
            "frame_sizes": list(self.frame_sizes),
        }

    def line(self) -> str:
        arrow = "<-" if self.direction == "in" else "->"
        where = f"{self.local} {arrow} {self.remote or '?'}"
        extra = f" [{self.disposition}]" if self.disposition not in ("delivered", "sent") else ""
        return f"{self.t:8.3f}  {where:<28} seq={self.seq:<4} ack={self.ack:<4} {self.type}: {self.summary}{extra}"


def describe_value(value: Value) -> str:
    """A short rendering of a ``Value``: the portable tree when it is one."""
    nested = f", nested={[describe(r) for r in value.nested]}" if value.nested else ""
    if value.encoding is Encoding.PORTABLE:
        try:
            tree = decode_portable(value.data)
        except Exception as exc:  # shown, not judged: the case judges
            return f"portable<undecodable: {exc}>{nested}"
        return f"portable {_render(tree)}{nested}"
    return f"{value.encoding.value} <{value.size} bytes>{nested}"


def _render(tree: Any, depth: int = 0) -> str:
    if depth > 6:
        return "..."
    if isinstance(tree, (bytes, bytearray, memoryview)):
        data = bytes(tree)
        return repr(data) if len(data) <= _SHOW_BYTES else f"<{len(data)} bytes>"
    if isinstance(tree, PortableRef):
        return f"ref#{tree.index}"
    if isinstance(tree, list):
        items = [_render(x, depth + 1) for x in tree[:8]]
        more = f", ... {len(tree)} items" if len(tree) > 8 else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k!r}: {_render(v, depth + 1)}" for k, v in list(tree.items())[:8]) + "}"
    text = repr(tree)
    return text if len(text) <= 80 else text[:77] + "..."


def describe(obj: Any) -> str:
    """A one-line rendering of a message body or any part of one."""
    if isinstance(obj, Value):
        return describe_value(obj)
    if isinstance(obj, enum.Enum):
        return str(obj.value)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _render(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(describe(x) for x in obj) + "]"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        parts = []
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None or value == () or value == "":
                continue
            if f.default is not dataclasses.MISSING and value == f.default and not isinstance(value, bool):
                continue  # unset numbers stay out of the way; flags are always shown
            parts.append(f"{f.name}={describe(value)}")
        return f"{type(obj).__name__}(" + ", ".join(parts) + ")"
    text = repr(obj)
    return text if len(text) <= 120 else text[:117] + "..."


def summarize_body(body: Any) -> str:
    """The summary of a message body, without the type name (the record has it)."""
    text = describe(body)
    name = type(body).__name__
    if text.startswith(name + "("):
        text = text[len(name) + 1 : -1]
    return text


def write_canonical(trace: list[TraceRecord], directory: Path, *, started_ns: int = 0) -> list[Path]:
    """Write a case's wire trace as canonical trace files (spec/trace-format.md), one
    per suite peer, named as TRC-011 says, so that ``refrpc-trace`` can merge them with
    the traces the IUT recorded itself. Frames the suite made up by hand are recorded
    byte for byte too; that is what went on the wire (TRC-005)."""
    from refrpc.codec import TraceKind, trace_file_name, write_trace
    from refrpc.codec import TraceRecord as Canonical
    from refrpc.core.messages import PROTOCOL_MAJOR, PROTOCOL_MINOR

    directory.mkdir(parents=True, exist_ok=True)
    by_peer: dict[tuple[str, int], list[TraceRecord]] = {}
    for rec in trace:
        if rec.frame0 and rec.local_incarnation and rec.disposition != "not sent: silent":
            by_peer.setdefault((rec.local, rec.local_incarnation), []).append(rec)
    written = []
    for (peer, incarnation), records in sorted(by_peer.items()):
        out = [Canonical(peer, incarnation, 0, started_ns, TraceKind.HEADER, protocol_major=PROTOCOL_MAJOR,
                         protocol_minor=PROTOCOL_MINOR, implementation="refrpc-conformance/0.1")]
        last_ns = started_ns
        for rec in records:
            env = rec.envelope
            if rec.direction == "out":
                kind, remote_inc = TraceKind.SEND, env.receiver_incarnation if env is not None else 0
            else:
                kind, remote_inc = TraceKind.RECV, env.sender_incarnation if env is not None else 0
            last_ns = max(last_ns, started_ns + int(rec.t * 1e9))  # TRC-004: never backwards
            out.append(Canonical(peer, incarnation, len(out), last_ns, kind, remote_peer=rec.remote,
                                 remote_incarnation=remote_inc, seq=rec.seq, envelope=rec.frame0))
        path = directory / trace_file_name(peer, incarnation)
        with open(path, "wb") as f:
            write_trace(f, out)
        written.append(path)
    return written
