"""Replaying a merged run: objects, grants, holds and deaths, step by step.

:class:`Replay` is fed the records of a run in merged order (:class:`Merger`)
and keeps, for every object, what the messages and events say about it: its
owner and state, the grants the owner recorded, the peers holding it and why,
its copies, and the deaths that concern it. It judges each record as it goes,
with the protocol's own rules: transitions against the tables of
:mod:`refrpc.core.tables` (the same data the core runs), and the rules of the
reference-count effect table (ownership.md section 5) that a trace can show
broken. What can only be judged at the end (leaks) is in :mod:`._check`.

Memory stays bounded by the objects alive at one time: an object whose entry is
deleted and about which nothing is left to follow moves to a bounded graveyard,
kept only to explain a later use of it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from refrpc.codec import TraceKind
from refrpc.core import messages as m
from refrpc.core.tables import ALL_TABLES

from ._findings import Evidence, Finding, Kind
from ._merge import Item, Status
from ._messages import arg_object_ids, descriptors, program_objects
from ._source import Run
from ._state import Grant, Obj, PeerKey, Step, Task

#: Objects kept after they are forgotten, to explain a later use of them.
GRAVEYARD = 10_000
#: Non-terminal states remembered per (peer, table, key); the oldest go first.
STATES_KEPT = 200_000
#: Terminal states: a key in one of these is forgotten (tables.py).
_TERMINAL = {"deleted", "forgotten", "dropped", "dead"}
#: SM-002: the (state, event) a table's first recorded transition of an entry may
#: start with (event None: any); creation itself is not a transition, except a put.
_FIRST = {
    "owner-object": {("pending", None), ("ready", "put")},
    "borrower-object": {("unresolved", None)},
    "owner-task": {("submitted", None)},
    "executor-task": {("resolving", None)},
    "peer": {("connecting", None)},
}
_RECLAIMED = ("released", "deleted")


def _incarnation(value: object) -> int:
    """An incarnation from a detail field: a number, or its decimal text (the
    registry's form: a UInt64 does not fit a JSON number), or ``0x``-prefixed hex."""
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text[2:], 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            return 0
    return 0


class Replay:
    """The state of a run as of the last record fed (see the module doc).

    Args:
        run: The run (for labels and diagnostics).
        track: Objects whose life lines to keep (``None``: none).
        on_step: Called with every life-line step of every object, as it
            happens (nothing is kept for it).
    """

    def __init__(self, run: Run, *, track: Callable[[str], bool] | None = None,
                 on_step: Callable[[Obj, Step], None] | None = None) -> None:
        self.run = run
        self.diag = run.diag
        self.track = track
        self.on_step = on_step
        self.objects: dict[str, Obj] = {}
        self.graveyard: OrderedDict[str, Obj] = OrderedDict()
        self.lifelines: dict[str, list[Step]] = {}
        #: Tasks not yet answered to their submitter.
        self.tasks: dict[str, Task] = {}
        #: Arguments of tasks being executed: (executor, submitter, task, attempt) -> objects.
        self.executing: dict[tuple[PeerKey, PeerKey, str, int], tuple[str, ...]] = {}
        #: Registrations sent and not answered: (requester, object, forward id) -> borrower.
        self.reg_sent: dict[tuple[PeerKey, str, str], PeerKey] = {}
        #: Current state per (peer, table, key), from transition events.
        self.states: OrderedDict[tuple[PeerKey, str, str], tuple[str, Evidence]] = OrderedDict()
        #: Whether an entry was ever dropped from ``states`` for room: from then on a
        #: transition of an entry not in it may be of one seen long ago (no SM-002 check).
        self.states_forgotten = False
        #: observer -> {dead peer incarnation -> the record of the declaration}.
        self.fenced: dict[PeerKey, dict[PeerKey, Evidence]] = {}
        #: Every incarnation declared dead by anyone, with the first declaration.
        self.dead: dict[PeerKey, Evidence] = {}
        self.stopped: dict[PeerKey, Evidence] = {}
        self.left: dict[PeerKey, Evidence] = {}
        #: ConfirmBorrow the owner owes after a forwarder's death (BOR-010).
        self.confirm_due: dict[tuple[PeerKey, str, str], Evidence] = {}
        #: The last GetObjectStatus each peer sent about each object.
        self.asks: dict[tuple[PeerKey, str], Evidence] = {}
        #: The last message each peer sent to each other peer incarnation.
        self.last_send: dict[tuple[PeerKey, PeerKey], Evidence] = {}
        self.last: Item | None = None
        self._deferred: dict[PeerKey, Item] = {}
        self._reported: set[tuple[object, ...]] = set()
        self._touched: list[Obj] = []

    # ------------------------------------------------------------ helpers
    def label(self, key: PeerKey | None) -> str:
        return self.run.label(*key) if key is not None else "?"

    def obj(self, oid: str, owner: PeerKey | None = None) -> Obj:
        o = self.objects.get(oid)
        if o is None:
            o = self.graveyard.pop(oid, None) or Obj(oid)
            self.objects[oid] = o
        if o.owner is None and owner is not None:
            o.owner = owner
            o.entries.pop(owner, None)  # holds recorded before the owner was known
            o.recorded_entries.discard(owner)
        self._touched.append(o)
        return o

    def find(self, oid: str) -> Obj | None:
        return self.objects.get(oid) or self.graveyard.get(oid)

    def step(self, o: Obj, what: str, text: str, ev: Evidence) -> None:
        if self.on_step is not None:
            self.on_step(o, Step(what, text, ev))
        if self.track is not None and self.track(o.object_id):
            self.lifelines.setdefault(o.object_id, []).append(Step(what, text, ev))

    def finding(self, requirement: str, kind: str, summary: str, evidence: list[Evidence | None],
                object_id: str = "", once: tuple[object, ...] | None = None) -> None:
        if once is not None:
            if once in self._reported:
                return
            self._reported.add(once)
        evs = sorted({e.index: e for e in evidence if e is not None}.values(), key=lambda e: e.index)
        self.diag.finding(Finding(requirement, kind, summary, tuple(evs), object_id))

    def is_fenced(self, observer: PeerKey, peer: PeerKey) -> Evidence | None:
        return self.fenced.get(observer, {}).get(peer)

    # ------------------------------------------------------------ feeding
    def feed(self, item: Item) -> None:
        """Take the next record of the merged run."""
        self.last = item
        me = item.file.key
        kind = item.rec.kind
        if kind is TraceKind.EVENT and item.type == "discarded":
            held = self._deferred.get(me)
            if held is not None and item.pair == held.index:
                del self._deferred[me]  # not delivered: no effect (SES-005, SES-002, ...)
                return
        held = self._deferred.pop(me, None)
        if held is not None:
            self._receive(held)
        if kind is TraceKind.SEND:
            self._send(item)
        elif kind is TraceKind.RECV:
            self._deferred[me] = item  # its effects wait for a possible `discarded` event
        else:
            self._event(item)
        self._forget_quiet()

    def finish(self) -> None:
        """Apply the receives still waiting (end of the run)."""
        for item in list(self._deferred.values()):
            self._receive(item)
        self._deferred.clear()

    def _forget_quiet(self) -> None:
        for o in self._touched:
            if o.quiet() and self.objects.get(o.object_id) is o:
                del self.objects[o.object_id]
                self.graveyard[o.object_id] = o
                if len(self.graveyard) > GRAVEYARD:
                    self.graveyard.popitem(last=False)
        self._touched.clear()

    # ------------------------------------------------------------ sends
    def _send(self, item: Item) -> None:
        env = item.env
        if env is None:
            return
        me = item.file.key
        to = (env.receiver, env.receiver_incarnation)
        ev = item.evidence()
        body = env.body
        self._check_dead_peer(item, me, to, ev)
        self.last_send[(me, to)] = ev
        if item.status != Status.FIRST:
            return
        if isinstance(body, m.SubmitTask):
            self._submit(item, me, to, body, ev)
        elif isinstance(body, m.TaskReply):
            self._reply_sent(me, to, body, ev)
        elif isinstance(body, m.CreateActor):
            for oid in arg_object_ids(body):
                o = self.obj(oid)
                o.task_refs[(me, "actor:" + body.actor_id)] = ev
                self._use(me, o, ev, "passes it to an actor")
        elif isinstance(body, m.RegisterBorrower):
            o = self.obj(body.object_id, to)
            self.reg_sent[(me, body.object_id, body.forward_id)] = (body.borrower, body.borrower_incarnation)
            self._use(me, o, ev, "registers a borrower for it")
        elif isinstance(body, m.BorrowerRegistered):
            self._registered_sent(me, to, body, ev)
        elif isinstance(body, m.ReleaseBorrows):
            for rel in body.releases:
                o = self.obj(rel.object_id, to)
                mine = o.releases.setdefault(me, {})
                for fid in rel.forward_ids:
                    before = mine.get(fid)
                    if before is not None:
                        self.finding("BOR-019", Kind.DOUBLE_FREE,
                                     f"{item.peer} released grant {fid} of {o.object_id} twice", [before, ev],
                                     o.object_id)
                    else:
                        mine[fid] = ev
                self.step(o, "released", f"{item.peer} releases grants [{', '.join(rel.forward_ids)}]", ev)
        elif isinstance(body, m.FreeObjects):
            for oid in body.object_ids:
                o = self.obj(oid, me)
                o.freed_at[to[0]] = ev
                o.locations.pop(to[0], None)
                self.step(o, "freed", f"owner tells {item.remote} to drop its copy", ev)
        elif isinstance(body, m.GetObjectStatus):
            o = self.obj(body.object_id, to)
            self.asks[(me, body.object_id)] = ev
            self._use(me, o, ev, "asks its owner for it")
        elif isinstance(body, m.ObjectStatus):
            o = self.obj(body.object_id, me)
            ask = self.asks.pop((to, body.object_id), None) if body.state is not m.ObjectState.PENDING else None
            if body.state is m.ObjectState.FREED:
                self._freed_answer(o, me, to, ev, ask)
            self.step(o, "status", f"owner answers {item.remote}: {body.state.value}", ev)
        elif isinstance(body, m.FetchChunk) and body.error is not None and body.error.code is m.ErrorCode.OBJECT_FREED:
            # Only the owner's FREED says the object was reclaimed; a relay or another
            # holder answers it for its own copy, gone or never begun (FET-041..043).
            o = self.obj(body.object_id)
            if o.owner is not None and o.owner[0] == me[0]:
                self._freed_answer(o, me, to, ev, None)
        elif isinstance(body, m.ConfirmBorrow):
            self.confirm_due.pop((me, body.object_id, body.forward_id), None)
            self.step(self.obj(body.object_id, me), "confirm", f"owner asks {item.remote} whether it holds "
                      f"grant {body.forward_id} (forwarder {body.forwarder} died)", ev)
        elif isinstance(body, m.Goodbye):
            self.left.setdefault(me, ev)

    def _check_dead_peer(self, item: Item, me: PeerKey, to: PeerKey, ev: Evidence) -> None:
        stop = self.stopped.get(me)
        if stop is not None:
            self.finding("LIV-005", Kind.DEAD_PEER, f"{item.peer} sent {item.type} after it learned it was declared "
                         "dead (fail-stop: it must send nothing more)", [stop, ev], once=("LIV-005", me))
        fence = self.is_fenced(me, to)
        if fence is None:
            return
        env = item.env
        assert env is not None
        if isinstance(env.body, m.ProtocolError) and not env.seq:
            return  # the DECLARED_DEAD answer of SES-017
        body = env.body
        if isinstance(body, m.TaskReply):
            req, what = "FATE-003", "replied to a task of a submitter it had declared dead (the task is orphaned)"
        elif isinstance(body, m.ReleaseBorrows):
            req, what = "BOR-024", "released grants to an owner it had declared dead"
        else:
            req, what = "SES-013", f"sent {item.type} to a peer incarnation it had declared dead (the session is closed)"
        self.finding(req, Kind.DEAD_PEER, f"{item.peer} {what}: {item.remote}", [fence, ev], once=(req, me, to))

    def _submit(self, item: Item, me: PeerKey, to: PeerKey, body: m.SubmitTask, ev: Evidence) -> None:
        args = arg_object_ids(body)
        self.tasks[body.task_id] = Task(body.task_id, me, to, body.function, body.attempt, args,
                                        body.return_ids, ev)
        for rid in body.return_ids:
            o = self.obj(rid, me)
            o.task_id = body.task_id
            if body.attempt == 1 and o.created is None:
                o.created = ev
                if not o.has_transitions:
                    o.state = "pending"
                self.step(o, "created", f"return of task {body.task_id} {body.function} on {item.remote}", ev)
            else:
                self.step(o, "rebuilt" if o.state != "pending" or o.reclaimed else "retried",
                          f"task {body.task_id} submitted again (attempt {body.attempt}) to {item.remote}", ev)
        for oid in args:
            o = self.obj(oid)
            o.task_refs[(me, body.task_id)] = ev
            self._use(me, o, ev, "passes it to a task")
            self.step(o, "shared", f"passed to task {body.task_id} {body.function} on {item.remote}", ev)

    def _reply_sent(self, me: PeerKey, to: PeerKey, body: m.TaskReply, ev: Evidence) -> None:
        key = (me, to, body.task_id, body.attempt)
        for oid in self.executing.pop(key, ()):
            o = self.obj(oid)
            o.task_holds.pop(key, None)
        for rv in body.returns:
            if rv.kind is m.ReturnKind.STORED and rv.location:
                o = self.obj(rv.object_id, to)
                o.locations.setdefault(rv.location, ev)
        for d, where in descriptors(body):
            o = self.obj(d.object_id, (d.owner, d.owner_incarnation))
            if d.forward_id:
                o.sent_grants.add(d.forward_id)
                self._grant_sent(me, to, o, d, where, ev)
            elif where.startswith("nested") and o.owner not in (me, to):
                self.finding("BOR-002", Kind.BORROWING, f"{self.label(me)} sent {d.object_id} (owned by "
                             f"{self.label(o.owner)}) to {self.label(to)} inside a value without a grant",
                             [ev], d.object_id)
            if where != "retained":
                self.step(o, "shared", f"sent inside {where.split(':', 1)[-1]} to {self.label(to)}"
                          + (f" under grant {d.forward_id}" if d.forward_id else ""), ev)

    def _grant_sent(self, me: PeerKey, to: PeerKey, o: Obj, d: m.RefDescriptor, where: str, ev: Evidence) -> None:
        fid = d.forward_id
        if o.owner == me:  # BOR-004: the owner records the grant itself, before sending
            g = o.grants.get(fid)
            if g is None:
                o.grants[fid] = Grant(fid, to, me, ev, delivered=True)
                self.step(o, "borrowed", f"borrowed by {self.label(to)} under grant {fid} (owner forward)", ev)
            elif g is not None:
                g.delivered = True
            return
        reg = o.registered.get((me, fid))
        if reg is None:
            self.finding("BOR-002" if where != "retained" else "BOR-007", Kind.BORROWING,
                         f"{self.label(me)} sent {o.object_id} with grant {fid} to {self.label(to)} before the "
                         "owner's BorrowerRegistered for that grant arrived", [ev], o.object_id)
            return
        borrower, reg_ev = reg
        want = me if where == "retained" else to
        if borrower != want and borrower[1] != 0:
            self.finding("BOR-020", Kind.BORROWING, f"{self.label(me)} put grant {fid} (made out to "
                         f"{self.label(borrower)}) in a descriptor for {self.label(to)}", [reg_ev, ev], o.object_id)
        g = o.grants.get(fid)
        if g is not None:
            g.delivered = True

    def _registered_sent(self, me: PeerKey, to: PeerKey, body: m.BorrowerRegistered, ev: Evidence) -> None:
        o = self.obj(body.object_id, me)
        pending = o.registering.pop(body.forward_id, None)
        if body.error is not None:
            if body.error.code is m.ErrorCode.OBJECT_FREED:
                self._freed_answer(o, me, to, ev, pending[2] if pending else None)
            return
        borrower, requester = (pending[0], pending[1]) if pending else (to, to)
        if body.forward_id not in o.grants:
            o.grants[body.forward_id] = Grant(body.forward_id, borrower, requester, pending[2] if pending else ev)
            self.step(o, "borrowed", f"borrowed by {self.label(borrower)} under grant {body.forward_id}"
                      + (f" (requested by {self.label(requester)})" if requester != borrower else ""), ev)
        if to not in self.run.by_key:  # the requester has no trace: take the owner's word
            o.registered[(to, body.forward_id)] = (borrower, ev)

    def _freed_answer(self, o: Obj, me: PeerKey, to: PeerKey, ev: Evidence, ask: Evidence | None) -> None:
        """The owner answered FREED: the asker used a ref after it was released (OWN-013)."""
        self.finding("OWN-013", Kind.USE_AFTER_RELEASE,
                     f"{self.label(to)} used {o.object_id} after it was reclaimed: its owner {self.label(me)} "
                     "answers FREED (either the holder broke the holding rules or the owner freed it too early)",
                     [o.dropped.get(to), o.reclaimed, ask, ev], o.object_id)

    def _use(self, me: PeerKey, o: Obj, ev: Evidence, what: str) -> None:
        if o.owner == me:
            if o.reclaimed is not None and o.state in _RECLAIMED:
                self.finding("OWN-005", Kind.USE_AFTER_RELEASE, f"{self.label(me)} {what} ({o.object_id}) after "
                             "reclaiming it", [o.reclaimed, ev], o.object_id, once=("own-use", o.object_id, me))
            return
        dropped = o.dropped.get(me)
        got = o.received.get(me)
        if dropped is not None and (got is None or got.index < dropped.index):
            self.finding("BOR-001", Kind.USE_AFTER_RELEASE, f"{self.label(me)} {what} ({o.object_id}) after it "
                         "released its hold (it holds no grant, task hold or cover any more)", [dropped, ev],
                         o.object_id, once=("use", o.object_id, me, dropped.index))

    # ------------------------------------------------------------ receives
    def _receive(self, item: Item) -> None:
        me = item.file.key
        ev = item.evidence()
        env = item.env
        if env is None:
            if item.rec.kind is TraceKind.RECV and item.status == Status.UNDECODABLE:
                self.finding("TRC-010", Kind.TRACE_FORMAT, f"{item.peer} received a frame that does not decode "
                             "and wrote no `discarded` event with reason malformed for it", [ev],
                             once=("TRC-010", me))
            return
        if item.status in (Status.DUPLICATE, Status.DISCARDED):
            return
        frm = (env.sender, env.sender_incarnation)
        fence = self.is_fenced(me, frm)
        if fence is not None:
            self.finding("SES-005", Kind.DEAD_PEER, f"{item.peer} delivered {item.type} from {item.remote}, an "
                         "incarnation it had declared dead (no `discarded` event follows)", [fence, ev],
                         once=("SES-005", me, frm))
        body = env.body
        if isinstance(body, m.SubmitTask):
            args = arg_object_ids(body)
            key = (me, frm, body.task_id, body.attempt)
            self.executing[key] = args
            for d, _ in descriptors(body):
                o = self.obj(d.object_id, (d.owner, d.owner_incarnation))
                if o.owner != me:
                    o.task_holds[key] = ev
                    o.received[me] = ev
                    o.entries.setdefault(me, "unresolved")
        elif isinstance(body, m.TaskReply):
            self._reply_received(item, me, frm, body, ev)
        elif isinstance(body, m.FreeObjects):
            for oid in body.object_ids:
                self.obj(oid, frm).free_received[me[0]] = ev
        elif isinstance(body, m.RegisterBorrower):
            o = self.obj(body.object_id, me)
            o.registering[body.forward_id] = ((body.borrower, body.borrower_incarnation), frm, ev)
        elif isinstance(body, m.BorrowerRegistered):
            borrower = self.reg_sent.pop((me, body.object_id, body.forward_id), None) or me
            o = self.obj(body.object_id, frm)
            if body.error is None:
                o.registered[(me, body.forward_id)] = (borrower, ev)
                if borrower == me:
                    o.received[me] = ev
                    o.entries.setdefault(me, "unresolved")
        elif isinstance(body, m.ReleaseBorrows):
            for rel in body.releases:
                o = self.obj(rel.object_id)
                for fid in rel.forward_ids:
                    g = o.grants.get(fid)
                    if g is not None and frm in (g.borrower, g.requester) and o.owner == me:
                        del o.grants[fid]
                        self.step(o, "released", f"grant {fid} of {self.label(g.borrower)} removed", ev)
        elif isinstance(body, m.BorrowConfirmed):
            o = self.obj(body.object_id, me)
            if not body.held and body.forward_id in o.grants:
                del o.grants[body.forward_id]
                self.step(o, "released", f"grant {body.forward_id} removed: {item.remote} never held it", ev)
        elif isinstance(body, m.AddLocation):
            o = self.obj(body.object_id, me)
            o.locations[frm[0]] = ev
            self.step(o, "copied", f"{item.remote} holds a secondary copy", ev)
        elif isinstance(body, m.RemoveLocation):
            o = self.obj(body.object_id, me)
            o.locations.pop(frm[0], None)
            self.step(o, "copy-removed", f"{item.remote} dropped its copy", ev)
        elif isinstance(body, m.ObjectStatus) and body.state is m.ObjectState.FAILED and body.error is not None:
            if body.error.code is m.ErrorCode.OBJECT_LOST:
                self.step(self.obj(body.object_id, frm), "lost", f"owner reports it lost to {item.peer}", ev)

    def _reply_received(self, item: Item, me: PeerKey, frm: PeerKey, body: m.TaskReply, ev: Evidence) -> None:
        task = self.tasks.get(body.task_id)
        if task is not None and task.submitter == me and task.attempt == body.attempt:
            self._task_over(me, body.task_id)
        for rv in body.returns:
            o = self.obj(rv.object_id, me)
            if rv.kind is m.ReturnKind.ERROR:
                text = f"failed: {rv.error.code.value if rv.error else '?'} (reply from {item.remote})"
                what = "failed"
            elif rv.kind is m.ReturnKind.STORED:
                text, what = f"ready: stored at {rv.location}, {rv.size} B", "ready"
            else:
                size = rv.value.size if rv.value is not None else 0
                text, what = f"ready: inline, {size} B", "ready"
            if not o.has_transitions:
                o.state = "failed" if what == "failed" else "ready"
                o.state_cause = ev
            self.step(o, what, text, ev)
        for d, where in descriptors(body):
            if where == "retained":
                continue
            container = where.split(":", 1)[1]
            o = self.obj(d.object_id, (d.owner, d.owner_incarnation))
            o.contained_in[container] = (me, ev)
            if o.owner != me:
                o.received[me] = ev
                o.entries.setdefault(me, "unresolved")
            self.step(o, "contained", f"contained in {container} at {item.peer}", ev)

    # ------------------------------------------------------------ events
    def _event(self, item: Item) -> None:
        name = item.type
        me = item.file.key
        ev = item.evidence()
        d = item.detail
        oid = item.rec.object_id
        if name == "transition":
            self._transition(item, me, ev)
        elif name == "peer-declared-dead":
            self._declared_dead(item, me, ev)
        elif name == "peer-forgotten":
            # SM-003: a forgotten handshake's record is deleted without a transition
            self.states.pop((me, "peer", str(d.get("peer", ""))), None)
        elif name == "fail-stop":
            self.stopped.setdefault(me, ev)
        elif name == "hold" and oid:
            o = self.obj(oid)
            counter = str(d.get("counter", ""))
            value = d.get("value")
            if isinstance(value, int):
                o.counters.setdefault(me, {})[counter] = value
                o.last_hold[me] = ev
            if o.owner is not None and o.owner != me:
                o.recorded_entries.add(me)
                o.entries.setdefault(me, "unresolved")
            self.step(o, "hold", f"{item.peer}: {counter} {d.get('delta', '')} -> {value}", ev)
        elif name in ("grant-added", "grant-removed") and oid:
            o = self.obj(oid, me)
            fid = str(d.get("forwardId", ""))
            if name == "grant-added":
                borrower = (str(d.get("borrower", "")), _incarnation(d.get("borrowerIncarnation")))
                requester_name = str(d.get("requester", "")) or borrower[0]
                requester = (requester_name, borrower[1] if requester_name == borrower[0] else 0)
                if requester_name == me[0]:
                    requester = me
                if fid not in o.grants:
                    o.grants[fid] = Grant(fid, borrower, requester, ev)
                    self.step(o, "borrowed", f"borrowed by {self.label(borrower)} under grant {fid}", ev)
            elif o.grants.pop(fid, None) is not None:
                self.step(o, "released", f"grant {fid} removed ({d.get('reason', '')})", ev)
        elif name in ("location-added", "location-removed") and oid:
            o = self.obj(oid, me)
            where = str(d.get("peer", ""))
            if name == "location-added":
                o.locations.setdefault(where, ev)
            else:
                o.locations.pop(where, None)
        elif name in ("relay-added", "relay-removed") and oid:
            o = self.obj(oid, me)
            where = str(d.get("peer", ""))
            if name == "relay-added":
                self.step(o, "relay", f"{where} relays it while it fetches (listed by {item.peer})", ev)
            else:
                self.step(o, "relay", f"{where} relays it no more ({d.get('reason', '')})", ev)
        elif name in ("copy-stored", "copy-dropped") and oid:
            o = self.obj(oid)
            if name == "copy-stored":
                o.copies[me[0]] = ev
                o.copy_keys[me[0]] = me
                self.step(o, "stored", f"copy stored at {item.peer} ({d.get('size', '?')} B)", ev)
            elif o.copies.pop(me[0], None) is None:
                self.finding("GC-004", Kind.DOUBLE_FREE, f"{item.peer} dropped a copy of {oid} it did not hold",
                             [ev], oid, once=("copy", oid, me))
            else:
                self.step(o, "dropped", f"copy dropped at {item.peer} ({d.get('reason', '')})", ev)
        elif name == "x-created" and oid:
            # pyimpl's record of an entry's creation (an implementation event, TRC-007): used when present
            o = self.obj(oid, me if d.get("table") == "owner-object" else None)
            if d.get("table") == "borrower-object" and o.owner != me:
                o.recorded_entries.add(me)
                o.entries[me] = str(d.get("state", "unresolved"))
        elif name == "program":
            for target in ([oid] if oid else sorted(program_objects(d))):  # a wait names all its refs
                self.step(self.obj(target), "program", f"{item.peer} program: {d.get('op', '?')}", ev)

    def _transition(self, item: Item, me: PeerKey, ev: Evidence) -> None:
        d = item.detail
        table_name = str(d.get("table", ""))
        key = str(d.get("key", "") or item.rec.object_id or item.rec.task_id)
        frm, event, to = str(d.get("from", "")), str(d.get("event", "")), str(d.get("to", ""))
        table = ALL_TABLES.get(table_name)
        if table is None:
            self.finding("TRC-008", Kind.TRACE_FORMAT, f"{item.peer}: transition of unknown table {table_name!r}",
                         [ev], once=("table", me, table_name))
            return
        skey = (me, table_name, key)
        prev = self.states.get(skey)
        row = table.get(frm, {})
        double = (table_name == "owner-object" and event.startswith("out_of_scope") and
                  (frm in _RECLAIMED or (prev is not None and prev[0] in _RECLAIMED)))
        if double:
            o = self.obj(key, me)
            self.finding("OWN-005", Kind.DOUBLE_FREE, f"{item.peer} reclaimed {key} a second time ({frm} "
                         f"--{event}--> {to})", [o.reclaimed, ev], key)
        elif event not in row or row[event][0] != to:
            legal = ", ".join(f"{e}->{n}" for e, (n, _) in row.items()) or "none: it is terminal or unknown"
            self.finding("SM-001", Kind.TRANSITION, f"{item.peer}: {table_name} {key}: {frm} --{event}--> {to} is "
                         f"not a transition of the table (from {frm!r}: {legal})", [prev[1] if prev else None, ev],
                         key if table_name.endswith("object") else "")
        elif prev is None and not self.states_forgotten and table_name in _FIRST and \
                (frm, None) not in _FIRST[table_name] and (frm, event) not in _FIRST[table_name]:
            first = " or ".join(f"{st!r}" + (f" (by {e!r})" if e else "") for st, e in sorted(_FIRST[table_name], key=str))
            self.finding("SM-002", Kind.TRANSITION, f"{item.peer}: the first transition of {table_name} {key} starts "
                         f"from {frm!r} (--{event}--> {to}), but an entry starts in {first}: its creation or earlier "
                         "transitions are missing", [ev], key if table_name.endswith("object") else "")
        elif prev is not None and prev[0] != frm:
            self.finding("TRC-008", Kind.TRANSITION, f"{item.peer}: {table_name} {key} was last recorded in "
                         f"{prev[0]!r} but this transition starts from {frm!r}: a transition is missing from the "
                         "trace", [prev[1], ev], key if table_name.endswith("object") else "")
        if to in _TERMINAL:
            self.states.pop(skey, None)
        else:
            self.states[skey] = (to, ev)
            self.states.move_to_end(skey)
            if len(self.states) > STATES_KEPT:
                self.states.popitem(last=False)  # only the check of its next transition is lost
                self.states_forgotten = True
        if table_name == "owner-object":
            self._owner_transition(item, me, key, frm, event, to, ev)
        elif table_name == "borrower-object":
            self._borrower_transition(item, me, key, event, to, ev)
        elif table_name == "owner-task" and (to in ("finished", "failed") or frm == to == "cancelled"):
            self._task_over(me, key)

    def _task_over(self, me: PeerKey, task_id: str) -> None:
        """The submitter's task ended without a reply it received (failed: its executor
        died with no retry left, refused, lineage evicted): its arguments are no longer
        held for it (OWN-004's submittedTaskRefs)."""
        task = self.tasks.get(task_id)
        if task is None or task.submitter != me:
            return
        del self.tasks[task_id]
        for oid in task.args:
            self.obj(oid).task_refs.pop((me, task_id), None)

    def _owner_transition(self, item: Item, me: PeerKey, oid: str, frm: str, event: str, to: str,
                          ev: Evidence) -> None:
        o = self.obj(oid, me)
        o.has_transitions = True
        o.state, o.state_cause = to, ev
        if event == "put":
            if o.created is None:
                o.created = ev
            self.step(o, "created", f"created by put at {item.peer}", ev)
        elif to in _RECLAIMED and frm in ("ready", "failed"):
            self._check_free_while_held(item, me, o, ev)
            o.reclaimed = ev
            self.step(o, "freed", f"value reclaimed by its owner ({frm} -> {to})", ev)
        elif to == "deleted":
            self.step(o, "deleted", f"entry deleted ({event})", ev)
        elif event.startswith("copy_lost"):
            self.step(o, "lost", f"last copy lost: {'rebuilding' if to == 'pending' else 'failed (OBJECT_LOST)'}", ev)
        elif event == "reconstruct":
            o.reclaimed = None
            self.step(o, "rebuilt", "rebuilding its value from lineage", ev)
        elif to in ("ready", "failed") and frm == "pending":
            self.step(o, to, f"{event}", ev)

    def _borrower_transition(self, item: Item, me: PeerKey, oid: str, event: str, to: str, ev: Evidence) -> None:
        o = self.obj(oid)
        o.recorded_entries.add(me)
        if to == "deleted":
            o.entries.pop(me, None)
            o.dropped[me] = ev
            o.counters.pop(me, None)
            self.step(o, "dropped-ref", f"{item.peer} holds it no more (entry deleted)", ev)
            return
        o.entries[me] = to
        if event == "owner_died":
            self.step(o, "owner-died", f"{item.peer} fails it: owner died", ev)
        elif o.owner is not None and event.startswith("status_"):
            fence = self.is_fenced(me, o.owner)
            if fence is not None:
                self.finding("FATE-001", Kind.OWNER_DEATH, f"{item.peer} took {event} for {oid} after declaring its "
                             f"owner {self.label(o.owner)} dead; the entry must fail with OWNER_DIED", [fence, ev], oid)

    def _check_free_while_held(self, item: Item, me: PeerKey, o: Obj, ev: Evidence) -> None:
        """OWN-004: the owner must not reclaim a value anything still holds."""
        reasons: list[str] = []
        evidence: list[Evidence | None] = []
        fenced = self.fenced.get(me, {})
        for g in o.grants.values():
            if g.borrower not in fenced and g.borrower != me:
                reasons.append(f"{self.label(g.borrower)} holds grant {g.forward_id}")
                evidence.append(g.cause)
        for (submitter, task), tev in o.task_refs.items():
            if submitter == me:
                reasons.append(f"its task {task} is pending")
                evidence.append(tev)
        for container, (holder, cev) in o.contained_in.items():
            c = self.find(container)
            if holder == me and (c is None or c.reclaimed is None):
                reasons.append(f"it is contained in {container}")
                evidence.append(cev)
        for counter, value in sorted(o.counters.get(me, {}).items()):
            if value > 0 and counter in ("localRefs", "submittedTaskRefs", "coverPins"):
                reasons.append(f"{counter} = {value}")
                evidence.append(o.last_hold.get(me))
        if reasons:
            self.finding("OWN-004", Kind.FREE_WHILE_HELD, f"{item.peer} reclaimed {o.object_id} while "
                         + "; ".join(reasons), [*evidence, ev], o.object_id)

    def _declared_dead(self, item: Item, me: PeerKey, ev: Evidence) -> None:
        d = item.detail
        dead = (str(d.get("peer", "")), _incarnation(d.get("incarnation")))
        self.fenced.setdefault(me, {}).setdefault(dead, ev)
        self.dead.setdefault(dead, ev)
        for key in [k for k in self.executing if k[0] == me and k[1] == dead]:
            for oid in self.executing.pop(key):
                self.obj(oid).task_holds.pop(key, None)  # FATE-003: the task is dropped
        for o in list(self.objects.values()):
            if o.owner == dead:
                self.step(o, "owner-died", f"{item.peer} learns its owner {self.label(dead)} died", ev)
            if o.owner != me:
                continue
            for fid, g in list(o.grants.items()):
                if g.borrower == dead:  # BOR-009
                    del o.grants[fid]
                    self.step(o, "released", f"grant {fid} removed: borrower {self.label(dead)} died", ev)
                elif g.requester == dead:  # BOR-010
                    self.confirm_due[(me, o.object_id, fid)] = ev
            o.locations.pop(dead[0], None)
            self._touched.append(o)
