"""The codec's fast path (codec/_fast.py) means exactly what pycapnp means.

For SubmitTask, TaskReply and Heartbeat envelopes, on hypothesis-generated
messages covering every field: the fast encoding decodes through pycapnp to the
same message, pycapnp's encoding decodes through the fast path to the same
message, and the fast path declines (falls back) only for what it documents. On
damaged frames, decoding with the fast path first gives what the reference
decoder alone gives: the same envelope or the same error type.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refrpc.codec import DecodeError, EncodeError, decode, encode
from refrpc.codec import _fast
from refrpc.codec._decode import decode_reference
from refrpc.codec._encode import DEFAULT_OOB_THRESHOLD, encode_reference
from refrpc.core import messages as m

from test_codec import MESSAGE_STRATEGIES, envelopes

FAST = (m.Heartbeat, m.SubmitTask, m.TaskReply)
SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
fast_envelopes = envelopes(st.one_of(*(MESSAGE_STRATEGIES[c] for c in FAST)))


def _values(obj: Any) -> list[m.Value]:
    if isinstance(obj, m.Value):
        return [obj]
    if isinstance(obj, tuple):
        return [v for item in obj for v in _values(item)]
    if dataclasses.is_dataclass(obj):
        return [v for f in dataclasses.fields(obj) for v in _values(getattr(obj, f.name))]
    return []


def _codes(obj: Any) -> list[m.ErrorCode]:
    if isinstance(obj, m.ErrorInfo):
        return [obj.code]
    if isinstance(obj, tuple):
        return [c for item in obj for c in _codes(item)]
    if dataclasses.is_dataclass(obj):
        return [c for f in dataclasses.fields(obj) for c in _codes(getattr(obj, f.name))]
    return []


def in_shape(envelope: m.Envelope, threshold: int = DEFAULT_OOB_THRESHOLD) -> bool:
    """What the fast path promises to handle (its docstring): the three bodies, values
    without out-of-band buffers or frames, no code outside the schema's registry, and
    tasks without named resources (TASK-050: those are rare, pycapnp writes them)."""
    return (type(envelope.body) in FAST
            and not getattr(envelope.body, "resources", ())
            and all(not v.buffers and len(v.data) < threshold for v in _values(envelope.body))
            and m.ErrorCode.UNRECOGNIZED not in _codes(envelope.body))


@SETTINGS
@given(envelope=fast_envelopes)
def test_fast_encoding_decodes_through_pycapnp_to_the_same_message(envelope: m.Envelope) -> None:
    frames = _fast.encode(envelope, DEFAULT_OOB_THRESHOLD)
    if frames is None:
        assert not in_shape(envelope), "the fast path declined a message it handles"
        return
    assert len(frames) == 1 and isinstance(frames[0], bytes)
    assert decode_reference(frames) == envelope
    assert _fast.decode(frames) == envelope


@SETTINGS
@given(envelope=fast_envelopes)
def test_pycapnp_encoding_decodes_through_the_fast_path_to_the_same_message(envelope: m.Envelope) -> None:
    try:
        frames = encode_reference(envelope)
    except EncodeError:
        assert not in_shape(envelope)
        return
    try:
        got = _fast.decode(frames)
    except _fast.Fallback:
        assert not in_shape(envelope), "the fast path declined pycapnp's encoding of a message it handles"
        return
    assert got == envelope


@pytest.mark.parametrize("cls", [c for c in m.MESSAGE_TYPES if c not in FAST], ids=lambda c: c.__name__)
@settings(deadline=None, max_examples=10)
@given(data=st.data())
def test_other_messages_are_left_to_pycapnp(cls: type, data: st.DataObject) -> None:
    envelope = data.draw(envelopes(MESSAGE_STRATEGIES[cls]))
    assert _fast.encode(envelope, DEFAULT_OOB_THRESHOLD) is None
    try:
        frames = encode_reference(envelope)
    except EncodeError:
        return
    with pytest.raises(_fast.Fallback):
        _fast.decode(frames)
    assert decode(frames) == envelope


def _outcome(fn: Any, frames: list[bytes]) -> Any:
    try:
        return fn(frames)
    except DecodeError as exc:
        return type(exc)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(envelope=fast_envelopes, seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 6),
       truncate=st.booleans())
def test_damaged_frames_decode_as_the_reference_decoder_says(envelope: m.Envelope, seed: int, flips: int,
                                                              truncate: bool) -> None:
    # A lying or broken peer: the fast path must never accept what pycapnp refuses,
    # nor read it differently (GEN-004: a typed error, never a crash).
    frames = encode(envelope)
    rng = random.Random(seed)
    frame = bytearray(frames[0])
    for _ in range(flips):
        frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
    if truncate:
        del frame[rng.randrange(8, len(frame)) // 8 * 8:]
    damaged = [bytes(frame), *frames[1:]]
    assert _outcome(decode, damaged) == _outcome(decode_reference, damaged)


def test_the_hot_messages_take_the_fast_path() -> None:
    # SubmitTask and TaskReply as a no-op task sends them, and a Heartbeat: none falls back.
    value = m.Value(m.Encoding.PICKLE, b"\x80\x05N.")
    bodies = [
        m.SubmitTask("driver.1.7", "workloads:noop", (), ("driver.1.7.r0",), max_retries=3),
        m.SubmitTask("driver.1.8", "m:f", (m.Arg(m.ArgKind.VALUE, value=value),
                                           m.Arg(m.ArgKind.REF, ref=m.RefDescriptor("driver.1.2", "driver", 1, "ipc://d", 10)),
                                           m.Arg(m.ArgKind.SHARED, ref=m.RefDescriptor("w1.2.3", "w1", 2, "ipc://w", -1, "f1"))),
                     ("driver.1.8.r0", "driver.1.8.r1"), attempt=2, actor_id="driver.1.9", actor_seq=4),
        m.TaskReply("driver.1.7", 1, (m.ReturnValue("driver.1.7.r0", m.ReturnKind.INLINE, value),)),
        m.TaskReply("driver.1.8", 2, (m.ReturnValue("driver.1.8.r0", m.ReturnKind.STORED, location="w1", size=300_000,
                                                    nested=(m.RefDescriptor("w1.2.3", "w1", 2, "ipc://w"),)),
                                      m.ReturnValue("driver.1.8.r1", m.ReturnKind.ERROR,
                                                    error=m.ErrorInfo(m.ErrorCode.TASK_FAILED, "boom", "TASK-007", "tb"))),
                    store_free_bytes=48_000_000),  # OBJ-060
        m.TaskReply("driver.1.9", 1, (), store_free_bytes=0),
        m.Heartbeat(),
    ]
    for body in bodies:
        envelope = m.Envelope("driver", 1, "w1", 2, seq=7, ack=6, body=body)
        frames = _fast.encode(envelope, DEFAULT_OOB_THRESHOLD)
        assert frames is not None, type(body).__name__
        assert _fast.decode(frames) == envelope == decode_reference(frames)
        assert _fast.decode(encode_reference(envelope)) == envelope


def test_a_payload_for_its_own_frame_goes_the_reference_way() -> None:
    big = m.Value(m.Encoding.RAW, bytes(70_000))
    envelope = m.Envelope("driver", 1, "w1", 2, seq=1, ack=0,
                          body=m.TaskReply("t.1", 1, (m.ReturnValue("t.1.r0", m.ReturnKind.INLINE, big),)))
    assert _fast.encode(envelope, DEFAULT_OOB_THRESHOLD) is None
    frames = encode(envelope)
    assert len(frames) == 2  # VAL-003: out of band
    with pytest.raises(_fast.Fallback):
        _fast.decode(frames)
    assert decode(frames) == envelope
