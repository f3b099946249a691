"""Values: Python objects <-> Value (VAL-*), and the stored form of a Value (OBJ-010).

Round trips for every encoding, refs nested anywhere extracted into
``Value.nested`` in order, numpy arrays travelling as out-of-band buffers that
alias the array's memory, and typed errors (never anything else) for bad bytes.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import random
import struct
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrpc import codec
from refrpc.codec import MalformedFrame, PortableRef
from refrpc.core.messages import Encoding, RefDescriptor, Value
from refrpc.serialization import (
    REF_TAG,
    DeserializationError,
    NotPortable,
    SerializationError,
    deserialize,
    from_portable,
    serialize,
    to_portable,
)

np = pytest.importorskip("numpy")

SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


@dataclasses.dataclass(frozen=True)
class FakeRef:
    """Stands in for the runtime's Ref: the hook recognises it by type."""

    desc: RefDescriptor


def ref_hook(obj: object) -> RefDescriptor | None:
    return obj.desc if type(obj) is FakeRef else None


def ref_factory(desc: RefDescriptor) -> FakeRef:
    return FakeRef(desc)


def desc(i: int) -> RefDescriptor:
    return RefDescriptor(f"obj-{i}", "owner", 1, "tcp://127.0.0.1:7000", size_hint=i)


def roundtrip(obj: Any, **kwargs: Any) -> tuple[Value, Any]:
    value = serialize(obj, ref_hook=ref_hook, **kwargs)
    return value, deserialize(value, ref_factory=ref_factory)


def address(arr: Any) -> tuple[int, int]:
    """[low, high) byte addresses of an array's memory."""
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds
    low, high = byte_bounds(arr)
    return low, high


def base_address(buffer: Any) -> int:
    return int(np.frombuffer(buffer, dtype=np.uint8).__array_interface__["data"][0])


