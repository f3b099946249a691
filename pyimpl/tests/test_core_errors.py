"""How the core treats bad input: from its own program, from a remote peer, and from itself.

* Bad local usage raises :class:`LocalUsageError` and changes nothing (the state is
  compared before and after).
* A remote message that is well formed but not allowed in the current state is
  answered with a registry code (``ProtocolError`` or the message's own error field),
  never crashes the core, and never stalls the session (GEN-005, ERR-001).
* A transition missing from :mod:`refrpc.core.tables` raises
  :class:`InvalidTransition` carrying the object's story.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from corekit import Net, Stub, address, bodies, checked_peer, frames, of_type, raw, result, snapshot, val
from refrpc.core import Config, InvalidTransition, LocalUsageError, Peer, tables
from refrpc.core import events as ev
from refrpc.core.messages import (
    ActorState,
    ActorStatus,
    AddLocation,
    Arg,
    ArgKind,
    BorrowConfirmed,
    CreateActor,
    BorrowerRegistered,
    BorrowRelease,
    CancelTask,
    ConfirmBorrow,
    ErrorCode,
    ErrorInfo,
    FetchRequest,
    FreeObjects,
    GetObjectStatus,
    Goodbye,
    Heartbeat,
    IntrospectReply,
    KillActor,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    ProtocolError,
    RefDescriptor,
    RegisterBorrower,
    ReleaseBorrows,
    RemoveLocation,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
)

INC = 0xA1
PREFIX = f"A.{INC:x}."


def peer(config: Config | None = None) -> Peer:
    return checked_peer("A", INC, config)


def busy_peer() -> tuple[Peer, Stub]:
    """A with some of everything: an owned value, a borrowed ref, a task out, a task in."""
    a = peer()
    s = Stub("S")
    s.greet(a)
    a.handle(ev.AddPeer("add", "S", s.address))
    a.handle(ev.Put("put", PREFIX + "1", raw(b"x")))
    x = s.descriptor(s.oid(1))
    a.handle(s.send(a, SubmitTask(s.oid("t"), "f", (Arg(ArgKind.SHARED, ref=x),), (s.oid("t.r0"),))))
    a.handle(ev.Submit("submit", PREFIX + "2", "g", (ev.ArgSpec(object_id=PREFIX + "1"),), (PREFIX + "2.r0",), executor="S"))
    return a, s


# ================================================================ local usage
BAD_LOCAL = {
    "add a handle to an unknown ref": lambda: ev.AddRef("s", "Z.1.1"),
    "put under an id already used": lambda: ev.Put("s", PREFIX + "1", raw(b"again")),
    "put under an id of another peer": lambda: ev.Put("s", "Z.1.1", raw(b"v")),
    "put a value nesting a ref not held": lambda: ev.Put("s", PREFIX + "77", raw(b"v", (RefDescriptor("Z.1.1", "Z", 1, "mem://Z"),))),
    "submit with a return id already used": lambda: ev.Submit("s", PREFIX + "80", "f", (), (PREFIX + "1",), executor="S"),
    "submit with a return id of another peer": lambda: ev.Submit("s", PREFIX + "81", "f", (), ("Z.1.9",), executor="S"),
    "submit with no return": lambda: ev.Submit("s", PREFIX + "82", "f", (), (), executor="S"),
    "submit an argument not held": lambda: ev.Submit("s", PREFIX + "83", "f", (ev.ArgSpec(object_id="Z.1.1"),), (PREFIX + "83.r0",), executor="S"),
    "submit a released argument": lambda: ev.Submit("s", PREFIX + "84", "f", (ev.ArgSpec(object_id=PREFIX + "999"),), (PREFIX + "84.r0",), executor="S"),
    "submit an empty argument": lambda: ev.Submit("s", PREFIX + "85", "f", (ev.ArgSpec(),), (PREFIX + "85.r0",), executor="S"),
    "call an unknown actor with no host": lambda: ev.Submit("s", PREFIX + "86", "m", (), (PREFIX + "86.r0",), actor_id=PREFIX + "404"),
    "materialize out of an unknown container": lambda: ev.Materialize("s", "Z.1.1", ()),
    "create an actor under a foreign id": lambda: ev.CreateActorRequest("s", "Z.1.5", "C", (), "S"),
    "create an actor with nowhere to run": lambda: ev.CreateActorRequest("s", PREFIX + "87", "C", ()),
    "report a task result of the wrong arity": lambda: ev.TaskFinished("s", "S.5157.t", 1, ()),
}


@pytest.mark.parametrize("case", BAD_LOCAL, ids=list(BAD_LOCAL))
def test_bad_local_usage_raises_and_changes_nothing(case):
    # the program misuses its handles, ids or results                     (core contract of Peer.handle)
    a, _ = busy_peer()
    if case == "create an actor with nowhere to run":
        a = peer()
    before = snapshot(a)
    with pytest.raises(LocalUsageError) as info:
        a.handle(BAD_LOCAL[case]())
    assert isinstance(info.value.code, ErrorCode)
    assert snapshot(a) == before
    a.validate()


def test_unknown_stimulus_is_a_local_usage_error():
    # the shell hands the core something that is not a stimulus it knows
    @dataclass(frozen=True)
    class Telepathy(ev.Stimulus):
        pass

    a, _ = busy_peer()
    before = snapshot(a)
    with pytest.raises(LocalUsageError) as info:
        a.handle(Telepathy("?"))
    assert info.value.code is ErrorCode.MALFORMED and "Telepathy" in str(info.value)
    assert snapshot(a) == before


def test_invalid_task_result_changes_nothing_even_after_a_valid_one():
    # the shell reports two results for f(shared(x)) (x owned by O): [x] and nothing at all
    a, s = busy_peer()
    o = Stub("O", incarnation=0x0B)  # x is owned by a third peer, so returning it needs a registration
    o.greet(a)
    x = o.descriptor(o.oid(1))
    a.handle(s.send(a, SubmitTask(s.oid("u"), "f", (Arg(ArgKind.SHARED, ref=x),), (s.oid("u.r0"), s.oid("u.r1")))))
    before = snapshot(a)
    with pytest.raises(LocalUsageError):
        a.handle(ev.TaskFinished("fin", s.oid("u"), 1, (ev.TaskResult(value=raw(b"", (x,))), ev.TaskResult())))
    assert snapshot(a) == before


def test_invalid_materialize_changes_nothing_even_after_a_valid_ref():
    # the shell materializes [x_foreign, y_mine_already_gone] out of a value
    a, s = busy_peer()
    before = snapshot(a)
    refs = (s.descriptor(s.oid(2)), RefDescriptor(PREFIX + "999", "A", INC, "mem://A"))
    with pytest.raises(LocalUsageError):
        a.handle(ev.Materialize("m", PREFIX + "1", refs))
    assert snapshot(a) == before


def test_instructions_of_earlier_stimuli_survive_a_failing_one_in_the_same_batch():
    # the shell batches: del x (a stored value) and a bad AddRef
    a = peer()
    a.handle(ev.Put("put", PREFIX + "1", raw(b""), stored=True, size=300_000))
    with pytest.raises(LocalUsageError) as info:
        a.handle(ev.DropRef("drop", PREFIX + "1"), ev.AddRef("bad", "Z.1.1"))
    freed = PREFIX + "1" not in a.owned
    handed_over = [i for i in getattr(info.value, "instructions", []) if isinstance(i, ev.FreeCopy)]
    assert not freed or handed_over, "x was reclaimed but the FreeCopy never reached the shell"


def test_dropping_an_unknown_ref_is_harmless():
    # a handle finalizer runs twice                                         OWN-005
    a, _ = busy_peer()
    before = snapshot(a)
    assert a.handle(ev.DropRef("drop", "Z.1.1")) == []
    assert snapshot(a) == before


def test_introspecting_a_known_worker_reaches_its_address():
    # D: introspect("W")  (W known from cluster membership only)            INT-001
    a = peer()
    a.handle(ev.AddPeer("add", "W", "mem://W"))
    out = a.handle(ev.Introspect("i", 1, "W"))
    assert [i.address for i in of_type(out, ev.SendFrame)] == ["mem://W"]


# ================================================================ remote messages in the wrong state
def remote_cases(s: Stub) -> dict[str, tuple[object, list]]:
    """message -> the exact bodies the core must answer (besides acks)."""
    mine_gone = PREFIX + "42"  # allocated by A (its prefix, a counter it reached: 99), no entry
    foreign = "Z.1.1"
    return {
        "TaskReply for a task A never allocated": (
            TaskReply("Z.1.t", 1, ()), [("ProtocolError", ErrorCode.WRONG_STATE)]),
        "TaskReply for a task A allocated and forgot": (TaskReply(PREFIX + "9", 1, ()), []),
        "TaskReply for a task id A has not reached": (
            TaskReply(PREFIX + "100", 1, ()), [("ProtocolError", ErrorCode.WRONG_STATE)]),
        "RegisterBorrower for an object id A has not reached": (
            RegisterBorrower(PREFIX + "100", "Q", 3, "mem://Q", s.oid("f3")), [("BorrowerRegistered", ErrorCode.UNKNOWN_OBJECT)]),
        "GetObjectStatus for a return of a task A ran": (GetObjectStatus(PREFIX + "9.r7"), [("ObjectStatus", None)]),
        "CancelTask for an unknown task": (CancelTask(s.oid("nope")), []),
        "RegisterBorrower for an object A freed": (
            RegisterBorrower(mine_gone, "Q", 3, "mem://Q", s.oid("f1")), [("BorrowerRegistered", ErrorCode.OBJECT_FREED)]),
        "RegisterBorrower for an object A never had": (
            RegisterBorrower(foreign, "Q", 3, "mem://Q", s.oid("f2")), [("BorrowerRegistered", ErrorCode.UNKNOWN_OBJECT)]),
        "BorrowerRegistered nobody asked for": (BorrowerRegistered(mine_gone, PREFIX + "f9"), []),
        "ReleaseBorrows of unknown grants": (ReleaseBorrows((BorrowRelease(mine_gone, ("zz",)),)), []),
        "ConfirmBorrow of a grant A lacks": (ConfirmBorrow(foreign, "zz", "Q", 3), [("BorrowConfirmed", None)]),
        "BorrowConfirmed for no grant": (BorrowConfirmed(mine_gone, "zz", False), []),
        "GetObjectStatus for a freed object": (GetObjectStatus(mine_gone), [("ObjectStatus", None)]),
        "ObjectStatus nobody asked for": (ObjectStatus(foreign, ObjectState.READY, 1, (), (), raw(b"x")), []),
        "AddLocation for an unknown object": (AddLocation(mine_gone, 3), [("FreeObjects", None)]),
        "RemoveLocation for an unknown object": (RemoveLocation(mine_gone), []),
        "FreeObjects for copies A lacks": (FreeObjects((foreign,)), []),
        "PeerDeadNotice about a stranger": (PeerDeadNotice("Q", 3), []),
        "ActorStatus for an unknown actor": (ActorStatus(PREFIX + "a", ActorState.DEAD), []),
        "KillActor for an unknown actor": (KillActor(s.oid("a")), []),
        "IntrospectReply nobody asked for": (IntrospectReply(4, ()), []),
        "ProtocolError about nothing A sent": (ProtocolError(ErrorInfo(ErrorCode.WRONG_STATE, "?"), 77), []),
    }


CASES = list(remote_cases(Stub("S")))


@pytest.mark.parametrize("case", CASES)
def test_remote_message_in_the_wrong_state_is_answered_and_the_session_goes_on(case):
    # a confused (or older/newer) peer sends something A cannot use         GEN-005, ERR-001, BOR-018, TASK-013, GEN-008
    a = peer()
    a.handle(ev.Put("put", PREFIX + "99", raw(b"v")))  # A's counter has reached 99 (ID-006)
    a.handle(ev.DropRef("drop", PREFIX + "99"))
    s = Stub("S")
    s.greet(a)
    msg, expected = remote_cases(s)[case]
    out = a.handle(s.send(a, msg))  # must not raise
    answers = []
    for b in bodies(out, to="S"):
        code = getattr(b, "error", None)
        answers.append((type(b).__name__, code.code if isinstance(code, ErrorInfo) else None))
        if isinstance(b, ProtocolError):
            assert b.related_seq == 1  # ERR-001
    assert answers == expected
    assert a.remotes["S"].state == "alive"
    assert of_type(a.handle(s.send(a, SubmitTask(s.oid("next"), "f", (), (s.oid("next.r0"),)))), ev.RunTask)


@pytest.mark.parametrize("arg", ["ref kind carrying a value", "value kind carrying a ref", "shared kind with nothing", "both members"])
def test_an_argument_that_does_not_carry_its_kinds_member_is_malformed(arg):
    # S sends a SubmitTask (or CreateActor) whose Arg breaks VAL-015: it is refused
    # as MALFORMED, nothing runs, and the session goes on                    VAL-015, GEN-004, ERR-001
    from refrpc.core.messages import Arg, ArgKind, CreateActor, RefDescriptor

    a = peer()
    s = Stub("S")
    s.greet(a)
    d = RefDescriptor(s.oid("x"), "S", s.incarnation, "mem://S")
    bad = {
        "ref kind carrying a value": Arg(ArgKind.REF, value=raw(b"abc")),
        "value kind carrying a ref": Arg(ArgKind.VALUE, ref=d),
        "shared kind with nothing": Arg(ArgKind.SHARED),
        "both members": Arg(ArgKind.REF, value=raw(b"abc"), ref=d),
    }[arg]
    for msg in (SubmitTask(s.oid("t"), "f", (bad,), (s.oid("t.r0"),)), CreateActor(s.oid("a"), "C", (bad,))):
        out = a.handle(s.send(a, msg))
        assert of_type(out, ev.RunTask) == [] and of_type(out, ev.StartActor) == []
        [err] = [b for b in bodies(out, to="S") if isinstance(b, ProtocolError)]
        assert err.error.code is ErrorCode.MALFORMED and err.error.requirement == "VAL-015"
    assert a.remotes["S"].state == "alive" and not a.exec_tasks
    assert of_type(a.handle(s.send(a, SubmitTask(s.oid("next"), "f", (), (s.oid("next.r0"),)))), ev.RunTask)


def test_task_reply_for_a_forgotten_task_frees_its_stored_result():
    # W answers a task of A's that A has already forgotten                    TASK-015, GEN-005
    a = peer()
    a.handle(ev.Put("put", PREFIX + "9", raw(b"v")))  # A's counter reaches 9 (ID-006)
    w = Stub("W")
    w.greet(a)
    stale = TaskReply(PREFIX + "8", 1, (ReturnValue(PREFIX + "8.r0", ReturnKind.STORED, location="W", size=9),))
    assert bodies(a.handle(w.send(a, stale))) == [FreeObjects((PREFIX + "8.r0",))]


def test_unknown_message_type_uses_up_its_number_and_keeps_the_session():
    # a newer peer sends an experimental message (discriminant 64)           GEN-001, GEN-006
    @dataclass(frozen=True)
    class Experimental64:
        payload: bytes = b""

    a = peer()
    s = Stub("S")
    s.greet(a)
    [msg] = bodies(a.handle(s.send(a, Experimental64())))
    assert (msg.error.code, msg.related_seq) == (ErrorCode.UNKNOWN_MESSAGE, 1)
    assert a.remotes["S"].delivered == 1
    assert of_type(a.handle(s.send(a, SubmitTask(s.oid("t"), "f", (), (s.oid("t.r0"),)))), ev.RunTask)


def test_protocol_error_is_never_answered_with_a_protocol_error():
    # S sends A a ProtocolError naming a message A never sent, inside and outside the session   GEN-008
    a = peer()
    s = Stub("S")
    s.greet(a)
    junk = ProtocolError(ErrorInfo(ErrorCode.MALFORMED, "your frame 9 was bad"), related_seq=9)
    out = a.handle(s.send(a, junk), s.unsequenced(a, junk))
    assert bodies(out) == []
    assert [i.error for i in of_type(out, ev.RemoteError)] == [junk.error, junk.error]


def test_sequenced_heartbeat_is_wrong_state_not_unknown():
    # a buggy peer sends its heartbeat as a sequenced message                  SES-007, GEN-005
    a = peer()
    s = Stub("S")
    s.greet(a)
    [msg] = bodies(a.handle(s.send(a, Heartbeat())))
    assert msg.error.code is ErrorCode.WRONG_STATE


def borrower_with_ref(x_state: str) -> tuple[Peer, Stub, RefDescriptor]:
    """G holds O's X under a task hold; X is 'ready' (status answered) or 'failed' (registration refused)."""
    g = Peer("G", 0x61, "mem://G")
    g.check_invariants = True
    o = Stub("O")
    o.greet(g)
    x = o.descriptor(o.oid(1))
    g.handle(o.send(g, SubmitTask(o.oid("t"), "f", (Arg(ArgKind.SHARED, ref=x),), (o.oid("t.r0"),))))
    g.handle(ev.Get("get", 1, x.object_id))
    if x_state == "ready":
        g.handle(o.send(g, ObjectStatus(x.object_id, ObjectState.READY, 1, (), (), raw(b"v"))))
    else:
        g.handle(ev.AddRef("keep", x.object_id))
        [reg] = bodies(g.handle(ev.TaskFinished("fin", o.oid("t"), 1, (ev.TaskResult(value=raw(b"")),))), RegisterBorrower)
        g.handle(o.send(g, BorrowerRegistered(x.object_id, reg.forward_id, ErrorInfo(ErrorCode.OBJECT_FREED, "gone"))))
    assert g.borrowed[x.object_id].state == x_state
    return g, o, x


