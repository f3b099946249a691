"""Envelope -> frames.

Each struct plan is compiled once into a list of small per-field setter
closures, so encoding a message is a loop over setters with no per-field type
dispatch. Values equal to the schema default are not written: Cap'n Proto reads
an unwritten field as its default, so the bytes mean the same and are smaller.
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.messages import MESSAGE_TYPES, Envelope
from . import _fast
from ._errors import EncodeError
from ._schema import (
    ENVELOPE_HEADER,
    BODY_FIELD,
    BODY_MEMBERS,
    ENUM_ORDINALS,
    ENVELOPE,
    PAYLOAD_FIELDS,
    FieldPlan,
    Kind,
    plan_for,
)

#: Payloads of at least this many bytes travel as separate frames (VAL-003).
DEFAULT_OOB_THRESHOLD = 64 * 1024

Frames = list[Any]  # frame 0 is bytes, the rest are the caller's own buffers
Setter = Callable[[Any, Any, Frames, int], None]
StructEncoder = Callable[[Any, Any, Frames, int], None]

_INLINE = PAYLOAD_FIELDS["inline"]
_FRAME = PAYLOAD_FIELDS["frame"]


def _put_payload(builder: Any, data: Any, frames: Frames, threshold: int) -> None:
    size = len(data) if type(data) is bytes else memoryview(data).nbytes
    if size >= threshold:
        # Zero-copy: the caller's buffer itself becomes the frame.
        frames.append(data)
        builder._set_by_field(_FRAME, len(frames) - 1)
    else:
        builder._set_by_field(_INLINE, data if type(data) is bytes else bytes(data))


def _setter(fp: FieldPlan) -> Setter:  # noqa: C901 - one branch per Kind, on purpose
    name, field, default = fp.name, fp.field, fp.default
    kind = fp.kind

    if kind is Kind.SCALAR or kind is Kind.ID:

        def set_scalar(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if value != default or type(value) is not type(default):
                b._set_by_field(field, value)

        return set_scalar

    if kind is Kind.ENUM:
        ordinals = ENUM_ORDINALS

        def set_enum(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            ordinal = ordinals[getattr(obj, name)]
            if ordinal != default:
                b._set_by_field(field, ordinal)

        return set_enum

    if kind is Kind.TEXT_LIST or kind is Kind.ID_LIST:

        def set_texts(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if value:
                b._set_by_field(field, list(value))

        return set_texts

    if kind is Kind.PAYLOAD:

        def set_payload(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if len(value):
                _put_payload(b._init_by_field(field), value, frames, thr)

        return set_payload

    if kind is Kind.PAYLOAD_LIST:

        def set_payloads(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if value:
                lst = b._init_by_field(field, len(value))
                for i, item in enumerate(value):
                    _put_payload(lst[i], item, frames, thr)

        return set_payloads

    assert fp.struct_cls is not None
    sub = struct_encoder(fp.struct_cls)

    if kind is Kind.STRUCT:

        def set_struct(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if value is None:
                raise EncodeError(f"{type(obj).__name__}.{name} is required")
            sub(b._init_by_field(field), value, frames, thr)

        return set_struct

    if kind is Kind.OPTIONAL:
        some = fp.some_field

        def set_optional(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            value = getattr(obj, name)
            if value is not None:  # the union defaults to `none`
                sub(b._get_by_field(field)._init_by_field(some), value, frames, thr)

        return set_optional

    assert kind is Kind.STRUCT_LIST

    def set_structs(b: Any, obj: Any, frames: Frames, thr: int) -> None:
        value = getattr(obj, name)
        if value:
            lst = b._init_by_field(field, len(value))
            for i, item in enumerate(value):
                sub(lst[i], item, frames, thr)

    return set_structs


_ENCODERS: dict[type, StructEncoder] = {}


def struct_encoder(cls: type) -> StructEncoder:
    """The compiled encoder for dataclass ``cls`` (memoized)."""
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        setters = tuple(_setter(fp) for fp in plan_for(cls).fields)

        def encoder(b: Any, obj: Any, frames: Frames, thr: int) -> None:
            if type(obj) is not cls:
                raise EncodeError(f"expected {cls.__name__}, got {type(obj).__name__}")
            for setter in setters:
                setter(b, obj, frames, thr)

        _ENCODERS[cls] = encoder
    return encoder


#: Message class -> (union member field, encoder).
_BODIES: dict[type, tuple[Any, StructEncoder]] = {
    cls: (BODY_FIELD.schema.fields[member], struct_encoder(cls))
    for cls, member in zip(MESSAGE_TYPES, BODY_MEMBERS)
}

_SENDER, _SENDER_INC, _RECEIVER, _RECEIVER_INC, _SEQ, _ACK = ENVELOPE_HEADER


def encode(envelope: Envelope, *, oob_threshold: int = DEFAULT_OOB_THRESHOLD) -> list[Any]:
    """Encode an envelope into the frames of one multipart ZeroMQ message.

    Args:
        envelope: The envelope to send.
        oob_threshold: Payloads (``Value.data``, ``Value.buffers``,
            ``FetchChunk.data``) of at least this many bytes go out-of-band as
            frames of their own (VAL-003); smaller ones are copied inline.

    Returns:
        ``[frame0, *payload_frames]``: frame 0 is the Envelope in standard
        unpacked Cap'n Proto serialization (``bytes``); each further frame is
        the payload object itself, as given (``bytes`` or ``memoryview``), not a
        copy, so it can go to ``send_multipart(copy=False)``.

    Raises:
        EncodeError: The envelope cannot be represented (a value outside its
            field's range, a wrong type, a body that is not a protocol message).
    """
    fast = _fast.encode(envelope, oob_threshold)  # the hot messages, laid out directly
    if fast is not None:
        return fast
    return encode_reference(envelope, oob_threshold=oob_threshold)


def encode_reference(envelope: Envelope, *, oob_threshold: int = DEFAULT_OOB_THRESHOLD) -> list[Any]:
    """:func:`encode` through pycapnp only (the reference the fast path is checked against)."""
    body = envelope.body
    try:
        member, body_encoder = _BODIES[type(body)]
    except KeyError:
        raise EncodeError(f"not a protocol message: {type(body).__name__}") from None
    frames: Frames = [b""]
    try:
        msg = ENVELOPE.new_message()
        msg._set_by_field(_SENDER, envelope.sender)
        msg._set_by_field(_SENDER_INC, envelope.sender_incarnation)
        msg._set_by_field(_RECEIVER, envelope.receiver)
        msg._set_by_field(_RECEIVER_INC, envelope.receiver_incarnation)
        msg._set_by_field(_SEQ, envelope.seq)
        msg._set_by_field(_ACK, envelope.ack)
        body_encoder(msg._get_by_field(BODY_FIELD)._init_by_field(member), body, frames, oob_threshold)
        frames[0] = msg.to_bytes()
    except EncodeError:
        raise
    except Exception as exc:  # pycapnp reports range/type errors in several types
        raise EncodeError(f"cannot encode {type(body).__name__}: {_first_line(exc)}") from exc
    return frames


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
