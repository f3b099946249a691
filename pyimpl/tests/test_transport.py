"""The transports move whole multipart messages, in order, without blocking.

Real sockets on 127.0.0.1 and ``ipc://`` paths under pytest's ``tmp_path``;
every transport a test makes is closed by the ``make`` fixture, failure or not.
Nothing sleeps to wait for an event: each wait polls for its condition with a
deadline. Messages to a DEALER that is still connecting wait in the sender's
backlog until the sender polls, so waits poll both ends (:func:`exchange`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import zmq

from refrpc.codec import decode, encode
from refrpc.core import messages as m
from refrpc.transport import (
    ZERO_COPY_THRESHOLD,
    MemoryNetwork,
    MemoryTransport,
    Transport,
    ZmqTransport,
)

pytestmark = pytest.mark.timeout(30)

MiB = 1024 * 1024
#: How long any wait for a message may take before the test fails.
BOUND_S = 10.0

Make = Callable[..., ZmqTransport]


@pytest.fixture
def make() -> Iterator[Make]:
    """A factory of transports that are all closed when the test ends."""
    made: list[ZmqTransport] = []

    def factory(bind: str = "tcp://127.0.0.1:0", **kwargs: Any) -> ZmqTransport:
        transport = ZmqTransport(bind, **kwargs)
        made.append(transport)
        return transport

    yield factory
    for transport in made:
        transport.close()


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """Makes bind endpoints of one kind: ``endpoint("b")`` -> tcp or ipc endpoint."""
    if request.param == "tcp":
        return lambda name: "tcp://127.0.0.1:0"
    return lambda name: f"ipc://{tmp_path / name}"


def as_bytes(message: list[Any]) -> list[bytes]:
    return [bytes(frame) for frame in message]


def receive(receiver: ZmqTransport, *senders: ZmqTransport, bound_s: float = BOUND_S) -> list[Any]:
    """The next message at ``receiver``, polling ``senders`` so their backlogs flush."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        for sender in senders:
            sender.poll(0)
        message = receiver.recv(10)
        if message is not None:
            return message
    pytest.fail(f"no message at {receiver.address} within {bound_s} s")


def exchange(sender: ZmqTransport, receiver: ZmqTransport, frames: list[Any]) -> list[bytes]:
    sender.send(receiver.address, frames)
    return as_bytes(receive(receiver, sender))


