"""Relays in the core (LOC-020..LOC-023, FET-040): whom an owner lists, and when it stops.

A real owner core answers scripted fetchers (stubs); a real fetcher core asks a
scripted owner. Each test starts with a comment showing what it models.
"""

from __future__ import annotations

from corekit import Stub, bodies, checked_peer, of_type
from refrpc.core import events as ev
from refrpc.core.messages import (
    AddLocation,
    Arg,
    ArgKind,
    Encoding,
    GetObjectStatus,
    ObjectState,
    ObjectStatus,
    RemoveLocation,
    SubmitTask,
    Value,
)
from refrpc.core.state import Config

X = "O.a.1"


def owner(config: Config | None = None):
    """O puts X (500 kB, stored in its own store) and has sessions with four fetchers."""
    o = checked_peer("O", 0x0A, config)
    stubs = [Stub(n) for n in ("A", "B", "C", "D")]
    for s in stubs:
        s.greet(o)
    o.handle(ev.Put("put", X, Value(Encoding.RAW, b""), True, 500_000))
    return o, stubs


def ask(o, s: Stub, relay: bool = True) -> ObjectStatus:
    [st] = bodies(o.handle(s.send(o, GetObjectStatus(X, True, relay))), ObjectStatus)
    return st


def test_fetchers_are_listed_to_those_who_ask_after_them_as_a_tree_of_fan_out_two():
    # A, B, C, D fetch X at once, each offering to relay: A serves B and C, B serves D
    o, (a, b, c, d) = owner()                                              # LOC-020, LOC-021
    first = ask(o, a)
    assert first.state is ObjectState.READY and first.locations == ("O",) and first.relays == ()
    second = ask(o, b)
    assert second.relays == ("A",) and second.relay_addresses == (a.address,)
    third = ask(o, c)
    assert third.relays == ("A", "B") and third.relay_addresses == (a.address, b.address)
    assert third.locations == ("O",)  # a relay is never a location            LOC-022
    assert ask(o, d).relays == ("B", "C", "A")  # A has two already: B comes first, A last
    again = ask(o, a)  # A asks again (OBJ-013): never listed to itself; it is the newest relay now
    assert again.relays == ("B", "C", "D")  # B serves D only so far
    assert list(o.owned[X].relays) == ["B", "C", "D", "A"]


def test_with_fan_out_one_the_fetchers_form_a_chain():
    # relay_fanout = 1: each asker gets the one before it first               LOC-021
    o, (a, b, c, d) = owner(Config(relay_fanout=1))
    ask(o, a)
    assert ask(o, b).relays == ("A",)
    assert ask(o, c).relays == ("B", "A")
    assert ask(o, d).relays == ("C", "B", "A")


def test_relays_listed_are_bounded_and_the_oldest_forgotten_first():
    # nine fetchers; the owner lists 2 and remembers 3                        LOC-021
    o = checked_peer("O", 0x0A, Config(relays_listed=2, relays_kept=3))
    stubs = [Stub(f"F{i}") for i in range(9)]
    for s in stubs:
        s.greet(o)
    o.handle(ev.Put("put", X, Value(Encoding.RAW, b""), True, 500_000))
    for s in stubs[:-1]:
        ask(o, s)
    assert ask(o, stubs[-1]).relays == ("F5", "F6")  # the oldest under the fan-out first
    assert list(o.owned[X].relays) == ["F6", "F7", "F8"]


def test_a_relay_becomes_a_location_stops_or_dies_and_is_listed_no_more():
    # A completes its copy (AddLocation), B gives up (RemoveLocation), C dies    LOC-022, LOC-023
    o, (a, b, c, d) = owner()
    for s in (a, b, c):
        ask(o, s)
    o.handle(a.send(o, AddLocation(X, 500_000)))
    st = ask(o, d)
    assert st.locations == ("O", "A") and "A" not in st.relays
    o.handle(b.send(o, RemoveLocation(X)))
    o.handle(ev.PeerFailed("dead", "C", c.incarnation, "test: C is gone"))
    st = ask(o, d, relay=False)
    assert st.relays == () and st.locations == ("O", "A")
    assert o.owned[X].state == "ready"  # RemoveLocation from a relay loses nothing


