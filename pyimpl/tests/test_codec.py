"""The codec: exact round trips for every message, and typed errors (never a
crash, never a hang) for any frames a hostile or buggy peer can send (GEN-004)."""

from __future__ import annotations

import dataclasses
import enum
import random
import re
import string
import struct
import time
from pathlib import Path
from typing import Any

import capnp  # the test crafts frames a RefRPC encoder would never produce
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrpc import codec
from refrpc.codec import (
    DecodeError,
    EncodeError,
    MalformedFrame,
    OversizedFrame,
    UnknownMessage,
    decode,
    encode,
)
from refrpc.codec._schema import camel
from refrpc.core import messages as m
from refrpc.core.messages import ErrorCode

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "refrpc.capnp"

SETTINGS = settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)

# ---------------------------------------------------------------- strategies
# Built from the dataclass annotations and the schema's integer types, so a new
# message or field is covered without touching this file.

ID_BYTES = {"PeerId": 128, "ObjectId": 256, "TaskId": 256, "ForwardId": 256, "ActorId": 256}
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}


def ids(max_bytes: int, may_be_empty: bool) -> st.SearchStrategy[str]:
    """Valid identifiers (ID-001/ID-003), including ones exactly at the limit."""
    short = st.text(min_size=0 if may_be_empty else 1, max_size=12)
    at_limit = st.text(alphabet=string.ascii_letters, min_size=max_bytes, max_size=max_bytes)
    wide = st.text(alphabet="é€😀", min_size=1, max_size=max_bytes // 4)
    return st.one_of(short, short, at_limit, wide)


def ints(cls: type, field_name: str) -> st.SearchStrategy[int]:
    struct_schema = getattr(codec.schema(), cls.__name__).schema
    kind = struct_schema.fields[camel(field_name)].proto.slot.type.which()
    lo, hi = INT_RANGES[str(kind)]
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1, -1 if lo else 2]))


payloads = st.one_of(
    st.binary(max_size=64),
    st.integers(0, 3).map(lambda n: bytes([n]) * (70_000 + n)),  # out-of-band by default
)


def strategy_for_annotation(owner: type, f: dataclasses.Field[Any], ann: str) -> st.SearchStrategy[Any]:
    ann = ann.replace(" ", "")
    if ann.endswith("|None"):
        return st.none() | strategy_for_annotation(owner, f, ann[: -len("|None")])
    if ann.startswith("tuple[") and ann.endswith(",...]"):
        elem = ann[len("tuple[") : -len(",...]")]
        inner = ids(ID_BYTES[elem], False) if elem in ID_BYTES else strategy_for_annotation(owner, f, elem)
        return st.lists(inner, max_size=3).map(tuple)
    if ann in ID_BYTES:
        return ids(ID_BYTES[ann], f.default == "")
    if ann == "str":
        return st.text(max_size=20)
    if ann == "bytes":
        return payloads
    if ann == "bool":
        return st.booleans()
    if ann == "int":
        return ints(owner, f.name)
    target = getattr(m, ann)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return st.sampled_from(list(target))
    return strategy_for(target)


_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {}


def strategy_for(cls: type) -> st.SearchStrategy[Any]:
    if cls not in _STRATEGIES:
        fields = {
            f.name: strategy_for_annotation(cls, f, str(f.type)) for f in dataclasses.fields(cls)
        }
        _STRATEGIES[cls] = st.builds(cls, **fields)
    return _STRATEGIES[cls]


MESSAGE_STRATEGIES = {cls: strategy_for(cls) for cls in m.MESSAGE_TYPES}
uint64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1]))