def test_second_ready_status_for_a_ready_ref_does_not_crash():
    # G asked twice (its entry was dropped and re-created meanwhile), O answers both   GEN-005, OBJ-015
    g, o, x = borrower_with_ref("ready")
    g.handle(o.send(g, ObjectStatus(x.object_id, ObjectState.READY, 1, (), (), raw(b"v"))))
    assert g.borrowed[x.object_id].state == "ready"


def test_status_answer_for_a_ref_that_already_failed_does_not_crash():
    # G's self-registration was refused; then O's answer to G's earlier get arrives   GEN-005
    g, o, x = borrower_with_ref("failed")
    g.handle(o.send(g, ObjectStatus(x.object_id, ObjectState.READY, 1, (), (), raw(b"v"))))
    assert g.borrowed[x.object_id].state == "failed"


def test_confirm_borrow_about_a_peer_still_connecting_fences_it():
    # R is greeting F when O asks R to confirm a grant F requested            BOR-011, LIV-012
    r = Peer("R", 0x71, "mem://R")
    r.check_invariants = True
    o = Stub("O")
    o.greet(r)
    r.handle(ev.SendData("data", "F", 0, "mem://F", FetchRequest("q", 1)))
    assert r.remotes["F"].state == "connecting"
    out = r.handle(o.send(r, ConfirmBorrow(o.oid(1), "F.1.f1", "F", 0xF)))
    assert bodies(out, BorrowConfirmed) == [BorrowConfirmed(o.oid(1), "F.1.f1", False)]
    assert ("F", 0xF) in r.fenced