def test_no_relay_without_the_offer_for_an_inline_value_or_when_listing_is_off():
    # A asks without relay; X2 is inline; a cluster with relays_listed = 0    LOC-020
    o, (a, b, c, d) = owner()
    ask(o, a, relay=False)
    assert ask(o, b).relays == ()
    o.handle(ev.Put("put", "O.a.2", Value(Encoding.RAW, b"small"), False, 5))
    for s in (c, d):
        [st] = bodies(o.handle(s.send(o, GetObjectStatus("O.a.2", True, True))), ObjectStatus)
        assert st.value is not None and st.relays == ()
    assert not o.owned["O.a.2"].relays
    off, (a2, b2, _, _) = owner(Config(relays_listed=0))
    ask(off, a2)
    assert ask(off, b2).relays == () and not off.owned[X].relays


def test_a_lost_value_forgets_its_relays():
    # X's only copy (O's own) is lost while A relays it: X fails, A is no relay LOC-022, LOC-004
    o, (a, b, c, d) = owner()
    ask(o, a)
    o.handle(ev.CopyLost("lost", X))
    assert o.owned[X].state == "failed" and not o.owned[X].relays


def test_a_fetcher_offers_to_relay_tries_relays_first_and_withdraws_when_its_fetch_fails():
    # G runs f(X by value); X is owned by O and stored at P, with R relaying     LOC-020, FET-040, LOC-023
    g = checked_peer("G", 0x61)
    o = Stub("O")
    o.greet(g)
    x = o.descriptor(o.oid(1))
    out = g.handle(o.send(g, SubmitTask(o.oid("t"), "f", (Arg(ArgKind.REF, ref=x),), (o.oid("t.r0"),))))
    assert bodies(out, GetObjectStatus) == [GetObjectStatus(x.object_id, True, relay=True)]
    status = ObjectStatus(x.object_id, ObjectState.READY, 500_000, ("P",), ("mem://P",), relays=("R",),
                          relay_addresses=("mem://R",))
    out = g.handle(o.send(g, status))
    [run] = of_type(out, ev.RunTask)
    [arg] = run.args
    assert arg.locations == (("R", "mem://R"), ("P", "mem://P"))  # the relay first
    out = g.handle(ev.FetchFailed("fetch-failed", x.object_id, run.task_id, run.attempt))
    sent = bodies(out, to="O")
    assert RemoveLocation(x.object_id) in sent  # no longer a relay
    assert sent.index(RemoveLocation(x.object_id)) < sent.index(GetObjectStatus(x.object_id, True, relay=True))


def test_the_owners_trace_tells_each_relay_added_and_why_it_was_removed():
    # the relay set's changes as trace events: A, B, C added; A copies, B gives up,
    # C dies; D added then X is freed                                       LOC-020..LOC-023, TRC-007
    o, (a, b, c, d) = owner()
    o.trace_events = True
    out = []
    for s in (a, b, c):
        out += o.handle(s.send(o, GetObjectStatus(X, True, True)))
    out += o.handle(a.send(o, AddLocation(X, 500_000)))
    out += o.handle(b.send(o, RemoveLocation(X)))
    out += o.handle(ev.PeerFailed("dead", "C", c.incarnation, "test: C is gone"))
    out += o.handle(d.send(o, GetObjectStatus(X, True, True)))
    out += o.handle(ev.DropRef("drop", X))
    relays = [(t.name, t.detail["peer"], t.detail.get("reason", "")) for t in of_type(out, ev.TraceEvent)
              if t.name.startswith("relay-")]
    assert relays == [
        ("relay-added", "A", ""), ("relay-added", "B", ""), ("relay-added", "C", ""),
        ("relay-removed", "A", "copy"), ("relay-removed", "B", "gave-up"), ("relay-removed", "C", "died"),
        ("relay-added", "D", ""), ("relay-removed", "D", "freed"),
    ]