def envelopes(body: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[m.Envelope]:
    return st.builds(
        m.Envelope,
        sender=ids(128, False),
        sender_incarnation=uint64,
        receiver=ids(128, False),
        receiver_incarnation=uint64,
        seq=uint64,
        ack=uint64,
        body=body if body is not None else st.one_of(*MESSAGE_STRATEGIES.values()),
    )


def payload_sizes(obj: Any) -> list[int]:
    """Sizes of every bytes payload inside a message, in any order."""
    if isinstance(obj, bytes):
        return [len(obj)]
    if isinstance(obj, tuple):
        return [n for item in obj for n in payload_sizes(item)]
    if dataclasses.is_dataclass(obj):
        return [n for f in dataclasses.fields(obj) for n in payload_sizes(getattr(obj, f.name))]
    return []


# ---------------------------------------------------------------- round trips
def test_every_message_type_has_a_strategy() -> None:
    assert set(MESSAGE_STRATEGIES) == set(m.MESSAGE_TYPES)


@pytest.mark.parametrize("cls", m.MESSAGE_TYPES, ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_round_trip_every_message_type(cls: type, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(MESSAGE_STRATEGIES[cls]))
    assert type(envelope.body) is cls
    frames = encode(envelope)
    assert isinstance(frames[0], bytes)
    assert decode(frames) == envelope


@SETTINGS
@given(envelope=envelopes(), threshold=st.sampled_from([0, 1, 33, 65536, 1 << 30]))
def test_payloads_at_or_over_the_threshold_travel_as_their_own_frames(
    envelope: m.Envelope, threshold: int
) -> None:
    # VAL-003: big payloads are separate frames; the frame is the caller's object.
    frames = encode(envelope, oob_threshold=threshold)
    big = sorted(n for n in payload_sizes(envelope.body) if n >= threshold and n)
    assert sorted(len(f) for f in frames[1:] if len(f)) == big
    assert decode(frames) == envelope


def test_out_of_band_frames_are_not_copied() -> None:
    buffer = bytes(70_000)
    view = memoryview(bytearray(b"v" * 100_000))
    value = m.Value(m.Encoding.PICKLE, b"small", buffers=(buffer, view))
    envelope = m.Envelope("a", 1, "b", 2, 3, 0, m.ObjectStatus("o", m.ObjectState.READY, value=value))
    frames = encode(envelope)
    assert len(frames) == 3
    assert frames[1] is buffer and frames[2] is view
    decoded = decode(frames)
    assert decoded.body.value.buffers == (buffer, bytes(view))
    assert decoded.body.value.buffers[0] is buffer  # a bytes frame is used as is


def test_fetch_chunk_of_one_mebibyte_goes_out_of_band() -> None:
    chunk = m.FetchChunk("o", 7, offset=0, total_size=1 << 20, last=True, data=bytes(1 << 20))
    frames = encode(m.Envelope("a", 1, "b", 2, 9, 8, chunk))
    assert len(frames) == 2 and frames[1] is chunk.data
    assert len(frames[0]) < 256
    assert decode(frames).body == chunk


def test_memoryview_frames_decode_like_bytes() -> None:
    envelope = m.Envelope("a", 1, "b", 2, 3, 0, m.Goodbye("bye"))
    frame0 = encode(envelope)[0]
    unaligned = memoryview(b"x" + frame0)[1:]  # capnp needs alignment: the codec copes
    assert decode([unaligned]) == envelope
    assert decode([bytearray(frame0)]) == envelope


# ---------------------------------------------------------------- encode errors
@pytest.mark.parametrize(
    "envelope",
    [
        m.Envelope("a", 1, "b", 2, -1, 0, m.Heartbeat()),
        m.Envelope("a", 2**64, "b", 2, 1, 0, m.Heartbeat()),
        m.Envelope("a", 1, "b", 2, 1, 0, m.Hello(70_000, 1, "tcp://x", ("core",), 1, 1)),
        m.Envelope("a", 1, "b", 2, 1, 0, m.Goodbye(reason=5)),  # type: ignore[arg-type]
        m.Envelope("a", 1, "b", 2, 1, 0, m.Goodbye("\ud800")),
        m.Envelope("a", 1, "b", 2, 1, 0, "not a message"),  # type: ignore[arg-type]
        m.Envelope("a", 1, "b", 2, 1, 0, m.ProtocolError(None)),  # type: ignore[arg-type]
    ],
    ids=["negative-seq", "incarnation-too-big", "uint16-overflow", "wrong-type",
         "surrogate", "not-a-message", "missing-required"],
)
def test_unrepresentable_envelopes_raise_encode_error(envelope: m.Envelope) -> None:
    with pytest.raises(EncodeError):
        encode(envelope)


# ---------------------------------------------------------------- hostile input
def samples() -> list[m.Envelope]:
    ref = m.RefDescriptor("p.1.7", "p", 99, "tcp://p:1", 10, "p.1.f3")
    value = m.Value(m.Encoding.PORTABLE, b"\x00" * 24, (b"buf",), (ref,))
    return [
        m.Envelope("a", 1, "b", 2, 5, 4, m.SubmitTask(
            "a.1.1", "f", (m.Arg(m.ArgKind.VALUE, value=value), m.Arg(m.ArgKind.SHARED, ref=ref)),
            ("a.1.1.r0",), max_retries=2)),
        m.Envelope("b", 2, "a", 1, 6, 5, m.ObjectStatus(
            "a.1.1.r0", m.ObjectState.FAILED, locations=("c",), location_addresses=("tcp://c",),
            error=m.ErrorInfo(ErrorCode.OWNER_DIED, "gone", "FATE-001", "trace"))),
        m.Envelope("c", 3, "a", 1, 1, 0, m.FetchChunk("o", 1, 0, 80_000, True, data=bytes(80_000))),
    ]


def assert_decode_error_or_valid(frames: list[Any], **kwargs: Any) -> None:
    """Decoding either fails with a DecodeError or yields an envelope that
    re-encodes to itself; anything else (a crash, a bogus value) is a bug."""
    try:
        envelope = decode(frames, **kwargs)
    except DecodeError as err:
        assert isinstance(err.error, m.ErrorInfo)
        assert err.error.code in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_MESSAGE)
        return
    assert decode(encode(envelope)) == envelope


@pytest.mark.parametrize("index", range(3))
def test_every_truncation_is_a_decode_error(index: int) -> None:
    frames = encode(samples()[index])
    frame0 = frames[0]
    for length in range(len(frame0)):
        with pytest.raises(DecodeError):
            decode([frame0[:length], *frames[1:]])


@settings(deadline=None, max_examples=300)
@given(frame0=st.binary(max_size=256), extra=st.lists(st.binary(max_size=16), max_size=2))
def test_random_bytes_never_crash(frame0: bytes, extra: list[bytes]) -> None:
    assert_decode_error_or_valid([frame0, *extra])


@settings(deadline=None, max_examples=300)
@given(index=st.integers(0, 2), flips=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4))
def test_bit_flips_never_crash(index: int, flips: list[int]) -> None:
    frames = encode(samples()[index])
    frame0 = bytearray(frames[0])
    for flip in flips:
        bit = flip % (8 * len(frame0))
        frame0[bit // 8] ^= 1 << (bit % 8)
    assert_decode_error_or_valid([bytes(frame0), *frames[1:]])


@settings(deadline=None, max_examples=100)
@given(seed=st.integers(0, 2**32))
def test_pointer_words_set_to_random_values_never_crash(seed: int) -> None:
    # Aim at the pointer-heavy part of the message: random 64-bit words.
    rng = random.Random(seed)
    frames = encode(samples()[0])
    frame0 = bytearray(frames[0])
    for _ in range(rng.randint(1, 3)):
        word = rng.randrange(len(frame0) // 8)
        frame0[8 * word : 8 * word + 8] = rng.getrandbits(64).to_bytes(8, "little")
    assert_decode_error_or_valid([bytes(frame0), *frames[1:]])


def test_empty_and_non_buffer_frames() -> None:
    with pytest.raises(MalformedFrame):
        decode([])
    with pytest.raises(MalformedFrame):
        decode([b""])
    with pytest.raises(MalformedFrame):
        decode([object()])  # type: ignore[list-item]
    with pytest.raises(MalformedFrame):
        decode([b"\x00" * 7])


def test_missing_out_of_band_frame() -> None:
    frames = encode(samples()[2])
    with pytest.raises(MalformedFrame, match="frame 1") as info:
        decode(frames[:1])
    assert (info.value.sender, info.value.sender_incarnation, info.value.seq) == ("c", 3, 1)


def test_too_many_frames() -> None:
    frames = encode(samples()[2])
    with pytest.raises(MalformedFrame, match="not referenced"):
        decode([*frames, b"extra"])


def _hand_built(build: Any) -> list[bytes]:
    """Frames of an Envelope built directly with the schema (header a/1 -> b/2, seq 7)."""
    msg = codec.schema().Envelope.new_message(
        sender="a", senderIncarnation=1, receiver="b", receiverIncarnation=2, seq=7, ack=6
    )
    build(msg.body)
    return [msg.to_bytes()]


@pytest.mark.parametrize("indices", [(1, 1), (0,), (5,), (2**32 - 1,)])
def test_bad_frame_references(indices: tuple[int, ...]) -> None:
    def build(body: Any) -> None:
        status = body.init("objectStatus")
        status.objectId = "o"
        value = status.value.init("some")
        buffers = value.init("buffers", len(indices))
        for i, index in enumerate(indices):
            buffers[i].frame = index

    frames = _hand_built(build) + [b"one", b"two"][: max(1, len(indices))]
    with pytest.raises(MalformedFrame) as info:
        decode(frames)
    assert info.value.seq == 7 and info.value.error.code is ErrorCode.MALFORMED


def test_missing_required_struct_is_malformed() -> None:
    frames = _hand_built(lambda body: body.init("protocolError"))
    with pytest.raises(MalformedFrame, match="missing") as info:
        decode(frames)
    assert info.value.sender == "a" and info.value.sender_known


@pytest.mark.parametrize(
    "envelope, requirement, sender_known",
    [
        (m.Envelope("", 1, "b", 2, 1, 0, m.Heartbeat()), "ID-001", False),
        (m.Envelope("a" * 129, 1, "b", 2, 1, 0, m.Heartbeat()), "ID-001", False),
        (m.Envelope("a", 1, "é" * 65, 2, 1, 0, m.Heartbeat()), "ID-001", True),
        (m.Envelope("a", 1, "b", 2, 1, 0, m.CancelTask("")), "ID-003", True),
        (m.Envelope("a", 1, "b", 2, 1, 0, m.CancelTask("t" * 257)), "ID-003", True),
        (m.Envelope("a", 1, "b", 2, 1, 0, m.FreeObjects(("o", ""))), "ID-003", True),
        (m.Envelope("a", 1, "b", 2, 1, 0, m.PeerDeadNotice("", 5)), "ID-001", True),
    ],
)
def test_identifier_limits(envelope: m.Envelope, requirement: str, sender_known: bool) -> None:
    with pytest.raises(MalformedFrame) as info:
        decode(encode(envelope))
    assert info.value.error.requirement == requirement
    assert info.value.sender_known == sender_known


def test_identifiers_exactly_at_the_limit_are_valid() -> None:
    envelope = m.Envelope("p" * 128, 1, "€" * 42, 2, 1, 0, m.CancelTask("😀" * 64))
    assert decode(encode(envelope)) == envelope


def test_oversized_frames() -> None:
    frames = encode(samples()[2])
    with pytest.raises(OversizedFrame) as info:
        decode(frames, max_frame_bytes=1000)
    # The envelope itself was small enough to read: the sender can be told.
    assert (info.value.sender, info.value.seq) == ("c", 1)
    # GEN-004: a message over maxFrameBytes is reported as MALFORMED.
    assert info.value.error.code is ErrorCode.MALFORMED
    assert info.value.error.requirement == "GEN-004"
    with pytest.raises(OversizedFrame) as info:
        decode(frames, max_frame_bytes=16)
    assert info.value.sender == ""
    # The limit also bounds the message as a whole.
    two = encode(m.Envelope("c", 3, "a", 1, 2, 0, m.ObjectStatus(
        "o", m.ObjectState.READY, value=m.Value(m.Encoding.PICKLE, b"", (bytes(70_000),) * 2))))
    assert max(len(f) for f in two) <= 70_000
    with pytest.raises(OversizedFrame, match="message") as info:
        decode(two, max_frame_bytes=100_000)
    assert info.value.seq == 2
    assert decode(two, max_frame_bytes=200_000).body.object_id == "o"


def test_aliasing_pointers_hit_the_traversal_limit() -> None:
    # A frame of ~170 KiB whose 20,000 list entries all point at one 16 KiB text
    # would expand to 320 MB of strings; the traversal limit stops it (GEN-004).
    entries, blob = 20_000, "x" * (16 * 1024 - 1)
    msg = codec.schema().Envelope.new_message(
        num_first_segment_words=entries + 8192, sender="a", senderIncarnation=1, receiver="b", seq=1
    )
    ids = msg.body.init("hello").init("features", entries)
    ids[0] = blob  # allocated right after the list of pointers
    frame0 = bytearray(msg.to_bytes())
    assert struct.unpack_from("<I", frame0)[0] == 0  # one segment: a one-word table
    segment = 8
    blob_word = (frame0.index(blob.encode()) - segment) // 8
    first = blob_word - entries  # the list's pointer words precede the blob
    for i in range(entries):
        offset = blob_word - (first + i + 1)
        pointer = (offset << 2) | 1 | ((len(blob) + 1) << 35) | (2 << 32)
        struct.pack_into("<Q", frame0, segment + 8 * (first + i), pointer)
    started = time.perf_counter()
    with pytest.raises(MalformedFrame, match="traversal limit") as info:
        decode([bytes(frame0)])
    assert time.perf_counter() - started < 5
    assert info.value.sender == "a"


# ---------------------------------------------------------------- unknown types
def extended_schema(tmp_path: Path) -> Any:
    """A later version of the schema: one more message and one more error code."""
    text = SCHEMA.read_text()
    file_id = "@0x%016x;" % (random.getrandbits(63) | (1 << 63))
    text = re.sub(r"^@0x[0-9a-f]+;", file_id, text, count=1, flags=re.MULTILINE)
    members = [int(n) for n in re.findall(r"^\s+\w+ @(\d+) :\w+;", text.split("body :union")[1].split("\n}\n")[0], re.MULTILINE)]
    last = max(members)
    text = text.replace(
        f"introspectReply @{last} :IntrospectReply;",
        f"introspectReply @{last} :IntrospectReply;\n    experiment @{last + 1} :Experiment;",
    )
    codes = text.split("enum ErrorCode {")[1].split("\n}\n")[0]
    last_code = max(int(n) for n in re.findall(r"^\s+\w+ @(\d+);", codes, re.MULTILINE))
    text = text.replace(f" @{last_code};\n", f" @{last_code};\n  experimentalCode @{last_code + 1};\n", 1)
    states = text.split("enum ObjectState {")[1].split("\n}\n")[0]
    last_state = max(int(n) for n in re.findall(r"^\s+\w+ @(\d+);", states, re.MULTILINE))
    text = text.replace(
        f"enum ObjectState {{{states}\n}}\n",
        f"enum ObjectState {{{states}\n  experimentalState @{last_state + 1};\n}}\n",
    )
    encodings = text.split("enum Encoding {")[1].split("\n}\n")[0]
    last_encoding = max(int(n) for n in re.findall(r"^\s+\w+ @(\d+);", encodings, re.MULTILINE))
    text = text.replace(
        f"enum Encoding {{{encodings}\n}}\n",
        f"enum Encoding {{{encodings}\n  experimentalEncoding @{last_encoding + 1};\n}}\n",
    )
    text += "\nstruct Experiment {\n  note @0 :Text;\n}\n"
    path = tmp_path / "refrpc_next.capnp"
    path.write_text(text)
    return capnp.load(str(path))


def test_unknown_message_type_keeps_the_header(tmp_path: Path) -> None:
    # GEN-001: a newer peer's message: the core answers UNKNOWN_MESSAGE and consumes seq.
    newer = extended_schema(tmp_path)
    msg = newer.Envelope.new_message(
        sender="new", senderIncarnation=77, receiver="old", receiverIncarnation=5, seq=12, ack=3
    )
    msg.body.init("experiment").note = "hi"
    with pytest.raises(UnknownMessage) as info:
        decode([msg.to_bytes()])
    err = info.value
    assert (err.sender, err.sender_incarnation, err.seq, err.ack) == ("new", 77, 12, 3)
    assert err.discriminant == len(m.MESSAGE_TYPES)
    assert err.error.code is ErrorCode.UNKNOWN_MESSAGE and err.error.requirement == "GEN-001"


def test_experimental_discriminant_64_is_an_unknown_message() -> None:
    frame0 = bytearray(encode(m.Envelope("x", 9, "y", 8, 4, 0, m.Heartbeat()))[0])
    (root,) = struct.unpack_from("<Q", frame0, 8)
    assert root & 3 == 0 and (root & 0xFFFFFFFF) >> 2 == 0  # root struct right after the pointer
    group = codec.schema().Envelope.schema.fields["body"].schema
    struct.pack_into("<H", frame0, 16 + 2 * group.node.struct.discriminantOffset, 64)
    with pytest.raises(UnknownMessage) as info:
        decode([bytes(frame0)])
    assert info.value.discriminant == 64 and info.value.seq == 4 and info.value.sender == "x"


def test_extended_schema_puts_the_new_code_after_the_last_one(tmp_path: Path) -> None:
    newer = extended_schema(tmp_path)
    codes = newer.ErrorCode.schema.enumerants
    assert codes["experimentalCode"] == len(ErrorCode)
    assert codes["unrecognized"] == list(ErrorCode).index(ErrorCode.UNRECOGNIZED)
    assert newer.ObjectState.schema.enumerants["experimentalState"] == len(m.ObjectState)


def test_unknown_enum_value_is_malformed_for_that_message(tmp_path: Path) -> None:
    # GEN-003: enums whose value decides what the receiver does stay strict.
    newer = extended_schema(tmp_path)
    msg = newer.Envelope.new_message(sender="new", senderIncarnation=1, receiver="old", seq=2)
    status = msg.body.init("objectStatus")
    status.objectId = "o"
    status.state = "experimentalState"
    with pytest.raises(MalformedFrame) as info:
        decode([msg.to_bytes()])
    assert info.value.error.requirement == "GEN-003" and info.value.seq == 2
    assert info.value.error.code is ErrorCode.MALFORMED


@pytest.mark.parametrize("kind", ["stored", "error"])
def test_unknown_encoding_in_a_member_the_receiver_ignores_is_still_malformed(tmp_path: Path, kind: str) -> None:
    # GEN-003: the value of a stored return (VAL-019: never read) or an error return's
    # optional value (TASK-018: may be ignored) with an encoding from a later version
    # makes the TaskReply malformed all the same.
    newer = extended_schema(tmp_path)
    msg = newer.Envelope.new_message(sender="new", senderIncarnation=1, receiver="old", seq=3)
    reply = msg.body.init("taskReply")
    reply.taskId = "t"
    reply.attempt = 1
    ret = reply.init("returns", 1)[0]
    ret.objectId = "t.r0"
    ret.kind = kind
    if kind == "stored":
        ret.location = "new"
        ret.size = 64
    else:
        ret.error.init("some").code = "taskFailed"
    value = ret.value.init("some")
    value.encoding = "experimentalEncoding"
    value.data.inline = b"?"
    with pytest.raises(MalformedFrame) as info:
        decode([msg.to_bytes()])
    assert info.value.error.requirement == "GEN-003" and info.value.seq == 3


def _error_info(newer: Any, code: str) -> Any:
    info = newer.ErrorInfo.new_message()
    info.code = code
    info.message = "from the future"
    info.requirement = "TASK-007"
    info.detail = "traceback"
    return info


@pytest.mark.parametrize(
    "member",
    ["protocolError", "taskReply", "objectStatus", "borrowerRegistered", "fetchChunk", "actorStatus"],
)
def test_unknown_error_code_decodes_to_unrecognized(tmp_path: Path, member: str) -> None:
    # ERR-002: an unknown ErrorCode never makes the message malformed; message,
    # requirement and detail are kept. Every place an ErrorInfo travels is covered.
    newer = extended_schema(tmp_path)
    msg = newer.Envelope.new_message(
        sender="new", senderIncarnation=1, receiver="old", receiverIncarnation=2, seq=3
    )
    body = msg.body.init(member)
    error = _error_info(newer, "experimentalCode")
    if member == "protocolError":
        body.error = error
    elif member == "taskReply":
        body.taskId = "t"
        ret = body.init("returns", 1)[0]
        ret.objectId = "t.r0"
        ret.kind = "error"
        ret.error.some = error
    elif member == "objectStatus":
        body.objectId = "o"
        body.state = "failed"
        body.error.some = error
    elif member == "borrowerRegistered":
        body.objectId = "o"
        body.forwardId = "f"
        body.error.some = error
    elif member == "fetchChunk":
        body.objectId = "o"
        body.last = True
        body.error.some = error
    else:
        body.actorId = "a"
        body.state = "dead"
        body.error.some = error
    envelope = decode([msg.to_bytes()])
    assert envelope.seq == 3
    found = _error_infos(envelope.body)
    assert found == [m.ErrorInfo(ErrorCode.UNRECOGNIZED, "from the future", "TASK-007", "traceback")]
    # Re-sending it (ERR-007) puts UNRECOGNIZED on the wire: the last code there is.
    again = decode(encode(envelope))
    assert again == envelope
    assert _error_infos(again.body)[0].code is ErrorCode.UNRECOGNIZED
    with newer.Envelope.from_bytes(encode(envelope)[0]) as seen_by_newer:
        assert str(seen_by_newer.body.which()) == member


def _error_infos(obj: Any) -> list[m.ErrorInfo]:
    """Every ErrorInfo inside a message."""
    if isinstance(obj, m.ErrorInfo):
        return [obj]
    if isinstance(obj, tuple):
        return [e for item in obj for e in _error_infos(item)]
    if dataclasses.is_dataclass(obj):
        return [e for f in dataclasses.fields(obj) for e in _error_infos(getattr(obj, f.name))]
    return []


def test_a_known_error_code_still_decodes_to_itself(tmp_path: Path) -> None:
    newer = extended_schema(tmp_path)
    for name, code in (("unrecognized", ErrorCode.UNRECOGNIZED), ("resourceExhausted", ErrorCode.RESOURCE_EXHAUSTED)):
        msg = newer.Envelope.new_message(sender="new", senderIncarnation=1, receiver="old", seq=4)
        msg.body.init("protocolError").error = _error_info(newer, name)
        assert decode([msg.to_bytes()]).body.error.code is code


def test_unknown_fields_are_ignored(tmp_path: Path) -> None:
    # GEN-002: a newer sender's extra fields do not disturb an older reader.
    text = SCHEMA.read_text()
    text = re.sub(r"^@0x[0-9a-f]+;", "@0x%016x;" % (random.getrandbits(63) | (1 << 63)), text,
                  count=1, flags=re.MULTILINE)
    text = text.replace("  reason @0 :Text;\n  # Why, for humans; may be empty.",
                        "  reason @0 :Text;\n  # Why.\n  extra @1 :List(Text);\n  # New.")
    path = tmp_path / "refrpc_extra.capnp"
    path.write_text(text)
    newer = capnp.load(str(path))
    msg = newer.Envelope.new_message(sender="a", senderIncarnation=1, receiver="b", seq=1)
    goodbye = msg.body.init("goodbye")
    goodbye.reason = "bye"
    goodbye.extra = ["x"] * 3
    assert decode([msg.to_bytes()]).body == m.Goodbye("bye")


def test_only_the_codec_imports_capnp() -> None:
    # The core stays sans-IO and schema-agnostic; the codec is the one translator.
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "pyimpl" / "src" / "refrpc").rglob("*.py")
        if "codec" not in path.parts
        and re.search(r"^\s*(import|from)\s+capnp\b", path.read_text(), re.MULTILINE)
    ]
    assert offenders == []
