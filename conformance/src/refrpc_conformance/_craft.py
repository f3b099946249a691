"""Hand-made bad input: frames no honest encoder produces.

The codec refuses to encode what the schema cannot carry, so malformed input is
made by editing encoded frames. Positions are found by *difference*, not by
knowing the codec's layout: two envelopes that differ in exactly one field are
encoded, and the bytes where they differ are that field. This keeps the suite
independent of how the codec lays messages out.
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from typing import Any, Callable

from refrpc.codec import encode
from refrpc.codec._encode import encode_reference
from refrpc.core.messages import Arg, ArgKind, CancelTask, Envelope, RefDescriptor, RemoveLocation, SubmitTask

#: Message type discriminants of 64 and above are reserved for experiments (GEN-006).
EXPERIMENTAL_DISCRIMINANT = 64


def _differing(a: bytes, b: bytes) -> list[int]:
    if len(a) != len(b):
        raise ValueError("the two encodings differ in length; cannot locate the field")
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


def with_discriminant(envelope: Envelope, discriminant: int = EXPERIMENTAL_DISCRIMINANT) -> list[bytes]:
    """The frames of ``envelope`` with its body's union discriminant replaced.

    The body is a ``CancelTask`` whose struct is then read as message type
    ``discriminant`` (a type the receiver does not know, GEN-001, GEN-006).
    """
    base = replace(envelope, body=CancelTask("x" * 8))
    other = replace(envelope, body=RemoveLocation("x" * 8))  # same struct layout, another member
    a, b = encode(base)[0], encode(other)[0]
    at = _differing(a, b)
    if not at or at[-1] - at[0] > 1:
        raise ValueError(f"cannot locate the body discriminant (bytes {at})")
    start = at[0] - (at[0] % 2)  # a UInt16, 2-byte aligned
    frame = bytearray(a)
    frame[start : start + 2] = discriminant.to_bytes(2, "little")
    return [bytes(frame)]


def with_arg_kind(envelope: Envelope, ordinal: int) -> list[bytes]:
    """The frames of ``envelope`` (whose body is a ``SubmitTask`` with one ``ref`` argument)
    with that argument's ``ArgKind`` set to ``ordinal`` (an unknown enum value, GEN-003)."""
    task = envelope.body
    if not isinstance(task, SubmitTask) or len(task.args) != 1 or task.args[0].ref is None:
        raise ValueError("needs a SubmitTask with exactly one ref argument")
    ref: RefDescriptor = task.args[0].ref
    a = encode(replace(envelope, body=replace(task, args=(Arg(ArgKind.REF, ref=ref),))))[0]
    b = encode(replace(envelope, body=replace(task, args=(Arg(ArgKind.SHARED, ref=ref),))))[0]
    at = _differing(a, b)
    if len(at) != 1:
        raise ValueError(f"cannot locate Arg.kind (bytes {at})")
    start = at[0] - (at[0] % 2)
    frame = bytearray(a)
    frame[start : start + 2] = ordinal.to_bytes(2, "little")
    return [bytes(frame)]


def truncate(fraction: float = 0.5) -> Callable[[list[Any]], list[Any]]:
    """A frames hook that cuts frame 0 to ``fraction`` of its length."""

    def hook(frames: list[Any]) -> list[Any]:
        f0 = bytes(frames[0])
        return [f0[: max(1, int(len(f0) * fraction))], *frames[1:]]

    return hook


def drop_payload_frames(frames: list[Any]) -> list[Any]:
    """A frames hook keeping frame 0 only: its payloads then name frames that are not there (ZMQ-005)."""
    return [frames[0]]


