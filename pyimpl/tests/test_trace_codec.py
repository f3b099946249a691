"""The canonical trace format (spec trace-format.md): exact round trips, and a
typed TraceFormatError (never a crash) for truncated or corrupt trace files."""

from __future__ import annotations

import dataclasses
import io
import random
import re
from pathlib import Path
from typing import Any

import capnp  # the test crafts records a RefRPC writer would never produce
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrpc import codec
from refrpc.codec import (
    DecodeError,
    EncodeError,
    TraceFormatError,
    TraceKind,
    TraceRecord,
    decode_trace_record,
    encode_trace_record,
    read_trace,
    trace_file_name,
    write_trace,
)
from refrpc.codec._schema import camel
from refrpc.core import messages as m

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "refrpc.capnp"
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

uint64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**64 - 1]))
uint16 = st.integers(0, 2**16 - 1)
texts = st.one_of(st.text(max_size=20), st.sampled_from(["", "transition", "x-mine", "é€😀"]))

records = st.builds(
    TraceRecord,
    peer=texts,
    incarnation=uint64,
    record_no=uint64,
    monotonic_ns=uint64,
    kind=st.sampled_from(list(TraceKind)),
    remote_peer=texts,
    remote_incarnation=uint64,
    seq=uint64,
    envelope=st.binary(max_size=80),
    event_name=texts,
    object_id=texts,
    task_id=texts,
    detail=st.one_of(texts, st.just('{"cause": 17, "table": "owner-object"}')),
    protocol_major=uint16,
    protocol_minor=uint16,
    implementation=texts,
)


def small_trace() -> list[TraceRecord]:
    """A realistic three-record trace: header, a send, an event."""
    frame0 = codec.encode(m.Envelope("a", 7, "b", 9, 1, 0, m.Goodbye("bye")))[0]
    return [
        TraceRecord("a", 7, 0, 100, TraceKind.HEADER, protocol_minor=1, implementation="refrpc-py/0.1.0"),
        TraceRecord("a", 7, 1, 250, TraceKind.SEND, remote_peer="b", remote_incarnation=9, seq=1, envelope=frame0),
        TraceRecord(
            "a", 7, 2, 300, TraceKind.EVENT, event_name="transition", object_id="a.1.1",
            detail='{"table": "owner-object", "from": "pending", "to": "ready", "cause": 1}',
        ),
    ]  # fmt: skip


def as_bytes(trace: list[TraceRecord]) -> bytes:
    out = io.BytesIO()
    assert write_trace(out, trace) == len(trace)
    return out.getvalue()


def read_all(data: bytes) -> tuple[list[TraceRecord], TraceFormatError | None]:
    """The records read before an error, and the error (or None)."""
    got: list[TraceRecord] = []
    try:
        for record in read_trace(io.BytesIO(data)):
            got.append(record)
    except TraceFormatError as err:
        assert err.records_read == len(got)
        return got, err
    return got, None


# ---------------------------------------------------------------- the mapping
def test_dataclass_mirrors_the_schema_struct() -> None:
    wire = codec.schema().TraceRecord.schema
    assert sorted(wire.fields) == sorted(camel(f.name) for f in dataclasses.fields(TraceRecord))
    kinds = wire.fields["kind"].schema.enumerants
    assert sorted(kinds, key=kinds.__getitem__) == [k.value for k in TraceKind]


# ---------------------------------------------------------------- round trips
@SETTINGS
@given(trace=st.lists(records, max_size=6))
def test_round_trip(trace: list[TraceRecord]) -> None:
    data = as_bytes(trace)
    assert list(read_trace(io.BytesIO(data))) == trace
    assert list(read_trace(data)) == trace  # bytes are accepted too
    for record in trace:
        assert decode_trace_record(encode_trace_record(record)) == record


@SETTINGS
@given(trace=st.lists(records, min_size=1, max_size=4))
def test_the_stream_is_standard_capnp_stream_framing(trace: list[TraceRecord]) -> None:
    # TRC-001: any Cap'n Proto library's stream reader reads our traces.
    data = as_bytes(trace)
    read = list(codec.schema().TraceRecord.read_multiple_bytes(data))
    assert [r.peer for r in read] == [t.peer for t in trace]
    assert [r.recordNo for r in read] == [t.record_no for t in trace]
    assert [str(r.kind) for r in read] == [t.kind.value for t in trace]
    assert [bytes(r.envelope) for r in read] == [t.envelope for t in trace]