def wait_until(condition: Callable[[], bool], *polled: ZmqTransport, bound_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached in time")
        for transport in polled:
            transport.poll(5)


# -- addresses and sockets ------------------------------------------------------


def test_tcp_port_zero_is_resolved(make: Make) -> None:
    # A peer binds port 0 and must announce the real port (ZMQ-001, ZMQ-002).
    b = make("tcp://127.0.0.1:0")
    host, _, port = b.address.rpartition(":")
    assert host == "tcp://127.0.0.1" and int(port) > 0
    assert b.router.getsockopt(zmq.LAST_ENDPOINT).decode() == b.address


def test_ipc_binds_over_a_stale_socket_file(make: Make, tmp_path: Path) -> None:
    # A crashed earlier run left its socket file behind (ZMQ-012).
    path = tmp_path / "stale"
    path.write_bytes(b"")
    a, b = make(), make(f"ipc://{path}")
    assert b.address == f"ipc://{path}"
    assert exchange(a, b, [b"hello"]) == [b"hello"]


def test_router_options(make: Make) -> None:
    b = make(max_frame_bytes=3 * MiB)
    assert b.router.getsockopt(zmq.MAXMSGSIZE) == 3 * MiB  # ZMQ-007
    assert b.router.getsockopt(zmq.RCVHWM) >= 10_000  # ZMQ-008
    assert b.router.getsockopt(zmq.LINGER) == 0


def test_dealer_routing_id_is_the_identity_given(make: Make) -> None:
    # ZMQ-013: a raw ROUTER shows the routing id our DEALER sets.
    a = make(identity="a/7")
    raw = a.context.socket(zmq.ROUTER)
    try:
        raw.bind("tcp://127.0.0.1:0")
        address = raw.getsockopt(zmq.LAST_ENDPOINT).decode()
        a.send(address, [b"x"])
        poller = zmq.Poller()
        poller.register(raw, zmq.POLLIN)
        wait_until(lambda: bool(poller.poll(0)), a)
        assert raw.recv_multipart() == [b"a/7", b"x"]
    finally:
        raw.close(linger=0)


# -- delivery ---------------------------------------------------------------------


def test_round_trip_of_multipart_messages(make: Make, endpoint: Callable[[str], str]) -> None:
    a, b = make(endpoint("a")), make(endpoint("b"))
    message = [b"frame 0", b"", bytearray(b"x" * 1000), memoryview(b"tail")]
    # ZMQ-004: the ROUTER's routing-id frame does not reach the caller.
    assert exchange(a, b, message) == [b"frame 0", b"", b"x" * 1000, b"tail"]
    assert exchange(b, a, [b"back"]) == [b"back"]


def test_messages_through_one_dealer_arrive_in_order(make: Make, endpoint: Callable[[str], str]) -> None:
    # The first ones wait in the backlog while the DEALER connects; order holds anyway.
    # As many as the backlog holds: however slowly the DEALER connects (a loaded
    # machine), none is dropped (more would be, ZMQ-009).
    a, b = make(endpoint("a")), make(endpoint("b"))
    count = a.backlog_limit
    for i in range(count):
        a.send(b.address, [b"seq", i.to_bytes(4, "big")])
    got = [int.from_bytes(as_bytes(receive(b, a))[1], "big") for _ in range(count)]
    assert got == list(range(count))
    assert a.dropped == 0


def test_both_directions_with_the_codec(make: Make, endpoint: Callable[[str], str]) -> None:
    # Peer a sends a 1 MiB chunk to b through its DEALER; b answers through its own
    # DEALER to a's ROUTER, never through its ROUTER (ZMQ-003).
    a, b = make(endpoint("a"), identity="a/1"), make(endpoint("b"), identity="b/2")
    chunk = m.FetchChunk("a.1.5", 9, 0, MiB, True, data=bytes(range(256)) * 4096)
    to_b = m.Envelope("a", 1, "b", 2, 1, 0, chunk)
    to_a = m.Envelope("b", 2, "a", 1, 1, 1, m.Goodbye("done"))

    frames = encode(to_b)
    assert len(frames) == 2  # the chunk travels out of band (ZMQ-005, ZMQ-006)
    a.send(b.address, frames)
    assert decode(receive(b, a)) == to_b
    b.send(a.address, encode(to_a))
    assert decode(receive(a, b)) == to_a


# -- zero copy --------------------------------------------------------------------


def test_large_frames_are_sent_from_the_callers_buffer(make: Make, endpoint: Callable[[str], str]) -> None:
    # b reads nothing yet and its ROUTER queues one message, so ZeroMQ cannot be
    # done with 16 sends of 8 MiB (128 MiB; what b and the kernel absorb is a few
    # messages): the buffer must still be pinned, then released once b reads all.
    a, b = make(endpoint("a")), make(endpoint("b"), rcvhwm=1)
    assert exchange(a, b, [b"connected"]) == [b"connected"]
    payload = bytearray(bytes(range(256)) * (8 * MiB // 256))
    for i in range(16):
        a.send(b.address, [b"chunk", payload])
    assert a.backlog(b.address) == 0 and a.pending_sends > 0
    with pytest.raises(BufferError):  # pinned: cannot be resized under ZeroMQ (ZMQ-006)
        payload.extend(b"!")

    for _ in range(16):
        message = receive(b, a)
        assert len(message) == 2 and message[0] == b"chunk"
        assert isinstance(message[1], zmq.Frame)  # received without a copy too
        assert message[1].buffer == payload
    wait_until(lambda: a.pending_sends == 0, a)
    payload.extend(b"!")  # released: ZeroMQ is done with it


def test_small_frames_are_copied_when_sent(make: Make) -> None:
    # Below the threshold the caller may reuse its buffer as soon as send returns.
    a, b = make(), make()
    assert exchange(a, b, [b"connected"]) == [b"connected"]
    small = bytearray(b"a" * (ZERO_COPY_THRESHOLD - 1))
    a.send(b.address, [b"small", small])
    small[:] = b"b" * len(small)
    assert a.pending_sends == 0
    assert as_bytes(receive(b, a)) == [b"small", b"a" * (ZERO_COPY_THRESHOLD - 1)]


# -- limits and failures ----------------------------------------------------------


def test_oversized_message_is_dropped_and_the_connection_recovers(make: Make, endpoint: Callable[[str], str]) -> None:
    # ZMQ-007: b's ROUTER refuses a frame over its maxFrameBytes; a's DEALER
    # reconnects and later messages get through (a resends, as the session layer would).
    a, b = make(endpoint("a")), make(endpoint("b"), max_frame_bytes=1 * MiB)
    assert exchange(a, b, [b"at limit", bytes(1 * MiB)]) == [b"at limit", bytes(1 * MiB)]
    a.send(b.address, [b"over limit", bytes(1 * MiB + 1)])

    deadline = time.monotonic() + BOUND_S
    received: list[list[bytes]] = []
    probe = 0
    while not received and time.monotonic() < deadline:
        probe += 1
        a.send(b.address, [b"probe", probe.to_bytes(4, "big")])
        a.poll(20)
        while (message := b.recv(10)) is not None:
            received.append(as_bytes(message))
    assert received, "the connection did not recover"
    assert all(frames[0] == b"probe" for frames in received)


def test_unreachable_peer_does_not_block_send(make: Make, tmp_path: Path) -> None:
    # Nobody is bound there: ZeroMQ takes nothing (ZMQ_IMMEDIATE), the backlog
    # fills, and the rest is dropped at once (ZMQ-009).
    a = make(backlog_limit=100)
    nowhere = f"ipc://{tmp_path / 'nobody'}"
    started = time.monotonic()
    for i in range(5000):
        a.send(nowhere, [b"x", i.to_bytes(4, "big")])
    a.flush()
    assert a.poll(50) is False
    assert time.monotonic() - started < 5
    assert a.backlog(nowhere) == 100 and a.dropped == 4900


def test_closed_peer_does_not_block_send_and_a_new_one_is_reached(make: Make, tmp_path: Path) -> None:
    # b dies; a keeps sending without blocking. A new incarnation binds the same
    # address; a fences the old one (forget, ZMQ-010) and reaches the new one.
    address = f"ipc://{tmp_path / 'b'}"
    a, b = make(), make(address)
    assert exchange(a, b, [b"hello"]) == [b"hello"]
    b.close()

    started = time.monotonic()
    for i in range(30_000):
        a.send(address, [b"to the dead", i.to_bytes(4, "big")])
    assert time.monotonic() - started < 10

    b2 = make(address)
    a.forget(address)
    assert address not in a.connected
    assert exchange(a, b2, [b"new incarnation"]) == [b"new incarnation"]
    assert address in a.connected


def test_forget_then_send_reconnects(make: Make, endpoint: Callable[[str], str]) -> None:
    a, b = make(endpoint("a")), make(endpoint("b"))
    assert exchange(a, b, [b"one"]) == [b"one"]
    a.forget(b.address)
    a.forget(b.address)  # forgetting twice is harmless
    assert exchange(a, b, [b"two"]) == [b"two"]


def test_an_address_zeromq_cannot_connect_to_is_refused(make: Make) -> None:
    # Addresses come from peers' Hellos (ZMQ-002): a bad one must not leave a DEALER.
    a = make()
    with pytest.raises(ValueError):
        a.send("tcp://no-port-here", [b"x"])
    assert a.connected == ()


def test_forget_drops_the_backlog(make: Make, tmp_path: Path) -> None:
    a = make()
    nowhere = f"ipc://{tmp_path / 'nobody'}"
    for _ in range(3):
        a.send(nowhere, [b"x"])
    assert a.backlog(nowhere) == 3
    a.forget(nowhere)
    assert a.backlog(nowhere) == 0 and a.dropped == 3


# -- waiting and closing ----------------------------------------------------------


def test_recv_times_out_with_none(make: Make) -> None:
    b = make()
    started = time.monotonic()
    assert b.recv(50) is None
    assert 0.04 <= time.monotonic() - started < 5


def test_poll_wakes_for_the_runtimes_own_socket(make: Make) -> None:
    a = make()
    wake_rx = a.context.socket(zmq.PAIR)
    wake_tx = a.context.socket(zmq.PAIR)
    try:
        wake_rx.bind("inproc://wake")
        wake_tx.connect("inproc://wake")
        wake_tx.send(b"wake")
        assert a.poll(BOUND_S * 1000, also=[wake_rx]) is True
        assert a.recv(0) is None  # it was the wakeup socket, not the ROUTER
        assert wake_rx.recv() == b"wake"
    finally:
        wake_rx.close(linger=0)
        wake_tx.close(linger=0)


def test_close_is_idempotent_and_final(make: Make) -> None:
    a, b = make(), make()
    a.send(b.address, [b"x"])
    a.close()
    a.close()
    assert a.closed and a.connected == ()
    with pytest.raises(RuntimeError):
        a.send(b.address, [b"x"])
    with pytest.raises(RuntimeError):
        a.recv(0)


def test_a_foreign_context_is_left_running(make: Make) -> None:
    context = zmq.Context()
    try:
        a = make(context=context)
        a.close()
        assert not context.closed
    finally:
        context.term()


# -- the in-memory transport ------------------------------------------------------


def test_memory_transport_delivers_copies_in_order() -> None:
    net = MemoryNetwork()
    a, b = net.transport(), net.transport("mem://b")
    buf = bytearray(b"before")
    a.send("mem://b", [b"0", buf])
    buf[:] = b"after!"
    a.send("mem://b", [b"1"])
    assert b.recv(0) == [b"0", b"before"]
    assert b.recv(0) == [b"1"]
    assert b.recv(0) is None and b.poll(0) is False
    assert a.address in net.addresses


def test_memory_transport_loses_what_cannot_be_delivered() -> None:
    net = MemoryNetwork()
    a, b = net.transport(), net.transport(max_frame_bytes=10)
    a.send("mem://nobody", [b"x"])
    a.send(b.address, [b"x" * 11])
    assert a.dropped == 1 and b.oversized == 1 and b.recv(0) is None
    b.close()
    a.send(b.address, [b"x"])
    assert a.dropped == 2
    with pytest.raises(ValueError):
        net.transport(a.address)


def test_both_transports_satisfy_the_protocol(make: Make) -> None:
    assert isinstance(make(), Transport)
    assert isinstance(MemoryNetwork().transport(), Transport)
    assert isinstance(MemoryNetwork().transport(), MemoryTransport)
