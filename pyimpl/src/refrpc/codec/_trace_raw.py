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
        or [n for n, (_, text) in _POINTER_SLOTS.items() if not text] != ["envelope"]
        or _POINTERS != 8):
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
_ROOT = (_DATA_WORDS << 32) | (_POINTERS << 48)  # struct pointer, offset 0
#: What precedes the texts of a record: the segment table (one segment: 0, then
#: its size in words), the root pointer, the data section and the pointer section.
_HEAD = struct.Struct(f"<IIQ{_DATA.format[1:]}{_POINTERS}Q")
_PAD = tuple(b"\0" * n for n in range(9))
_KIND_ORDINAL = {kind: i for i, kind in enumerate(TraceKind)}
_SEND, _RECV, _EVENT = TraceKind.SEND, TraceKind.RECV, TraceKind.EVENT
if [_KIND_ORDINAL[k] for k in (_SEND, _RECV, _EVENT)] != [0, 1, 2]:
    raise ImportError("TraceRecord.Kind's order is not the one refrpc.codec._trace_raw assumes")
#: A list pointer's fixed bits: kind 1 (list) and the element size for bytes (bits 32-34).
_LIST_OF_BYTES = 1 | (2 << 32)


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

    __slots__ = ("peer", "incarnation", "_peer", "_peer_words", "_peer_pointer", "_texts")

    def __init__(self, peer: str, incarnation: int) -> None:
        self.peer = peer
        self.incarnation = incarnation
        # The peer's text is the same in every record: laid out once, NUL and padding included.
        raw = peer.encode()
        count = len(raw) + 1
        self._peer_words = (count + 7) >> 3 if raw else 0
        self._peer = raw + _PAD[8 * self._peer_words - len(raw)] if raw else b""
        self._peer_pointer = _text_pointer(0, 0, count) if raw else 0
        #: Texts that recur in record after record (event names, remote peers), laid
        #: out once: text -> (bytes with NUL and padding, words, the count bits of its pointer).
        self._texts: dict[str, tuple[bytes, int, int]] = {}

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

        Every record goes through here, so it is written out field by field
        rather than as a loop over the pointer slots (about twice as fast).

        Raises:
            struct.error: A number outside its field's range.
        """
        ordinal = 0 if kind is _SEND else 1 if kind is _RECV else 2 if kind is _EVENT else _KIND_ORDINAL[kind]
        parts = [b"", self._peer]
        words = self._peer_words  # content words laid out so far, after the pointer section
        # Each present field: its bytes, then zeros to the word (a Text's first one is its NUL).
        if remote_peer:
            blob = remote_peer.encode()
            n = (len(blob) + 8) >> 3
            p1 = _LIST_OF_BYTES | ((words + 6) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p1 = 0
        if envelope:
            n = (len(envelope) + 7) >> 3
            p2 = _LIST_OF_BYTES | ((words + 5) << 2) | (len(envelope) << 35)  # Data: no NUL
            parts += (envelope, _PAD[8 * n - len(envelope)])
            words += n
        else:
            p2 = 0
        if event_name:
            blob = event_name.encode()
            n = (len(blob) + 8) >> 3
            p3 = _LIST_OF_BYTES | ((words + 4) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p3 = 0
        if object_id:
            blob = object_id.encode()
            n = (len(blob) + 8) >> 3
            p4 = _LIST_OF_BYTES | ((words + 3) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p4 = 0
        if task_id:
            blob = task_id.encode()
            n = (len(blob) + 8) >> 3
            p5 = _LIST_OF_BYTES | ((words + 2) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p5 = 0
        if detail:
            blob = detail.encode()
            n = (len(blob) + 8) >> 3
            p6 = _LIST_OF_BYTES | ((words + 1) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p6 = 0
        if implementation:
            blob = implementation.encode()
            n = (len(blob) + 8) >> 3
            p7 = _LIST_OF_BYTES | ((words + 0) << 2) | ((len(blob) + 1) << 35)
            parts += (blob, _PAD[8 * n - len(blob)])
            words += n
        else:
            p7 = 0
        # Segment table, root pointer, data section and pointer section in one pack.
        parts[0] = _HEAD.pack(0, 1 + _DATA_WORDS + _POINTERS + words, _ROOT, self.incarnation, record_no, monotonic_ns,
                              ordinal, protocol_major, protocol_minor, remote_incarnation, seq,
                              self._peer_pointer, p1, p2, p3, p4, p5, p6, p7)
        return b"".join(parts)

    def _recurring(self, text: str) -> tuple[bytes, int, int]:
        """``text`` laid out (see :func:`_laid_text`), once for texts that recur."""
        laid = self._texts.get(text)
        if laid is None:
            laid = _laid_text(text)
            if len(self._texts) < _TEXTS_KEPT:
                self._texts[text] = laid
        return laid

    def event(self, record_no: int, monotonic_ns: int, name: str, object_id: str, task_id: str, detail: str) -> bytes:
        """An ``event`` record: :meth:`encode` with kind EVENT and only these fields
        (the same bytes; ``tests/test_trace_recording.py`` compares them). Events
        are most of a trace, so theirs is the shortest path."""
        laid = self._recurring(name)
        obj, task, info = _laid_text(object_id), _laid_text(task_id), _laid_text(detail)
        words = self._peer_words
        p3 = _LIST_OF_BYTES | ((words + 4) << 2) | laid[2] if laid[1] else 0
        words += laid[1]
        p4 = _LIST_OF_BYTES | ((words + 3) << 2) | obj[2] if obj[1] else 0
        words += obj[1]
        p5 = _LIST_OF_BYTES | ((words + 2) << 2) | task[2] if task[1] else 0
        words += task[1]
        p6 = _LIST_OF_BYTES | ((words + 1) << 2) | info[2] if info[1] else 0
        words += info[1]
        return b"".join((_HEAD.pack(0, 1 + _DATA_WORDS + _POINTERS + words, _ROOT, self.incarnation, record_no,
                                    monotonic_ns, 2, 0, 0, 0, 0, self._peer_pointer, 0, 0, p3, p4, p5, p6, 0),
                         self._peer, laid[0], obj[0], task[0], info[0]))

    def message(self, record_no: int, monotonic_ns: int, kind: TraceKind, remote_peer: str, remote_incarnation: int,
                seq: int, envelope: bytes, detail: str) -> bytes:
        """A ``send`` or ``recv`` record: :meth:`encode` with only these fields (the same bytes)."""
        laid = self._recurring(remote_peer)
        info = _laid_text(detail)
        words = self._peer_words
        p1 = _LIST_OF_BYTES | ((words + 6) << 2) | laid[2] if laid[1] else 0
        words += laid[1]
        n = (len(envelope) + 7) >> 3  # Data: no NUL
        p2 = _LIST_OF_BYTES | ((words + 5) << 2) | (len(envelope) << 35) if n else 0
        words += n
        p6 = _LIST_OF_BYTES | ((words + 1) << 2) | info[2] if info[1] else 0
        words += info[1]
        ordinal = 0 if kind is _SEND else 1 if kind is _RECV else _KIND_ORDINAL[kind]
        return b"".join((_HEAD.pack(0, 1 + _DATA_WORDS + _POINTERS + words, _ROOT, self.incarnation, record_no,
                                    monotonic_ns, ordinal, 0, 0, remote_incarnation, seq, self._peer_pointer, p1, p2,
                                    0, 0, 0, p6, 0),
                         self._peer, laid[0], envelope, _PAD[8 * n - len(envelope)], info[0]))


#: How many recurring texts a :class:`TraceEncoder` keeps laid out (peers and event names are few).
_TEXTS_KEPT = 256


def _laid_text(text: str) -> tuple[bytes, int, int]:
    """``text`` as a Text's content (NUL and padding to the word), its words, and its
    pointer's count bits; empty text is a null pointer: no bytes, no words."""
    if not text:
        return b"", 0, 0
    blob = text.encode()
    n = (len(blob) + 8) >> 3
    return blob + _PAD[8 * n - len(blob)], n, (len(blob) + 1) << 35


def _text_pointer(slot: int, words: int, count: int) -> int:
    """The list pointer in ``slot`` to ``count`` bytes that start ``words`` words after the pointer section.

    :meth:`TraceEncoder.encode` writes it out inline (``_LIST_OF_BYTES |
    ((words + 7 - slot) << 2) | (count << 35)``) for speed; this is its definition.
    """
    return _LIST_OF_BYTES | ((_POINTERS - slot - 1 + words) << 2) | (count << 35)