# ================================================================ stopped peers
def test_fail_stopped_peer_handles_nothing():
    # S fenced A and answers A's frame DECLARED_DEAD                        LIV-005
    a, s = busy_peer()
    info = ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "LIV-005")
    a.handle(s.unsequenced(a, ProtocolError(info)))
    assert a.stopped
    before = snapshot(a)
    assert a.handle(ev.Tick("t", 60_000), s.send(a, SubmitTask(s.oid("x"), "f", (), (s.oid("x.r0"),)))) == []
    assert snapshot(a) == before


def test_shutdown_says_goodbye_to_every_live_peer_then_stops_once_it_is_acknowledged():
    # A leaves the cluster; until S acknowledges its Goodbye it acknowledges what S
    # sends (without handling it) and sends the Goodbye again, and nothing new
    # sequenced                                                 LIV-006, LIV-010, LIV-032
    a, s = busy_peer()
    t0 = a.now_ms
    out = a.handle(ev.Shutdown("bye", "maintenance"))
    [bye] = frames(out)
    assert bye.body.reason == "maintenance" and bye.seq == a.remotes["S"].out_seq
    late = s.send(a, SubmitTask(s.oid("late"), "f", (), (s.oid("late.r0"),)))
    out = a.handle(late, ev.Tick("t", t0 + a.config.ack_delay_ms))
    assert any(e.seq == 0 and e.ack == late.envelope.seq for e in frames(out)), "the late message is acknowledged"
    out += a.handle(ev.Tick("t", t0 + a.config.retransmit_ms), ev.Tick("t", t0 + 3 * a.config.retransmit_ms))
    assert bye.seq in [e.seq for e in frames(out, Goodbye)], "the unacknowledged Goodbye is sent again"
    assert all(e.seq <= bye.seq for e in frames(out)), "nothing sequenced after the Goodbye"
    assert not [i for i in out if not isinstance(i, ev.SendFrame)], "the late task is not handled"
    assert not a.stopped
    a.handle(s.unsequenced(a, Heartbeat(), ack=bye.seq))
    assert a.stopped
    assert a.handle(ev.Tick("t", t0 + 60_000), s.send(a, SubmitTask(s.oid("later"), "f", (), (s.oid("later.r0"),)))) == []


