"""The RefRPC codec: protocol messages <-> ZeroMQ frames, via ``refrpc.capnp``.

This package is the only code that imports ``capnp``. It converts between the
core's :class:`~refrpc.core.messages.Envelope` and the frames of one multipart
ZeroMQ message: frame 0 is the Envelope in standard Cap'n Proto serialization,
the other frames are large payloads sent out-of-band without copying (VAL-003).
:func:`peek` reads a message's sender, receiver and type without decoding it.
It also reads and writes the canonical trace format (``TRC-001``): streams of
:class:`TraceRecord` messages (a recording peer writes them with the faster
:class:`TraceEncoder`), the stored form of an object (``OBJ-010``:
:func:`encode_value`, :func:`encode_value_parts`, :func:`decode_value`) and the
portable value encoding (``VAL-004``: :func:`encode_portable`,
:func:`decode_portable`).

Example:
    >>> from refrpc.core.messages import Envelope, Goodbye
    >>> env = Envelope("a", 1, "b", 2, seq=3, ack=0, body=Goodbye("done"))
    >>> decode(encode(env)) == env
    True
"""

from ._decode import DEFAULT_MAX_FRAME_BYTES, decode
from ._encode import DEFAULT_OOB_THRESHOLD, encode
from ._errors import DecodeError, EncodeError, MalformedFrame, OversizedFrame, UnknownMessage, ValueTooLarge
from ._peek import peek
from ._schema import SCHEMA_PATH, schema
from ._trace import (
    DEFAULT_MAX_RECORD_BYTES,
    TraceFormatError,
    TraceKind,
    TraceRecord,
    decode_trace_record,
    encode_trace_record,
    read_trace,
    trace_file_name,
    write_trace,
)
from ._trace_raw import TraceEncoder
from ._value import (
    MAX_PAYLOAD_BYTES,
    MAX_PORTABLE_DEPTH,
    PortableRef,
    decode_portable,
    decode_value,
    encode_portable,
    encode_value,
    encode_value_parts,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_RECORD_BYTES",
    "DEFAULT_OOB_THRESHOLD",
    "MAX_PAYLOAD_BYTES",
    "MAX_PORTABLE_DEPTH",
    "SCHEMA_PATH",
    "DecodeError",
    "EncodeError",
    "MalformedFrame",
    "OversizedFrame",
    "PortableRef",
    "TraceEncoder",
    "TraceFormatError",
    "TraceKind",
    "TraceRecord",
    "UnknownMessage",
    "ValueTooLarge",
    "decode",
    "decode_portable",
    "decode_trace_record",
    "decode_value",
    "encode",
    "encode_portable",
    "encode_trace_record",
    "encode_value",
    "encode_value_parts",
    "peek",
    "read_trace",
    "schema",
    "trace_file_name",
    "write_trace",
]
