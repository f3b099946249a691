"""The canonical trace format (spec ``trace-format.md``): records <-> bytes.

A trace is a sequence of ``TraceRecord`` Cap'n Proto messages written back to
back, each in the standard unpacked serialization with its own segment table
(Cap'n Proto's standard stream framing, ``TRC-001``). :func:`write_trace`
writes such a stream and :func:`read_trace` reads one, record by record, with a
bounded cost per record. A reader uses every complete record before a damaged
or incomplete one (``TRC-012``): :func:`read_trace` yields them, then raises
:class:`TraceFormatError`, which says how many records were good and whether
the stream merely ended inside a record (the writer crashed mid-write) or holds
bytes that are not a record at all.

This module is only the byte format. The rules about a trace's *content* (the
first record is the header, ``recordNo`` counts 0, 1, 2, ..., ``detail`` is a
JSON object) are the writer's to follow and the inspector's to check.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import struct
from dataclasses import dataclass
from typing import IO, Any, Iterable, Iterator

from ._errors import DecodeError, EncodeError
from ._schema import camel, schema

_WIRE = schema().TraceRecord
_FIELDS = _WIRE.schema.fields


class TraceKind(str, enum.Enum):
    """What a :class:`TraceRecord` describes (the schema's ``TraceRecord.Kind``)."""

    SEND = "send"  #: I sent ``envelope`` to ``remote_peer``
    RECV = "recv"  #: I received ``envelope`` from ``remote_peer``
    EVENT = "event"  #: something happened inside me: ``event_name``
    HEADER = "header"  #: the first record of a trace (``TRC-002``)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One record of a trace; mirrors the schema's ``TraceRecord`` field by field.

    Fields that do not apply to a record's ``kind`` keep their defaults (empty,
    0), which is also what Cap'n Proto reads for a field that was never written.
    """

    #: The PeerId of the peer writing the trace.
    peer: str
    #: Its incarnation (``ID-002``).
    incarnation: int
    #: Position in the trace: 0 for the header, then 1, 2, ... (``TRC-004``).
    record_no: int
    #: The writer's monotonic clock in nanoseconds (``TRC-004``).
    monotonic_ns: int
    kind: TraceKind
    #: For send/recv: the other peer's PeerId.
    remote_peer: str = ""
    #: For send/recv: the other peer's incarnation, 0 if not known yet.
    remote_incarnation: int = 0
    #: For send/recv: the envelope's ``seq`` (``TRC-005``).
    seq: int = 0
    #: For send/recv: frame 0 exactly as it went on the wire (``TRC-005``).
    envelope: bytes = b""
    #: For event: a name from the event registry, or ``x-...`` (``TRC-007``).
    event_name: str = ""
    #: For event: the object concerned, or empty.
    object_id: str = ""
    #: For event: the task concerned, or empty.
    task_id: str = ""
    #: Empty, or the text of a JSON object; the cause under ``"cause"`` (``TRC-009``).
    detail: str = ""
    #: For header: the protocol major version the writer speaks.
    protocol_major: int = 0
    #: For header: the protocol minor version the writer speaks.
    protocol_minor: int = 0
    #: For header: implementation name and version, e.g. ``refrpc-py/0.1.0``.
    implementation: str = ""


class TraceFormatError(DecodeError):
    """Bytes of a trace that are not a complete, well-formed ``TraceRecord``.

    Raised by :func:`read_trace` after it has yielded every good record before
    the bad one, and by :func:`decode_trace_record`. The header attributes of
    :class:`DecodeError` do not apply and keep their "unknown" values.

    Attributes:
        records_read: How many records before this point were read fine.
        offset: Byte offset in the stream where the bad record starts.
        truncated: True if the stream ended inside that record (a writer that
            crashed mid-write, which a reader accepts, ``TRC-012``); False if
            the bytes are not a record at all (a corrupt trace).
    """

    requirement = "TRC-001"

    def __init__(self, message: str, *, records_read: int = 0, offset: int = 0, truncated: bool = False) -> None:
        super().__init__(message)
        self.records_read = records_read
        self.offset = offset
        self.truncated = truncated


# ---------------------------------------------------------------- the mapping
#: (dataclass field name, schema field) for every field but ``kind``.
_PLAIN: tuple[tuple[str, Any], ...] = tuple(
    (f.name, _FIELDS[camel(f.name)]) for f in dataclasses.fields(TraceRecord) if f.name != "kind"
)
_KIND = _FIELDS["kind"]
_KINDS: tuple[TraceKind, ...] = tuple(TraceKind)
_KIND_ORDINALS = {kind: ordinal for ordinal, kind in enumerate(_KINDS)}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TraceRecord)}


def _check_mapping() -> None:
    wire = sorted(_FIELDS)
    python = sorted(camel(f.name) for f in dataclasses.fields(TraceRecord))
    if wire != python:
        raise ImportError(f"schema TraceRecord {wire} does not match TraceRecord {python}")
    enumerants = _KIND.schema.enumerants  # type: ignore[attr-defined]
    by_ordinal = sorted(enumerants, key=enumerants.__getitem__)
    if by_ordinal != [kind.value for kind in _KINDS]:
        raise ImportError(f"schema TraceRecord.Kind {by_ordinal} does not match TraceKind")


_check_mapping()

#: Cap'n Proto's stream framing: at most this many segments per message.
MAX_SEGMENTS = 512
#: Records larger than this are refused unless the caller says otherwise. A
#: record holds one frame 0, which is at most the writer's ``maxFrameBytes``.
DEFAULT_MAX_RECORD_BYTES = 256 * 1024 * 1024
_NESTING_LIMIT = 8
_TRAVERSAL_FACTOR = 8
_MIN_TRAVERSAL_WORDS = 64


# ---------------------------------------------------------------- one record
def encode_trace_record(record: TraceRecord) -> bytes:
    """One record as a standalone Cap'n Proto message, segment table included.

    Concatenating the results is a trace (``TRC-001``).

    Raises:
        EncodeError: The record cannot be represented: a value outside its
            field's range, a wrong type, or not a :class:`TraceRecord`.
    """
    if type(record) is not TraceRecord:
        raise EncodeError(f"expected TraceRecord, got {type(record).__name__}")
    try:
        msg = _WIRE.new_message()
        for name, field in _PLAIN:
            value = getattr(record, name)
            if value != _DEFAULTS[name] or type(value) is not type(_DEFAULTS[name]):
                msg._set_by_field(field, value)
        ordinal = _KIND_ORDINALS[TraceKind(record.kind)]
        if ordinal:
            msg._set_by_field(_KIND, ordinal)
        return msg.to_bytes()  # type: ignore[no-any-return]
    except Exception as exc:  # pycapnp reports range/type errors in several types
        text = str(exc).strip().splitlines()
        raise EncodeError(f"cannot encode TraceRecord: {text[0] if text else type(exc).__name__}") from exc


def _from_message(data: bytes, words: int) -> TraceRecord:
    limit = max(_MIN_TRAVERSAL_WORDS, _TRAVERSAL_FACTOR * words)
    with _WIRE.from_bytes(data, traversal_limit_in_words=limit, nesting_limit=_NESTING_LIMIT) as r:
        values = {name: r._get_by_field(field) for name, field in _PLAIN}
        ordinal = r._get_by_field(_KIND).raw
    if ordinal >= len(_KINDS):
        raise ValueError(f"unknown TraceRecord kind {ordinal}")
    values["envelope"] = bytes(values["envelope"])
    return TraceRecord(kind=_KINDS[ordinal], **values)


def decode_trace_record(data: bytes) -> TraceRecord:
    """The record in ``data``, which must be exactly one framed message.

    Raises:
        TraceFormatError: ``data`` is not exactly one well-formed record.
    """
    records = read_trace(data)
    try:
        record = next(records)
    except StopIteration:
        raise TraceFormatError("no record", truncated=True) from None
    for _extra in records:
        raise TraceFormatError("more than one record", records_read=1)
    return record


# ---------------------------------------------------------------- streams
def write_trace(stream: IO[bytes], records: Iterable[TraceRecord]) -> int:
    """Append ``records`` to a binary stream, one ``write`` per record (``TRC-012``).

    Returns:
        The number of records written.

    Raises:
        EncodeError: A record cannot be encoded; the records before it have
            been written.
    """
    count = 0
    for record in records:
        stream.write(encode_trace_record(record))
        count += 1
    return count


def _read_exactly(stream: IO[bytes], n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    data = stream.read(n)
    if data is None:
        data = b""
    if len(data) == n:
        return data
    chunks = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def read_trace(
    stream: IO[bytes] | bytes | bytearray | memoryview,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[TraceRecord]:
    """The records of a trace, in order, read lazily from a binary stream.

    Args:
        stream: A binary file object (anything with ``read(n)``), or the whole
            trace as a bytes-like object.
        max_record_bytes: The largest record accepted; a segment table that
            claims more is treated as corrupt rather than read.

    Yields:
        Each complete, well-formed record.

    Raises:
        TraceFormatError: After the last good record, if the stream ends inside
            a record (``truncated`` is true) or holds bytes that are not a
            record. ``records_read`` counts the records yielded before it.
            Nothing else is raised for any content of the stream; errors of the
            stream object itself (``OSError``) pass through.
    """
    if isinstance(stream, (bytes, bytearray, memoryview)):
        stream = io.BytesIO(bytes(stream))
    count = 0
    offset = 0

    def fail(message: str, truncated: bool) -> TraceFormatError:
        return TraceFormatError(
            f"trace record {count} at byte {offset}: {message}",
            records_read=count,
            offset=offset,
            truncated=truncated,
        )

    while True:
        head = _read_exactly(stream, 4)
        if not head:
            return
        if len(head) < 4:
            raise fail("the stream ends inside the segment table", True)
        segments = struct.unpack("<I", head)[0] + 1
        if segments > MAX_SEGMENTS:
            raise fail(f"segment table claims {segments} segments", False)
        table_rest = 4 * segments + (4 if segments % 2 == 0 else 0)
        table = _read_exactly(stream, table_rest)
        if len(table) < table_rest:
            raise fail("the stream ends inside the segment table", True)
        sizes = struct.unpack_from(f"<{segments}I", table)
        words = sum(sizes)
        size = 4 + table_rest + 8 * words
        if size > max_record_bytes:
            raise fail(f"record claims {size} bytes, the limit is {max_record_bytes}", False)
        if words == 0:
            raise fail("record has no content", False)
        body = _read_exactly(stream, 8 * words)
        if len(body) < 8 * words:
            raise fail("the stream ends inside the record", True)
        try:
            record = _from_message(head + table + body, words)
        except Exception as exc:  # pycapnp: KjException, ValueError, UnicodeDecodeError, ...
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            if ": failed: " in reason:
                reason = reason.split(": failed: ", 1)[1]
            raise fail(f"not a TraceRecord ({type(exc).__name__}: {reason[:200]})", False) from exc
        yield record
        count += 1
        offset += size


def trace_file_name(peer: str, incarnation: int) -> str:
    """The recommended file name of a peer incarnation's trace (``TRC-011``).

    Example:
        >>> trace_file_name("worker-1", 0xBEEF)
        'worker-1.000000000000beef.rrtrace'
    """
    return f"{peer}.{incarnation:016x}.rrtrace"