@pytest.mark.parametrize("end", ["linger", "declared-dead"])
def test_a_leaving_peer_stops_after_its_linger_or_when_told_it_is_dead(end):
    # No acknowledgement comes: A stops after at most 1 s; a DECLARED_DEAD answer
    # to its retransmitted Goodbye stops it at once                     LIV-010, SES-017
    a, s = busy_peer()
    t0 = a.now_ms
    a.handle(ev.Shutdown("bye", "maintenance"))
    a.handle(ev.Tick("t", t0 + a.config.goodbye_linger_ms - 1))
    assert not a.stopped
    if end == "linger":
        a.handle(ev.Tick("t", t0 + a.config.goodbye_linger_ms))
    else:
        a.handle(s.unsequenced(a, ProtocolError(ErrorInfo(ErrorCode.DECLARED_DEAD, "fenced", "SES-017"))))
    assert a.stopped
    assert a.handle(ev.Tick("t", t0 + 60_000)) == []


# ================================================================ invalid transitions
def test_invalid_transition_raises_with_the_objects_story():
    # a finished task is (wrongly) cancelled inside the core                (tables.OWNER_TASK)
    net = Net(("D", "W"))
    tid, _ = net.submit("D", "f", val(b"1"), executor="W")
    net.deliver_all()
    net.finish("W", tid, result())
    net.deliver_all()
    t = net["D"].tasks[tid]  # kept: its return is still held (lineage, LIN-001)
    with pytest.raises(InvalidTransition) as info:
        net["D"]._transition_task(t, "cancel")
    err = info.value
    assert (err.table, err.key, err.state, err.event) == ("owner-task", tid, "finished", "cancel")
    events = [e for _, e, _ in err.story]
    assert "dispatch" in events and "reply" in events
    assert "story:" in str(err) and "submitted->finished" in str(err)
    assert t.state == "finished"


