"""Frames -> Envelope, for frames from anyone.

Whatever the bytes, :func:`decode` returns an :class:`Envelope` or raises a
:class:`DecodeError` subclass, and its cost is bounded by the input size: the
Cap'n Proto reader gets a traversal limit proportional to frame 0 and a small
nesting limit, so pointer tricks (many pointers to one blob, deep nesting)
cannot amplify a small frame into large work (GEN-004, SEC-007).

Enums are strict (GEN-003): an ordinal this schema does not know is a
:class:`MalformedFrame`, except in an ``ErrorCode`` field, where it decodes to
:attr:`~refrpc.core.messages.ErrorCode.UNRECOGNIZED` (ERR-002: an unknown code
is a non-retryable error, never a malformed message).

Like the encoder, each struct plan is compiled once into per-field getter
closures.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Sequence

from ..core.messages import MESSAGE_TYPES, Envelope, ErrorCode
from . import _fast
from ._errors import DecodeError, MalformedFrame, OversizedFrame, UnknownMessage
from ._schema import (
    ENVELOPE_HEADER,
    BODY_DISCRIMINANT_BYTE,
    BODY_FIELD,
    BODY_MEMBERS,
    ENUM_MEMBERS,
    ENVELOPE,
    ID_LIMITS,
    PAYLOAD_FIELDS,
    FieldPlan,
    Kind,
    plan_for,
)

#: Frames larger than this are refused unless the caller says otherwise.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Cap'n Proto pointer nesting limit of SEC-007. Deepest legitimate nesting is
#: ~7 (Envelope > body > list > Arg > Value > nested > RefDescriptor).
NESTING_LIMIT = 64
#: Words the reader may traverse per word of frame 0: SEC-007's "at most 8 times
#: the message size in words". The decoder follows every pointer once, so a
#: well-formed message is traversed once; the factor bounds what aliasing
#: pointers can amplify.
TRAVERSAL_FACTOR = 8

Header = tuple[str, int, str, int, int, int]


class _Context:
    """The frames of the message being decoded, and which ones were used."""

    __slots__ = ("frames", "used")

    def __init__(self, frames: Sequence[Any]) -> None:
        self.frames = frames
        #: used[i] is 1 once a Payload referenced frame i; frame 0 is the envelope.
        self.used = bytearray(len(frames))
        self.used[0] = 1


Getter = Callable[[Any, _Context], Any]
StructDecoder = Callable[[Any, _Context], Any]

_INLINE = PAYLOAD_FIELDS["inline"]
_FRAME = PAYLOAD_FIELDS["frame"]


def _get_payload(p: Any, ctx: _Context) -> bytes:
    which = p._which_str()  # raises on an unknown Payload variant: malformed
    if which == "inline":
        return p._get_by_field(_INLINE)  # type: ignore[no-any-return]
    index = p._get_by_field(_FRAME)
    if not 0 < index < len(ctx.frames):
        raise MalformedFrame(f"payload refers to frame {index}, message has {len(ctx.frames)}")
    if ctx.used[index]:
        raise MalformedFrame(f"frame {index} is referenced by two payloads")
    ctx.used[index] = 1
    data = ctx.frames[index]
    return data if type(data) is bytes else bytes(data)


def _id_checker(where: str, max_bytes: int, requirement: str, may_be_empty: bool) -> Callable[[str], str]:
    safe_chars = max_bytes // 4  # UTF-8 needs at most 4 bytes per character

    def check(value: str) -> str:
        n = len(value)
        if n == 0:
            if not may_be_empty:
                raise MalformedFrame(f"{where}: empty identifier", requirement=requirement)
        elif n > safe_chars and len(value.encode()) > max_bytes:
            raise MalformedFrame(
                f"{where}: identifier longer than {max_bytes} bytes", requirement=requirement
            )
        return value

    return check


def _getter(fp: FieldPlan, owner: type) -> Getter:  # noqa: C901 - one branch per Kind
    field = fp.field
    kind = fp.kind
    where = f"{owner.__name__}.{fp.name}"

    if kind is Kind.SCALAR:
        return lambda r, ctx: r._get_by_field(field)

    if kind is Kind.ID:
        check = _id_checker(where, fp.max_bytes, fp.requirement, fp.may_be_empty)
        return lambda r, ctx: check(r._get_by_field(field))

    if kind is Kind.TEXT_LIST:
        return lambda r, ctx: tuple(r._get_by_field(field))

    if kind is Kind.ID_LIST:
        check = _id_checker(where, fp.max_bytes, fp.requirement, False)
        return lambda r, ctx: tuple([check(s) for s in r._get_by_field(field)])

    if kind is Kind.ENUM:
        assert fp.enum_cls is not None
        members = ENUM_MEMBERS[fp.enum_cls]
        enum_name = fp.enum_cls.__name__

        if fp.enum_cls is ErrorCode:
            unrecognized = ErrorCode.UNRECOGNIZED

            def get_error_code(r: Any, ctx: _Context) -> Any:
                ordinal = r._get_by_field(field).raw
                return members[ordinal] if ordinal < len(members) else unrecognized  # ERR-002

            return get_error_code

        def get_enum(r: Any, ctx: _Context) -> Any:
            ordinal = r._get_by_field(field).raw
            if ordinal < len(members):
                return members[ordinal]
            raise MalformedFrame(
                f"{where}: unknown {enum_name} value {ordinal}", requirement="GEN-003"
            )

        return get_enum

    if kind is Kind.PAYLOAD:
        return lambda r, ctx: _get_payload(r._get_by_field(field), ctx)

    if kind is Kind.PAYLOAD_LIST:
        return lambda r, ctx: tuple([_get_payload(p, ctx) for p in r._get_by_field(field)])

    assert fp.struct_cls is not None
    sub = struct_decoder(fp.struct_cls)

    if kind is Kind.STRUCT:

        def get_struct(r: Any, ctx: _Context) -> Any:
            if not r._has_by_field(field):
                raise MalformedFrame(f"{where}: required field is missing")
            return sub(r._get_by_field(field), ctx)

        return get_struct

    if kind is Kind.OPTIONAL:
        some = fp.some_field

        def get_optional(r: Any, ctx: _Context) -> Any:
            group = r._get_by_field(field)
            if group._which_str() == "none":
                return None
            return sub(group._get_by_field(some), ctx)

        return get_optional

    assert kind is Kind.STRUCT_LIST
    return lambda r, ctx: tuple([sub(item, ctx) for item in r._get_by_field(field)])


_DECODERS: dict[type, StructDecoder] = {}


def struct_decoder(cls: type) -> StructDecoder:
    """The compiled decoder for dataclass ``cls`` (memoized)."""
    decoder = _DECODERS.get(cls)
    if decoder is None:
        getters = tuple(_getter(fp, cls) for fp in plan_for(cls).fields)

        def decoder(r: Any, ctx: _Context) -> Any:
            return cls(*[get(r, ctx) for get in getters])

        _DECODERS[cls] = decoder
    return decoder


#: Union member name -> (member field, decoder).
_BODIES: dict[str, tuple[Any, StructDecoder]] = {
    member: (BODY_FIELD.schema.fields[member], struct_decoder(cls))
    for cls, member in zip(MESSAGE_TYPES, BODY_MEMBERS)
}

_SENDER, _SENDER_INC, _RECEIVER, _RECEIVER_INC, _SEQ, _ACK = ENVELOPE_HEADER
_check_sender = _id_checker("Envelope.sender", *ID_LIMITS["PeerId"], False)
_check_receiver = _id_checker("Envelope.receiver", *ID_LIMITS["PeerId"], False)


def _read_header(root: Any) -> Header:
    sender = root._get_by_field(_SENDER)
    header = (
        sender,
        root._get_by_field(_SENDER_INC),
        root._get_by_field(_RECEIVER),
        root._get_by_field(_RECEIVER_INC),
        root._get_by_field(_SEQ),
        root._get_by_field(_ACK),
    )
    _check_sender(sender)  # no header on the error: the sender is not identifiable
    try:
        _check_receiver(header[2])
    except DecodeError as err:
        raise err._with_header(header) from None
    return header


def _read_body(root: Any, ctx: _Context, frame0: bytes) -> Any:
    group = root._get_by_field(BODY_FIELD)
    try:
        which = group._which_str()
    except Exception:  # pycapnp: the discriminant names no member of our schema
        discriminant = _raw_discriminant(frame0)
        err = UnknownMessage(f"unknown message type (body discriminant {discriminant})")
        err.discriminant = discriminant
        raise err from None
    member, decoder = _BODIES[which]
    body = decoder(group._get_by_field(member), ctx)
    if ctx.used.count(0):
        raise MalformedFrame(f"frame {ctx.used.index(0)} is not referenced by any payload")
    return body


def _raw_discriminant(frame0: bytes) -> int | None:
    """The body discriminant read straight from the bytes (for error messages)."""
    try:
        (last_segment,) = struct.unpack_from("<I", frame0, 0)
        (segment0_words,) = struct.unpack_from("<I", frame0, 4)
        start = ((4 * (2 + last_segment) + 7) // 8) * 8
        end = start + 8 * segment0_words
        (root,) = struct.unpack_from("<Q", frame0, start)
        if root & 3:  # not a plain struct pointer (e.g. a far pointer): give up
            return None
        offset = (root & 0xFFFFFFFF) >> 2
        if offset >= 1 << 29:
            offset -= 1 << 30
        data_bytes = 8 * ((root >> 32) & 0xFFFF)
        if BODY_DISCRIMINANT_BYTE + 2 > data_bytes:
            return 0
        position = start + 8 * (1 + offset) + BODY_DISCRIMINANT_BYTE
        if not start <= position <= end - 2:
            return None
        (value,) = struct.unpack_from("<H", frame0, position)
        return int(value)
    except struct.error:
        return None


def _nbytes(frame: Any) -> int:
    return len(frame) if type(frame) is bytes else memoryview(frame).nbytes


def _open(frame0: bytes) -> Any:
    limit = TRAVERSAL_FACTOR * (len(frame0) // 8)
    return ENVELOPE.from_bytes(frame0, traversal_limit_in_words=limit, nesting_limit=NESTING_LIMIT)


def _try_header(frame0: Any) -> Header | None:
    try:
        frame0 = bytes(frame0)
        with _open(frame0) as root:
            return _read_header(root)
    except Exception:
        return None


def decode(frames: Sequence[Any], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
    """Decode the frames of one multipart message into an envelope.

    Args:
        frames: Frame 0 (the Envelope) and the out-of-band payload frames;
            anything with the buffer protocol (``bytes``, ``memoryview``,
            ``zmq.Frame``).
        max_frame_bytes: The largest frame, and the largest message (all
            frames together), accepted (GEN-004); the ``maxFrameBytes`` this
            peer announced in its Hello/Welcome.

    Returns:
        The envelope. Byte fields are ``bytes``: an out-of-band frame that is
        already ``bytes`` is returned as is (no copy), any other buffer is
        copied into ``bytes``.

    Raises:
        OversizedFrame: A frame, or the whole message, is larger than
            ``max_frame_bytes`` (reported as ``MALFORMED``, GEN-004); header
            attributes are set when frame 0 itself was within the limit and
            readable.
        UnknownMessage: The body is a message type this schema does not know
            (GEN-001); the header attributes are set.
        MalformedFrame: Anything else wrong with the frames (GEN-003, GEN-004,
            ID-007, ZMQ-005, SEC-007); header attributes are set when
            readable. An unknown ``ErrorCode`` is not malformed: it decodes
            to ``ErrorCode.UNRECOGNIZED`` (ERR-002).
    """
    try:
        _check_sizes(frames, max_frame_bytes)
        try:
            return _fast.decode(frames)  # the hot messages, read directly; anything else below
        except _fast.Fallback:
            pass
        return _decode_capnp(frames)
    except (MalformedFrame, OversizedFrame) as err:
        if err.answer is None and len(frames):
            err.answer = answer_key(frames[0], max_frame_bytes)  # GEN-030 (and GEN-008 for seq 0)
        raise


#: The answers whose request a malformed copy still ends (GEN-030): union member ->
#: (message type name, the key fields, in order, with the id type of each or None).
_ANSWER_KEYS: dict[str, tuple[str, tuple[tuple[str, str | None], ...]]] = {
    "taskReply": ("TaskReply", (("taskId", "TaskId"), ("attempt", None))),
    "borrowerRegistered": ("BorrowerRegistered", (("objectId", "ObjectId"), ("forwardId", "ForwardId"))),
    "objectStatus": ("ObjectStatus", (("objectId", "ObjectId"),)),
    "actorStatus": ("ActorStatus", (("actorId", "ActorId"),)),
    "introspectReply": ("IntrospectReply", (("requestId", None),)),
    # Not an answer GEN-008 lets anyone answer: its receiver must know it is one.
    "protocolError": ("ProtocolError", (("relatedSeq", None),)),
}


def answer_key(frame0: Any, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> tuple[str, tuple[object, ...]] | None:
    """GEN-030: the type and correlating key of a malformed answer, read from frame 0
    alone (whatever else in the body is wrong), or None when they cannot be read."""
    try:
        if _nbytes(frame0) > max_frame_bytes:
            return None
        data = bytes(frame0)
        if not data or len(data) % 8:
            return None
        with _open(data) as root:
            group = root._get_by_field(BODY_FIELD)
            which = group._which_str()
            if which not in _ANSWER_KEYS:
                return None
            name, fields = _ANSWER_KEYS[which]
            body = getattr(group, which)
            key: list[object] = []
            for field, id_type in fields:
                value = getattr(body, field)
                if id_type is not None:
                    limit = ID_LIMITS[id_type][0]
                    if not isinstance(value, str) or not value or len(value.encode()) > limit:
                        return None
                key.append(value if id_type is not None else int(value))
            return name, tuple(key)
    except Exception:  # anything unreadable: no key, the request stays open (GEN-030)
        return None


def _check_sizes(frames: Sequence[Any], max_frame_bytes: int) -> None:
    """GEN-004: a message of no frames, or over ``max_frame_bytes``, is refused before anything is read."""
    try:
        count = len(frames)
        sizes = [_nbytes(f) for f in frames]
    except TypeError as exc:
        raise MalformedFrame(f"frames are not a sequence of buffers: {exc}") from None
    if count == 0:
        raise MalformedFrame("no frames")
    total = sum(sizes)
    if total > max_frame_bytes:
        # Hello.maxFrameBytes bounds each frame and the whole message (GEN-004).
        index = next((i for i, size in enumerate(sizes) if size > max_frame_bytes), None)
        if index is None:
            err = OversizedFrame(f"message has {total} bytes, the limit is {max_frame_bytes}")
        else:
            err = OversizedFrame(f"frame {index} has {sizes[index]} bytes, the limit is {max_frame_bytes}")
        header = _try_header(frames[0]) if sizes[0] <= max_frame_bytes else None
        raise err._with_header(header) if header else err


def decode_reference(frames: Sequence[Any], *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
    """:func:`decode` through pycapnp only (the reference the fast path is checked against)."""
    _check_sizes(frames, max_frame_bytes)
    return _decode_capnp(frames)


def _decode_capnp(frames: Sequence[Any]) -> Envelope:
    frame0 = frames[0]
    if type(frame0) is not bytes:
        frame0 = bytes(frame0)  # also guarantees the word alignment capnp needs
    if not frame0 or len(frame0) % 8:
        raise MalformedFrame(f"frame 0 has {len(frame0)} bytes, not a whole number of words")
    ctx = _Context(frames)
    try:
        with _open(frame0) as root:
            header = _read_header(root)
            try:
                body = _read_body(root, ctx, frame0)
            except DecodeError as err:
                err._with_header(header)
                raise
            except Exception as exc:
                raise MalformedFrame(_describe(exc))._with_header(header) from exc
    except DecodeError:
        raise
    except Exception as exc:  # pycapnp: KjException, ValueError, UnicodeDecodeError, ...
        raise MalformedFrame(_describe(exc)) from exc
    return Envelope(*header, body)


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    # KjException texts start with "file.c++:line: failed: ..."; keep the reason.
    if ": failed: " in text:
        text = text.split(": failed: ", 1)[1]
    return f"undecodable frame 0 ({type(exc).__name__}: {text[:200]})"
