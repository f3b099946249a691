#!/usr/bin/env python3
"""Generate the test vectors in spec/vectors/ with the reference codec.

Each vector is an example a codec writer can check an implementation against:
the frames of one message exactly as the reference codec (`refrpc.codec`) encodes
it, as hex, next to the message's content as JSON. Run your decoder on the hex and
compare with the JSON; run your encoder on the content and compare with the hex
(Cap'n Proto leaves a writer some freedom in layout, so an encoder that differs in
bytes may still be correct: what must agree is what a decoder reads back).

Files (all generated; see spec/vectors/README.md for the format):
    spec/vectors/messages/<Message>.json   one file per message type (26), each a
                                           list of vectors, in schema order
    spec/vectors/values/<encoding>.json    the value encodings (portable, raw,
                                           pickle) and the stored form (OBJ-010)

Usage:
    python3 spec/tools/make_vectors.py           # (re)write spec/vectors/
    python3 spec/tools/make_vectors.py --check   # exit 1 if anything is stale

Needs pyimpl (`refrpc`) importable, with pycapnp.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: Integers beyond this are written as decimal strings (JSON readers that use
#: doubles would round them).
SAFE_INT = (1 << 53) - 1
OUT = REPO / "spec" / "vectors"

# A fixed cast, so that the vectors never change unless the codec or schema does.
A, A_INC, A_ADDR = "alice", 0x1A2B3C4D5E6F7081, "tcp://10.0.0.1:7001"
B, B_INC, B_ADDR = "bob", 0x0F1E2D3C4B5A6978, "tcp://10.0.0.2:7001"
C, C_INC, C_ADDR = "carol", 0x7766554433221100, "tcp://10.0.0.3:7001"


def _jsonable(obj: Any) -> Any:
    """A pycapnp ``to_dict`` result as JSON: Data as ``{"hex": ...}``, integers beyond
    2^53 - 1 and non-finite floats as text."""
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"hex": bytes(obj).hex()}
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > SAFE_INT:
        return str(obj)  # beyond what a double holds exactly: as a decimal string
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def _frames_hex(frames: list[Any]) -> list[str]:
    return [bytes(f).hex() for f in frames]


def _wire_view(frame0: bytes) -> Any:
    """Frame 0 read with the schema: every field, defaults included, as on the wire."""
    from refrpc import codec

    with codec.schema().Envelope.from_bytes(frame0) as r:
        return _jsonable(r.to_dict())


def _segmented(struct: Any, data: bytes, first_words: int) -> bytes:
    """``data`` (a message whose root is ``struct``) laid out again with a tiny first
    segment, so that the builder spreads it over several segments joined by far
    pointers (ZMQ-020): what a decoder reads must not change."""
    with struct.from_bytes(data) as r:
        fields = r.to_dict()
    out = bytes(struct.new_message(num_first_segment_words=first_words, **fields).to_bytes())
    assert int.from_bytes(out[:4], "little") >= 1, "expected more than one segment"
    return out


def message_vectors() -> dict[str, list[dict[str, Any]]]:
    from refrpc import codec
    from refrpc.core import messages as m
    from refrpc.serialization import to_portable

    def portable(obj: Any, nested: tuple[m.RefDescriptor, ...] = ()) -> m.Value:
        v = to_portable(obj, ref_hook=None)
        return m.Value(v.encoding, v.data, v.buffers, nested) if nested else v

    x_desc = m.RefDescriptor(f"{A}.1a2b3c4d5e6f7081.7", A, A_INC, A_ADDR, 1200, f"{B}.f1e2d3c4b5a6978.3")
    x_task = m.RefDescriptor(f"{A}.1a2b3c4d5e6f7081.7", A, A_INC, A_ADDR)  # in SubmitTask: no forward id
    tid = f"{A}.1a2b3c4d5e6f7081.12"
    rets = (f"{tid}.r0", f"{tid}.r1")
    err = m.ErrorInfo(m.ErrorCode.TASK_FAILED, "ValueError: bad input", "TASK-007", "Traceback (most recent call last): ...")
    from refrpc.codec import PortableRef, encode_portable

    nest_value = m.Value(m.Encoding.PORTABLE, encode_portable([PortableRef(0)]), (), (x_desc,))

    cases: list[tuple[str, str, m.Envelope, int | None]] = [
        ("Hello", "The initiator's first message: seq 0, receiverIncarnation 0 (not known yet).",
         m.Envelope(A, A_INC, B, 0, 0, 0, m.Hello(0, 1, A_ADDR, ("core", "borrowing", "recovery", "actors"), 64 << 20, 250)), None),
        ("Welcome", "The acceptor's answer, addressed to the initiator's incarnation, with the common features.",
         m.Envelope(B, B_INC, A, A_INC, 0, 0, m.Welcome(0, 1, B_ADDR, ("core", "borrowing"), 64 << 20, 1000)), None),
        ("Goodbye", "The last sequenced message of a peer that leaves (LIV-006).",
         m.Envelope(A, A_INC, B, B_INC, 41, 17, m.Goodbye("shutting down")), None),
        ("Heartbeat", "An empty message outside the session carrying the current ack (LIV-001, SES-004).",
         m.Envelope(A, A_INC, B, B_INC, 0, 17, m.Heartbeat()), None),
        ("ProtocolError", "A sequenced ProtocolError about the message with seq 9 (GEN-001).",
         m.Envelope(B, B_INC, A, A_INC, 5, 9, m.ProtocolError(m.ErrorInfo(m.ErrorCode.UNKNOWN_MESSAGE, "message type 64", "GEN-001"), 9)), None),
        ("ProtocolError", "An answer without a session: DECLARED_DEAD, seq 0, ack 0, relatedSeq 0 (SES-018).",
         m.Envelope(B, B_INC, A, A_INC, 0, 0, m.ProtocolError(m.ErrorInfo(m.ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "LIV-005"))), None),
        ("SubmitTask", "A task with a value argument (portable int64 7), a ref argument and a shared argument; "
         "retryable, attempt 2 (attempt's default is 1: XOR-encoded, so 2 is stored as 3).",
         m.Envelope(A, A_INC, B, B_INC, 12, 4, m.SubmitTask(
             tid, "myapp.train.step",
             (m.Arg(m.ArgKind.VALUE, value=portable(7)), m.Arg(m.ArgKind.REF, ref=x_task), m.Arg(m.ArgKind.SHARED, ref=x_task)),
             rets, max_retries=3, retry_exceptions=True, attempt=2)), None),
        ("SubmitTask", "An actor method call: actorId set, actorSeq 3, one value argument (portable int64 5), one return, attempt 1 (stored as 0), "
         "cpuDemand 0 (ACT-025; the default is 10000: XOR-encoded, so 0 is stored as 10000).",
         m.Envelope(A, A_INC, B, B_INC, 13, 4, m.SubmitTask(
             f"{A}.1a2b3c4d5e6f7081.13", "add", (m.Arg(m.ArgKind.VALUE, value=portable(5)),),
             (f"{A}.1a2b3c4d5e6f7081.13.r0",), actor_id=f"{A}.1a2b3c4d5e6f7081.2", actor_seq=3, cpu_demand=0)), None),
        ("SubmitTask", "A task with a demand (TASK-050): half a CPU slot (cpuDemand 5000) and one `gpu` "
         "(resources: one ResourceAmount of 10000), no arguments, one return.",
         m.Envelope(A, A_INC, B, B_INC, 14, 4, m.SubmitTask(
             f"{A}.1a2b3c4d5e6f7081.14", "myapp.train.step", (), (f"{A}.1a2b3c4d5e6f7081.14.r0",),
             cpu_demand=5000, resources=(m.ResourceAmount("gpu", 10000),))), None),
        ("TaskReply", "Two returns, one inline (a portable list embedding a ref, with its grant in nested) and one "
         "stored at the executor with its size; one ref retained by the executor (BOR-007).",
         m.Envelope(B, B_INC, A, A_INC, 6, 12, m.TaskReply(tid, 2, (
             m.ReturnValue(rets[0], m.ReturnKind.INLINE, value=nest_value),
             m.ReturnValue(rets[1], m.ReturnKind.STORED, location=B, size=300_056),
         ), retained=(m.RefDescriptor(x_desc.object_id, A, A_INC, A_ADDR, 1200, f"{B}.f1e2d3c4b5a6978.4"),))), None),
        ("TaskReply", "Every return ERROR(TASK_FAILED), with message, requirement and detail (TASK-007).",
         m.Envelope(B, B_INC, A, A_INC, 7, 12, m.TaskReply(tid, 1, tuple(m.ReturnValue(r, m.ReturnKind.ERROR, error=err) for r in rets))), None),
        ("TaskReply", "One inline return, and the executor's free store memory: 1,048,576 bytes (OBJ-060; "
         "storeFreeBytes' default -1 is XOR-encoded, so the word holds 1048576 XOR -1).",
         m.Envelope(B, B_INC, A, A_INC, 8, 12, m.TaskReply(tid, 1, (m.ReturnValue(rets[0], m.ReturnKind.INLINE, value=portable(5)),),
                                                            store_free_bytes=1_048_576)), None),
        ("CancelTask", "Cancel a task (TASK-008).",
         m.Envelope(A, A_INC, B, B_INC, 14, 7, m.CancelTask(tid)), None),
        ("RegisterBorrower", "B asks the owner A to record a grant for C (register-before-send, BOR-002).",
         m.Envelope(B, B_INC, A, A_INC, 8, 14, m.RegisterBorrower(x_desc.object_id, C, C_INC, C_ADDR, f"{B}.f1e2d3c4b5a6978.5")), None),
        ("BorrowerRegistered", "The grant is recorded (no error).",
         m.Envelope(A, A_INC, B, B_INC, 15, 8, m.BorrowerRegistered(x_desc.object_id, f"{B}.f1e2d3c4b5a6978.5")), None),
        ("BorrowerRegistered", "The grant is refused: the object was reclaimed (BOR-003).",
         m.Envelope(A, A_INC, B, B_INC, 16, 8, m.BorrowerRegistered(x_desc.object_id, f"{B}.f1e2d3c4b5a6978.6",
                                                                     m.ErrorInfo(m.ErrorCode.OBJECT_FREED, "reclaimed", "BOR-003"))), None),
        ("ReleaseBorrows", "Releases of three grants on two objects, batched in one message (BOR-005).",
         m.Envelope(C, C_INC, A, A_INC, 3, 2, m.ReleaseBorrows((
             m.BorrowRelease(x_desc.object_id, (f"{B}.f1e2d3c4b5a6978.5", f"{C}.7766554433221100.1")),
             m.BorrowRelease(f"{A}.1a2b3c4d5e6f7081.8", (f"{A}.1a2b3c4d5e6f7081.9",)),
         ))), None),
        ("ConfirmBorrow", "The owner asks C whether the grant B requested for it ever arrived; B/b is dead (BOR-010).",
         m.Envelope(A, A_INC, C, C_INC, 4, 3, m.ConfirmBorrow(x_desc.object_id, f"{B}.f1e2d3c4b5a6978.5", B, B_INC)), None),
        ("BorrowConfirmed", "C never received the ref: held = false (BOR-011).",
         m.Envelope(C, C_INC, A, A_INC, 4, 4, m.BorrowConfirmed(x_desc.object_id, f"{B}.f1e2d3c4b5a6978.5", False)), None),
        ("GetObjectStatus", "Ask and wait (wait's default is true: XOR-encoded, so true is stored as bit 0).",
         m.Envelope(B, B_INC, A, A_INC, 9, 16, m.GetObjectStatus(x_desc.object_id, True)), None),
        ("GetObjectStatus", "Ask without waiting: wait = false is stored as bit 1 (OBJ-005).",
         m.Envelope(B, B_INC, A, A_INC, 10, 16, m.GetObjectStatus(x_desc.object_id, False)), None),
        ("GetObjectStatus", "Ask and wait, offering to relay what the asker fetches (relay = true, LOC-020).",
         m.Envelope(C, C_INC, A, A_INC, 7, 16, m.GetObjectStatus(x_desc.object_id, True, True)), None),
        ("ObjectStatus", "READY with the value inline (a portable text).",
         m.Envelope(A, A_INC, B, B_INC, 17, 10, m.ObjectStatus(x_desc.object_id, m.ObjectState.READY, 48, value=portable("hello")))
         , None),
        ("ObjectStatus", "READY with two locations, primary first, and their addresses (OBJ-008).",
         m.Envelope(A, A_INC, B, B_INC, 18, 10, m.ObjectStatus(x_desc.object_id, m.ObjectState.READY, 300_056, (B, C), (B_ADDR, C_ADDR))), None),
        ("ObjectStatus", "READY with one location and one relay, each with its address (LOC-021).",
         m.Envelope(A, A_INC, C, C_INC, 21, 7, m.ObjectStatus(x_desc.object_id, m.ObjectState.READY, 300_056, (B,), (B_ADDR,),
                                                              relays=(C,), relay_addresses=(C_ADDR,))), None),
        ("ObjectStatus", "FAILED with the error; size unknown (-1, the default, stored as 0).",
         m.Envelope(A, A_INC, B, B_INC, 19, 10, m.ObjectStatus(x_desc.object_id, m.ObjectState.FAILED,
                                                               error=m.ErrorInfo(m.ErrorCode.OWNER_DIED, "owner died", "FATE-001"))), None),
        ("AddLocation", "C keeps a secondary copy of 300,056 bytes (LOC-002).",
         m.Envelope(C, C_INC, A, A_INC, 5, 4, m.AddLocation(x_desc.object_id, 300_056)), None),
        ("RemoveLocation", "C evicted its copy (LOC-003).",
         m.Envelope(C, C_INC, A, A_INC, 6, 4, m.RemoveLocation(x_desc.object_id)), None),
        ("FreeObjects", "The owner frees two objects at a location (OWN-005).",
         m.Envelope(A, A_INC, B, B_INC, 20, 10, m.FreeObjects((rets[0], rets[1]))), None),
        ("FetchRequest", "Everything from offset 0 with the defaults (length -1 and chunkBytes 1 MiB, both stored as 0).",
         m.Envelope(C, C_INC, B, B_INC, 0, 3, m.FetchRequest(rets[1], 7)), None),
        ("FetchRequest", "A resumed range: offset 1 MiB, length 1 MiB, 256 KiB chunks, lz4 accepted (FET-002).",
         m.Envelope(C, C_INC, B, B_INC, 0, 3, m.FetchRequest(rets[1], 8, 1 << 20, 1 << 20, 256 << 10, True)), None),
        ("FetchChunk", "One chunk of 16 bytes at offset 64 of a 300,056-byte stored form, not the last.",
         m.Envelope(B, B_INC, C, C_INC, 0, 2, m.FetchChunk(rets[1], 7, 64, 300_056, False, False, bytes(range(16)))), None),
        ("FetchChunk", "The chunk's data as an out-of-band frame: the sender chose to send its payload (32 bytes) as "
         "frame 1 (the codec was given an out-of-band threshold of 16 bytes here; by default it is 64 KiB, ZMQ-006).",
         m.Envelope(B, B_INC, C, C_INC, 0, 2, m.FetchChunk(rets[1], 7, 0, 32, True, False, bytes(range(32)))), 16),
        ("FetchChunk", "The single error chunk of a holder without a copy (FET-004).",
         m.Envelope(B, B_INC, C, C_INC, 0, 2, m.FetchChunk(rets[1], 9, 0, 0, True,
                                                           error=m.ErrorInfo(m.ErrorCode.OBJECT_FREED, "no copy here", "FET-004"))), None),
        ("PeerDeadNotice", "A tells B that C/c is dead (LIV-004).",
         m.Envelope(A, A_INC, B, B_INC, 21, 10, m.PeerDeadNotice(C, C_INC, "silent for 1500 ms")), None),
        ("CreateActor", "Create a Counter(10) that may be restarted twice (ACT-001).",
         m.Envelope(A, A_INC, B, B_INC, 22, 10, m.CreateActor(f"{A}.1a2b3c4d5e6f7081.2", "Counter",
                                                              (m.Arg(m.ArgKind.VALUE, value=portable(10)),), 2)), None),
        ("CreateActor", "Create a Counter(0) that holds its host's CPU slot and one `gpu` for its life (ACT-026): "
         "cpuDemand 10000 (the default is 0: no demand held, as from a sender that predates the field) and "
         "resources: one ResourceAmount of 10000.",
         m.Envelope(A, A_INC, B, B_INC, 23, 10, m.CreateActor(f"{A}.1a2b3c4d5e6f7081.3", "Counter",
                                                              (m.Arg(m.ArgKind.VALUE, value=portable(0)),),
                                                              cpu_demand=10000,
                                                              resources=(m.ResourceAmount("gpu", 10000),))), None),
        ("ActorStatus", "The actor is alive.",
         m.Envelope(B, B_INC, A, A_INC, 11, 22, m.ActorStatus(f"{A}.1a2b3c4d5e6f7081.2", m.ActorState.ALIVE)), None),
        ("ActorStatus", "The actor is dead, with the reason (ACT-002).",
         m.Envelope(B, B_INC, A, A_INC, 12, 22, m.ActorStatus(f"{A}.1a2b3c4d5e6f7081.2", m.ActorState.DEAD,
                                                              m.ErrorInfo(m.ErrorCode.UNKNOWN_FUNCTION, "no class 'Counter2'", "ACT-001"))), None),
        ("KillActor", "The owner kills the actor (ACT-006).",
         m.Envelope(A, A_INC, B, B_INC, 23, 12, m.KillActor(f"{A}.1a2b3c4d5e6f7081.2")), None),
        ("IntrospectRequest", "Ask for B's ownership table (INT-001).",
         m.Envelope(A, A_INC, B, B_INC, 24, 12, m.IntrospectRequest(99)), None),
        ("IntrospectReply", "B's table: one object it owns and one it borrows (INT-005).",
         m.Envelope(B, B_INC, A, A_INC, 13, 24, m.IntrospectReply(99, (
             m.TableEntry(f"{B}.f1e2d3c4b5a6978.1", B, "owner", "ready", 1, 0, (), (C,), (B,), 0, 300_056),
             m.TableEntry(x_desc.object_id, A, "borrower", "ready", 2, 1, (f"{B}.f1e2d3c4b5a6978.1",), (), (), 0, 1200),
         ))), None),
        ("IntrospectReply", "B's table: one object it owns whose copy at B is spilled (spilled = true, INT-020).",
         m.Envelope(B, B_INC, A, A_INC, 14, 24, m.IntrospectReply(100, (
             m.TableEntry(f"{B}.f1e2d3c4b5a6978.1", B, "owner", "ready", 1, 0, (), (), (B,), 0, 300_056, spilled=True),
         ))), None),
    ]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, description, env, oob in cases:
        frames = codec.encode(env, oob_threshold=oob) if oob is not None else codec.encode(env)
        hexes = _frames_hex(frames)
        back = codec.decode([bytes.fromhex(h) for h in hexes])
        assert back == env, f"{name}: the codec does not read back what it wrote"
        out.setdefault(name, []).append({
            "description": description,
            "frames": hexes,
            "envelope": _wire_view(bytes.fromhex(hexes[0])),
        })
    # The same IntrospectReply, frame 0 in several segments joined by far pointers (ZMQ-020).
    first = out["IntrospectReply"][0]
    frame0 = _segmented(codec.schema().Envelope, bytes.fromhex(first["frames"][0]), 4)
    assert codec.decode([frame0]) == codec.decode([bytes.fromhex(first["frames"][0])])
    out["IntrospectReply"].append({
        "description": "The first IntrospectReply again, frame 0 written in "
                       f"{int.from_bytes(frame0[:4], 'little') + 1} segments joined by far pointers "
                       "(ZMQ-020): a decoder must read exactly the same content.",
        "frames": [frame0.hex()],
        "envelope": _wire_view(frame0),
    })
    order = [t.__name__ for t in m.MESSAGE_TYPES]
    assert list(out) == order, f"every message type, in schema order: {list(out)} != {order}"
    return out


def value_vectors() -> dict[str, list[dict[str, Any]]]:
    from refrpc import codec
    from refrpc.codec import PortableRef, encode_portable
    from refrpc.core import messages as m

    desc = m.RefDescriptor(f"{A}.1a2b3c4d5e6f7081.7", A, A_INC, A_ADDR, 1200, "")

    def portable_tree(data: bytes) -> Any:
        with codec.schema().Portable.from_bytes(data) as r:
            return _jsonable(r.to_dict())

    def stored(value: m.Value) -> dict[str, Any]:
        form = codec.encode_value(value)
        assert codec.decode_value(form) == value
        with codec.schema().Value.from_bytes(form) as r:
            view = _jsonable(r.to_dict())
        return {"hex": bytes(form).hex(), "value": view}

    portable: list[dict[str, Any]] = []
    trees: list[tuple[str, Any, tuple[m.RefDescriptor, ...]]] = [
        ("null", None, ()),
        ("bool true", True, ()),
        ("int64 -2 (two's complement)", -2, ()),
        ("int64 2^62", 1 << 62, ()),
        ("float64 1.5", 1.5, ()),
        ("float64 NaN (the JSON view writes \"nan\")", math.nan, ()),
        ("text (UTF-8, NUL-terminated in Cap'n Proto)", "héllo", ()),
        ("data: the bytes of make_bytes(10)", bytes(i % 256 for i in range(10)), ()),
        ("list of int64, text and null", [1, "two", None], ()),
        ("map with two entries, in order", {"b": 1, "a": [True]}, ()),
        ("a list holding a ref: Portable.ref is the index 0 into Value.nested", [PortableRef(0)], (desc,)),
    ]
    for what, tree, nested in trees:
        data = encode_portable(tree)
        value = m.Value(m.Encoding.PORTABLE, data, (), nested)
        assert codec.decode_portable(data) == tree or (isinstance(tree, float) and math.isnan(tree))
        portable.append({
            "description": what,
            "data": bytes(data).hex(),
            "portable": portable_tree(data),
            "storedForm": stored(value),
        })
    # One value in several segments joined by far pointers (ZMQ-020): both its data and
    # its stored form; the reference writes such messages for values near the inline
    # threshold and for large stored forms (OBJ-016).
    tree = ["segmented", list(range(6))]
    seg_data = _segmented(codec.schema().Portable, bytes(encode_portable(tree)), 3)
    assert codec.decode_portable(seg_data) == tree
    seg_value = m.Value(m.Encoding.PORTABLE, seg_data)
    seg_form = _segmented(codec.schema().Value, bytes(codec.encode_value(seg_value)), 2)
    assert codec.decode_value(seg_form) == seg_value
    with codec.schema().Value.from_bytes(seg_form) as r:
        seg_view = _jsonable(r.to_dict())
    portable.append({
        "description": f"a list, its data in {int.from_bytes(seg_data[:4], 'little') + 1} segments and its stored form "
                       f"in {int.from_bytes(seg_form[:4], 'little') + 1}, joined by far pointers (ZMQ-020)",
        "data": seg_data.hex(),
        "portable": portable_tree(seg_data),
        "storedForm": {"hex": seg_form.hex(), "value": seg_view},
    })
    raw = [{
        "description": "raw: data is the bytes themselves; no buffers, no nested (VAL-008)",
        "data": bytes(b"\x00\x01binary\xff").hex(),
        "storedForm": stored(m.Value(m.Encoding.RAW, b"\x00\x01binary\xff")),
    }]
    buf = bytes(range(24))
    # pickle.dumps({"w": pickle.PickleBuffer(buf)}, protocol=5, buffer_callback=lambda b: False),
    # written out: pickle's bytes may differ between Python versions, the vector must not.
    pickled = bytes.fromhex("8005950a000000000000007d948c0177949798732e")
    assert pickle.loads(pickled, buffers=[buf]) == {"w": buf}
    pick = [{
        "description": "pickle (feature python-pickle): protocol-5 data with one out-of-band buffer in Value.buffers "
                       "(VAL-009); the stored form holds every Payload inline (OBJ-010)",
        "data": pickled.hex(),
        "buffers": [buf.hex()],
        "storedForm": stored(m.Value(m.Encoding.PICKLE, pickled, (buf,))),
    }]
    return {"portable": portable, "raw": raw, "pickle": pick}


def render() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, vecs in message_vectors().items():
        files[OUT / "messages" / f"{name}.json"] = json.dumps({"message": name, "vectors": vecs}, indent=1, ensure_ascii=False) + "\n"
    for name, vecs in value_vectors().items():
        files[OUT / "values" / f"{name}.json"] = json.dumps({"encoding": name, "vectors": vecs}, indent=1, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str]) -> int:
    files = render()
    existing = {p for p in OUT.rglob("*.json")} if OUT.is_dir() else set()
    if "--check" in argv:
        stale = sorted(str(p.relative_to(REPO)) for p, text in files.items() if not p.is_file() or p.read_text(encoding="utf-8") != text)
        stale += sorted(str(p.relative_to(REPO)) + " (not generated)" for p in existing - set(files))
        if stale:
            print("stale: " + ", ".join(stale) + "; run python3 spec/tools/make_vectors.py", file=sys.stderr)
            return 1
        return 0
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    for p in existing - set(files):
        p.unlink()
    print(f"wrote {len(files)} files under {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