@pytest.mark.parametrize("name", list(tables.ALL_TABLES))
def test_tables_name_every_legal_transition_and_nothing_else(name):
    # the rules are data: anything not listed is illegal                    (tables, spec/state-machines.md)
    table = tables.ALL_TABLES[name]
    states = set(table) | {nxt for row in table.values() for nxt, _ in row.values()}
    events = {e for row in table.values() for e in row}
    for state in states:
        for event in events:
            expected = table.get(state, {}).get(event, (None, ""))[0]
            assert tables.next_state(table, state, event) == expected
        assert tables.next_state(table, state, "no-such-event") is None
    for row in table.values():
        for nxt, requirement in row.values():
            assert requirement and "-" in requirement


def test_every_requirement_cited_by_the_tables_is_a_spec_id():
    # the tables license each transition by a requirement the spec defines
    import json
    from pathlib import Path

    index = json.loads((Path(__file__).resolve().parents[2] / "spec" / "requirements.json").read_text())
    defined = {r["id"] for r in index["requirements"]}
    cited = {req for t in tables.ALL_TABLES.values() for row in t.values() for _, req in row.values()}
    assert cited <= defined


def test_a_fault_in_handling_one_message_costs_that_message_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # SEC-020: a handler that raises (a fault of the implementation, not a rule of the
    # spec) makes the peer answer MALFORMED for that message (its sender's request
    # ends, ERR-003), and the next message of the same session is handled as usual.
    p = Peer("A", INC, address("A"))  # the runtime's setting: faults are contained
    s = Stub("S")
    s.take(s.greet(p))
    calls = []

    def broken(r, body):  # type: ignore[no-untyped-def]
        calls.append(body)
        raise KeyError("a bug")

    monkeypatch.setattr(p, "_on_GetObjectStatus", broken)
    out = p.handle(s.send(p, GetObjectStatus(s.oid(1), wait=False)))
    (err,) = bodies(out, ProtocolError, to="S")
    assert (err.error.code, err.error.requirement, err.related_seq) == (ErrorCode.MALFORMED, "SEC-020", 1)
    monkeypatch.undo()
    out = p.handle(s.send(p, GetObjectStatus(s.oid(2), wait=False)))
    (status,) = bodies(out, ObjectStatus, to="S")
    assert status.object_id == s.oid(2)
    # With invariants checked (tests, the simulator), the fault surfaces instead.
    p.check_invariants = True
    monkeypatch.setattr(p, "_on_GetObjectStatus", broken)
    with pytest.raises(KeyError):
        p.handle(s.send(p, GetObjectStatus(s.oid(3), wait=False)))