def test_records_written_by_another_writer_are_read(tmp_path: Path) -> None:
    # A message built straight from the schema, as another implementation would.
    msg = capnp.SchemaParser().load(str(SCHEMA)).TraceRecord.new_message(
        peer="other", incarnation=5, recordNo=0, monotonicNs=1, kind="header",
        protocolMajor=0, protocolMinor=1, implementation="refrpc-rs/0.1.0",
    )  # fmt: skip
    path = tmp_path / trace_file_name("other", 5)
    one = msg.to_bytes()
    path.write_bytes(one + one)
    with path.open("rb") as f:
        read = list(read_trace(f))
    assert read == [TraceRecord("other", 5, 0, 1, TraceKind.HEADER, protocol_minor=1, implementation="refrpc-rs/0.1.0")] * 2


def test_a_multi_segment_record_is_read() -> None:
    msg = codec.schema().TraceRecord.new_message(num_first_segment_words=2)
    msg.peer = "p"
    msg.kind = "recv"
    msg.envelope = bytes(range(256)) * 8  # does not fit the first segment
    data = msg.to_bytes()
    assert int.from_bytes(data[:4], "little") >= 1  # really more than one segment
    assert list(read_trace(data)) == [TraceRecord("p", 0, 0, 0, TraceKind.RECV, envelope=bytes(range(256)) * 8)]


def test_short_reads_are_retried() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            chunk, self.data = self.data[:1], self.data[1:]
            return chunk

    trace = small_trace()
    assert list(read_trace(Trickle(as_bytes(trace)))) == trace  # type: ignore[arg-type]


def test_empty_trace() -> None:
    assert list(read_trace(b"")) == []


def test_trace_file_name() -> None:
    # TRC-011
    assert trace_file_name("w-1", 0xBEEF) == "w-1.000000000000beef.rrtrace"
    assert trace_file_name("w", 2**64 - 1) == "w.ffffffffffffffff.rrtrace"


# ---------------------------------------------------------------- truncation
def test_truncation_at_every_byte() -> None:
    # TRC-012: every complete record before the cut is read, then a typed error.
    trace = small_trace()
    sizes = [len(encode_trace_record(r)) for r in trace]
    boundaries = [sum(sizes[:i]) for i in range(len(trace) + 1)]
    data = as_bytes(trace)
    assert len(data) == boundaries[-1]
    for cut in range(len(data) + 1):
        got, err = read_all(data[:cut])
        complete = max(i for i, b in enumerate(boundaries) if b <= cut)
        assert got == trace[:complete], cut
        if cut in boundaries:
            assert err is None, cut
        else:
            assert err is not None, cut
            assert err.truncated and err.records_read == complete
            assert err.offset == boundaries[complete]


# ---------------------------------------------------------------- corruption
def assert_records_or_trace_format_error(data: bytes) -> None:
    got, err = read_all(data)
    assert all(type(r) is TraceRecord and isinstance(r.kind, TraceKind) for r in got)
    if err is not None:
        assert isinstance(err, DecodeError) and err.error.requirement == "TRC-001"


@settings(deadline=None, max_examples=300)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    assert_records_or_trace_format_error(data)


