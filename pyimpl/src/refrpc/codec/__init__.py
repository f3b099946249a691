"""The RefRPC codec: protocol messages <-> ZeroMQ frames, via ``refrpc.capnp``.

This package is the only code that imports ``capnp``. It converts between the
core's :class:`~refrpc.core.messages.Envelope` and the frames of one multipart
ZeroMQ message: frame 0 is the Envelope in standard Cap'n Proto serialization,
the other frames are large payloads sent out-of-band without copying (VAL-003).
It also reads and writes the canonical trace format (``TRC-001``): streams of
:class:`TraceRecord` messages.

Example:
    >>> from refrpc.core.messages import Envelope, Goodbye
    >>> env = Envelope("a", 1, "b", 2, seq=3, ack=0, body=Goodbye("done"))
    >>> decode(encode(env)) == env
    True
"""

from ._decode import DEFAULT_MAX_FRAME_BYTES, decode
from ._encode import DEFAULT_OOB_THRESHOLD, encode
from ._errors import DecodeError, EncodeError, MalformedFrame, OversizedFrame, UnknownMessage
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

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_RECORD_BYTES",
    "DEFAULT_OOB_THRESHOLD",
    "SCHEMA_PATH",
    "DecodeError",
    "EncodeError",
    "MalformedFrame",
    "OversizedFrame",
    "TraceFormatError",
    "TraceKind",
    "TraceRecord",
    "UnknownMessage",
    "decode",
    "decode_trace_record",
    "encode",
    "encode_trace_record",
    "read_trace",
    "schema",
    "trace_file_name",
    "write_trace",
]