def test_grants_per_borrower_incarnation_are_bounded() -> None:
    # SEC-008: S registers borrower Q again and again on an object A owns; past the
    # limit the owner answers RESOURCE_EXHAUSTED and records nothing; once a grant is
    # released there is room again.
    a = peer(Config(max_grants_per_borrower=2))
    s = Stub("S")
    s.take(s.greet(a))
    oid = PREFIX + "1"
    a.handle(ev.Put("put", oid, raw(b"v")))
    answers = []
    for n in range(3):
        out = a.handle(s.send(a, RegisterBorrower(oid, "Q", 3, "mem://Q", s.oid(f"f{n}"))))
        (reply,) = bodies(out, BorrowerRegistered, to="S")
        answers.append(reply.error.code if reply.error else None)
    assert answers == [None, None, ErrorCode.RESOURCE_EXHAUSTED]
    assert sorted(a.owned[oid].borrowers["Q"]) == [s.oid("f0"), s.oid("f1")]
    a.handle(s.send(a, ReleaseBorrows((BorrowRelease(oid, (s.oid("f0"),)),))))
    (reply,) = bodies(a.handle(s.send(a, RegisterBorrower(oid, "Q", 3, "mem://Q", s.oid("f3")))), BorrowerRegistered, to="S")
    assert reply.error is None
    # Another incarnation of Q has a limit of its own.
    (reply,) = bodies(a.handle(s.send(a, RegisterBorrower(oid, "Q", 4, "mem://Q", s.oid("f4")))), BorrowerRegistered, to="S")
    assert reply.error is None


