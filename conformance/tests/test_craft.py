"""Hand-made bad input is bad in exactly the intended way, as the codec reads it."""

from __future__ import annotations

import pytest

from refrpc.codec import MalformedFrame, UnknownMessage, decode, encode
from refrpc.core.messages import Arg, ArgKind, Envelope, Heartbeat, RefDescriptor, SubmitTask
from refrpc_conformance._craft import add_frame, drop_payload_frames, garbage, truncate, with_arg_kind, with_discriminant
from refrpc_conformance import by_value, submit_task

pytestmark = pytest.mark.timeout(30)


def envelope(body: object, seq: int = 4) -> Envelope:
    return Envelope("suite", 7, "iut", 9, seq, 2, body)  # type: ignore[arg-type]


def test_type_64_keeps_the_header_readable_so_the_receiver_can_answer_gen_006():
    with pytest.raises(UnknownMessage) as info:
        decode(with_discriminant(envelope(Heartbeat())))
    err = info.value
    assert err.discriminant == 64
    assert (err.sender, err.sender_incarnation, err.seq, err.ack) == ("suite", 7, 4, 2)


def test_unknown_arg_kind_is_malformed_not_unknown_gen_003():
    ref = RefDescriptor("o.1", "suite", 7, "tcp://127.0.0.1:1")
    task = SubmitTask("t.1", "sum_bytes", (Arg(ArgKind.REF, ref=ref),), ("t.1.r0",))
    with pytest.raises(MalformedFrame) as info:
        decode(with_arg_kind(envelope(task), 9))
    assert "ArgKind" in str(info.value) and info.value.seq == 4


def test_frame_hooks_break_zmq_005_and_truncation_breaks_decoding():
    task = submit_task("t.2", "echo", [by_value(b"\x07" * 100)])
    frames = encode(envelope(task), oob_threshold=16)
    assert len(frames) == 2
    decode(frames)  # the untouched message is fine
    for hook in (drop_payload_frames, add_frame(), truncate(0.5)):
        with pytest.raises(MalformedFrame):
            decode(hook(list(frames)))


def test_garbage_is_deterministic_and_undecodable():
    assert garbage(64, seed=1) == garbage(64, seed=1)
    with pytest.raises(MalformedFrame) as info:
        decode(garbage(300))
    assert not info.value.sender_known
