"""Standalone values: the stored form of an object and the portable encoding.

The *stored form* of an object (OBJ-010) is one Cap'n Proto message whose root
is a ``Value`` with every ``Payload`` inline. :func:`encode_value_parts` writes
it without copying the payloads: the small part of the message (the ``Value``
struct, its ``Payload`` structs, the nested ``RefDescriptor``\\ s) is built by
pycapnp with the codec's usual converters, the payload blobs are laid out after
it, and the ``Data`` pointers are patched to point at them. The result is a
list of buffers whose concatenation is the message, so a store can write each
payload straight into shared memory (one copy) instead of through pycapnp
(three).

:func:`decode_value` with ``zero_copy=True`` does the reverse without copying:
the small part is read by pycapnp, and the payloads are returned as
``memoryview`` slices of the caller's buffer, found by following the message's
pointers by hand (with bounds checks, far pointers included). Any input gives a
:class:`~refrpc.core.messages.Value` or raises :class:`MalformedFrame`.

The *portable* encoding (VAL-004) is a Cap'n Proto message whose root is a
``Portable`` tree; :func:`encode_portable`/:func:`decode_portable` convert it
to and from plain Python data, with :class:`PortableRef` standing for a
``Portable.ref`` node (an index into ``Value.nested``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from ..core.messages import Encoding, RefDescriptor, Value
from ._decode import NESTING_LIMIT, TRAVERSAL_FACTOR, _Context, struct_decoder
from ._encode import struct_encoder
from ._errors import EncodeError, MalformedFrame, ValueTooLarge
from ._schema import ENUM_MEMBERS, ENUM_ORDINALS, schema

_S = schema()
_VALUE = _S.Value
_PORTABLE = _S.Portable
_VF = _VALUE.schema.fields
_ENCODING, _NESTED = _VF["encoding"], _VF["nested"]
_VALUE_DATA_SLOT = _VF["data"].proto.slot.offset
_VALUE_BUFFERS_SLOT = _VF["buffers"].proto.slot.offset
_PAYLOAD_NODE = _S.Payload.schema.node.struct
_PAYLOAD_DISC_BYTE = 2 * _PAYLOAD_NODE.discriminantOffset
_PAYLOAD_INLINE_SLOT = _S.Payload.schema.fields["inline"].proto.slot.offset
_PAYLOAD_INLINE_DISC = _S.Payload.schema.fields["inline"].proto.discriminantValue

_REF_ENCODER = struct_encoder(RefDescriptor)
_REF_DECODER = struct_decoder(RefDescriptor)
_VALUE_DECODER = struct_decoder(Value)
_ENCODINGS = ENUM_MEMBERS[Encoding]

#: The largest payload a stored form can hold: Cap'n Proto lists count
#: elements in 29 bits, so one ``Data`` blob is at most 2**29 - 1 bytes.
MAX_PAYLOAD_BYTES = (1 << 29) - 1
#: Portable values nest at most this deep (VAL-007: readers accept 64 levels).
MAX_PORTABLE_DEPTH = 64
#: Most segments a stored form may have (Cap'n Proto's own default limit).
_MAX_SEGMENTS = 512

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ZEROS = bytes(8)


class _Bad(Exception):
    """The hand-written pointer reader met something it does not accept."""


def _signed30(word: int) -> int:
    offset = (word & 0xFFFFFFFF) >> 2
    return offset - (1 << 30) if offset >= 1 << 29 else offset


class _Message:
    """Bounds-checked, copy-free reading of a Cap'n Proto message's pointers."""

    __slots__ = ("buf", "starts", "sizes")

    def __init__(self, buf: memoryview) -> None:
        total = len(buf)
        if total < 8:
            raise _Bad("shorter than a segment table")
        count = _U32.unpack_from(buf, 0)[0] + 1
        if count > _MAX_SEGMENTS:
            raise _Bad(f"{count} segments")
        header = 8 * ((4 * (count + 1) + 7) // 8)
        if header > total:
            raise _Bad("truncated segment table")
        self.sizes = struct.unpack_from(f"<{count}I", buf, 4)
        self.starts = []
        position = header
        for size in self.sizes:
            self.starts.append(position)
            position += 8 * size
        if position != total:
            raise _Bad(f"segments cover {position} bytes, the buffer has {total}")
        self.buf = buf

    def word(self, seg: int, index: int) -> int:
        if not (0 <= seg < len(self.sizes) and 0 <= index < self.sizes[seg]):
            raise _Bad("pointer out of bounds")
        return int(_U64.unpack_from(self.buf, self.starts[seg] + 8 * index)[0])

    def resolve(self, seg: int, at: int) -> tuple[int, int, int] | None:
        """Follow the pointer at word ``at``: ``(segment, target word, tag)`` or None."""
        ptr = self.word(seg, at)
        if ptr == 0:
            return None
        kind = ptr & 3
        if kind == 2:  # far pointer
            pad_seg, pad = ptr >> 32, (ptr >> 3) & ((1 << 29) - 1)
            if not ptr & 4:  # single far: the landing pad is an ordinary pointer
                tag = self.word(pad_seg, pad)
                if tag & 3 not in (0, 1):
                    raise _Bad("bad landing pad")
                return pad_seg, pad + 1 + _signed30(tag), tag
            far, tag = self.word(pad_seg, pad), self.word(pad_seg, pad + 1)
            if far & 7 != 2 or tag & 3 not in (0, 1):
                raise _Bad("bad double-far landing pad")
            return far >> 32, (far >> 3) & ((1 << 29) - 1), tag
        if kind == 3:
            raise _Bad("capability pointer in a value")
        return seg, at + 1 + _signed30(ptr), ptr

    def check_span(self, seg: int, start: int, words: int) -> None:
        if start < 0 or start + words > self.sizes[seg]:
            raise _Bad("object out of bounds")

    def struct(self, seg: int, at: int) -> tuple[int, int, int, int] | None:
        """The struct the pointer at ``at`` points to: ``(seg, pos, data words, pointers)``."""
        target = self.resolve(seg, at)
        if target is None:
            return None
        seg, pos, tag = target
        if tag & 3 != 0:
            raise _Bad("expected a struct pointer")
        data_words, ptrs = (tag >> 32) & 0xFFFF, tag >> 48
        self.check_span(seg, pos, data_words + ptrs)
        return seg, pos, data_words, ptrs

    def struct_list(self, seg: int, at: int) -> list[tuple[int, int, int, int]]:
        """The elements of the composite list the pointer at ``at`` points to."""
        target = self.resolve(seg, at)
        if target is None:
            return []
        seg, pos, tag = target
        if tag & 3 != 1 or (tag >> 32) & 7 != 7:
            raise _Bad("expected a composite list")
        words = tag >> 35
        self.check_span(seg, pos, 1 + words)
        head = self.word(seg, pos)
        count, data_words, ptrs = _signed30(head), (head >> 32) & 0xFFFF, head >> 48
        step = data_words + ptrs
        if head & 3 != 0 or count < 0 or count * step > words or (step == 0 and count > len(self.buf) // 8):
            raise _Bad("bad composite list tag")
        return [(seg, pos + 1 + i * step, data_words, ptrs) for i in range(count)]

    def payloads(self) -> list[tuple[int, int, int, int] | None]:
        """The ``Payload`` structs of the root ``Value``: ``[data, *buffers]``."""
        root = self.struct(0, 0)
        if root is None:
            raise _Bad("null root")
        seg, pos, data_words, ptrs = root
        found: list[tuple[int, int, int, int] | None] = [None]
        if _VALUE_DATA_SLOT < ptrs:
            found[0] = self.struct(seg, pos + data_words + _VALUE_DATA_SLOT)
        if _VALUE_BUFFERS_SLOT < ptrs:
            found.extend(self.struct_list(seg, pos + data_words + _VALUE_BUFFERS_SLOT))
        return found

    def inline_span(self, payload: tuple[int, int, int, int] | None) -> tuple[int, int]:
        """Byte range of an inline ``Payload``'s blob; MalformedFrame if not inline."""
        if payload is None:
            return 0, 0
        seg, pos, data_words, ptrs = payload
        disc = 0
        if _PAYLOAD_DISC_BYTE + 2 <= 8 * data_words:
            disc = struct.unpack_from("<H", self.buf, self.starts[seg] + 8 * pos + _PAYLOAD_DISC_BYTE)[0]
        if disc != _PAYLOAD_INLINE_DISC:
            raise MalformedFrame("a stored value's payloads must all be inline (OBJ-010)")
        if _PAYLOAD_INLINE_SLOT >= ptrs:
            return 0, 0
        target = self.resolve(seg, pos + data_words + _PAYLOAD_INLINE_SLOT)
        if target is None:
            return 0, 0
        seg, start, tag = target
        if tag & 3 != 1 or (tag >> 32) & 7 != 2:
            raise _Bad("payload is not a byte list")
        count = tag >> 35
        self.check_span(seg, start, (count + 7) // 8)
        begin = self.starts[seg] + 8 * start
        return begin, begin + count


# ---------------------------------------------------------------- stored form
def _as_bytes_view(data: Any) -> Any:
    """``data`` as a flat byte buffer, copied only if it is not contiguous."""
    if type(data) is bytes:
        return data
    view = memoryview(data)
    if not view.c_contiguous:
        return view.tobytes()
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _skeleton(value: Value, n_buffers: int, first_words: int | None) -> bytes:
    msg = _VALUE.new_message(num_first_segment_words=first_words)
    ordinal = ENUM_ORDINALS[value.encoding]
    if ordinal:
        msg._set_by_field(_ENCODING, ordinal)
    msg.init("data")
    if n_buffers:
        msg.init("buffers", n_buffers)
    if value.nested:
        lst = msg._init_by_field(_NESTED, len(value.nested))
        for i, ref in enumerate(value.nested):
            _REF_ENCODER(lst[i], ref, [], 0)
    return msg.to_bytes()  # type: ignore[no-any-return]


def encode_value_parts(value: Value) -> list[Any]:
    """The stored form of ``value`` (OBJ-010) as buffers to be written in order.

    Returns:
        ``[header, payload0, padding, payload1, ...]``: ``header`` is ``bytes``;
        the payloads are the value's own buffers (``bytes`` or byte
        ``memoryview``\\ s), not copies. Their concatenation is one Cap'n Proto
        message whose root is the ``Value``, every payload inline;
        ``sum(len(p) for p in parts)`` is the object's size (OBJ-011).

    Raises:
        EncodeError: The value cannot be stored (not a ``Value``, a payload
            over :data:`MAX_PAYLOAD_BYTES`, a bad nested descriptor).
    """
    if type(value) is not Value:
        raise EncodeError(f"expected Value, got {type(value).__name__}")
    try:
        blobs = [_as_bytes_view(value.data), *(_as_bytes_view(b) for b in value.buffers)]
        skeleton = _skeleton(value, len(value.buffers), None)
        if _U32.unpack_from(skeleton, 0)[0] != 0:  # several segments: redo with one
            skeleton = _skeleton(value, len(value.buffers), len(skeleton) // 8 + 8)
    except EncodeError:
        raise
    except Exception as exc:
        raise EncodeError(f"cannot encode Value: {str(exc).strip()[:200]}") from exc
    header = bytearray(skeleton)
    message = _Message(memoryview(header))
    next_word = message.sizes[0]
    parts: list[Any] = [header]
    for payload, blob in zip(message.payloads(), blobs):
        size = len(blob)
        if not size:
            continue
        if size > MAX_PAYLOAD_BYTES:
            raise ValueTooLarge(
                f"a payload of {size} bytes is over the {MAX_PAYLOAD_BYTES}-byte Data limit "
                "of a stored form (VAL-029)"
            )
        assert payload is not None and payload[0] == 0
        at = payload[1] + payload[2] + _PAYLOAD_INLINE_SLOT
        offset = next_word - (at + 1)
        if offset >= 1 << 29:
            raise ValueTooLarge("a stored form's payloads may not span more than 4 GiB here (VAL-029)")
        pointer = ((offset << 2) | 1) | (((size << 3) | 2) << 32)
        _U64.pack_into(header, message.starts[0] + 8 * at, pointer)
        parts.append(blob)
        if size % 8:
            parts.append(_ZEROS[: 8 - size % 8])
        next_word += (size + 7) // 8
    if next_word >= 1 << 32:
        raise ValueTooLarge("a stored form may not exceed 32 GiB here (VAL-029)")
    _U32.pack_into(header, 4, next_word)
    parts[0] = bytes(header)
    return parts


def encode_value(value: Value) -> bytes:
    """The stored form of ``value`` (OBJ-010) as one ``bytes``; see :func:`encode_value_parts`."""
    return b"".join(encode_value_parts(value))


def _byte_view(buffer: Any) -> memoryview:
    try:
        view = memoryview(buffer)
    except TypeError:
        raise MalformedFrame(f"not a buffer: {type(buffer).__name__}") from None
    if view.format != "B" or view.ndim != 1:
        if not view.c_contiguous:
            raise MalformedFrame("buffer is not contiguous")
        view = view.cast("B")
    return view


def _read_value(buffer: Any, zero_copy: bool) -> tuple[Encoding, Any, tuple[Any, ...], tuple[RefDescriptor, ...]]:
    limit = max(TRAVERSAL_FACTOR * (len(buffer) // 8), 64)
    with _VALUE.from_bytes(buffer, traversal_limit_in_words=limit, nesting_limit=NESTING_LIMIT) as root:
        if not zero_copy:
            value = _VALUE_DECODER(root, _Context((b"",)))
            return value.encoding, value.data, value.buffers, value.nested
        ordinal = root._get_by_field(_ENCODING).raw
        if ordinal >= len(_ENCODINGS):
            raise MalformedFrame(f"unknown encoding {ordinal}", requirement="GEN-003")
        ctx = _Context((b"",))
        nested = tuple([_REF_DECODER(r, ctx) for r in root._get_by_field(_NESTED)])
        return _ENCODINGS[ordinal], b"", (), nested


def decode_value(buffer: Any, *, zero_copy: bool = False) -> Value:
    """Parse a stored form (OBJ-010) back into a :class:`Value`.

    Args:
        buffer: The whole stored form: ``bytes``, ``bytearray``, ``mmap``,
            ``memoryview``... It must be exactly one message (no trailing bytes).
        zero_copy: Return the payloads (``data`` and ``buffers``) as read-only
            ``memoryview`` slices of ``buffer`` instead of copies; they keep
            ``buffer`` alive. Without it they are ``bytes``.

    Raises:
        MalformedFrame: Anything wrong with the bytes (a truncated or corrupt
            message, a payload that is not inline, a bad nested descriptor).
    """
    view = _byte_view(buffer)
    if len(view) % 8 or not len(view):
        raise MalformedFrame(f"a stored value has {len(view)} bytes, not a whole number of words")
    try:
        message = _Message(view)
    except _Bad as exc:
        raise MalformedFrame(f"undecodable stored value: {exc}") from None
    try:
        try:
            fields = _read_value(view, zero_copy)
        except Exception as exc:
            if "unaligned" not in str(exc):
                raise
            fields = _read_value(view.tobytes(), zero_copy)  # capnp needs word alignment
        encoding, data, buffers, nested = fields
        if zero_copy:
            spans = [message.inline_span(p) for p in message.payloads()]
            frozen = view.toreadonly()
            data = frozen[spans[0][0] : spans[0][1]]
            buffers = tuple([frozen[a:b] for a, b in spans[1:]])
    except MalformedFrame:
        raise
    except _Bad as exc:
        raise MalformedFrame(f"undecodable stored value: {exc}") from None
    except Exception as exc:  # pycapnp: KjException, ValueError, UnicodeDecodeError...
        text = str(exc).strip().splitlines()
        reason = text[0].split(": failed: ", 1)[-1][:200] if text else type(exc).__name__
        raise MalformedFrame(f"undecodable stored value ({type(exc).__name__}: {reason})") from None
    return Value(encoding, data, buffers, nested)


# ---------------------------------------------------------------- portable
@dataclass(frozen=True, slots=True)
class PortableRef:
    """A ``Portable.ref`` node: the index of a ref in ``Value.nested`` (VAL-002)."""

    index: int


_PF = _PORTABLE.schema.fields
_P_NULL, _P_BOOL, _P_INT, _P_FLOAT = _PF["null"], _PF["bool"], _PF["int64"], _PF["float64"]
_P_TEXT, _P_DATA, _P_LIST, _P_MAP, _P_REF = (
    _PF["text"], _PF["data"], _PF["list"], _PF["map"], _PF["ref"]
)
_ENTRY = _S.PortableEntry.schema.fields
_E_KEY, _E_VALUE = _ENTRY["key"], _ENTRY["value"]
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _put_node(b: Any, node: Any, depth: int) -> None:  # noqa: C901 - one branch per type
    kind = type(node)
    if node is None:
        b._set_by_field(_P_NULL, None)
    elif kind is bool:
        b._set_by_field(_P_BOOL, node)
    elif kind is int:
        if not _INT64[0] <= node <= _INT64[1]:
            raise EncodeError(f"integer {node} is outside the signed 64-bit range (VAL-012)")
        b._set_by_field(_P_INT, node)
    elif kind is float:
        b._set_by_field(_P_FLOAT, node)
    elif kind is str:
        b._set_by_field(_P_TEXT, node)
    elif kind in (bytes, bytearray, memoryview):
        b._set_by_field(_P_DATA, node if kind is bytes else memoryview(node).tobytes())
    elif kind is PortableRef:
        if not 0 <= node.index < 1 << 32:
            raise EncodeError(f"ref index {node.index} out of range")
        b._set_by_field(_P_REF, node.index)
    elif kind in (list, tuple, dict):
        if depth >= MAX_PORTABLE_DEPTH:
            raise EncodeError(f"portable values nest at most {MAX_PORTABLE_DEPTH} levels (VAL-007)")
        if kind is dict:
            entries = b._init_by_field(_P_MAP, len(node))
            for i, (key, item) in enumerate(node.items()):
                if type(key) is not str:
                    raise EncodeError(f"portable map keys are text, not {type(key).__name__}")
                entries[i]._set_by_field(_E_KEY, key)
                _put_node(entries[i]._init_by_field(_E_VALUE), item, depth + 1)
        else:
            items = b._init_by_field(_P_LIST, len(node))
            for i, item in enumerate(node):
                _put_node(items[i], item, depth + 1)
    else:
        raise EncodeError(f"{kind.__name__} has no portable form")


def encode_portable(tree: Any) -> bytes:
    """Encode plain data as a ``Portable`` message (VAL-004).

    ``tree`` is built of ``None``, ``bool``, ``int`` (64-bit), ``float``,
    ``str``, ``bytes``/``bytearray``/``memoryview``, ``list``/``tuple``,
    ``dict`` with ``str`` keys, and :class:`PortableRef`, nested at most
    :data:`MAX_PORTABLE_DEPTH` levels.

    Raises:
        EncodeError: ``tree`` holds anything else, or nests too deep.
    """
    msg = _PORTABLE.new_message()
    try:
        _put_node(msg, tree, 0)
        return msg.to_bytes()  # type: ignore[no-any-return]
    except EncodeError:
        raise
    except Exception as exc:  # pycapnp: e.g. a str that is not valid UTF-8
        raise EncodeError(f"cannot encode portable value: {str(exc).strip()[:200]}") from exc


def _get_node(r: Any, depth: int) -> Any:
    try:
        which = r._which_str()
    except Exception:  # pycapnp: the discriminant names no member this schema knows
        raise MalformedFrame("unknown Portable union member", requirement="VAL-014") from None
    if which == "null":
        return None
    if which == "bool":
        return r._get_by_field(_P_BOOL)
    if which == "int64":
        return r._get_by_field(_P_INT)
    if which == "float64":
        return r._get_by_field(_P_FLOAT)
    if which == "text":
        return r._get_by_field(_P_TEXT)
    if which == "data":
        return r._get_by_field(_P_DATA)
    if which == "ref":
        return PortableRef(r._get_by_field(_P_REF))
    if depth >= MAX_PORTABLE_DEPTH:
        raise MalformedFrame(f"portable value nested deeper than {MAX_PORTABLE_DEPTH}", requirement="VAL-007")
    if which == "list":
        return [_get_node(item, depth + 1) for item in r._get_by_field(_P_LIST)]
    if which == "map":
        result: dict[str, Any] = {}
        for entry in r._get_by_field(_P_MAP):
            key = entry._get_by_field(_E_KEY)
            if key in result:
                raise MalformedFrame(f"portable map repeats key {key[:64]!r}", requirement="VAL-005")
            result[key] = _get_node(entry._get_by_field(_E_VALUE), depth + 1)
        return result
    raise MalformedFrame(f"unknown Portable member {which!r}", requirement="VAL-014")


def decode_portable(data: Any) -> Any:
    """Decode a ``Portable`` message into plain data (refs as :class:`PortableRef`).

    Maps come back as ``dict`` in wire order, lists as ``list``, data as ``bytes``.

    Raises:
        MalformedFrame: Corrupt bytes, an unknown union member (VAL-014), a
            repeated map key (VAL-005), nesting beyond :data:`MAX_PORTABLE_DEPTH`
            (VAL-007), invalid UTF-8 (VAL-013).
    """
    view = _byte_view(data)
    if not len(view) or len(view) % 8:
        raise MalformedFrame(f"a portable value has {len(view)} bytes, not a whole number of words")
    try:
        _Message(view)  # exactly one message: its segments cover every byte (VAL-004)
    except _Bad as exc:
        raise MalformedFrame(f"undecodable portable value: {exc}", requirement="VAL-004") from None
    buf = view if type(data) is not bytes else data
    limit = max(TRAVERSAL_FACTOR * (len(view) // 8), 64)
    nesting = 3 * MAX_PORTABLE_DEPTH + 8  # a map level costs 3 Cap'n Proto levels
    try:
        try:
            with _PORTABLE.from_bytes(buf, traversal_limit_in_words=limit, nesting_limit=nesting) as root:
                return _get_node(root, 0)
        except Exception as exc:
            if "unaligned" not in str(exc):
                raise
            with _PORTABLE.from_bytes(view.tobytes(), traversal_limit_in_words=limit, nesting_limit=nesting) as root:
                return _get_node(root, 0)
    except MalformedFrame:
        raise
    except RecursionError:
        raise MalformedFrame("portable value nested too deep", requirement="VAL-007") from None
    except Exception as exc:
        text = str(exc).strip().splitlines()
        reason = text[0].split(": failed: ", 1)[-1][:200] if text else type(exc).__name__
        raise MalformedFrame(f"undecodable portable value ({type(exc).__name__}: {reason})") from None


__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_PORTABLE_DEPTH",
    "PortableRef",
    "decode_portable",
    "decode_value",
    "encode_portable",
    "encode_value",
    "encode_value_parts",
]