def test_a_message_beyond_the_receivers_frame_limit_never_goes() -> None:
    # ZMQ-007: W announced the smallest frame limit (1 MiB). A task whose value argument
    # would make the SubmitTask larger fails here with RESOURCE_EXHAUSTED and is not
    # sent; a small one still goes. An ObjectStatus whose inline value would not fit
    # answers FAILED with the same code, and the object stays as it was.
    a = peer()
    w = Stub("W", max_frame_bytes=1 << 20)
    a.handle(ev.AddPeer("add", "W", "mem://W"))
    big, small = raw(b"x" * (1 << 20)), raw(b"y")
    a.handle(ev.Submit("big", PREFIX + "t1", "echo", (ev.ArgSpec(value=big),), (PREFIX + "t1.r0",), executor="W"))
    out = a.handle(w.welcome(a))
    assert [e.body.task_id for e in frames(out, SubmitTask, to="W")] == []
    assert a.owned[PREFIX + "t1.r0"].state == "failed"
    assert a.owned[PREFIX + "t1.r0"].error.code is ErrorCode.RESOURCE_EXHAUSTED
    out = a.handle(ev.Submit("small", PREFIX + "t2", "echo", (ev.ArgSpec(value=small),), (PREFIX + "t2.r0",), executor="W"))
    assert [e.body.task_id for e in frames(out, SubmitTask, to="W")] == [PREFIX + "t2"]
    a.handle(ev.Put("put", PREFIX + "1", big))
    out = a.handle(w.send(a, GetObjectStatus(PREFIX + "1", wait=False)))
    (status,) = bodies(out, ObjectStatus, to="W")
    assert status.state is ObjectState.FAILED and status.error.code is ErrorCode.RESOURCE_EXHAUSTED
    assert a.owned[PREFIX + "1"].state == "ready"


def test_a_release_or_free_batch_too_large_for_one_frame_is_split() -> None:
    # GC-007, ZMQ-007: one event makes A free 6,000 copies of 250-byte ids at S and
    # give back as many grants to S: about 1.5 MiB each, more than the 1 MiB every
    # peer takes (HS-012). Each goes as several messages, each within 1 MiB, that
    # together name every id exactly once.
    a = peer()
    s = Stub("S")
    s.greet(a)
    oids = [f"S.{s.incarnation:x}." + f"{i:06d}".rjust(240, "x") for i in range(6000)]
    a.pending_frees = {"S": list(oids)}
    a.pending_releases = {"S": [BorrowRelease(o, (o + "f",)) for o in oids]}
    out = a.handle(ev.Tick("tick", a.now_ms))
    frees, releases = bodies(out, FreeObjects, to="S"), bodies(out, ReleaseBorrows, to="S")
    assert len(frees) > 1 and len(releases) > 1
    assert [o for f in frees for o in f.object_ids] == oids
    assert [(r.object_id, r.forward_ids) for m in releases for r in m.releases] == [(o, (o + "f",)) for o in oids]
    for m in frees:
        assert sum(len(o) + 16 for o in m.object_ids) < 1 << 20
    for m in releases:
        assert sum(2 * len(r.object_id) + 56 for r in m.releases) < 1 << 20
    # One object whose grants alone would not fit: several releases of it.
    many = tuple(f"{i:06d}".rjust(250, "g") for i in range(6000))
    a.pending_releases = {"S": [BorrowRelease(oids[0], many)]}
    releases = bodies(a.handle(ev.Tick("tick", a.now_ms)), ReleaseBorrows, to="S")
    assert len(releases) > 1 and all(r.object_id == oids[0] for m in releases for r in m.releases)
    assert tuple(f for m in releases for r in m.releases for f in r.forward_ids) == many