def drop_protocol_error_info(frames: list[Any]) -> list[Any]:
    """A frames hook for a ProtocolError: the same envelope and `relatedSeq`, with the
    required `error` pointer left null (VAL-020: a ProtocolError without `error`)."""
    from refrpc.codec._schema import schema

    s = schema()
    with s.Envelope.from_bytes(bytes(frames[0])) as old:
        new = s.Envelope.new_message()
        for field in ("sender", "senderIncarnation", "receiver", "receiverIncarnation", "seq", "ack"):
            setattr(new, field, getattr(old, field))
        new.body.init("protocolError").relatedSeq = old.body.protocolError.relatedSeq
        return [new.to_bytes()]


def add_frame(extra: bytes = b"unreferenced") -> Callable[[list[Any]], list[Any]]:
    """A frames hook appending a frame no payload references (ZMQ-005)."""

    def hook(frames: list[Any]) -> list[Any]:
        return [*frames, extra]

    return hook


def replace_bytes(old: bytes, new: bytes) -> Callable[[list[Any]], list[Any]]:
    """A frames hook replacing ``old`` (which must occur once) by ``new`` of the same
    length in frame 0: to put bytes no encoder writes, such as text that is not UTF-8,
    into a field."""
    if len(old) != len(new):
        raise ValueError("the replacement must keep the frame's length")

    def hook(frames: list[Any]) -> list[Any]:
        f0 = bytes(frames[0])
        if f0.count(old) != 1:
            raise ValueError(f"{old!r} occurs {f0.count(old)} times in frame 0")
        return [f0.replace(old, new), *frames[1:]]

    return hook


def garbage(n: int = 256, seed: int = 5) -> list[bytes]:
    """One frame of seeded random bytes: not an envelope at all."""
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(n))]


def segment_count(frame0: Any) -> int:
    """How many segments the Cap'n Proto message in ``frame0`` declares."""
    (last,) = struct.unpack_from("<I", bytes(frame0[:4]))
    return int(last) + 1


def in_segments(envelope: Envelope) -> list[Any]:
    """The frames of ``envelope`` with frame 0 laid out by Cap'n Proto's own message
    builder, which starts a new segment when the first is full: a large enough
    message comes in two or more segments, joined by far pointers (ZMQ-020)."""
    return list(encode_reference(envelope))


def overstate_first_segment(words: int = 1) -> Callable[[list[Any]], list[Any]]:
    """A frames hook making frame 0's segment table declare ``words`` more words for
    the first segment than the frame holds (ZMQ-020: malformed)."""

    def hook(frames: list[Any]) -> list[Any]:
        f0 = bytearray(bytes(frames[0]))
        (size,) = struct.unpack_from("<I", f0, 4)
        struct.pack_into("<I", f0, 4, size + words)
        return [bytes(f0), *frames[1:]]

    return hook


def with_error_code(envelope: Envelope, ordinal: int) -> list[bytes]:
    """The frames of ``envelope``, whose body holds exactly one ``ErrorInfo``, with that
    error's ``code`` set to ``ordinal`` (a code this version's registry does not define,
    ERR-002). ``envelope``'s error must have code ``TASK_FAILED``."""
    from refrpc.core.messages import ErrorCode, ErrorInfo

    def swap(value: Any) -> Any:  # every ErrorInfo in the body, TASK_FAILED -> WORKER_DIED
        if isinstance(value, ErrorInfo):
            return replace(value, code=ErrorCode.WORKER_DIED) if value.code is ErrorCode.TASK_FAILED else value
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if hasattr(value, "__dataclass_fields__"):
            return replace(value, **{f: swap(getattr(value, f)) for f in value.__dataclass_fields__})
        return value

    a, b = encode(envelope)[0], encode(replace(envelope, body=swap(envelope.body)))[0]
    at = _differing(a, b)
    if len(at) != 1:
        raise ValueError(f"cannot locate ErrorInfo.code (bytes {at})")
    start = at[0] - (at[0] % 2)  # a UInt16, 2-byte aligned
    frame = bytearray(a)
    frame[start : start + 2] = ordinal.to_bytes(2, "little")
    return [bytes(frame)]
