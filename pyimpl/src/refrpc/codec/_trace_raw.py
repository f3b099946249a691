"""Fast trace records for a recording peer: ``TraceRecord`` bytes built by hand.

A recording peer writes a record for every frame it sends or receives, so the
cost of one record is part of the cost of every message. Building a
:class:`~refrpc.codec.TraceRecord` and encoding it through pycapnp
(:func:`~refrpc.codec.encode_trace_record`) costs about three times what
:class:`TraceEncoder` does: it lays out the same standard unpacked serialization
(one segment, ``TRC-001``) with :mod:`struct`. The layout (data offsets, pointer
slots) is read from the schema and checked at import, so it cannot drift from
``refrpc.capnp``; ``tests/test_trace_recording.py`` checks that
:func:`~refrpc.codec.read_trace` reads back exactly the fields given.

Every field of ``TraceRecord`` has the default 0 / empty (checked at import),
so values are stored as they are (Cap'n Proto stores ``value XOR default``)
and an empty text or data field is a null pointer.
"""

from __future__ import annotations

import struct

from ._schema import schema
from ._trace import TraceKind

_NODE = schema().TraceRecord.schema
_DATA_WORDS: int = _NODE.node.struct.dataWordCount
_POINTERS: int = _NODE.node.struct.pointerCount
_SIZES = {"uint64": (8, "Q"), "uint16": (2, "H"), "enum": (2, "H")}


def _slots() -> tuple[dict[str, tuple[int, int, str]], dict[str, tuple[int, bool]]]:
    """(numeric field -> (byte offset, size, struct code)), (pointer field -> (slot, is text))."""
    data: dict[str, tuple[int, int, str]] = {}
    pointers: dict[str, tuple[int, bool]] = {}
    for name, field in _NODE.fields.items():
        slot = field.proto.slot
        kind = slot.type.which()
        default = slot.defaultValue.which()
        if default not in ("text", "data") and getattr(slot.defaultValue, default) != 0:
            raise ImportError(f"TraceRecord.{name} has a non-zero default; the raw encoder assumes zero")
        if kind in _SIZES:
            size, code = _SIZES[kind]
            data[name] = (slot.offset * size, size, code)
        elif kind in ("text", "data"):
            pointers[name] = (slot.offset, kind == "text")
        else:
            raise ImportError(f"TraceRecord.{name} has type {kind}, which the raw encoder does not lay out")
    return data, pointers


_DATA_SLOTS, _POINTER_SLOTS = _slots()
#: The numbers in the order :meth:`TraceEncoder.encode` packs them, which is their
#: order in the data section, and the pointer fields in slot order. Cap'n Proto
#: never moves a field (schema evolution only adds), so this is checked, not derived.
_PACK_ORDER = ("incarnation", "recordNo", "monotonicNs", "kind", "protocolMajor", "protocolMinor", "remoteIncarnation", "seq")
_TEXTS = ("peer", "remotePeer", "envelope", "eventName", "objectId", "taskId", "detail", "implementation")
_IN_DATA_ORDER = sorted(_DATA_SLOTS, key=lambda n: _DATA_SLOTS[n][0])
if (tuple(_IN_DATA_ORDER) != _PACK_ORDER
        or sorted(_POINTER_SLOTS, key=lambda n: _POINTER_SLOTS[n][0]) != list(_TEXTS)
        or [_POINTER_SLOTS[n][0] for n in _TEXTS] != list(range(_POINTERS))
        or [n for n, (_, text) in _POINTER_SLOTS.items() if not text] != ["envelope"]):
    raise ImportError("TraceRecord's layout is not the one refrpc.codec._trace_raw packs")


def _data_struct() -> struct.Struct:
    """One ``struct`` format for the whole data section, padding included."""
    fmt, at = "<", 0
    for name in _IN_DATA_ORDER:
        offset, size, code = _DATA_SLOTS[name]
        fmt += "x" * (offset - at) + code
        at = offset + size
    return struct.Struct(fmt + "x" * (8 * _DATA_WORDS - at))


_DATA = _data_struct()
_ROOT = struct.pack("<Q", (_DATA_WORDS << 32) | (_POINTERS << 48))  # struct pointer, offset 0
_POINTER_SECTION = struct.Struct(f"<{_POINTERS}Q")
_TABLE = struct.Struct("<II")
_PAD = tuple(b"\0" * n for n in range(9))
_KIND_ORDINAL = {kind: i for i, kind in enumerate(TraceKind)}
#: The one Data field; every other pointer field is Text.
_ENVELOPE_SLOT = _TEXTS.index("envelope")
#: A list pointer's element-size code for bytes, in place (bits 32-34).
_BYTES = 2 << 32


class TraceEncoder:
    """Encodes the records of one peer incarnation's trace.

    Args:
        peer: The PeerId writing the trace.
        incarnation: Its incarnation.

    Example:
        >>> from refrpc.codec import decode_trace_record
        >>> enc = TraceEncoder("w1", 7)
        >>> r = decode_trace_record(enc.encode(3, 99, TraceKind.EVENT, event_name="transition"))
        >>> (r.peer, r.record_no, r.kind.value, r.event_name)
        ('w1', 3, 'event', 'transition')
    """

    __slots__ = ("peer", "incarnation", "_peer")

    def __init__(self, peer: str, incarnation: int) -> None:
        self.peer = peer
        self.incarnation = incarnation
        self._peer = peer.encode()

    def encode(
        self,
        record_no: int,
        monotonic_ns: int,
        kind: TraceKind,
        remote_peer: str = "",
        remote_incarnation: int = 0,
        seq: int = 0,
        envelope: bytes = b"",
        event_name: str = "",
        object_id: str = "",
        task_id: str = "",
        detail: str = "",
        protocol_major: int = 0,
        protocol_minor: int = 0,
        implementation: str = "",
    ) -> bytes:
        """One framed record (segment table included); concatenations are a trace.

        Raises:
            struct.error: A number outside its field's range.
        """
        data = _DATA.pack(self.incarnation, record_no, monotonic_ns, _KIND_ORDINAL[kind], protocol_major,
                          protocol_minor, remote_incarnation, seq)
        pointers = [0] * _POINTERS
        parts = [b"", _ROOT, data, b""]
        words = 0  # content words laid out so far, after the pointer section
        slot = 0
        for blob in (self._peer, remote_peer, envelope, event_name, object_id, task_id, detail, implementation):
            if blob:  # else a null pointer: the reader's default, "" or b""
                if slot == _ENVELOPE_SLOT:
                    count = len(blob)  # Data
                else:
                    if type(blob) is str:
                        blob = blob.encode()
                    count = len(blob) + 1  # a Text ends with a NUL
                n = (count + 7) >> 3
                pointers[slot] = 1 | ((_POINTERS - slot - 1 + words) << 2) | _BYTES | (count << 35)
                parts.append(blob)
                parts.append(_PAD[8 * n - len(blob)])  # the NUL, then zeros to the word
                words += n
            slot += 1
        parts[0] = _TABLE.pack(0, 1 + _DATA_WORDS + _POINTERS + words)
        parts[3] = _POINTER_SECTION.pack(*pointers)
        return b"".join(parts)
