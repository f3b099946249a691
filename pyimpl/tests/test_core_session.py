"""The core's session layer: handshake, features, ordering, timers, liveness, fencing.

Each test feeds a core exact stimuli (frames, ticks, shell events) and asserts the
exact instructions it returns, or joins real cores on the in-memory link of
:mod:`corekit`. The comment at the top of each test shows the program or the
situation it models. Requirement ids are those of spec/handshake.md and
spec/session.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corekit import Net, Stub, address, bodies, checked_peer, frames, of_type, raw, val
from refrpc.core import Config, Peer
from refrpc.core import events as ev
from refrpc.core.messages import (
    Arg,
    ArgKind,
    BorrowRelease,
    CreateActor,
    Encoding,
    Envelope,
    ErrorCode,
    ErrorInfo,
    FetchRequest,
    FreeObjects,
    Goodbye,
    Heartbeat,
    Hello,
    IntrospectRequest,
    ObjectState,
    ObjectStatus,
    PeerDeadNotice,
    ProtocolError,
    RefDescriptor,
    RegisterBorrower,
    ReleaseBorrows,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
    Welcome,
)

DEFAULT_FEATURES = ("core", "borrowing", "recovery", "actors")
MIB = 1 << 20


def peer(name: str = "A", incarnation: int = 0xA1, config: Config | None = None) -> Peer:
    return checked_peer(name, incarnation, config)


def tick(p: Peer, now: int) -> list[ev.Instruction]:
    return p.handle(ev.Tick(f"tick@{now}", now))


def task(stub: Stub, n: int | str, *args: Arg, **fields: object) -> SubmitTask:
    """A SubmitTask the stub (as submitter) would send."""
    tid = stub.oid(f"t{n}")
    return SubmitTask(tid, "f", tuple(args), (f"{tid}.r0",), **fields)  # type: ignore[arg-type]


# ================================================================ handshake
def test_first_send_is_a_hello_and_the_task_waits_for_welcome():
    # D: y = f.remote(b"1")  (placed on W; no session with W yet)      HS-001, HS-010, HS-013
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "f", val(b"1"), executor="W")
    d, w = net.inc("D"), net.inc("W")
    assert frames(net.last["D"]) == [
        Envelope("D", d, "W", 0, 0, 0, Hello(0, 1, "mem://D", DEFAULT_FEATURES, 64 * MIB, 250)),
    ]
    net.deliver(lambda f: f.dst == "W")
    assert frames(net.last["W"]) == [
        Envelope("W", w, "D", d, 0, 0, Welcome(0, 1, "mem://W", DEFAULT_FEATURES, 64 * MIB, 250)),
    ]
    assert net["W"].remotes["D"].state == "alive"  # HS-013: open when Welcome is sent
    net.deliver(lambda f: f.dst == "D")
    [env] = frames(net.last["D"])
    assert (env.seq, env.ack, env.receiver_incarnation) == (1, 0, w)
    assert env.body == net["D"].tasks[tid].spec


def test_every_instruction_carries_the_id_of_the_stimulus_that_caused_it():
    # D: y = f.remote(b"1"); the Welcome arrives                         (causality, house habit 4)
    net = Net(("D", "W"))
    net.submit("D", "f", executor="W")
    net.deliver(lambda f: f.dst == "W")
    welcome = net.flights[0]
    stimulus = ev.Receive("the-welcome", welcome.envelope)
    out = net.handle("D", stimulus)
    assert out and {i.stimulus_id for i in out} == {"the-welcome"}


def test_messages_queued_before_welcome_go_out_in_order_numbered_from_1():
    # D: a = f.remote(); b = g.remote(); c = h.remote()  before W answers  HS-001, HS-013, SES-001
    net = Net(("D", "W"))
    tids = [net.submit("D", fn, executor="W")[0] for fn in ("f", "g", "h")]
    assert bodies(net.log["D"], SubmitTask) == []
    net.deliver(lambda f: f.dst == "W")
    net.deliver(lambda f: f.dst == "D")
    envs = frames(net.last["D"], SubmitTask)
    assert [(e.seq, e.body.task_id) for e in envs] == [(1, tids[0]), (2, tids[1]), (3, tids[2])]


def test_hello_with_another_major_version_is_refused_and_opens_no_session():
    # a peer speaking protocol 1.x greets a 0.x peer                       HS-002
    a = peer()
    s = Stub("S", major=1)
    out = a.handle(s.hello(a))
    [env] = frames(out)
    assert (env.seq, env.receiver, env.receiver_incarnation) == (0, "S", s.incarnation)
    assert env.body.error.code is ErrorCode.PROTOCOL_VERSION
    assert not any(r.state == "alive" for r in a.remotes.values())
    # Nothing it sends is acted on: it has no session (SES-010).
    assert of_type(a.handle(s.send(a, task(s, 1))), ev.RunTask) == []


def test_hello_without_core_is_refused_and_opens_no_session():
    # a peer offering only "borrowing" greets us                           HS-007, HS-011
    a = peer()
    s = Stub("S", features=("borrowing",))
    [env] = frames(a.handle(s.hello(a)))
    assert env.seq == 0 and env.body.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    assert not any(r.state == "alive" for r in a.remotes.values())


def test_refusal_of_a_hello_without_core_names_hs007():
    # a peer offering only "borrowing" greets us                           HS-011
    a = peer()
    [env] = frames(a.handle(Stub("S", features=("borrowing",)).hello(a)))
    assert env.body.error.requirement == "HS-007"


@pytest.mark.parametrize("max_frame, accepted", [(MIB - 1, False), (MIB, True)])
def test_hello_announcing_a_frame_limit_below_1_mib_is_malformed(max_frame, accepted):
    # a peer announcing maxFrameBytes below / exactly 1 MiB                HS-012
    a = peer()
    [env] = frames(a.handle(Stub("S", max_frame_bytes=max_frame).hello(a)))
    if accepted:
        assert isinstance(env.body, Welcome)
        assert a.remotes["S"].state == "alive"
    else:
        assert env.body.error.code is ErrorCode.MALFORMED and env.seq == 0
        assert "S" not in a.remotes or a.remotes["S"].state != "alive"


def test_common_features_are_the_intersection_and_unknown_names_are_ignored():
    # a peer offering core, actors, lz4 and a feature nobody knows        HS-004, HS-005, GEN-007
    a = peer()
    s = Stub("S", features=("x-future", "lz4", "actors", "core"))
    [env] = frames(a.handle(s.hello(a)))
    assert set(env.body.features) == {"core", "actors"}
    assert set(a.remotes["S"].features) == {"core", "actors"}


def test_welcome_carries_the_smaller_minor_version():
    # a 0.0 peer greets a 0.1 peer                                          HS-003
    a = peer()
    [env] = frames(a.handle(Stub("S", minor=0).hello(a)))
    assert env.body.protocol_minor == 0


def test_second_hello_from_an_accepted_incarnation_gets_the_same_welcome_and_resets_nothing():
    # S's Welcome was lost, so S says Hello again                          HS-009
    a = peer()
    s = Stub("S", features=("core", "actors"))
    first = frames(a.handle(s.hello(a)))
    a.handle(s.send(a, task(s, 1)))
    a.handle(ev.Introspect("i", 1, "S"))  # a's session to S is at seq 1
    again = frames(a.handle(s.hello(a)))
    assert [e.body for e in again] == [e.body for e in first]
    r = a.remotes["S"]
    assert (r.delivered, r.out_seq) == (1, 1)


def test_repeat_hello_with_other_values_is_answered_with_the_values_negotiated_first():
    # S's Welcome was lost; S's second Hello lists fewer features, another frame
    # limit, heartbeat and minor version (a buggy or forged peer)         HS-009, HS-036
    a = peer()
    s = Stub("S", features=("core", "borrowing", "actors"))
    [first] = frames(a.handle(s.hello(a)))
    again = frames(a.handle(s.hello(a, features=("core",), max_frame_bytes=2 * MIB,
                                     heartbeat_interval_ms=5000, protocol_minor=0)))
    assert [e.body for e in again] == [first.body]
    r = a.remotes["S"]
    assert set(r.features) == {"core", "borrowing", "actors"}
    assert (r.max_frame_bytes, r.heartbeat_interval_ms) == (s.max_frame_bytes, s.heartbeat_interval_ms)


def test_repeat_hello_with_a_new_address_moves_the_session_there():
    # S rebinds and says Hello again from the same incarnation with its new address:
    # the Welcome and everything after it, retransmissions included, go there; the
    # session's numbering goes on                                          HS-036, HS-013
    a = peer()
    s = Stub("S")
    tick(a, 0)
    a.handle(s.hello(a))
    a.handle(s.send(a, task(s, 1)))
    first = [i for i in a.handle(ev.Introspect("i1", 1, "S")) if isinstance(i, ev.SendFrame)]
    assert [i.address for i in first] == ["mem://S"] and first[0].envelope.seq == 1
    out = [i for i in a.handle(s.hello(a, address="mem://S-new")) if isinstance(i, ev.SendFrame)]
    assert [(type(i.envelope.body), i.address) for i in out] == [(Welcome, "mem://S-new")]
    after = [i for i in a.handle(ev.Introspect("i2", 2, "S")) if isinstance(i, ev.SendFrame)]
    assert [(i.address, i.envelope.seq) for i in after] == [("mem://S-new", 2)]
    resent = [i for i in tick(a, 200) if isinstance(i, ev.SendFrame) and i.envelope.seq]
    assert [(i.address, i.envelope.seq) for i in resent] == [("mem://S-new", 1), ("mem://S-new", 2)]
    assert a.remotes["S"].state == "alive"


def test_repeat_hello_that_breaks_hs_025_is_refused_and_the_live_session_stays():
    # S's second Hello announces a frame limit below 1 MiB                 HS-025, HS-036
    a = peer()
    s = Stub("S")
    a.handle(s.hello(a))
    a.handle(s.send(a, task(s, 1)))
    out = a.handle(s.hello(a, max_frame_bytes=1024))
    [refusal] = bodies(out, ProtocolError)
    assert refusal.error.code is ErrorCode.MALFORMED
    assert bodies(out, Welcome) == []
    r = a.remotes["S"]
    assert (r.state, r.delivered, r.max_frame_bytes) == ("alive", 1, s.max_frame_bytes)


def test_refused_handshake_fences_locally_fails_queued_work_and_sends_no_notice():
    # D: y = f.remote() on W, but W speaks another major version            HS-015
    d = peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    c = Stub("C")
    c.greet(d)
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W"))
    w = Stub("W", incarnation=0x3)
    refusal = ProtocolError(ErrorInfo(ErrorCode.PROTOCOL_VERSION, "I speak 1.x", "HS-002"))
    out = d.handle(w.unsequenced(d, refusal))
    assert [(i.peer, i.incarnation) for i in of_type(out, ev.PeerDeclaredDead)] == [("W", 0x3)]
    assert bodies(out, PeerDeadNotice) == []
    assert d.owned["D.d1.1.r0"].state == "failed"
    # LIV-031: the task ends as for a death, with the death's code, not the refusal's.
    assert d.owned["D.d1.1.r0"].error.code is ErrorCode.WORKER_DIED


def test_welcome_with_another_major_version_is_a_refusal():
    # D greets W; W answers with a 1.x Welcome                             HS-015
    d = peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W"))
    out = d.handle(Stub("W", major=1).welcome(d))
    assert of_type(out, ev.PeerDeclaredDead) and d.remotes["W"].state == "dead"
    assert bodies(out, SubmitTask) == []


def test_unanswered_hello_is_resent_every_retransmit_interval_then_the_peer_is_dead():
    # D: y = f.remote() on W, and W never answers                           HS-008, RPC-004
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "f", executor="W")
    net.drop(lambda f: True)
    assert bodies(net.tick(199, "D")["D"], Hello) == []
    assert len(bodies(net.tick(1, "D")["D"], Hello)) == 1
    assert len(bodies(net.tick(200, "D")["D"], Hello)) == 1
    net.drop(lambda f: True)
    for _ in range(5):
        net.tick(200, "D")  # now = 1400
    net.drop(lambda f: True)
    out = net.tick(200, "D")["D"]  # 1600 ms: past the live-session limit, but a
    assert net["D"].remotes["W"].state == "connecting"  # handshake gets longer (LIV-015)
    assert not of_type(out, ev.PeerDeclaredDead)
    for _ in range(41):
        net.tick(200, "D")  # now = 9800
        net.drop(lambda f: True)
    assert net["D"].remotes["W"].state == "connecting"
    out = net.tick(400, "D")["D"]  # 10.2 s without a word from W
    assert of_type(out, ev.PeerDeclaredDead)
    assert net["D"].owned[y].error.code is ErrorCode.WORKER_DIED


def test_a_welcome_after_the_handshake_timed_out_opens_the_session():
    # A greets S, which stays silent for the handshake timeout; then S's Welcome to
    # one of A's Hellos arrives late                                 LIV-018, HS-014
    a = peer()
    s = Stub("S")
    out = a.handle(ev.Connect("c", "S", address("S")))
    assert bodies(out, Hello)
    for now in range(200, 10_401, 200):
        tick(a, now)
    assert a.remotes["S"].state == "dead" and not a.remotes["S"].incarnation
    assert ("S", s.incarnation) not in a.fenced  # LIV-018: nothing to fence
    a.handle(s.welcome(a))
    assert a.remotes["S"].state == "alive" and a.remotes["S"].incarnation == s.incarnation


def test_welcome_that_answers_no_hello_is_only_evidence_of_life():
    # S sends a stray Welcome with other features on a live session         HS-014, LIV-002
    a = peer()
    s = Stub("S", features=("core", "actors"))
    s.greet(a)
    tick(a, 1000)
    out = a.handle(s.welcome(a, features=("core",)))
    assert out == []
    assert set(a.remotes["S"].features) == {"core", "actors"}
    assert a.remotes["S"].last_heard_ms == 1000


# ================================================================ ordering (SES-002)
def test_out_of_order_messages_are_buffered_and_delivered_in_sequence_order():
    # S: f1.remote(); f2.remote() on A; the network swaps them              SES-002
    a = peer()
    s = Stub("S")
    s.greet(a)
    first, second = s.send(a, task(s, 1)), s.send(a, task(s, 2))
    assert a.handle(second) == []
    assert a.remotes["S"].buffered.keys() == {2}
    out = a.handle(first)
    assert [r.task_id for r in of_type(out, ev.RunTask)] == [s.oid("t1"), s.oid("t2")]
    assert a.remotes["S"].delivered == 2


def test_duplicates_are_discarded_and_re_acked():
    # the network delivers S's SubmitTask twice                             SES-002, SES-004
    a = peer()
    s = Stub("S")
    s.greet(a)
    tick(a, 0)
    msg = s.send(a, task(s, 1))
    assert len(of_type(a.handle(msg), ev.RunTask)) == 1
    tick(a, 100)  # the ack owed since 0 goes out in a heartbeat
    assert a.handle(msg) == []  # duplicate: discarded
    out = tick(a, 150)
    assert [(e.seq, e.ack, e.body) for e in frames(out)] == [(0, 1, Heartbeat())]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_arrival_order_with_duplicates_delivers_each_message_once_in_order(data):
    # S: f1.remote() ... f6.remote(); the network reorders and duplicates freely   SES-002
    a = peer()
    s = Stub("S")
    s.greet(a)
    msgs = [s.send(a, task(s, i)) for i in range(1, 7)]
    extra = data.draw(st.lists(st.integers(0, 5), max_size=12), label="duplicates")
    arrivals = data.draw(st.permutations(list(range(6)) + extra), label="arrival order")
    ran = []
    for i in arrivals:
        ran += [r.task_id for r in of_type(a.handle(msgs[i]), ev.RunTask)]
    assert ran == [s.oid(f"t{i}") for i in range(1, 7)]
    assert a.remotes["S"].buffered == {}


def test_message_beyond_the_window_is_discarded():
    # S's seq 6 arrives while A expects seq 1, window 4                      SES-002, SES-009
    a = peer(config=Config(window=4))
    s = Stub("S")
    s.greet(a)
    msgs = [s.send(a, task(s, i)) for i in range(1, 7)]
    a.handle(msgs[5])
    assert a.remotes["S"].buffered == {}
    out = a.handle(*msgs[:5])
    assert len(of_type(out, ev.RunTask)) == 5  # seq 6 waits for its retransmission
    assert a.remotes["S"].delivered == 5


def test_receiver_mismatch_is_silently_discarded():
    # a frame for peer "Z" reaches A (a stale address)                       SES-016
    a = peer()
    s = Stub("S")
    s.greet(a)
    out = a.handle(s.envelope(a, task(s, 1), 1, receiver="Z"))
    assert out == []
    assert a.remotes["S"].delivered == 0


# ================================================================ acks and retransmission
def test_unacked_messages_are_retransmitted_identically_after_the_interval():
    # A asks S twice; both frames are lost                                  SES-003, SES-011
    a = peer()
    s = Stub("S")
    s.greet(a)
    tick(a, 0)
    sent = frames(a.handle(ev.Introspect("i1", 1, "S"), ev.Introspect("i2", 2, "S")))
    assert [e.seq for e in sent] == [1, 2]
    assert frames(tick(a, 199)) == []
    again = frames(tick(a, 200))
    assert again == sent  # same seq, same body, in order (ack unchanged at 0)


def test_retransmission_backs_off_while_nothing_is_acked_and_resets_on_progress():
    # S is slow: A's two requests stay unacked. A resends them at 200 ms, then waits
    # 400, 800, 1600, 1600 ms (8x cap); an ack of seq 1 brings back the 200 ms interval.  SES-003
    from refrpc.core.messages import Heartbeat as Hb

    a = peer()
    s = Stub("S")
    s.greet(a)
    tick(a, 0)
    a.handle(ev.Introspect("i1", 1, "S"), ev.Introspect("i2", 2, "S"))
    rounds = []
    for t in range(0, 5000, 10):
        out = [e.seq for e in frames(tick(a, t)) if e.seq]
        if out:
            rounds.append((t, out))
        if t % 200 == 0:
            a.handle(s.unsequenced(a, Hb(), ack=0))  # S is alive, just slow (LIV-002)
    assert rounds == [(200, [1, 2]), (600, [1, 2]), (1400, [1, 2]), (3000, [1, 2]), (4600, [1, 2])]
    a.handle(s.unsequenced(a, Hb(), ack=1))  # at 4990 (the last tick)
    assert [e.seq for e in frames(tick(a, 5180)) if e.seq] == []
    assert [e.seq for e in frames(tick(a, 5190)) if e.seq] == [2]


def test_ack_stops_retransmission():
    # S acknowledges A's request in a heartbeat                              SES-003, SES-008
    a = peer()
    s = Stub("S")
    s.greet(a)
    tick(a, 0)
    a.handle(ev.Introspect("i1", 1, "S"))
    a.handle(s.unsequenced(a, Heartbeat(), ack=1))
    assert a.remotes["S"].unacked == {}
    assert bodies(tick(a, 200), IntrospectRequest) == []


def test_ack_beyond_what_was_sent_is_ignored():
    # a buggy S acks seq 99 although A has sent it two messages             SES-008
    a = peer()
    s = Stub("S")
    s.greet(a)
    a.handle(ev.Introspect("i1", 1, "S"), ev.Introspect("i2", 2, "S"))
    a.handle(s.unsequenced(a, Heartbeat(), ack=99))
    assert list(a.remotes["S"].unacked) == [1, 2]


def test_ack_owed_goes_out_in_a_heartbeat_after_the_ack_delay():
    # S sends A a message A has nothing to answer                          SES-004
    a = peer()
    s = Stub("S")
    s.greet(a)
    tick(a, 0)
    assert a.handle(s.send(a, FreeObjects(()))) == []
    assert tick(a, 49) == []
    out = tick(a, 50)
    assert [(e.seq, e.ack, e.body) for e in frames(out)] == [(0, 1, Heartbeat())]


# ================================================================ liveness
def test_idle_session_gets_a_heartbeat_every_interval():
    # two idle peers                                                        LIV-001
    a = peer()
    s = Stub("S")
    s.greet(a)  # A's Welcome went out at 0
    assert tick(a, 249) == []
    out = tick(a, 250)
    assert frames(out) == [Envelope("A", 0xA1, "S", s.incarnation, 0, 0, Heartbeat())]
    assert tick(a, 499) == []
    assert bodies(tick(a, 500)) == [Heartbeat()]


def test_silence_is_measured_with_the_remote_interval():
    # S announces 100 ms heartbeats, then goes silent; A's missLimit is 6   LIV-003, LIV-007
    a = peer()
    s = Stub("S", heartbeat_interval_ms=100)
    s.greet(a)
    assert of_type(tick(a, 599), ev.PeerDeclaredDead) == []
    [dead] = of_type(tick(a, 601), ev.PeerDeclaredDead)
    assert (dead.peer, dead.incarnation) == ("S", s.incarnation)
    assert ("S", s.incarnation) in a.fenced


def test_any_message_counts_as_evidence_of_life():
    # S sends only data-plane frames and a duplicate, one a second (timeout 1.5 s)   LIV-002
    a = peer()
    s = Stub("S")
    s.greet(a)
    dup = s.send(a, FreeObjects(()))
    a.handle(dup)
    evidence = [s.unsequenced(a, FetchRequest("x", 1)), dup, s.unsequenced(a, FetchRequest("x", 2)), dup]
    for now, msg in zip((1000, 2000, 3000, 4000), evidence):
        a.handle(msg)
        assert of_type(tick(a, now), ev.PeerDeclaredDead) == []
    assert a.remotes["S"].state == "alive"


def test_death_by_silence_is_announced_once_to_every_other_live_peer():
    # B crashes silently; A (in session with B and C) detects it            LIV-003, LIV-004, LIV-008
    net = Net(("A", "B", "C"))
    net.connect("A", "B")
    net.connect("A", "C")
    b = net.kill("B")
    declared_at = None
    for _ in range(20):
        out = net.tick(100, "A", "C")
        if declared_at is None and of_type(out["A"], ev.PeerDeclaredDead):
            declared_at = net.now
        net.deliver_all()
    assert declared_at == 1600
    assert [(m.peer, m.incarnation) for m in net.sent_bodies(PeerDeadNotice, src="A")] == [("B", b)]
    assert [f.dst for f in net.sent if isinstance(f.body, PeerDeadNotice)] == ["C"]
    assert ("B", b) in net["C"].fenced  # LIV-012: C had no session with B, but records the fence
    assert net.sent_bodies(PeerDeadNotice, src="C") == []  # LIV-008: C only heard of it


def test_the_death_of_a_peer_every_member_watches_itself_is_not_announced():
    # A driver (A) of a multi-host cluster loses its link to the head (H); a worker (C)
    # keeps its own session with H: A fences H but tells C nothing         LIV-030, CLU-015
    net = Net(("A", "H", "C"), configs={"A": Config(unannounced=("H",))})
    for a, b in (("A", "H"), ("A", "C"), ("C", "H")):
        net.connect(a, b)
    h = net.inc("H")
    for _ in range(20):
        net.tick(100, "A", "C", "H")
        net.drop(lambda f: {f.src, f.dst} == {"A", "H"})  # the link A-H is cut
        net.deliver_all()
    assert ("H", h) in net["A"].fenced and ("A", net.inc("A")) in net["H"].fenced
    assert net.sent_bodies(PeerDeadNotice, src="A") == []
    assert ("H", h) not in net["C"].fenced and net["C"].remotes["H"].state == "alive"
    # (H, which announces, tells C of A's death: a driver cut off from the head is out.)
    assert ("A", net.inc("A")) in net["C"].fenced
    # Any other death A learns first-hand is announced as before (LIV-004).
    net = Net(("A", "H", "C", "D"), configs={"A": Config(unannounced=("H",))})
    for b in ("H", "C", "D"):
        net.connect("A", b)
    d = net.kill("D", "A")
    assert [(m.peer, m.incarnation) for m in bodies(net.last["A"], PeerDeadNotice)] == [("D", d), ("D", d)]
    assert {f.dst for f in net.sent if isinstance(f.body, PeerDeadNotice)} == {"H", "C"}


def test_external_evidence_of_death_is_announced():
    # A's supervisor reports that B exited                                  LIV-014, LIV-004
    net = Net(("A", "B", "C"))
    net.connect("A", "B")
    net.connect("A", "C")
    b = net.kill("B", "A")
    assert [(m.peer, m.incarnation) for m in bodies(net.last["A"], PeerDeadNotice, to="C")] == [("B", b)]


def test_a_notice_about_the_receiver_itself_changes_nothing():
    # C claims A is dead and tells A itself: A is evidently alive, and a peer
    # that really fenced A answers A's next message DECLARED_DEAD instead   LIV-019, LIV-005
    a = peer()
    c = Stub("C")
    c.greet(a)
    for incarnation in (0xA1, 0xA2):  # this incarnation, or another one of A
        out = a.handle(c.send(a, PeerDeadNotice("A", incarnation, "silence")))
        assert not of_type(out, ev.FailStop) and not of_type(out, ev.PeerDeclaredDead) and not a.stopped
    out = a.handle(c.send(a, task(c, 1)))
    assert of_type(out, ev.RunTask)


def test_notice_about_someone_else_fences_them_without_stopping():
    # C tells A that B/b is dead; A had a task running for B                 LIV-004, FATE-003
    a = peer()
    b, c = Stub("B", incarnation=0xB), Stub("C", incarnation=0xC)
    b.greet(a)
    c.greet(a)
    a.handle(b.send(a, task(b, 1)))
    out = a.handle(c.send(a, PeerDeadNotice("B", 0xB, "silence")))
    assert [(i.peer, i.incarnation) for i in of_type(out, ev.PeerDeclaredDead)] == [("B", 0xB)]
    assert of_type(out, ev.StopTask) and not of_type(out, ev.FailStop)
    assert bodies(out, PeerDeadNotice) == []
    # SES-005: B/b is fenced; what it sends now is discarded and answered DECLARED_DEAD.
    late = a.handle(b.send(a, task(b, 2)))
    assert of_type(late, ev.RunTask) == []
    assert [m.error.code for m in bodies(late, ProtocolError)] == [ErrorCode.DECLARED_DEAD]


def test_answer_to_a_fenced_sender_names_liv005():
    # B/b was declared dead but is still talking                              SES-017
    a = peer()
    b = Stub("B")
    b.greet(a)
    a.handle(ev.PeerFailed("failed", "B", b.incarnation))
    [msg] = bodies(a.handle(b.send(a, FreeObjects(()))), ProtocolError)
    assert msg.error.requirement == "LIV-005"


def test_goodbye_fences_the_sender_at_once():
    # W leaves the cluster while running nothing for A                      LIV-006
    a = peer()
    w = Stub("W")
    w.greet(a)
    out = a.handle(w.send(a, Goodbye("shutdown")))
    assert [(i.peer, i.reason) for i in of_type(out, ev.PeerDeclaredDead)] == [("W", "shutdown")]
    assert ("W", w.incarnation) in a.fenced


def test_goodbye_is_acknowledged_before_the_fence():
    # W says Goodbye as its third sequenced message; A acks it, then fences   LIV-016
    a = peer()
    w = Stub("W")
    w.greet(a)
    a.handle(w.send(a, FreeObjects(())), w.send(a, FreeObjects(())))
    out = a.handle(w.send(a, Goodbye("shutdown")))
    acks = [i for i in out if isinstance(i, ev.SendFrame) and isinstance(i.envelope.body, Heartbeat)]
    assert [(e.envelope.seq, e.envelope.ack) for e in acks] == [(0, 3)]
    kinds = [type(i) for i in out]
    assert kinds.index(ev.SendFrame) < kinds.index(ev.PeerDeclaredDead)
    assert bodies(out, PeerDeadNotice) == []  # a Goodbye is not a detection (LIV-004)


# ================================================================ incarnations
def test_hello_from_a_new_incarnation_fences_the_old_one_first():
    # D: y = f.remote() on W; W crashes and restarts, then greets D          HS-006, RPC-004
    net = Net(("D", "W"))
    tid, (y,) = net.submit("D", "f", executor="W")
    net.deliver_all()
    w1 = net.inc("W")
    net.restart("W")
    net.handle("W", ev.SendData(net.sid("W", "hi"), "D", 0, "mem://D", FetchRequest("x", 1)))
    out = net.deliver(lambda f: f.dst == "D")
    kinds = [type(i) for i in out]
    assert kinds.index(ev.PeerDeclaredDead) < kinds.index(ev.SendFrame)
    assert [(i.peer, i.incarnation) for i in of_type(out, ev.PeerDeclaredDead)] == [("W", w1)]
    [welcome] = frames(out, Welcome)
    assert welcome.receiver_incarnation == net.inc("W")
    err = net["D"].owned[y].error
    assert err.code is ErrorCode.WORKER_DIED and "W" in err.message
    assert bodies(out, PeerDeadNotice) == []


def test_message_to_an_earlier_incarnation_is_answered_declared_dead():
    # S still talks to A's previous incarnation                               SES-006
    a = peer()
    s = Stub("S")
    s.greet(a)
    stale = s.envelope(a, task(s, 1), 1, receiver_incarnation=0xA0)
    [env] = frames(a.handle(stale))
    assert (env.seq, env.receiver, env.receiver_incarnation) == (0, "S", s.incarnation)
    assert (env.body.error.code, env.body.error.requirement) == (ErrorCode.DECLARED_DEAD, "SES-006")
    assert a.remotes["S"].delivered == 0  # discarded: seq 1 is still expected
    assert of_type(a.handle(s.envelope(a, task(s, 1), 1)), ev.RunTask)


def test_hello_to_an_earlier_incarnation_from_a_stranger_is_answered_declared_dead():
    # B restarted as b2; A, which knew b1, greets it again                   SES-006
    b2 = peer("B", 0xB2)
    a = Stub("A")
    [env] = frames(b2.handle(a.hello(b2, receiver_incarnation=0xB1)))
    assert env.receiver == "A" and env.seq == 0
    assert (env.body.error.code, env.body.error.requirement) == (ErrorCode.DECLARED_DEAD, "SES-006")


def test_declared_dead_from_a_restarted_peer_fences_its_old_incarnation():
    # D runs a task on W/w1; W restarted as w2 and answers D's stale frame   LIV-009
    d = peer("D", 0xD1)
    w1, w2 = Stub("W", incarnation=0x1), Stub("W", incarnation=0x2)
    w1.greet(d)
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W"))
    info = ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "SES-006")
    out = d.handle(w2.unsequenced(d, ProtocolError(info)))
    assert [(i.peer, i.incarnation) for i in of_type(out, ev.PeerDeclaredDead)] == [("W", 0x1)]
    assert of_type(out, ev.FailStop) == [] and not d.stopped
    assert d.owned["D.d1.1.r0"].error.code is ErrorCode.WORKER_DIED


def test_declared_dead_from_the_incarnation_we_know_means_we_are_dead():
    # W fenced D/d (false suspicion); D's next frame is answered             LIV-005, LIV-009, SES-017
    d = peer("D", 0xD1)
    w = Stub("W")
    w.greet(d)
    info = ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "LIV-005")
    out = d.handle(w.unsequenced(d, ProtocolError(info)))
    assert [type(i) for i in out] == [ev.FailStop]
    assert d.stopped


# ================================================================ malformed and unknown input
def test_malformed_message_with_a_readable_seq_uses_up_its_number():
    # S's seq 1 cannot be decoded; seq 2 arrived before it                   GEN-010, SES-002
    a = peer()
    s = Stub("S")
    s.greet(a)
    s.out_seq = 1
    a.handle(s.send(a, task(s, 2)))
    bad = ev.ReceiveMalformed("bad", "S", s.incarnation, ErrorInfo(ErrorCode.MALFORMED, "truncated"), seq=1)
    out = a.handle(bad)
    first, run = out
    assert isinstance(first, ev.SendFrame) and isinstance(run, ev.RunTask)
    env = first.envelope
    assert (env.body.error.code, env.body.related_seq, env.body.error.requirement) == (ErrorCode.MALFORMED, 1, "GEN-010")
    assert env.ack == 1  # counted as delivered before replying
    assert run.task_id == s.oid("t2")


def test_malformed_frame_without_seq_is_answered_and_changes_nothing():
    # S sends a frame whose envelope's seq could not be read                GEN-004
    a = peer()
    s = Stub("S")
    s.greet(a)
    out = a.handle(ev.ReceiveMalformed("bad", "S", s.incarnation, ErrorInfo(ErrorCode.MALFORMED, "junk")))
    [msg] = bodies(out, ProtocolError)
    assert (msg.error.code, msg.related_seq) == (ErrorCode.MALFORMED, 0)
    assert a.remotes["S"].delivered == 0


def test_malformed_frame_from_a_stranger_is_dropped():
    # junk arrives from a peer A has no session with                        GEN-004, SES-010
    a = peer()
    assert a.handle(ev.ReceiveMalformed("bad", "Z", 5, ErrorInfo(ErrorCode.MALFORMED, "junk"), seq=3)) == []


def test_non_hello_without_receiver_incarnation_is_malformed():
    # S sends a sequenced message with receiverIncarnation 0                SES-014, GEN-004
    a = peer()
    s = Stub("S")
    s.greet(a)
    [msg] = bodies(a.handle(s.envelope(a, FreeObjects(()), 1, receiver_incarnation=0)), ProtocolError)
    assert msg.error.code is ErrorCode.MALFORMED


def test_session_that_cannot_make_progress_is_declared_dead_after_the_stall_limit():
    # S keeps heartbeating but never acks A's request                      SES-012, LIV-004
    a = peer()
    s, c = Stub("S"), Stub("C")
    s.greet(a)
    c.greet(a)
    tick(a, 0)
    a.handle(ev.Introspect("i", 1, "S"))
    died_at = None
    for now in range(200, 10_001, 200):
        a.handle(s.unsequenced(a, Heartbeat(), ack=0), c.unsequenced(a, Heartbeat()))
        out = tick(a, now)
        if of_type(out, ev.PeerDeclaredDead):
            died_at = now
            [dead] = of_type(out, ev.PeerDeclaredDead)
            assert dead.peer == "S" and "stalled" in dead.reason
            assert [(m.peer, m.incarnation) for m in bodies(out, PeerDeadNotice, to="C")] == [("S", s.incarnation)]
            break
    assert died_at == 10_000


# ================================================================ features on a session
CORE_ONLY = ("core",)


def _stub_descriptor(stub: Stub) -> RefDescriptor:
    return stub.descriptor(stub.oid("x"))


def _messages_needing_features(stub: Stub) -> list[tuple[str, object, str]]:
    d = _stub_descriptor(stub)
    pickle = Value(Encoding.PICKLE, b"\x80\x05N.")
    return [
        ("actor call", task(stub, 1, actor_id=stub.oid("a"), actor_seq=1), "HS-019"),
        ("shared arg", task(stub, 2, Arg(ArgKind.SHARED, ref=d)), "HS-017"),
        ("nested ref", task(stub, 3, Arg(ArgKind.VALUE, value=raw(b"v", (d,)))), "HS-017"),
        ("retry", task(stub, 4, attempt=2, max_retries=3), "HS-018"),
        ("pickle", task(stub, 5, Arg(ArgKind.VALUE, value=pickle)), "HS-020"),
        ("CreateActor", CreateActor(stub.oid("a"), "C", ()), "HS-004"),
        ("RegisterBorrower", RegisterBorrower("A.a1.1", stub.name, stub.incarnation, stub.address, stub.oid("f1")), "HS-004"),
        ("ReleaseBorrows", ReleaseBorrows((BorrowRelease("A.a1.1", (stub.oid("f1"),)),)), "HS-004"),
    ]


@pytest.mark.parametrize("index", range(8), ids=[m[0] for m in _messages_needing_features(Stub("S"))])
def test_message_needing_a_feature_not_in_use_is_refused(index):
    # a core-only peer sends something only an extended session allows     HS-004, HS-017..HS-020
    a = peer()
    s = Stub("S", features=CORE_ONLY)
    s.greet(a)
    name, msg, requirement = _messages_needing_features(s)[index]
    out = a.handle(s.send(a, msg))
    [env] = frames(out)
    assert (env.body.error.code, env.body.related_seq) == (ErrorCode.FEATURE_NOT_NEGOTIATED, 1)
    assert env.body.error.requirement == requirement
    assert [type(i) for i in out] == [ev.SendFrame]  # discarded: nothing ran, nothing recorded
    assert a.owned == {} and a.hosted == {}
    # The sequence number was used up: the session goes on.
    assert of_type(a.handle(s.send(a, task(s, 9))), ev.RunTask)


@pytest.mark.parametrize("shared", [False, True], ids=["pickle value", "shared ref"])
def test_create_actor_the_hosts_session_cannot_carry_is_never_sent(shared):
    # D creates an actor on H (actors, but no python-pickle, no borrowing) with a pickled
    # argument, or a SharedRef: the CreateActor is not sent, and the actor is dead at
    # once with FEATURE_NOT_NEGOTIATED                              HS-035, HS-017, HS-020
    d = peer("D", 0xD1)
    h = Stub("H", features=("core", "actors"))
    d.handle(ev.AddPeer("add", "H", h.address))
    if shared:
        d.handle(ev.Put("put", "D.d1.9", raw(b"x")))
        arg = ev.ArgSpec(object_id="D.d1.9", shared=True)
    else:
        arg = ev.ArgSpec(value=Value(Encoding.PICKLE, b"\x80\x05N."))
    out = d.handle(ev.CreateActorRequest("create", "D.d1.10", "Counter", (arg,), "H"))
    out += d.handle(h.welcome(d))  # the session opens with the features H offered
    assert bodies(out, CreateActor) == []
    [changed] = of_type(out, ev.ActorStateChanged)
    assert changed.state == "dead" and changed.error.code == ErrorCode.FEATURE_NOT_NEGOTIATED
    assert changed.error.requirement == ("HS-017" if shared else "HS-020")


def test_task_reply_with_refs_on_a_session_without_borrowing_is_refused():
    # W (core only) returns a value that embeds a ref: refused, and the task it
    # answers ends with that code (no hang until W dies)             HS-017, GEN-030
    d = peer("D", 0xD1)
    d.handle(ev.AddPeer("add", "W", "mem://W"))
    d.handle(ev.Submit("submit", "D.d1.1", "f", (), ("D.d1.1.r0",), executor="W"))
    w = Stub("W", features=CORE_ONLY)
    d.handle(w.welcome(d))
    nested = w.descriptor(w.oid(1), forward_id=w.oid("f1"))
    reply = TaskReply("D.d1.1", 1, (ReturnValue("D.d1.1.r0", ReturnKind.INLINE, raw(b"v", (nested,))),))
    [msg] = bodies(d.handle(w.send(d, reply)), ProtocolError)
    assert msg.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    e = d.owned["D.d1.1.r0"]
    assert e.state == "failed" and e.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED


def test_object_status_with_a_pickle_value_on_a_plain_session_is_refused():
    # O (no python-pickle in use) answers G with a pickled value              HS-004, HS-020
    g = peer("G", 0x61)
    o = Stub("O")
    o.greet(g)
    x = o.descriptor(o.oid(1))
    g.handle(o.send(g, task(o, 1, Arg(ArgKind.SHARED, ref=x))))
    g.handle(ev.Get("get", 1, x.object_id))
    out = g.handle(o.send(g, ObjectStatus(x.object_id, ObjectState.READY, 4, (), (), Value(Encoding.PICKLE, b"\x80\x05N."))))
    [msg] = bodies(out, ProtocolError)
    assert msg.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED
    [got] = of_type(out, ev.GetResult)  # the wait ends with that code (GEN-030)
    assert got.error is not None and got.error.code is ErrorCode.FEATURE_NOT_NEGOTIATED


def test_retry_is_not_sent_to_a_peer_without_recovery():
    # D: y = f.options(max_retries=2).remote(); W1 dies; only W2 (no recovery) is left   HS-018, RPC-004
    net = Net(("D", "W1", "W2"), configs={"W2": Config(features=("core", "borrowing", "actors"))})
    net.connect("D", "W2")
    tid, (y,) = net.submit("D", "f", executor="W1", retries=2)
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    assert [m.attempt for m in net.sent_bodies(SubmitTask, dst="W2")] == []
    assert net["D"].owned[y].error.code is ErrorCode.WORKER_DIED


def test_retry_queued_before_the_handshake_is_not_sent_without_recovery():
    # D: y = f.options(max_retries=2).remote(); W1 dies; W2 (no recovery) is new to D   HS-018, RPC-004
    net = Net(("D", "W1", "W2"), configs={"W2": Config(features=("core", "borrowing", "actors"))})
    tid, (y,) = net.submit("D", "f", executor="W1", retries=2)
    net.deliver_all()
    net.kill("W1", "D")
    net.deliver_all()
    assert [m.attempt for m in net.sent_bodies(SubmitTask, dst="W2")] == []
    assert net["D"].owned[y].error.code is ErrorCode.WORKER_DIED
    # the same event as a retry refused before the handshake or at once (state-machines.md §3)
    assert [e for _, e, _ in net["D"].story(tid) if e in ("rejected", "executor_died_final")] == ["executor_died_final"]


def test_lz4_fields_on_a_session_without_lz4_are_refused():
    # S (no lz4 in its features) sends FetchRequest(acceptLz4) and FetchChunk(lz4):
    # both are discarded with FEATURE_NOT_NEGOTIATED; a plain request goes through.  HS-004, HS-021
    from refrpc.core.messages import FetchChunk, ProtocolError as PE

    a = peer()
    s = Stub("S")  # features: core, borrowing, recovery, actors (no lz4)
    s.greet(a)
    for body in (FetchRequest("x", 1, accept_lz4=True), FetchChunk("x", 2, 0, 10, True, lz4=True, data=b"0123456789")):
        out = a.handle(s.unsequenced(a, body))
        assert of_type(out, ev.DeliverData) == []
        [err] = [b for b in bodies(out, to="S") if isinstance(b, PE)]
        assert (err.error.code, err.error.requirement) == (ErrorCode.FEATURE_NOT_NEGOTIATED, "HS-021")
    assert len(of_type(a.handle(s.unsequenced(a, FetchRequest("x", 3))), ev.DeliverData)) == 1
    assert a.remotes["S"].state == "alive"


def test_protocol_errors_to_one_peer_are_rate_limited():
    # B sends 150 messages that each deserve a ProtocolError within one second   ERR-008
    a = peer()
    b = Stub("B")
    b.greet(a)
    welcome = Welcome(0, 1, "mem://B", ("core",), 1 << 20, 250)  # not a sequenced message: GEN-005
    out = a.handle(*[b.send(a, welcome) for _ in range(150)])
    errors = bodies(out, ProtocolError)
    assert len(errors) == a.config.max_protocol_errors_per_s == 100
    assert a.remotes["B"].delivered == 150  # every one consumed all the same (GEN-001)
    out = a.handle(ev.Tick("later", a.now_ms + 1000), b.send(a, welcome))
    fresh = [e for e in bodies(out, ProtocolError) if e.related_seq == 151]  # the rest are retransmissions
    assert len(fresh) == 1  # a new second, a new allowance


# ---------------------------------------------------------------- SEC-021: handshakes and sessions are bounded
def test_a_new_hello_forgets_the_oldest_handshake_in_progress():
    # A flood of Hellos from made-up peers: A keeps at most max_handshakes sessions that
    # carried nothing but a Hello; the oldest is forgotten (no fence, no notice), while a
    # peer that answered its Welcome at once (SES-022) is not pushed out.   SEC-021
    a = peer(config=Config(max_handshakes=2))
    real, f1, f2, f3 = Stub("R"), Stub("F1"), Stub("F2"), Stub("F3")
    real.greet(a)
    a.handle(real.unsequenced(a, Heartbeat()))  # R answers at once: no longer a handshake in progress
    f1.greet(a)
    f2.greet(a)
    assert list(a.handshakes) == ["F1", "F2"]
    out = f3.greet(a)
    assert [d.peer for d in of_type(out, ev.Disconnect)] == ["F1"]
    assert of_type(out, ev.PeerDeclaredDead) == [] and bodies(out, PeerDeadNotice) == []
    assert "F1" not in a.remotes and ("F1", f1.incarnation) not in a.fenced
    assert list(a.handshakes) == ["F2", "F3"] and a.remotes["R"].state == "alive"
    # F1's later messages find no session (SES-010); a new Hello from it is a new handshake.
    assert frames(a.handle(f1.send(a, Goodbye("late"))), to="F1") == []
    assert bodies(f1.greet(a), Welcome, to="F1")


def test_a_forgotten_handshake_is_traced_and_its_peer_starts_a_new_record():
    # SM-003: forgetting is no transition; the trace says so with peer-forgotten, and the
    # PeerId's next greeting is the first transition of a new record.   SEC-021, TRC-008
    a = peer(config=Config(max_handshakes=1))
    a.trace_events = True
    f1, f2 = Stub("F1"), Stub("F2")
    f1.greet(a)
    out = f2.greet(a)
    (gone,) = [t for t in of_type(out, ev.TraceEvent) if t.name == "peer-forgotten"]
    assert gone.detail == {"peer": "F1", "incarnation": str(f1.incarnation)}
    out = f1.greet(a)
    moves = [(t.detail["from"], t.detail["event"], t.detail["to"]) for t in of_type(out, ev.TraceEvent)
             if t.name == "transition" and t.detail.get("key") == "F1"]
    assert moves == [("connecting", "hello", "alive")]


def test_a_silent_handshake_in_progress_is_declared_dead_but_not_announced():
    # A made-up Hello goes silent: A declares that incarnation dead and fences it
    # (SEC-021), but tells no other peer: nobody holds anything it could concern,
    # and a flood of such Hellos must not turn into notices at every member.   LIV-040, LIV-004
    a = peer()
    real, fake = Stub("R"), Stub("F")
    real.greet(a)
    a.handle(real.unsequenced(a, Heartbeat()))  # a live session, which would get a notice
    fake.greet(a)
    out: list[ev.Instruction] = []
    start = now = a.now_ms
    while "F" not in {d.peer for d in of_type(out, ev.PeerDeclaredDead)}:
        assert now < start + 60_000, "F was never declared dead"
        now += 100
        out += a.handle(real.unsequenced(a, Heartbeat()))  # R stays alive throughout
        out += tick(a, now)
    assert a.remotes["R"].state == "alive"
    assert ("F", fake.incarnation) in a.fenced
    assert [n.peer for n in bodies(out, PeerDeadNotice)] == []


def test_a_hello_beyond_max_sessions_is_refused_with_resource_exhausted():
    # SEC-021: at most max_sessions unfenced records; one more Hello is refused, no record.
    a = peer(config=Config(max_sessions=2))
    for name in ("S1", "S2"):
        s = Stub(name)
        s.greet(a)
        a.handle(s.unsequenced(a, Heartbeat()))
    late = Stub("S3")
    (err,) = bodies(late.greet(a), ProtocolError, to="S3")
    assert (err.error.code, err.error.requirement) == (ErrorCode.RESOURCE_EXHAUSTED, "SEC-021")
    assert "S3" not in a.remotes


def test_a_welcome_is_answered_at_once():
    # SES-022: the initiator ends the other side's handshake in progress with a Heartbeat at once.
    a = peer()
    b = Stub("B")
    a.handle(ev.Connect("c1", "B", b.address))
    out = a.handle(b.welcome(a))
    assert bodies(out, Heartbeat, to="B")


def test_a_notice_about_the_head_from_another_member_fences_nobody():
    # C (a faulty or older member) tells A that the head H is dead; A still hears H
    # itself and keeps it: one member's broken link must not make every member leave
    # (LIV-030, CLU-034). A notice about anyone else still fences (LIV-004).
    a = peer(config=Config(unannounced=("H",)))
    h, c, b = Stub("H", incarnation=0xE), Stub("C", incarnation=0xC), Stub("B", incarnation=0xB)
    for s in (h, c, b):
        s.greet(a)
    out = a.handle(c.send(a, PeerDeadNotice("H", 0xE, "silence")))
    assert not of_type(out, ev.PeerDeclaredDead) and ("H", 0xE) not in a.fenced
    assert a.remotes["H"].state == "alive" and a.remotes["C"].delivered == 1  # its seq is used up
    out = a.handle(c.send(a, PeerDeadNotice("B", 0xB, "silence")))
    assert [(i.peer, i.incarnation) for i in of_type(out, ev.PeerDeclaredDead)] == [("B", 0xB)]


def test_a_message_not_allowed_outside_the_session_is_traced_as_discarded():
    # S sends a SubmitTask with sequence number 0: dropped, and the trace says why   GEN-009, TRC-013
    a = peer()
    a.trace_events = True
    s = Stub("S")
    s.greet(a)
    out = a.handle(s.unsequenced(a, task(s, 1)))
    assert not of_type(out, ev.RunTask)
    assert [t.detail for t in of_type(out, ev.TraceEvent) if t.name == "discarded"] == [{"reason": "not-in-session"}]
    # A Heartbeat outside the session is handled (its ack, its evidence of life): no discard.
    out = a.handle(s.unsequenced(a, Heartbeat()))
    assert not [t for t in of_type(out, ev.TraceEvent) if t.name == "discarded"]


def test_answer_to_a_fenced_incarnation_goes_to_the_address_kept_with_its_fence():
    # B/1 at one address is fenced; B/2 restarts elsewhere; B/1 talks again   SES-015, SES-020
    a = peer()
    b1, c = Stub("B", incarnation=0xB1), Stub("C", incarnation=0xC)
    b1.greet(a)
    c.greet(a)
    a.handle(c.send(a, PeerDeadNotice("B", 0xB1, "silence")))
    b2 = Stub("B", incarnation=0xB2)
    a.handle(b2.hello(a, address="mem://B-restarted"))
    for i, late in enumerate((b1.send(a, task(b1, 1)), b1.hello(a))):
        out = a.handle(ev.Tick("tick", a.now_ms + 1000 * i), late)  # a second apart: both answered (SES-017)
        answers = [i for i in out if isinstance(i, ev.SendFrame) and isinstance(i.envelope.body, ProtocolError)]
        assert [(i.address, i.envelope.receiver_incarnation, i.envelope.body.error.code) for i in answers] == [
            (b1.address, 0xB1, ErrorCode.DECLARED_DEAD)]
        assert of_type(out, ev.RunTask) == [] and frames(out, Welcome) == []
    assert a.remotes["B"].incarnation == 0xB2 and a.remotes["B"].state == "alive"


def test_hello_from_sender_incarnation_0_is_discarded_unanswered():
    # a Hello whose envelope names sender incarnation 0                       SES-042, ID-002
    a = peer()
    s = Stub("S", incarnation=0)
    out = a.handle(s.hello(a))
    assert frames(out) == []  # no Welcome: it could only be addressed to incarnation 0
    assert not any(r.state == "alive" for r in a.remotes.values())
    assert of_type(a.handle(s.envelope(a, task(s, 1), 1)), ev.RunTask) == []


def test_message_from_sender_incarnation_0_to_an_earlier_incarnation_gets_no_answer():
    # SES-006 would answer DECLARED_DEAD, addressed to incarnation 0           SES-042, SES-018
    a = peer()
    Stub("S").greet(a)  # A knows an address for PeerId S (SES-020)
    s = Stub("S", incarnation=0)
    assert frames(a.handle(s.envelope(a, task(s, 1), 1, receiver_incarnation=0xA0))) == []
    assert a.remotes["S"].state == "alive"  # the live session with S's real incarnation is untouched


def test_undecodable_frame_from_sender_incarnation_0_to_an_earlier_incarnation_gets_no_answer():
    # as above, for a frame whose body does not decode                         SES-042, SES-018
    a = peer()
    Stub("S").greet(a)
    bad = ev.ReceiveMalformed("bad", "S", 0, ErrorInfo(ErrorCode.MALFORMED, "junk"), seq=1,
                              receiver="A", receiver_incarnation=0xA0)
    assert frames(a.handle(bad)) == []


def test_a_refused_request_is_answered_past_the_protocol_error_limit():
    # G uses up O's ProtocolError allowance with 100 messages sent outside their place,
    # then asks for a third status wait beyond SEC-009's bound of 2: the refusal is the
    # only end of that request at G, so it is sent all the same      ERR-008, SEC-009
    from refrpc.core.messages import GetObjectStatus

    o = peer("O", 0x0A, Config(max_status_waits=2))
    o.handle(ev.AddPeer("add", "W", "mem://W"))
    ys = []
    for n in range(3):
        tid = f"O.a.{n + 1}"
        o.handle(ev.Submit("submit", tid, "f", (), (f"{tid}.r0",), executor="W"))
        ys.append(f"{tid}.r0")
    w = Stub("W")
    o.handle(w.welcome(o))
    g = Stub("G")
    g.greet(o)
    welcome = Welcome(0, 1, "mem://G", ("core",), 1 << 20, 250)  # not a sequenced message: GEN-005
    assert len(bodies(o.handle(*[g.send(o, welcome) for _ in range(100)]), ProtocolError)) == 100
    assert bodies(o.handle(g.send(o, welcome)), ProtocolError) == []  # the window is full
    o.handle(g.send(o, GetObjectStatus(ys[0], wait=True)), g.send(o, GetObjectStatus(ys[1], wait=True)))
    env = g.send(o, GetObjectStatus(ys[2], wait=True))
    fresh = [e for e in bodies(o.handle(env), ProtocolError, to="G") if e.related_seq == g.out_seq]
    assert [(e.error.code, e.error.requirement) for e in fresh] == [(ErrorCode.RESOURCE_EXHAUSTED, "SEC-009")]


def test_a_fenced_incarnation_is_answered_declared_dead_at_most_once_a_second():
    # B/b was declared dead; it goes on resending its Hello every 200 ms.
    # It is answered at once, then not again until a second has passed     SES-017
    a = peer()
    b = Stub("B")
    b.greet(a)
    a.handle(ev.PeerFailed("failed", "B", b.incarnation))
    answered = []
    for now in range(0, 2400, 200):
        out = a.handle(ev.Tick("tick", now), b.hello(a))
        answered += [now for m in bodies(out, ProtocolError) if m.error.code is ErrorCode.DECLARED_DEAD]
    assert answered == [0, 1000, 2000]
    # Another fenced incarnation has its own second: B/b's answers do not hold up C/c's.
    c = Stub("C")
    c.greet(a)
    a.handle(ev.PeerFailed("failed", "C", c.incarnation))
    [msg] = bodies(a.handle(c.hello(a)), ProtocolError)
    assert msg.error.code is ErrorCode.DECLARED_DEAD