def test_a_retained_list_too_large_for_the_submitters_frames_is_cut() -> None:
    # ZMQ-022, BOR-007: S (1 MiB frames) ran f on A with 3,500 refs of S's (250-byte
    # ids) as shared arguments; f kept them all, so A registers itself for each and
    # names them in retained: over 1 MiB. The reply leaves some out to fit; A keeps
    # every grant all the same.
    a = peer()
    s = Stub("S", max_frame_bytes=1 << 20)
    s.greet(a)
    refs = tuple(s.descriptor(f"S.{s.incarnation:x}." + f"{i:06d}".rjust(240, "r")) for i in range(3500))
    a.handle(s.send(a, SubmitTask(s.oid("t"), "f", tuple(Arg(ArgKind.SHARED, ref=d) for d in refs), (s.oid("t.r0"),))))
    for d in refs:
        a.handle(ev.AddRef("keep", d.object_id))
    out = a.handle(ev.TaskFinished("fin", s.oid("t"), 1, (ev.TaskResult(value=raw(b"y")),),
                                   retained=tuple(d.object_id for d in refs)))
    regs = bodies(out, RegisterBorrower, to="S")
    assert len(regs) == len(refs)
    replies = []
    for reg in regs:
        replies += bodies(a.handle(s.send(a, BorrowerRegistered(reg.object_id, reg.forward_id))), TaskReply, to="S")
    [reply] = replies
    assert 0 < len(reply.retained) < len(refs)
    assert sum(len(d.object_id) + len(d.forward_id) + len(d.owner) + len(d.owner_address) + 64
               for d in reply.retained) < (1 << 20)
    assert all(a.borrowed[d.object_id].grants for d in refs)


def test_an_actor_creation_beyond_the_hosts_frame_limit_never_goes() -> None:
    # ZMQ-007: H announced the smallest frame limit (1 MiB). A CreateActor whose
    # constructor argument would make it larger is not sent, and the actor is dead
    # with RESOURCE_EXHAUSTED at once (as a refused creation is, ERR-003).
    a = peer()
    h = Stub("H", max_frame_bytes=1 << 20)
    a.handle(ev.AddPeer("add", "H", "mem://H"))
    big = raw(b"x" * (1 << 20))
    a.handle(ev.CreateActorRequest("create", PREFIX + "a1", "Counter", (ev.ArgSpec(value=big),), "H"))
    out = a.handle(h.welcome(a))
    assert frames(out, CreateActor, to="H") == []
    actor = a.owned_actors[PREFIX + "a1"]
    assert actor.state == "dead" and actor.error.code is ErrorCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("refs", [
    pytest.param(lambda s: (RefDescriptor(s.oid(1), "S", s.incarnation + 1, s.address),), id="another incarnation than the entry kept"),
    pytest.param(lambda s: (RefDescriptor(s.oid(5), "S", 0, s.address),), id="owner incarnation 0"),
    pytest.param(lambda s: (s.descriptor(s.oid(6)), RefDescriptor(s.oid(6), "Q", 7, "mem://Q")), id="two owners in one value"),
])
def test_a_read_value_whose_descriptor_conflicts_fails_with_malformed_and_changes_nothing(refs):
    # A reads a value (a stored form it fetched, an ObjectStatus value) nesting a ref
    # that names owner incarnation 0, or another owner than the entry A keeps: the
    # read fails MALFORMED, nothing is registered or merged       REF-004, REF-007, VAL-021
    a, s = busy_peer()
    before = snapshot(a)
    with pytest.raises(LocalUsageError) as info:
        a.handle(ev.Materialize("m", PREFIX + "1", refs(s)))
    assert info.value.code is ErrorCode.MALFORMED
    assert snapshot(a) == before
