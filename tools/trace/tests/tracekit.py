"""Hand-written traces: peers that record what they send, receive and decide.

A :class:`Net` is a little world of peers with one shared clock. ``net.msg(a,
b, body)`` records the send at ``a`` and the receive at ``b`` as a real run
would (sequence numbers per session, the envelope's exact bytes in both
records); ``a.event(...)`` / ``a.transition(...)`` record local events.
``net.write(dir)`` writes one ``.rrtrace`` file per peer incarnation, named as
TRC-011 recommends. Scenarios used by several tests are at the bottom.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refrpc.codec import TraceKind, TraceRecord, encode, trace_file_name, write_trace
from refrpc.core import messages as m

#: Messages sent outside the session (seq 0, SES-007).
_UNSEQUENCED = (m.Hello, m.Welcome, m.Heartbeat, m.FetchRequest, m.FetchChunk, m.ProtocolError)


class Peer:
    def __init__(self, net: "Net", name: str, incarnation: int) -> None:
        self.net = net
        self.name = name
        self.inc = incarnation
        self.address = f"ipc:///tmp/{name}"
        self.records: list[TraceRecord] = []
        self.next_seq: dict[tuple[str, int], int] = {}
        self.protocol = (m.PROTOCOL_MAJOR, m.PROTOCOL_MINOR)
        self._rec(TraceKind.HEADER, protocol_major=self.protocol[0], protocol_minor=self.protocol[1],
                  implementation="tracekit/1")

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.inc)

    def _rec(self, kind: TraceKind, **fields: Any) -> TraceRecord:
        self.net.clock += 1_000_000  # 1 ms per record
        rec = TraceRecord(self.name, self.inc, len(self.records), self.net.clock, kind, **fields)
        self.records.append(rec)
        return rec

    def envelope(self, to: "Peer", body: m.Message, seq: int | None = None, hello: bool = False) -> m.Envelope:
        if seq is None:
            if isinstance(body, _UNSEQUENCED):
                seq = 0
            else:
                key = to.key
                seq = self.next_seq.get(key, 1)
                self.next_seq[key] = seq + 1
        rinc = 0 if isinstance(body, m.Hello) else to.inc
        return m.Envelope(self.name, self.inc, to.name, rinc, seq, 0, body)

    def send_env(self, env: m.Envelope) -> bytes:
        frame0 = bytes(encode(env)[0])
        self._rec(TraceKind.SEND, remote_peer=env.receiver, remote_incarnation=env.receiver_incarnation,
                  seq=env.seq, envelope=frame0)
        return frame0

    def recv_env(self, env: m.Envelope, frame0: bytes) -> None:
        self._rec(TraceKind.RECV, remote_peer=env.sender, remote_incarnation=env.sender_incarnation,
                  seq=env.seq, envelope=frame0)

    def recv_raw(self, frm: "Peer", frame0: bytes) -> TraceRecord:
        return self._rec(TraceKind.RECV, remote_peer=frm.name, remote_incarnation=frm.inc, envelope=frame0)

    def event(self, name: str, object_id: str = "", task_id: str = "", **detail: Any) -> TraceRecord:
        return self._rec(TraceKind.EVENT, event_name=name, object_id=object_id, task_id=task_id,
                         detail=json.dumps(detail) if detail else "")

    def transition(self, table: str, key: str, frm: str, event: str, to: str, requirement: str = "") -> None:
        obj = key if table.endswith("object") else ""
        task = key if table.endswith("task") else ""
        self.event("transition", obj, task, table=table, key=key, **{"from": frm, "event": event, "to": to,
                                                                     "requirement": requirement})

    def hold(self, oid: str, counter: str, delta: int, value: int) -> None:
        self.event("hold", oid, counter=counter, delta=delta, value=value)

    def declare_dead(self, other: "Peer", source: str = "detected") -> None:
        # Incarnations in details are decimal text (a UInt64 does not fit a JSON number), as pyimpl writes them.
        self.event("peer-declared-dead", peer=other.name, incarnation=str(other.inc), reason="test", source=source)
        self.transition("peer", other.name, "alive", "silence", "dead", "LIV-003")

    def ref(self, oid: str, fid: str = "") -> m.RefDescriptor:
        """A descriptor of an object this peer owns."""
        return m.RefDescriptor(oid, self.name, self.inc, self.address, -1, fid)


class Net:
    def __init__(self) -> None:
        self.clock = 5_000_000_000
        self.peers: list[Peer] = []

    def peer(self, name: str, incarnation: int | None = None) -> Peer:
        p = Peer(self, name, incarnation if incarnation is not None else 0x1000 + len(self.peers))
        self.peers.append(p)
        return p

    def msg(self, a: Peer, b: Peer, body: m.Message, *, deliver: bool = True, seq: int | None = None) -> bytes:
        env = a.envelope(b, body, seq)
        frame0 = a.send_env(env)
        if deliver:
            b.recv_env(env, frame0)
        return frame0

    def connect(self, a: Peer, b: Peer) -> None:
        hello = m.Hello(0, 1, a.address, ("core", "borrowing"), 1 << 26, 250)
        self.msg(a, b, hello)
        b.transition("peer", a.name, "connecting", "hello", "alive", "HS-002")
        self.msg(b, a, m.Welcome(0, 1, b.address, ("core", "borrowing"), 1 << 26, 250))
        a.transition("peer", b.name, "connecting", "welcome", "alive", "HS-002")

    def write(self, directory: Path, *, only: tuple[Peer, ...] | None = None) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {}
        for p in self.peers:
            if only is not None and p not in only:
                continue
            path = directory / trace_file_name(p.name, p.inc)
            with path.open("wb") as f:
                write_trace(f, p.records)
            paths[p.name] = path
        return paths


# ---------------------------------------------------------------- scenarios
def task_round_trip(net: Net, d: Peer, w: Peer, task: str, function: str = "mod:f",
                    args: tuple[m.Arg, ...] = (), keep: tuple[str, ...] = ()) -> str:
    """d submits ``task`` to w, w runs it and replies inline; returns the return id."""
    rid = f"{task}.r0"
    net.msg(d, w, m.SubmitTask(task, function, args, (rid,)))
    w.transition("executor-task", task, "resolving", "args_ready", "running", "TASK-002")
    value = m.Value(m.Encoding.RAW, b"result")
    net.msg(w, d, m.TaskReply(task, 1, (m.ReturnValue(rid, m.ReturnKind.INLINE, value),)))
    w.transition("executor-task", task, "running", "finished", "replied", "TASK-005")
    d.transition("owner-task", task, "submitted", "reply", "finished", "TASK-005")
    d.transition("owner-object", rid, "pending", "task_succeeded", "ready", "TASK-005")
    return rid


def borrowing_run(*, release: bool = True, free_early: bool = False, use_after: bool = False,
                  double_release: bool = False) -> tuple[Net, Peer, Peer]:
    """The driver puts X and passes it to a task on w that keeps it (BOR-007); w later drops it.

    User program modelled::

        x = refrpc.put(big)                 # driver owns X
        keeper.keep.remote(shared(x))       # the task keeps X: w registers itself
        del x                               # the driver drops its handle
        # ... w drops X later and releases its grant (BOR-005)
    """
    net = Net()
    d, w = net.peer("driver", 0xD1), net.peer("worker-1", 0xA1)
    net.connect(d, w)
    rid = task_round_trip(net, d, w, "driver.d1.1")
    d.transition("owner-object", rid, "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    x = "driver.d1.2"
    d.transition("owner-object", x, "ready", "put", "ready", "OWN-001")
    d.hold(x, "localRefs", 1, 1)
    task = "driver.d1.3"
    net.msg(d, w, m.SubmitTask(task, "mod:keep", (m.Arg(m.ArgKind.SHARED, ref=d.ref(x)),), (f"{task}.r0",)))
    d.hold(x, "submittedTaskRefs", 1, 1)
    w.hold(x, "taskHolds", 1, 1)
    w.transition("executor-task", task, "resolving", "args_ready", "running", "TASK-002")
    w.hold(x, "localRefs", 1, 1)
    w.transition("executor-task", task, "running", "finished_retained", "registering", "BOR-007")
    net.msg(w, d, m.RegisterBorrower(x, w.name, w.inc, w.address, "worker-1.a1.1"))
    d.event("grant-added", x, borrower=w.name, borrowerIncarnation=str(w.inc), forwardId="worker-1.a1.1",
            requester=w.name, reason="register")
    net.msg(d, w, m.BorrowerRegistered(x, "worker-1.a1.1"))
    w.transition("executor-task", task, "registering", "registered", "replied", "BOR-007")
    net.msg(w, d, m.TaskReply(task, 1, (m.ReturnValue(f"{task}.r0", m.ReturnKind.INLINE,
                                                      m.Value(m.Encoding.RAW, b"ok")),),
                              retained=(d.ref(x, "worker-1.a1.1"),)))
    w.hold(x, "taskHolds", -1, 0)
    d.transition("owner-task", task, "submitted", "reply", "finished", "TASK-005")
    d.transition("owner-object", f"{task}.r0", "pending", "task_succeeded", "ready", "TASK-005")
    d.hold(x, "submittedTaskRefs", -1, 0)
    d.hold(x, "localRefs", -1, 0)  # the program drops x; w's grant keeps it
    if free_early:
        d.transition("owner-object", x, "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    w.hold(x, "localRefs", -1, 0)
    w.transition("borrower-object", x, "unresolved", "holds_zero", "deleted", "BOR-005")
    if release:
        net.msg(w, d, m.ReleaseBorrows((m.BorrowRelease(x, ("worker-1.a1.1",)),)))
        d.event("grant-removed", x, borrower=w.name, forwardId="worker-1.a1.1", reason="released")
        if double_release:
            net.msg(w, d, m.ReleaseBorrows((m.BorrowRelease(x, ("worker-1.a1.1",)),)))
        if not free_early:
            d.transition("owner-object", x, "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    net.msg(w, d, m.Heartbeat())  # worker-1 carries on (LIV-001)
    if use_after:
        net.msg(w, d, m.GetObjectStatus(x))
        net.msg(d, w, m.ObjectStatus(x, m.ObjectState.FREED))
    net.msg(d, w, m.Goodbye("shutdown"))
    w.declare_dead(d, source="goodbye")
    return net, d, w


def churn_run(tasks: int, *, heartbeat_every: int = 50) -> Net:
    """A long, healthy run: the driver submits ``tasks`` tasks one after another and drops each result.

    User program modelled::

        for i in range(tasks):
            del f.remote()        # each result is made, delivered and reclaimed
    """
    net = Net()
    d, w = net.peer("driver", 0xD1), net.peer("worker-1", 0xA1)
    net.connect(d, w)
    value = m.Value(m.Encoding.RAW, b"result")
    for i in range(1, tasks + 1):
        task = f"driver.d1.{i}"
        rid = f"{task}.r0"
        net.msg(d, w, m.SubmitTask(task, "mod:f", (), (rid,)))
        d.hold(rid, "localRefs", 1, 1)
        w.transition("executor-task", task, "resolving", "args_ready", "running", "TASK-002")
        net.msg(w, d, m.TaskReply(task, 1, (m.ReturnValue(rid, m.ReturnKind.INLINE, value),)))
        d.transition("owner-object", rid, "pending", "task_succeeded", "ready", "TASK-005")
        d.hold(rid, "localRefs", -1, 0)
        d.transition("owner-object", rid, "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
        if i % heartbeat_every == 0:
            net.msg(d, w, m.Heartbeat())
            net.msg(w, d, m.Heartbeat())
    return net
