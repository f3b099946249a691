"""Who sent a message, to whom, and of what type, without decoding it.

:func:`peek` reads three things from frame 0: the envelope's ``sender`` and
``receiver`` texts and the body's union discriminant. It reads them straight
from the bytes of the standard Cap'n Proto serialization (a few microseconds,
against tens for :func:`~refrpc.codec.decode`) and falls back to the Cap'n
Proto reader when the layout is not the simple one (a far pointer, say). It
checks nothing else: a message that peeks fine may still fail to decode. The
runtime's fault injection (:class:`refrpc.transport.FaultyTransport`) uses it
to pick the messages a rule names.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

from ..core.messages import MESSAGE_TYPES
from ._schema import BODY_DISCRIMINANT_BYTE, BODY_FIELD, BODY_MEMBERS, ENVELOPE_FIELDS

#: Body discriminant -> message type name (``"SubmitTask"``), in schema order.
TYPE_NAMES: tuple[str, ...] = tuple(cls.__name__ for cls in MESSAGE_TYPES)
_BY_MEMBER = dict(zip(BODY_MEMBERS, TYPE_NAMES))
#: Index of ``sender`` / ``receiver`` in the Envelope's pointer section.
_SENDER_POINTER = ENVELOPE_FIELDS["sender"].proto.slot.offset
_RECEIVER_POINTER = ENVELOPE_FIELDS["receiver"].proto.slot.offset
_SENDER = ENVELOPE_FIELDS["sender"]
_RECEIVER = ENVELOPE_FIELDS["receiver"]

_U16 = struct.Struct("<H")
_U32x2 = struct.Struct("<II")
_U64 = struct.Struct("<Q")

Peeked = tuple[str, str, str]


def peek(frames: Sequence[Any]) -> Peeked:
    """The ``(sender, receiver, message type)`` of one multipart message.

    Args:
        frames: The message's frames, as a transport gives them (``bytes``,
            ``memoryview``, ``zmq.Frame``); only frame 0 is read.

    Returns:
        The sender's and the receiver's PeerId and the body's type name as in
        :mod:`refrpc.core.messages` (``"SubmitTask"``, ``"TaskReply"``...).
        The type is ``""`` for a discriminant this schema does not know, and
        all three are ``""`` when frame 0 is not a readable envelope.

    Example:
        >>> from refrpc.codec import encode
        >>> from refrpc.core.messages import Envelope, Heartbeat
        >>> peek(encode(Envelope("a", 1, "b", 2, seq=0, ack=0, body=Heartbeat())))
        ('a', 'b', 'Heartbeat')
    """
    try:
        frame0 = frames[0]
        buf = frame0 if type(frame0) is bytes else memoryview(frame0).cast("B")
        return _peek_raw(buf) or _peek_capnp(bytes(buf))
    except Exception:  # anything unreadable: the caller matches it by nothing but "any"
        return ("", "", "")


def _signed30(value: int) -> int:
    return value - (1 << 30) if value >= 1 << 29 else value


def _peek_raw(buf: Any) -> Peeked | None:
    """The fast path: a single-segment-style root struct with plain text pointers."""
    last_segment, segment0_words = _U32x2.unpack_from(buf, 0)
    start = ((4 * (2 + last_segment) + 7) // 8) * 8
    end = min(len(buf), start + 8 * segment0_words)
    (root,) = _U64.unpack_from(buf, start)
    if root & 3:  # not a struct pointer (a far pointer): let capnp follow it
        return None
    struct_at = start + 8 * (1 + _signed30((root & 0xFFFFFFFF) >> 2))
    data_words = (root >> 32) & 0xFFFF
    pointer_words = root >> 48
    pointers_at = struct_at + 8 * data_words
    if struct_at < start or pointers_at + 8 * pointer_words > end:
        return None
    if BODY_DISCRIMINANT_BYTE + 2 <= 8 * data_words:
        (discriminant,) = _U16.unpack_from(buf, struct_at + BODY_DISCRIMINANT_BYTE)
    else:
        discriminant = 0  # a truncated data section reads as zeros
    sender = _text(buf, pointers_at, _SENDER_POINTER, pointer_words, start, end)
    receiver = _text(buf, pointers_at, _RECEIVER_POINTER, pointer_words, start, end)
    if sender is None or receiver is None:
        return None
    return sender, receiver, TYPE_NAMES[discriminant] if discriminant < len(TYPE_NAMES) else ""


def _text(buf: Any, pointers_at: int, index: int, pointer_words: int, start: int, end: int) -> str | None:
    """A Text field read through its list pointer; None if it is not a plain one."""
    if index >= pointer_words:
        return ""  # an older, shorter struct: the field reads as its default
    at = pointers_at + 8 * index
    (pointer,) = _U64.unpack_from(buf, at)
    if pointer == 0:
        return ""
    if pointer & 3 != 1 or (pointer >> 32) & 7 != 2:  # not a list of bytes here
        return None
    count = pointer >> 35  # bytes including the NUL terminator
    text_at = at + 8 * (1 + _signed30((pointer & 0xFFFFFFFF) >> 2))
    if count == 0 or text_at < start or text_at + count > end:
        return None
    return str(buf[text_at : text_at + count - 1], "utf-8")


def _peek_capnp(frame0: bytes) -> Peeked:
    """The slow path, for layouts the fast one does not follow."""
    from ._decode import _open

    with _open(frame0) as root:
        sender = root._get_by_field(_SENDER)
        receiver = root._get_by_field(_RECEIVER)
        try:
            which = root._get_by_field(BODY_FIELD)._which_str()
        except Exception:  # a discriminant this schema does not know
            which = ""
    return sender, receiver, _BY_MEMBER.get(which, "")