def same_shape(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to itself."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_shape(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_shape(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- strategies
int64 = st.integers(-(2**63), 2**63 - 1)
scalars = st.none() | st.booleans() | int64 | st.floats() | st.text(max_size=20) | st.binary(max_size=40)
plain = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
refs = st.integers(0, 5).map(lambda i: FakeRef(desc(i)))
with_refs = st.recursive(
    scalars | refs,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def refs_in_order(obj: Any) -> list[RefDescriptor]:
    """The distinct refs of a tree in depth-first order (the encoders' order)."""
    found: list[RefDescriptor] = []

    def walk(node: Any) -> None:
        if type(node) is FakeRef:
            if node.desc not in found:
                found.append(node.desc)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, Holder):
            walk(node.payload)

    walk(obj)
    return found


class Holder:
    """A user class with refs inside an attribute (pickled by reference to its class)."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Holder) and same_shape(self.payload, other.payload)


def module_function(x: int) -> int:
    return x + 1


# ---------------------------------------------------------------- round trips
@SETTINGS
@given(plain)
def test_plain_data_round_trips_through_pickle(obj: Any) -> None:
    value, back = roundtrip(obj)
    expected = Encoding.RAW if type(obj) is bytes else Encoding.PICKLE
    assert value.encoding is expected and value.nested == ()
    assert same_shape(back, obj)


@SETTINGS
@given(plain)
def test_plain_data_round_trips_through_portable(obj: Any) -> None:
    if isinstance(obj, bytes):
        return  # bytes alone are raw
    for kwargs in ({"portable": True}, {"allow_pickle": False}):
        value, back = roundtrip(obj, **kwargs)
        assert value.encoding is Encoding.PORTABLE and value.buffers == ()
        assert same_shape(back, obj)


@SETTINGS
@given(with_refs, st.booleans())
def test_refs_at_any_depth_are_listed_in_nested_in_order(obj: Any, portable: bool) -> None:
    if type(obj) is bytes:
        return
    value, back = roundtrip(obj, portable=portable)
    assert value.encoding is (Encoding.PORTABLE if portable else Encoding.PICKLE)
    assert list(value.nested) == refs_in_order(obj)  # VAL-002, each once (VAL-011)
    assert same_shape(back, obj)


def test_refs_inside_user_objects_and_repeated_refs() -> None:
    a, b = FakeRef(desc(1)), FakeRef(desc(2))
    obj = {"h": Holder([[[[b]]], a, (a, b)]), "again": b, "same": FakeRef(desc(1))}
    value, back = roundtrip(obj)
    assert value.nested == (desc(2), desc(1))
    assert back == obj
    # The pickle names refs by persistent id ("refrpc.ref", i) (VAL-009).
    ids: list[Any] = []

    class Spy(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            ids.append(pid)
            return None

    import io

    Spy(io.BytesIO(value.data)).load()
    assert set(ids) == {(REF_TAG, 0), (REF_TAG, 1)}


def test_a_ref_on_its_own() -> None:
    for portable in (False, True):
        value, back = roundtrip(FakeRef(desc(7)), portable=portable)
        assert value.nested == (desc(7),) and back == FakeRef(desc(7))


def test_importable_functions_pickle_by_reference_and_others_by_value() -> None:
    value, back = roundtrip(module_function)
    assert back is module_function and len(value.data) < 200  # by name
    scale = 3
    value, back = roundtrip(lambda x: x * scale)  # no importable name: by value (cloudpickle)
    assert back(2) == 6

    @dataclasses.dataclass
    class Local:  # as a class defined in a script or a notebook cell
        n: int

    value, back = roundtrip(Local(5))
    assert back.n == 5 and type(back).__name__ == "Local"


def test_unpicklable_objects_are_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        serialize({"lock": threading.Lock()}, ref_hook=ref_hook)
    with pytest.raises(NotPortable):
        serialize({1, 2}, ref_hook=ref_hook, allow_pickle=False)


def test_bad_ref_hook_result_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError):
        serialize([object()], ref_hook=lambda o: "not a descriptor" if type(o) is object else None)


# ---------------------------------------------------------------- raw
def test_raw_bytes() -> None:
    data = b"\x00\xffraw bytes"
    value, back = roundtrip(data)
    assert value == Value(Encoding.RAW, data) and value.data is data and back is data
    for other in (bytearray(data), memoryview(data)):
        value, back = roundtrip(other)
        assert value.encoding is Encoding.RAW and back == data and type(back) is bytes
    mutable = bytearray(b"abc")
    value = serialize(mutable, ref_hook=ref_hook)
    mutable[0] = ord("x")
    assert value.data == b"abc"  # a snapshot
    # Read zero-copy from a stored form, raw data comes back as a read-only view.
    view = deserialize(codec.decode_value(codec.encode_value(value), zero_copy=True), ref_factory=ref_factory)
    assert type(view) is memoryview and view.readonly and view == b"abc"
    with pytest.raises(DeserializationError):
        deserialize(Value(Encoding.RAW, b"x", nested=(desc(0),)), ref_factory=ref_factory)  # VAL-008


# ---------------------------------------------------------------- portable
def test_portable_mapping_and_limits() -> None:
    obj = {"z": 1, "a": [None, True, -(2**63), 2**63 - 1, 1.5, math.inf, "é€😀", b"\x00"], "m": {}}
    value, back = roundtrip(obj, portable=True)
    assert value.encoding is Encoding.PORTABLE and back == obj and list(back) == ["z", "a", "m"]
    nan = deserialize(serialize(math.nan, ref_hook=ref_hook, portable=True), ref_factory=ref_factory)
    assert math.isnan(nan)
    # Tuples and byte-likes have portable forms, read back as list and bytes.
    _, back = roundtrip((1, bytearray(b"x"), memoryview(b"y")), portable=True)
    assert back == [1, b"x", b"y"]
    # Not portable: falls back to pickle when allowed, else NotPortable (VAL-012).
    for obj in (2**63, {1: "int key"}, {1.5}, "\ud800", Holder(1)):
        assert serialize(obj, ref_hook=ref_hook, portable=True).encoding is Encoding.PICKLE
        with pytest.raises(NotPortable):
            to_portable(obj, ref_hook=ref_hook)
        with pytest.raises(NotPortable):
            serialize(obj, ref_hook=ref_hook, allow_pickle=False)


def nest(depth: int) -> Any:
    obj: Any = 1
    for i in range(depth):
        obj = [obj] if i % 2 else {"k": obj}
    return obj


def test_portable_depth_limit() -> None:
    deepest = nest(codec.MAX_PORTABLE_DEPTH)  # VAL-007: 64 levels must work
    assert roundtrip(deepest, allow_pickle=False)[1] == deepest
    with pytest.raises(NotPortable):
        to_portable(nest(codec.MAX_PORTABLE_DEPTH + 1), ref_hook=ref_hook)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(NotPortable):
        to_portable(cyclic, ref_hook=ref_hook)


def test_portable_malformed_values() -> None:
    schema = codec.schema()
    # A repeated map key (VAL-005).
    msg = schema.Portable.new_message()
    entries = msg.init("map", 2)
    for entry in entries:
        entry.key = "k"
        entry.value.int64 = 1
    with pytest.raises(DeserializationError, match="VAL-005|repeat"):
        from_portable(Value(Encoding.PORTABLE, msg.to_bytes()), ref_factory=ref_factory)
    # A nested index with no entry (VAL-006).
    bad_ref = codec.encode_portable([PortableRef(0), PortableRef(3)])
    with pytest.raises(DeserializationError, match="VAL-006"):
        from_portable(Value(Encoding.PORTABLE, bad_ref, nested=(desc(0),)), ref_factory=ref_factory)
    # An unknown union member (VAL-014): discriminant 9 in the root's data section.
    good = bytearray(codec.encode_portable(5))
    (root,) = struct.unpack_from("<Q", good, 8)
    disc_byte = 2 * schema.Portable.schema.node.struct.discriminantOffset
    struct.pack_into("<H", good, 8 + 8 * (1 + ((root & 0xFFFFFFFF) >> 2)) + disc_byte, 9)
    with pytest.raises(DeserializationError, match="unknown Portable"):
        from_portable(Value(Encoding.PORTABLE, bytes(good)), ref_factory=ref_factory)
    # Too deep on the wire.
    msg = schema.Portable.new_message()
    node = msg
    for _ in range(codec.MAX_PORTABLE_DEPTH + 1):
        node = node.init("list", 1)[0]
    with pytest.raises(DeserializationError):
        from_portable(Value(Encoding.PORTABLE, msg.to_bytes()), ref_factory=ref_factory)
    with pytest.raises(DeserializationError):
        from_portable(Value(Encoding.PORTABLE, b"", (b"x",)), ref_factory=ref_factory)  # VAL-004


# ---------------------------------------------------------------- numpy, out-of-band
def test_numpy_arrays_travel_as_out_of_band_buffers() -> None:
    arr = np.arange(1 << 20, dtype=np.float64)  # 8 MiB
    obj = {"weights": arr, "step": 3, "ref": FakeRef(desc(0))}
    value = serialize(obj, ref_hook=ref_hook)
    assert value.encoding is Encoding.PICKLE and len(value.data) < 1024  # not in the stream
    assert len(value.buffers) == 1 and len(value.buffers[0]) == arr.nbytes
    oob = np.frombuffer(value.buffers[0], dtype=np.uint8)
    assert address(oob) == address(arr)  # the array's own memory, not a copy
    back = deserialize(value, ref_factory=ref_factory)
    assert np.shares_memory(back["weights"], arr) and back["ref"] == FakeRef(desc(0))
    # Through the stored form, read zero-copy: the array lives in the stored bytes.
    stored = codec.encode_value(value)
    back = deserialize(codec.decode_value(stored, zero_copy=True), ref_factory=ref_factory)
    low, high = address(back["weights"])
    base = base_address(stored)
    assert base <= low and high <= base + len(stored)
    assert np.array_equal(back["weights"], arr) and not back["weights"].flags.writeable
    with pytest.raises(ValueError):
        back["weights"][0] = 1.0
    # Non-contiguous arrays are copied in-band, still correct.
    strided = arr[::2]
    assert np.array_equal(roundtrip(strided)[1], strided)


def test_pickle_buffer_objects_go_out_of_band() -> None:
    data = bytearray(b"x" * 100_000)
    value = serialize(pickle.PickleBuffer(data), ref_hook=ref_hook)
    assert len(value.buffers) == 1 and len(value.data) < 100
    assert bytes(deserialize(value, ref_factory=ref_factory)) == bytes(data)


# ---------------------------------------------------------------- bad values
def test_corrupt_pickles_raise_deserialization_error_only() -> None:
    rng = random.Random(7)
    value = serialize({"a": [1, 2.5, "x" * 50], "r": FakeRef(desc(0)), "n": np.arange(10)}, ref_hook=ref_hook)
    data = value.data
    candidates = [data[:n] for n in range(0, len(data), 7)]
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    for candidate in candidates:
        for buffers in (value.buffers, ()):
            bad = Value(Encoding.PICKLE, candidate, buffers, value.nested)
            try:
                deserialize(bad, ref_factory=ref_factory)
            except DeserializationError:
                pass


def test_bad_nested_index_and_disallowed_pickle() -> None:
    value = serialize([FakeRef(desc(0)), FakeRef(desc(1))], ref_hook=ref_hook)
    with pytest.raises(DeserializationError, match="VAL-006"):
        deserialize(dataclasses.replace(value, nested=value.nested[:1]), ref_factory=ref_factory)
    with pytest.raises(DeserializationError):
        deserialize(value, ref_factory=ref_factory, allow_pickle=False)

    def broken_factory(d: RefDescriptor) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(DeserializationError) as info:
        deserialize(value, ref_factory=broken_factory)
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(DeserializationError):
        deserialize(b"not a value", ref_factory=ref_factory)  # type: ignore[arg-type]


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(list(Encoding)))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes, encoding: Encoding) -> None:
    try:
        deserialize(Value(encoding, data), ref_factory=ref_factory)
    except DeserializationError:
        pass


# ---------------------------------------------------------------- the stored form
payloads = st.binary(max_size=40) | st.integers(1, 3).map(lambda n: bytes([n]) * (5000 * n + n))
values = st.builds(
    Value,
    st.sampled_from(list(Encoding)),
    payloads,
    st.lists(payloads, max_size=4).map(tuple),
    st.lists(st.integers(0, 50).map(desc), max_size=3).map(tuple),
)


@SETTINGS
@given(values)
def test_stored_form_round_trips_and_is_standard_capnp(value: Value) -> None:
    parts = codec.encode_value_parts(value)
    stored = codec.encode_value(value)
    assert stored == b"".join(parts) and len(stored) % 8 == 0
    assert codec.decode_value(stored) == value
    view = codec.decode_value(stored, zero_copy=True)
    assert view == value
    for payload in (view.data, *view.buffers):
        assert type(payload) is memoryview and payload.readonly and payload.obj is stored
    # Any Cap'n Proto reader sees the same Value, every payload inline (OBJ-010).
    with codec.schema().Value.from_bytes(stored) as root:
        assert root.encoding == value.encoding.value
        assert root.data.which() == "inline" and root.data.inline == value.data
        assert [p.inline for p in root.buffers] == list(value.buffers)
        assert [r.objectId for r in root.nested] == [d.object_id for d in value.nested]


def test_stored_forms_from_other_encoders_decode_zero_copy() -> None:
    """Multi-segment messages with far pointers, as another implementation may write."""
    for first_words in (1, 2, 3, 5, None):
        msg = codec.schema().Value.new_message(num_first_segment_words=first_words)
        msg.encoding = "pickle"
        msg.data.inline = b"d" * 20
        buffers = msg.init("buffers", 3)
        buffers[0].inline = b"abc" * 1000
        buffers[2].inline = b"z"
        stored = msg.to_bytes()
        expected = Value(Encoding.PICKLE, b"d" * 20, (b"abc" * 1000, b"", b"z"))
        assert codec.decode_value(stored, zero_copy=True) == expected == codec.decode_value(stored)


def test_stored_form_rejects_frames_trailing_bytes_and_garbage() -> None:
    msg = codec.schema().Value.new_message()
    msg.data.frame = 1
    framed = msg.to_bytes()
    for zero_copy in (False, True):
        with pytest.raises(MalformedFrame):
            codec.decode_value(framed, zero_copy=zero_copy)  # OBJ-010: inline only
    stored = codec.encode_value(Value(Encoding.RAW, b"x" * 100, (), (desc(1),)))
    rng = random.Random(3)
    for zero_copy in (False, True):
        with pytest.raises(MalformedFrame):
            codec.decode_value(stored + bytes(8), zero_copy=zero_copy)
        for n in range(0, len(stored), 8):
            with pytest.raises(MalformedFrame):
                codec.decode_value(stored[:n], zero_copy=zero_copy)
        for _ in range(500):
            mutated = bytearray(stored)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                codec.decode_value(bytes(mutated), zero_copy=zero_copy)
            except MalformedFrame:
                pass


def test_unaligned_buffers_still_decode() -> None:
    stored = codec.encode_value(Value(Encoding.RAW, b"abc", (), (desc(1),)))
    unaligned = memoryview(bytearray(b"\0" + stored))[1:]
    assert codec.decode_value(unaligned, zero_copy=True) == Value(Encoding.RAW, b"abc", (), (desc(1),))


def test_payloads_over_the_capnp_data_limit_are_an_encode_error() -> None:
    # One raw buffer cannot be split by meaning: over the Data limit (2**29 - 1 bytes)
    # it is refused as a value too large, naming VAL-029; at the limit it is stored.
    assert codec.MAX_PAYLOAD_BYTES == (1 << 29) - 1
    huge = Value(Encoding.RAW, b"", (memoryview(bytearray(codec.MAX_PAYLOAD_BYTES + 1)),))
    with pytest.raises(codec.ValueTooLarge, match="Data limit") as caught:
        codec.encode_value_parts(huge)
    assert isinstance(caught.value, codec.EncodeError) and caught.value.requirement == "VAL-029"
    for data in (bytes(codec.MAX_PAYLOAD_BYTES + 1), bytes(codec.MAX_PAYLOAD_BYTES)):  # lazily zeroed
        if len(data) > codec.MAX_PAYLOAD_BYTES:
            with pytest.raises(codec.ValueTooLarge):
                codec.encode_value_parts(Value(Encoding.RAW, data))
        else:
            parts = codec.encode_value_parts(Value(Encoding.RAW, data))
            assert sum(len(memoryview(p)) for p in parts) > codec.MAX_PAYLOAD_BYTES


def test_numpy_arrays_over_the_part_size_travel_in_adjacent_parts() -> None:
    from refrpc.serialization import PART_BYTES

    huge = np.zeros(codec.MAX_PAYLOAD_BYTES + 1, dtype=np.uint8)  # lazily zeroed: no memory used
    value = serialize(huge, ref_hook=ref_hook)
    assert [len(memoryview(b)) for b in value.buffers] == [PART_BYTES, PART_BYTES]  # 2**29 bytes
    parts = codec.encode_value_parts(value)  # no longer over the limit
    assert sum(len(memoryview(p).cast("B")) for p in parts) > huge.nbytes


def test_a_portable_value_with_bytes_after_its_message_is_refused() -> None:
    # VAL-004: `data` is exactly one message; a word of padding after it is not a
    # value the writer made (a reader that ignored it would accept what others refuse)
    good = codec.encode_portable([1, "x"])
    assert from_portable(Value(Encoding.PORTABLE, good), ref_factory=ref_factory) == [1, "x"]
    with pytest.raises(DeserializationError, match="VAL-004|cover"):
        from_portable(Value(Encoding.PORTABLE, good + bytes(8)), ref_factory=ref_factory)
