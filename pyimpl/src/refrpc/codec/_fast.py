"""The codec's fast path: the hot messages laid out and read straight from bytes.

A no-op task costs two messages (``SubmitTask`` and ``TaskReply``) plus the
``Heartbeat``\\ s that carry acks, and building and reading those through pycapnp
costs more than the protocol logic that decides them. This module encodes and
decodes exactly those three bodies, with their envelope, in the standard
unpacked Cap'n Proto serialization (one segment), using :mod:`struct`.

pycapnp stays the reference and the fallback: :func:`encode` returns None and
:func:`decode` raises :class:`Fallback` for anything outside the fast path's
shape (another body type, a task with named resources, a payload that travels as its own frame, a value with
out-of-band buffers, a number out of range, a message with several segments or
far pointers, a struct of another size than this schema's, text that is not
valid UTF-8, an identifier the decoder's checks refuse, an unknown enum value),
and the caller runs pycapnp's codec, which gives the same result or the typed
error. So the fast path changes speed, never meaning: a property test checks
that every fast encoding decodes through pycapnp to the same message and every
pycapnp encoding decodes through the fast path to the same message.

The layout (struct sizes, field offsets, union discriminants and defaults) is
read from ``refrpc.capnp`` at import and checked against what this module lays
out; a schema change that moves anything makes the import fail, not the wire.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Sequence

from ..core.messages import (
    Arg,
    ArgKind,
    Encoding,
    Envelope,
    ErrorCode,
    ErrorInfo,
    Heartbeat,
    RefDescriptor,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
)
from ._schema import ENUM_MEMBERS, ID_LIMITS, plan_for, schema


class Fallback(Exception):
    """This message is outside the fast path: use the reference codec."""


# ---------------------------------------------------------------- the layout, checked
#: (struct, field) -> (slot offset in units of the field's size, type, default), as laid out below.
_EXPECTED: dict[tuple[str, str], tuple[int, str, object]] = {
    ("Envelope", "sender"): (0, "text", ""), ("Envelope", "senderIncarnation"): (0, "uint64", 0),
    ("Envelope", "receiver"): (1, "text", ""), ("Envelope", "receiverIncarnation"): (1, "uint64", 0),
    ("Envelope", "seq"): (2, "uint64", 0), ("Envelope", "ack"): (3, "uint64", 0),
    ("SubmitTask", "taskId"): (0, "text", ""), ("SubmitTask", "function"): (1, "text", ""),
    ("SubmitTask", "args"): (2, "list", None), ("SubmitTask", "returnIds"): (3, "list", None),
    ("SubmitTask", "maxRetries"): (0, "uint32", 0), ("SubmitTask", "retryExceptions"): (32, "bool", False),
    ("SubmitTask", "attempt"): (2, "uint32", 1), ("SubmitTask", "actorId"): (4, "text", ""),
    ("SubmitTask", "actorSeq"): (2, "uint64", 0), ("SubmitTask", "cpuDemand"): (3, "uint32", 10000),
    ("SubmitTask", "resources"): (5, "list", None),
    ("Arg", "kind"): (0, "enum", 0),
    ("Value", "encoding"): (0, "enum", 0), ("Value", "data"): (0, "struct", None),
    ("Value", "buffers"): (1, "list", None), ("Value", "nested"): (2, "list", None),
    ("Payload", "inline"): (0, "data", b""), ("Payload", "frame"): (1, "uint32", 0),
    ("RefDescriptor", "objectId"): (0, "text", ""), ("RefDescriptor", "owner"): (1, "text", ""),
    ("RefDescriptor", "ownerIncarnation"): (0, "uint64", 0), ("RefDescriptor", "ownerAddress"): (2, "text", ""),
    ("RefDescriptor", "sizeHint"): (1, "int64", -1), ("RefDescriptor", "forwardId"): (3, "text", ""),
    ("TaskReply", "taskId"): (0, "text", ""), ("TaskReply", "attempt"): (0, "uint32", 0),
    ("TaskReply", "returns"): (1, "list", None), ("TaskReply", "retained"): (2, "list", None),
    ("TaskReply", "storeFreeBytes"): (1, "int64", -1),
    ("ReturnValue", "objectId"): (0, "text", ""), ("ReturnValue", "kind"): (0, "enum", 0),
    ("ReturnValue", "location"): (2, "text", ""), ("ReturnValue", "size"): (1, "int64", 0),
    ("ReturnValue", "nested"): (3, "list", None),
    ("ErrorInfo", "code"): (0, "enum", 0), ("ErrorInfo", "message"): (0, "text", ""),
    ("ErrorInfo", "requirement"): (1, "text", ""), ("ErrorInfo", "detail"): (2, "text", ""),
}
#: struct -> (data words, pointers).
_SIZES = {"Envelope": (5, 3), "SubmitTask": (3, 6), "Arg": (1, 2), "Value": (1, 3), "Payload": (1, 1),
          "RefDescriptor": (2, 4), "TaskReply": (2, 3), "ReturnValue": (2, 5), "ErrorInfo": (1, 3), "Heartbeat": (0, 0)}
#: (struct, group) -> (discriminant offset in 16-bit units, pointer slot of `some`).
_GROUPS = {("Arg", "value"): (1, 0), ("Arg", "ref"): (2, 1), ("ReturnValue", "value"): (1, 1),
           ("ReturnValue", "error"): (2, 4)}
#: Envelope.body: discriminant offset (16-bit units), pointer slot, and the members laid out here.
_BODY_AT = (16, 2)
_BODY_MEMBERS = {"heartbeat": 3, "submitTask": 5, "taskReply": 6}


def _check_layout() -> None:
    s = schema()
    for name, (words, pointers) in _SIZES.items():
        st = getattr(s, name).schema.node.struct
        if (st.dataWordCount, st.pointerCount) != (words, pointers):
            raise ImportError(f"refrpc.capnp: {name} is no longer {words} data words and {pointers} pointers")
    for (name, field), (offset, kind, default) in _EXPECTED.items():
        slot = getattr(s, name).schema.fields[field].proto.slot
        got_default = slot.defaultValue
        value = getattr(got_default, got_default.which())
        if slot.offset != offset or slot.type.which() != kind or (default is not None and value != default):
            raise ImportError(f"refrpc.capnp: {name}.{field} moved; the codec's fast path must be updated")
    for (name, group), (disc, some) in _GROUPS.items():
        g = getattr(s, name).schema.fields[group].schema
        fields = g.fields
        if (g.node.struct.discriminantOffset != disc or fields["none"].proto.discriminantValue != 0
                or fields["some"].proto.discriminantValue != 1 or fields["some"].proto.slot.offset != some):
            raise ImportError(f"refrpc.capnp: {name}.{group} moved; the codec's fast path must be updated")
    payload = s.Payload.schema
    if payload.node.struct.discriminantOffset != 0 or [payload.fields[n].proto.discriminantValue for n in ("inline", "frame")] != [0, 1]:
        raise ImportError("refrpc.capnp: Payload moved; the codec's fast path must be updated")
    body = s.Envelope.schema.fields["body"].schema
    if body.node.struct.discriminantOffset != _BODY_AT[0]:
        raise ImportError("refrpc.capnp: Envelope.body moved; the codec's fast path must be updated")
    for member, disc in _BODY_MEMBERS.items():
        p = body.fields[member].proto
        if p.discriminantValue != disc or p.slot.offset != _BODY_AT[1]:
            raise ImportError(f"refrpc.capnp: Envelope.body.{member} moved; the codec's fast path must be updated")


_check_layout()

_ENCODINGS = ENUM_MEMBERS[Encoding]
_ARG_KINDS = ENUM_MEMBERS[ArgKind]
_RETURN_KINDS = ENUM_MEMBERS[ReturnKind]
_ERROR_CODES = ENUM_MEMBERS[ErrorCode]
_ORDINAL = {m: i for members in (_ENCODINGS, _ARG_KINDS, _RETURN_KINDS, _ERROR_CODES) for i, m in enumerate(members)}


def _limits(cls: type) -> dict[str, tuple[int, bool]]:
    """field -> (max bytes, may be empty) of the identifier fields of ``cls`` (the decoder's ID checks)."""
    return {f.name: (f.max_bytes, f.may_be_empty and f.kind.name == "ID") for f in plan_for(cls).fields
            if f.kind.name in ("ID", "ID_LIST")}


_ID = {cls: _limits(cls) for cls in (SubmitTask, RefDescriptor, TaskReply, ReturnValue)}
_PEER_ID_BYTES = ID_LIMITS["PeerId"][0]

_U64 = struct.Struct("<Q")
_REF_DATA = struct.Struct("<Qq")  # RefDescriptor: ownerIncarnation, sizeHint XOR its default -1
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


# ---------------------------------------------------------------- writing
# The segment is a bytearray built front to back: each object is appended after
# its parent, and the parent's pointer slot is filled in then. Empty texts, lists
# and absent structs stay null pointers (Cap'n Proto reads them as the default).
_M32 = 0xFFFFFFFF
_ZEROS = [bytes(8 * n) for n in range(16)]
_PAD = [bytes((8 - r) % 8) for r in range(8)]


def _alloc(buf: bytearray, words: int) -> int:
    at = len(buf) >> 3
    buf += _ZEROS[words] if words < 16 else bytes(8 * words)
    return at


def _put_struct(buf: bytearray, ptr_word: int, header: int) -> int:
    """Append a zeroed struct of ``header``'s sizes, point ``ptr_word`` at it; its first word."""
    at = len(buf) >> 3
    buf += _ZEROS[(header >> 32 & 0xFFFF) + (header >> 48)]
    _U64.pack_into(buf, ptr_word << 3, (((at - ptr_word - 1) << 2) & _M32) | header)
    return at


def _put_bytes(buf: bytearray, ptr_word: int, data: bytes, n: int) -> None:
    """A list of ``n`` bytes starting with ``data`` (a Text's NUL is the n-th)."""
    at = len(buf) >> 3
    buf += data
    buf += _PAD[len(data) & 7] if n == len(data) else _PAD[len(data) & 7] or _ZEROS[1]
    _U64.pack_into(buf, ptr_word << 3, 1 | (((at - ptr_word - 1) << 2) & _M32) | 0x200000000 | (n << 35))


def _put_text(buf: bytearray, ptr_word: int, text: str) -> None:
    if text:
        if type(text) is not str:
            raise Fallback
        data = text.encode()
        _put_bytes(buf, ptr_word, data, len(data) + 1)
    elif type(text) is not str:
        raise Fallback


def _put_structs(buf: bytearray, ptr_word: int, count: int, header: int) -> int:
    """A composite list of ``count`` zeroed structs; the first word of the first."""
    words = count * ((header >> 32 & 0xFFFF) + (header >> 48))
    tag = _alloc(buf, 1 + words)
    _U64.pack_into(buf, ptr_word << 3, 1 | (((tag - ptr_word - 1) << 2) & _M32) | 0x700000000 | (words << 35))
    _U64.pack_into(buf, tag << 3, (count << 2) | header)
    return tag + 1



def _header(name: str) -> int:
    """The size half of a struct pointer to a ``name`` struct (its data words and pointers, _SIZES)."""
    data_words, pointers = _SIZES[name]
    return (data_words << 32) | (pointers << 48)


#: Struct pointer size halves, written and expected (the reader refuses other sizes).
_REF_H, _VALUE_H, _PAYLOAD_H, _ARG_H = _header("RefDescriptor"), _header("Value"), _header("Payload"), _header("Arg")
_RETURN_H, _ERROR_H, _SUBMIT_H, _REPLY_H = _header("ReturnValue"), _header("ErrorInfo"), _header("SubmitTask"), _header("TaskReply")


def _put_ref(buf: bytearray, at: int, d: RefDescriptor) -> None:
    if type(d) is not RefDescriptor or type(d.size_hint) is not int:
        raise Fallback
    _REF_DATA.pack_into(buf, at << 3, d.owner_incarnation, ~d.size_hint)
    _put_text(buf, at + 2, d.object_id)
    _put_text(buf, at + 3, d.owner)
    _put_text(buf, at + 4, d.owner_address)
    _put_text(buf, at + 5, d.forward_id)


def _put_refs(buf: bytearray, ptr_word: int, refs: Sequence[RefDescriptor]) -> None:
    if refs:
        first = _put_structs(buf, ptr_word, len(refs), _REF_H)
        for i, d in enumerate(refs):
            _put_ref(buf, first + 6 * i, d)


def _put_value(buf: bytearray, ptr_word: int, v: Value, threshold: int) -> None:
    if type(v) is not Value or v.buffers:
        raise Fallback
    data = v.data
    if type(data) is not bytes or len(data) >= threshold:
        raise Fallback  # another buffer type, or a payload that travels as its own frame
    at = _put_struct(buf, ptr_word, _VALUE_H)
    _U16.pack_into(buf, at << 3, _ORDINAL[v.encoding])
    if data:
        payload = _put_struct(buf, at + 1, _PAYLOAD_H)
        _put_bytes(buf, payload + 1, data, len(data))
    if v.nested:
        _put_refs(buf, at + 3, v.nested)


def _put_error(buf: bytearray, ptr_word: int, e: ErrorInfo) -> None:
    if type(e) is not ErrorInfo:
        raise Fallback
    at = _put_struct(buf, ptr_word, _ERROR_H)
    _U16.pack_into(buf, at << 3, _ORDINAL[e.code])
    _put_text(buf, at + 1, e.message)
    _put_text(buf, at + 2, e.requirement)
    _put_text(buf, at + 3, e.detail)


_W_SUBMIT_DATA = struct.Struct("<IIIIQ")
_W_ARG_DATA = struct.Struct("<HHH")


def _put_submit(buf: bytearray, at: int, b: SubmitTask, threshold: int) -> None:
    if type(b.retry_exceptions) is not bool or b.resources:
        raise Fallback  # named resources are rare: the reference codec writes them
    _W_SUBMIT_DATA.pack_into(buf, at << 3, b.max_retries, b.retry_exceptions, b.attempt ^ 1, b.cpu_demand ^ 10000,
                             b.actor_seq)
    p = at + 3
    _put_text(buf, p, b.task_id)
    _put_text(buf, p + 1, b.function)
    if b.args:
        first = _put_structs(buf, p + 2, len(b.args), _ARG_H)
        for i, a in enumerate(b.args):
            if type(a) is not Arg:
                raise Fallback
            e = first + 3 * i
            _W_ARG_DATA.pack_into(buf, e << 3, _ORDINAL[a.kind], a.value is not None, a.ref is not None)
            if a.value is not None:
                _put_value(buf, e + 1, a.value, threshold)
            if a.ref is not None:
                _put_ref(buf, _put_struct(buf, e + 2, _REF_H), a.ref)
    ids = b.return_ids
    if ids:
        first = _alloc(buf, len(ids))
        _U64.pack_into(buf, (p + 3) << 3, 1 | (((first - p - 4) << 2) & _M32) | 0x600000000 | (len(ids) << 35))
        for i, t in enumerate(ids):
            _put_text(buf, first + i, t)
    _put_text(buf, p + 4, b.actor_id)


_W_RETURN_DATA = struct.Struct("<HHH2xq")
_W_REPLY_DATA = struct.Struct("<I4xq")  # attempt, storeFreeBytes XOR its default -1


def _put_reply(buf: bytearray, at: int, b: TaskReply, threshold: int) -> None:
    _W_REPLY_DATA.pack_into(buf, at << 3, b.attempt, b.store_free_bytes ^ -1)
    p = at + 2
    _put_text(buf, p, b.task_id)
    if b.returns:
        first = _put_structs(buf, p + 1, len(b.returns), _RETURN_H)
        for i, rv in enumerate(b.returns):
            if type(rv) is not ReturnValue:
                raise Fallback
            e = first + 7 * i
            _W_RETURN_DATA.pack_into(buf, e << 3, _ORDINAL[rv.kind], rv.value is not None, rv.error is not None, rv.size)
            _put_text(buf, e + 2, rv.object_id)
            if rv.value is not None:
                _put_value(buf, e + 3, rv.value, threshold)
            _put_text(buf, e + 4, rv.location)
            if rv.nested:
                _put_refs(buf, e + 5, rv.nested)
            if rv.error is not None:
                _put_error(buf, e + 6, rv.error)
    if b.retained:
        _put_refs(buf, p + 2, b.retained)


#: body type -> (discriminant, body struct header, writer).
_WRITERS: dict[type, tuple[int, int, Callable[[bytearray, int, Any, int], None] | None]] = {
    Heartbeat: (_BODY_MEMBERS["heartbeat"], 0, None),
    SubmitTask: (_BODY_MEMBERS["submitTask"], _SUBMIT_H, _put_submit),
    TaskReply: (_BODY_MEMBERS["taskReply"], _REPLY_H, _put_reply),
}
#: Words 0..8 of the segment: the root pointer, then the Envelope (5 data words, 3 pointers).
_W_ENVELOPE = struct.Struct("<Q4QH6x24x")
_W_ROOT = (5 << 32) | (3 << 48)
_SEGMENT_TABLE = struct.Struct("<II")
#: A zero-sized struct pointer (offset -1, so it is not null), for an empty body such as Heartbeat.
_EMPTY_STRUCT = ((-1) << 2) & _M32


def encode(envelope: Envelope, threshold: int) -> list[Any] | None:
    """The frames of ``envelope`` if its body is on the fast path, else None
    (the reference codec then encodes it, or raises the typed error)."""
    spec = _WRITERS.get(type(envelope.body))
    if spec is None or type(envelope) is not Envelope:
        return None
    disc, header, put = spec
    buf = bytearray(72)
    try:
        _W_ENVELOPE.pack_into(buf, 0, _W_ROOT, envelope.sender_incarnation, envelope.receiver_incarnation,
                              envelope.seq, envelope.ack, disc)
        _put_text(buf, 6, envelope.sender)
        _put_text(buf, 7, envelope.receiver)
        if put is None:
            _U64.pack_into(buf, 64, _EMPTY_STRUCT)
        else:
            put(buf, _put_struct(buf, 8, header), envelope.body, threshold)
    except (Fallback, struct.error, KeyError, TypeError, AttributeError, UnicodeEncodeError):
        return None
    return [_SEGMENT_TABLE.pack(0, len(buf) >> 3) + buf]


# ---------------------------------------------------------------- reading
# Each reader takes the segment (bytes), its length in bytes, the word a pointer
# sits at and the pointer's value (already unpacked with its struct's other words),
# and refuses (Fallback) anything it does not fully understand.


def _target(word: int, p: int) -> int:
    """The word a struct or list pointer at ``word`` points to."""
    offset = (p & 0xFFFFFFFF) >> 2
    if offset >= 1 << 29:
        offset -= 1 << 30
    return word + 1 + offset


def _text(seg: bytes, size: int, word: int, p: int) -> str:
    if not p:
        return ""
    if p & 3 != 1 or (p >> 32) & 7 != 2:
        raise Fallback
    start = _target(word, p) << 3
    end = start + (p >> 35)
    if start < 0 or end > size or end == start or seg[end - 1] != 0:
        raise Fallback  # outside the segment, or not NUL-terminated
    try:
        return seg[start:end - 1].decode()
    except UnicodeDecodeError:
        raise Fallback from None


def _data(seg: bytes, size: int, word: int, p: int) -> bytes:
    if not p:
        return b""
    if p & 3 != 1 or (p >> 32) & 7 != 2:
        raise Fallback
    start = _target(word, p) << 3
    end = start + (p >> 35)
    if start < 0 or end > size:
        raise Fallback
    return seg[start:end]


def _struct(size: int, word: int, p: int, header: int) -> int:
    """The first word of a non-null struct whose pointer's size half must equal
    ``header`` (this schema's data words and pointers)."""
    if p & 0xFFFFFFFF00000003 != header:
        raise Fallback  # null, a list, a far pointer, or another size
    at = _target(word, p)
    if at < 0 or (at + (header >> 32 & 0xFFFF) + (header >> 48)) << 3 > size:
        raise Fallback
    return at


def _composite(seg: bytes, size: int, word: int, p: int, header: int) -> tuple[int, int]:
    """(first element word, count) of a composite list of this schema's struct."""
    if p & 0x700000003 != 0x700000001:
        raise Fallback
    tag_at = _target(word, p)
    words = p >> 35
    if tag_at < 0 or (tag_at + 1 + words) << 3 > size:
        raise Fallback
    (tag,) = _U64.unpack_from(seg, tag_at << 3)
    count = (tag & 0xFFFFFFFF) >> 2
    if tag & 0xFFFFFFFF00000003 != header or count * ((header >> 32 & 0xFFFF) + (header >> 48)) != words:
        raise Fallback
    return tag_at + 1, count


def _ident(value: str, limit: tuple[int, bool]) -> str:
    """The decoder's identifier check (ID-001, ID-003): refused ones go to the reference codec."""
    max_bytes, may_be_empty = limit
    if (not value and not may_be_empty) or len(value) > max_bytes // 4 and len(value.encode()) > max_bytes:
        raise Fallback
    return value

_REF_WORDS = struct.Struct("<Qq4Q")
_REF_IDS = _ID[RefDescriptor]
_OBJECT_ID, _OWNER, _FORWARD_ID = _REF_IDS["object_id"], _REF_IDS["owner"], _REF_IDS["forward_id"]


def _refs(seg: bytes, size: int, word: int, p: int) -> tuple[RefDescriptor, ...]:
    if not p:
        return ()
    first, count = _composite(seg, size, word, p, _REF_H)
    return tuple(_ref_at(seg, size, first + 6 * i) for i in range(count))


def _ref_at(seg: bytes, size: int, at: int) -> RefDescriptor:
    """The RefDescriptor whose struct starts at word ``at``."""
    inc, hint, p0, p1, p2, p3 = _REF_WORDS.unpack_from(seg, at << 3)
    return RefDescriptor(_ident(_text(seg, size, at + 2, p0), _OBJECT_ID), _ident(_text(seg, size, at + 3, p1), _OWNER),
                         inc, _text(seg, size, at + 4, p2), ~hint, _ident(_text(seg, size, at + 5, p3), _FORWARD_ID))


_VALUE_WORDS = struct.Struct("<H6xQQQ")
_PAYLOAD_WORDS = struct.Struct("<H6xQ")


def _value(seg: bytes, size: int, word: int, p: int) -> Value:
    at = _struct(size, word, p, _VALUE_H)
    encoding, p_data, p_buffers, p_nested = _VALUE_WORDS.unpack_from(seg, at << 3)
    if p_buffers:
        raise Fallback  # out-of-band buffers
    data = b""
    if p_data:
        payload = _struct(size, at + 1, p_data, _PAYLOAD_H)
        which, p_inline = _PAYLOAD_WORDS.unpack_from(seg, payload << 3)
        if which != 0:
            raise Fallback  # a payload in its own frame, or an unknown variant
        data = _data(seg, size, payload + 1, p_inline)
    if encoding >= len(_ENCODINGS):
        raise Fallback  # GEN-003: the reference codec says how
    return Value(_ENCODINGS[encoding], data, (), _refs(seg, size, at + 3, p_nested))


_ERROR_WORDS = struct.Struct("<H6xQQQ")


def _error(seg: bytes, size: int, word: int, p: int) -> ErrorInfo:
    at = _struct(size, word, p, _ERROR_H)
    code, p0, p1, p2 = _ERROR_WORDS.unpack_from(seg, at << 3)
    return ErrorInfo(_ERROR_CODES[code] if code < len(_ERROR_CODES) else ErrorCode.UNRECOGNIZED,  # ERR-002
                     _text(seg, size, at + 1, p0), _text(seg, size, at + 2, p1), _text(seg, size, at + 3, p2))


_SUBMIT_IDS = _ID[SubmitTask]
_SUBMIT_WORDS = struct.Struct("<IIIIQ6Q")
_ARG_WORDS = struct.Struct("<HHH2xQQ")
_POINTERS = struct.Struct("<Q")


def _submit(seg: bytes, size: int, word: int, p: int) -> SubmitTask:
    at = _struct(size, word, p, _SUBMIT_H)
    max_retries, flags, attempt, cpu, actor_seq, p_task, p_fn, p_args, p_returns, p_actor, p_resources = \
        _SUBMIT_WORDS.unpack_from(seg, at << 3)
    if p_resources:
        raise Fallback  # named resources: the reference codec reads them
    args = []
    if p_args:
        first, count = _composite(seg, size, at + 5, p_args, _ARG_H)
        for i in range(count):
            e = first + 3 * i
            kind, has_value, has_ref, p_value, p_ref = _ARG_WORDS.unpack_from(seg, e << 3)
            if has_value > 1 or has_ref > 1 or kind >= len(_ARG_KINDS):
                raise Fallback
            args.append(Arg(_ARG_KINDS[kind], _value(seg, size, e + 1, p_value) if has_value else None,
                            _ref(seg, size, e + 2, p_ref) if has_ref else None))
    return_ids: tuple[str, ...] = ()
    if p_returns:
        if p_returns & 0x700000003 != 0x600000001:
            raise Fallback
        ids_at, n = _target(at + 6, p_returns), p_returns >> 35
        if ids_at < 0 or (ids_at + n) << 3 > size:
            raise Fallback
        limit = _SUBMIT_IDS["return_ids"]
        return_ids = tuple(_ident(_text(seg, size, ids_at + i, _POINTERS.unpack_from(seg, (ids_at + i) << 3)[0]), limit)
                           for i in range(n))
    return SubmitTask(_ident(_text(seg, size, at + 3, p_task), _SUBMIT_IDS["task_id"]), _text(seg, size, at + 4, p_fn),
                      tuple(args), return_ids, max_retries, bool(flags & 1), attempt ^ 1,
                      _ident(_text(seg, size, at + 7, p_actor), _SUBMIT_IDS["actor_id"]), actor_seq, cpu ^ 10000)


def _ref(seg: bytes, size: int, word: int, p: int) -> RefDescriptor:
    return _ref_at(seg, size, _struct(size, word, p, _REF_H))


_REPLY_IDS = _ID[TaskReply]
_RETURN_IDS = _ID[ReturnValue]
_REPLY_WORDS = struct.Struct("<I4xqQQQ")
_RETURN_WORDS = struct.Struct("<HHH2xq5Q")


def _reply(seg: bytes, size: int, word: int, p: int) -> TaskReply:
    at = _struct(size, word, p, _REPLY_H)
    attempt, free, p_task, p_returns, p_retained = _REPLY_WORDS.unpack_from(seg, at << 3)
    returns = []
    if p_returns:
        first, count = _composite(seg, size, at + 3, p_returns, _RETURN_H)
        for i in range(count):
            e = first + 7 * i
            kind, has_value, has_error, rsize, p_oid, p_value, p_loc, p_nested, p_error = \
                _RETURN_WORDS.unpack_from(seg, e << 3)
            if has_value > 1 or has_error > 1 or kind >= len(_RETURN_KINDS):
                raise Fallback
            returns.append(ReturnValue(
                _ident(_text(seg, size, e + 2, p_oid), _RETURN_IDS["object_id"]), _RETURN_KINDS[kind],
                _value(seg, size, e + 3, p_value) if has_value else None,
                _ident(_text(seg, size, e + 4, p_loc), _RETURN_IDS["location"]), rsize,
                _refs(seg, size, e + 5, p_nested),
                _error(seg, size, e + 6, p_error) if has_error else None))
    return TaskReply(_ident(_text(seg, size, at + 2, p_task), _REPLY_IDS["task_id"]), attempt, tuple(returns),
                     _refs(seg, size, at + 4, p_retained), free ^ -1)


def _heartbeat(seg: bytes, size: int, word: int, p: int) -> Heartbeat:
    if p and p & 0xFFFFFFFF00000003 != 0:
        raise Fallback  # a Heartbeat is an empty struct
    return Heartbeat()


#: Body discriminant -> reader.
_READERS: dict[int, Callable[[bytes, int, int, int], Any]] = {
    _BODY_MEMBERS["heartbeat"]: _heartbeat,
    _BODY_MEMBERS["submitTask"]: _submit,
    _BODY_MEMBERS["taskReply"]: _reply,
}
#: Frame 0 up to the Envelope's pointers: segment table, root pointer, 5 data words, 3 pointers.
_FRAME_HEAD = struct.Struct("<IIQ4QH6x3Q")
#: The root pointer of a fast-path message: the Envelope right after it (offset 0), 5 data words, 3 pointers.
_ROOT_ENVELOPE = (5 << 32) | (3 << 48)
_PEER_ID = (_PEER_ID_BYTES, False)


def decode(frames: Sequence[Any]) -> Envelope:
    """The envelope in ``frames`` if it is on the fast path; raises :class:`Fallback`
    otherwise (the reference codec then decodes it, or says what is wrong)."""
    if len(frames) != 1:
        raise Fallback
    frame = frames[0]
    if type(frame) is not bytes or len(frame) < 80:
        raise Fallback
    segments, words, root, inc_s, inc_r, seq, ack, which, p_sender, p_receiver, p_body = _FRAME_HEAD.unpack_from(frame, 0)
    if segments != 0 or len(frame) != 8 + (words << 3) or root != _ROOT_ENVELOPE:
        raise Fallback
    read = _READERS.get(which)
    if read is None:
        raise Fallback
    seg = frame[8:]
    size = len(seg)
    try:
        sender = _ident(_text(seg, size, 6, p_sender), _PEER_ID)
        receiver = _ident(_text(seg, size, 7, p_receiver), _PEER_ID)
        body = read(seg, size, 8, p_body)
    except (struct.error, IndexError):
        raise Fallback from None
    return Envelope(sender, inc_s, receiver, inc_r, seq, ack, body)