@settings(deadline=None, max_examples=300)
@given(flips=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4))
def test_bit_flips_never_crash(flips: list[int]) -> None:
    data = bytearray(as_bytes(small_trace()))
    for flip in flips:
        bit = flip % (8 * len(data))
        data[bit // 8] ^= 1 << (bit % 8)
    assert_records_or_trace_format_error(bytes(data))


@settings(deadline=None, max_examples=100)
@given(seed=st.integers(0, 2**32))
def test_random_words_never_crash(seed: int) -> None:
    rng = random.Random(seed)
    data = bytearray(as_bytes(small_trace()))
    for _ in range(rng.randint(1, 3)):
        word = rng.randrange(len(data) // 8)
        data[8 * word : 8 * word + 8] = rng.getrandbits(64).to_bytes(8, "little")
    assert_records_or_trace_format_error(bytes(data))


@pytest.mark.parametrize(
    "table",
    [
        b"\xff\xff\xff\xff",  # 2**32 segments
        b"\x00\x00\x00\x00\xff\xff\xff\x7f",  # one segment of 2**31 words (16 GiB)
        b"\x00\x00\x00\x00\x00\x00\x00\x00",  # one empty segment: no root pointer
    ],
    ids=["segments", "size", "empty"],
)
def test_absurd_segment_tables_are_corrupt_not_read(table: bytes) -> None:
    good = as_bytes(small_trace()[:1])
    got, err = read_all(good + table + bytes(64))
    assert len(got) == 1 and err is not None
    assert not err.truncated and err.offset == len(good)


def test_record_size_limit() -> None:
    data = as_bytes(small_trace())
    with pytest.raises(TraceFormatError, match="limit"):
        list(read_trace(data, max_record_bytes=64))


def test_invalid_utf8_is_corrupt() -> None:
    data = bytearray(encode_trace_record(TraceRecord("AAAA", 1, 0, 0, TraceKind.EVENT)))
    start = data.index(b"AAAA")
    data[start : start + 4] = b"\xff\xfe\xfd\xfc"
    got, err = read_all(bytes(data))
    assert got == [] and err is not None and not err.truncated


def test_unknown_record_kind_is_corrupt(tmp_path: Path) -> None:
    # A later version's record kind: the reader stops there, with the count.
    text = SCHEMA.read_text()
    text = re.sub(r"^@0x[0-9a-f]+;", "@0x%016x;" % (random.getrandbits(63) | (1 << 63)), text,
                  count=1, flags=re.MULTILINE)
    text = text.replace("    header @3;\n", "    header @3;\n    # x\n    experiment @4;\n    # y\n")
    path = tmp_path / "refrpc_next.capnp"
    path.write_text(text)
    newer = capnp.load(str(path))
    odd = newer.TraceRecord.new_message(peer="a", kind="experiment").to_bytes()
    good = as_bytes(small_trace()[:2])
    got, err = read_all(good + odd + good)
    assert got == small_trace()[:2]
    assert err is not None and err.records_read == 2 and not err.truncated and "kind" in str(err)


def test_decode_trace_record_wants_exactly_one() -> None:
    one = encode_trace_record(small_trace()[0])
    assert decode_trace_record(one) == small_trace()[0]
    with pytest.raises(TraceFormatError, match="more than one"):
        decode_trace_record(one + one)
    with pytest.raises(TraceFormatError):
        decode_trace_record(b"")
    with pytest.raises(TraceFormatError) as info:
        decode_trace_record(one[:-1])
    assert info.value.truncated


# ---------------------------------------------------------------- encode errors
@pytest.mark.parametrize(
    "record",
    [
        TraceRecord("a", -1, 0, 0, TraceKind.HEADER),
        TraceRecord("a", 2**64, 0, 0, TraceKind.HEADER),
        TraceRecord("a", 1, 0, 0, TraceKind.HEADER, protocol_major=70_000),
        TraceRecord(5, 1, 0, 0, TraceKind.HEADER),  # type: ignore[arg-type]
        TraceRecord("a", 1, 0, 0, "nonsense"),  # type: ignore[arg-type]
        TraceRecord("\ud800", 1, 0, 0, TraceKind.HEADER),
        "not a record",
    ],
    ids=["negative", "too-big", "uint16-overflow", "wrong-type", "bad-kind", "surrogate", "not-a-record"],
)
def test_unrepresentable_records_raise_encode_error(record: Any) -> None:
    with pytest.raises(EncodeError):
        encode_trace_record(record)


def test_write_trace_stops_at_the_first_bad_record() -> None:
    out = io.BytesIO()
    good = small_trace()[0]
    with pytest.raises(EncodeError):
        write_trace(out, [good, TraceRecord("a", -1, 1, 0, TraceKind.EVENT), good])
    assert list(read_trace(out.getvalue())) == [good]
