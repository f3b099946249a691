"""Tasks at the peer that executes them: argument resolution, replies, duplicate
requests, register-before-send for returned refs (TASK-*, RPC-001/002, BOR-002, BOR-007)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from .errors import LocalUsageError, ProtocolViolation
from .events import FreeCopy, ResolvedArg, RunTask, StopTask, TaskFinished, TaskResult
from .messages import (
    FRAME_HEADROOM,
    ArgKind,
    BorrowRelease,
    CancelTask,
    CreateActor,
    Encoding,
    ErrorCode,
    ErrorInfo,
    Feature,
    ObjectId,
    PeerId,
    RefDescriptor,
    RegisterBorrower,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
)
from .state import ExecTask, OutgoingRegistration, Remote

if TYPE_CHECKING:
    from .peer import Peer

ExecKey = tuple[PeerId, int, str, int]


class Execution:
    """Mixin of :class:`Peer`: running other peers' tasks and answering them."""

    @staticmethod
    def _check_args(args: tuple) -> None:
        """VAL-015: each argument carries exactly the member its kind names."""
        for i, a in enumerate(args):
            if a.kind == ArgKind.VALUE:
                ok = a.value is not None and a.ref is None
            else:
                ok = a.ref is not None and a.value is None
            if not ok:
                raise ProtocolViolation(ErrorCode.MALFORMED, f"argument {i} of kind {a.kind.value} does not carry exactly its member", "VAL-015")

    @staticmethod
    def _check_demand(spec: SubmitTask | CreateActor) -> None:
        """TASK-054 (ACT-030 for an actor): each named resource is named once, never empty nor ``CPU``."""
        if not spec.resources:
            return
        names = [r.name for r in spec.resources]
        if len(set(names)) != len(names) or any(not n or n == "CPU" for n in names):
            raise ProtocolViolation(ErrorCode.MALFORMED, f"resources {names!r}: each name must be non-empty, "
                                    "not CPU, and appear once", "TASK-054")

    @staticmethod
    def _check_return_ids(spec: SubmitTask) -> None:
        """VAL-030: a task naming a return id twice is malformed (one object would get
        two replies' worth of copies here)."""
        if len(set(spec.return_ids)) != len(spec.return_ids):
            raise ProtocolViolation(ErrorCode.MALFORMED, f"task {spec.task_id!r} names a return id twice", "VAL-030")

    def _on_SubmitTask(self: Peer, r: Remote, spec: SubmitTask) -> None:
        self._check_args(spec.args)
        self._check_demand(spec)
        self._check_return_ids(spec)
        key: ExecKey = (r.peer, r.incarnation, spec.task_id, spec.attempt)
        ex = self.exec_tasks.get(key)
        if ex is not None:  # RPC-001: a duplicate request
            if ex.reply is not None and ex.state == "replied":
                self._send(r.peer, ex.reply)
            self._story(spec.task_id, "duplicate-request", ex.state)
            return
        # TASK-068: another submitter's task of that id and attempt may be here (ids are
        # unique, ID-005, but a peer may lie): this one is another task, known to the
        # runtime by an id made unique here, so neither takes the other's reply or stops.
        run_id, n = spec.task_id, 0
        while (run_id, spec.attempt) in self.exec_index:
            n += 1
            run_id = f"{spec.task_id}#{n}"
        held: list[ObjectId] = []
        waiting: dict[int, ObjectId] = {}
        for i, a in enumerate(spec.args):
            refs = [a.ref] if a.ref is not None else list(a.value.nested) if a.value else []
            for d in refs:
                if not (d.owner == self.peer_id and d.owner_incarnation == self.incarnation):
                    b = self._borrowed_entry(d)
                    b.task_holds += 1  # BOR-001 (b)
                    held.append(d.object_id)
                    if self.trace_events:
                        self._trace_hold(d.object_id, "task_holds", +1, b)
            if a.kind == ArgKind.REF and a.ref is not None:
                waiting[i] = a.ref.object_id
        ex = ExecTask(spec, r.peer, r.incarnation, "resolving", tuple(held), waiting, run_id=run_id)
        self.exec_tasks[key] = ex
        self.exec_index[(run_id, spec.attempt)] = key
        self._story(spec.task_id, "received", f"from {r.peer} attempt {spec.attempt}"
                    + (f", run here as {run_id}" if n else ""))
        if spec.actor_id:
            self._actor_enqueue(key)
        for i, oid in list(waiting.items()):
            if self._resolution(oid) is not None:
                del waiting[i]
            else:
                self.arg_waiters.setdefault(oid, []).append(key)
                b = self.borrowed.get(oid)
                if b is not None:
                    self._request_status(b)  # TASK-002
        self._maybe_start(key)

    def _arg_resolved(self: Peer, key: ExecKey, oid: ObjectId) -> None:
        ex = self.exec_tasks.get(key)
        if ex is None:
            return
        for i in [i for i, o in ex.waiting.items() if o == oid]:
            del ex.waiting[i]
        self._maybe_start(key)

    def _maybe_start(self: Peer, key: ExecKey) -> None:
        ex = self.exec_tasks[key]
        if ex.state != "resolving" or ex.waiting:
            return
        if ex.spec.actor_id and not self._actor_may_start(key):
            return
        resolved: list[ResolvedArg] = []
        for a in ex.spec.args:
            if a.kind == ArgKind.VALUE:
                resolved.append(ResolvedArg(value=a.value))
            elif a.kind == ArgKind.SHARED:
                resolved.append(ResolvedArg(ref=a.ref))
            else:
                assert a.ref is not None
                value, locations, size, error = self._resolution(a.ref.object_id) or (None, (), -1, None)
                if error is not None:  # TASK-009
                    if key in self.actor_creations:
                        self._creation_failed(key, error)
                        return
                    self._transition_exec(ex, "arg_failed")
                    rets = tuple(ReturnValue(rid, ReturnKind.ERROR, error=error) for rid in ex.spec.return_ids)
                    ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, rets)
                    self._send_reply(key, ex)
                    return
                resolved.append(ResolvedArg(value=value, object_id=a.ref.object_id, locations=locations, size=size))
        if ex.cancelled:
            self._transition_exec(ex, "cancel")
            info = ErrorInfo(ErrorCode.TASK_CANCELLED, "cancelled before it ran", "TASK-008")
            ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(ReturnValue(rid, ReturnKind.ERROR, error=info) for rid in ex.spec.return_ids))
            self._send_reply(key, ex)
            return
        self._transition_exec(ex, "args_ready")
        if key in self.actor_creations:
            self._creation_started(key, ex, tuple(resolved))
            return
        if ex.spec.actor_id:
            self._actor_started(key)
        spec = ex.spec
        self._out(RunTask(self._sid, ex.run_id, spec.attempt, spec.function, tuple(resolved), spec.return_ids, ex.owner,
                          spec.actor_id, spec.cpu_demand,
                          tuple((r.name, r.amount) for r in spec.resources) if spec.resources else ()))

    def _task_finished(self: Peer, s: TaskFinished) -> None:
        key = self.exec_index.get((s.task_id, s.attempt))
        ex = self.exec_tasks.get(key) if key else None
        if ex is None or ex.state != "running":
            # Owner gone, task cancelled or actor killed (FATE-003, FATE-008, TASK-008,
            # ACT-006): nobody will claim these values, so stored copies go at once.
            rids = ex.spec.return_ids if ex else self.dropped_returns.pop((s.task_id, s.attempt), ())
            for rid, res in zip(rids, s.results):
                if res.stored:
                    self.copies.pop(rid, None)
                    self.primaries.discard(rid)
                    self._out(FreeCopy(self._sid, rid))
            self._story(s.task_id, "finished-unclaimed", ex.state if ex else "unknown")
            return
        assert key is not None
        if len(s.results) != len(ex.spec.return_ids):
            raise LocalUsageError(ErrorCode.MALFORMED, f"task {s.task_id} has {len(ex.spec.return_ids)} returns, got {len(s.results)}")
        for res in s.results:  # check everything first: a refused stimulus changes nothing
            if res.error is None and res.value is None:
                raise LocalUsageError(ErrorCode.MALFORMED, f"a return of {s.task_id} has neither value nor error")
            for d in res.value.nested if res.value is not None and res.error is None else ():
                if not (d.owner == ex.owner) and d.object_id not in self.owned and d.object_id not in self.borrowed:
                    raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
        returns: list[ReturnValue] = []
        owner = self.remotes.get(ex.owner) if ex.owner != self.peer_id else None
        results = self._fitting_results(owner, ex.spec.return_ids, s.results)  # ZMQ-022
        for index, (rid, res) in enumerate(zip(ex.spec.return_ids, results)):
            if res.error is not None:
                cause = res.value if res.value is not None and not res.value.nested and not res.stored else None
                if cause is not None and self._unsendable_return(owner, cause):
                    cause = None  # HS-020: the cause is for people; the code alone decides
                returns.append(ReturnValue(rid, ReturnKind.ERROR, value=cause, error=res.error))  # TASK-018
                continue
            problem = self._unsendable_return(owner, res.value) if res.value is not None else None
            if problem is not None:
                # HS-017, HS-020: a value the submitter's session cannot carry is answered as an
                # error, and a stored copy made for it is dropped (nobody will free it).
                if res.stored:
                    self._out(FreeCopy(self._sid, rid))
                returns.append(ReturnValue(rid, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED, problem[0], problem[1])))
                continue
            nested = res.value.nested if res.value else ()
            out_nested = tuple(self._forward_nested(d, ex, key, index) for d in nested)
            if res.stored:
                self.copies[rid] = ex.owner  # the primary copy, pinned until FreeObjects (GC-005)
                self.primaries.add(rid)
                returns.append(ReturnValue(rid, ReturnKind.STORED, location=self.peer_id, size=res.size, nested=out_nested))
            else:
                if res.value is None:
                    raise LocalUsageError(ErrorCode.MALFORMED, f"return {rid} has neither value, store nor error")
                value = replace(res.value, nested=out_nested) if out_nested or res.value.nested else res.value
                returns.append(ReturnValue(rid, ReturnKind.INLINE, value=value))
        retained = self._register_retained(ex, key, s.retained)
        ex.reply = TaskReply(ex.spec.task_id, ex.spec.attempt, tuple(returns), retained, max(-1, s.store_free_bytes))  # OBJ-060
        if ex.registrations:
            self._transition_exec(ex, "finished_retained")
        else:
            self._transition_exec(ex, "finished")
            self._send_reply(key, ex)

    def _fitting_results(self: Peer, owner: Remote | None, return_ids: tuple[ObjectId, ...],
                         results: tuple[TaskResult, ...]) -> tuple[TaskResult, ...]:
        """ZMQ-022: the results, or, if the reply carrying them would exceed the
        submitter's frame limit, every return failed with RESOURCE_EXHAUSTED (stored
        copies made for them freed). Called before anything is granted for them."""
        if owner is None or not owner.max_frame_bytes:
            return results
        budget = owner.max_frame_bytes - FRAME_HEADROOM
        values = texts = 0
        for res in results:
            if res.value is not None and not res.stored:
                values += len(res.value.data) + sum(len(b) for b in res.value.buffers)
            if res.error is not None:
                texts += len(res.error.message.encode()) + len(res.error.detail.encode())
        if values + texts <= budget:
            return results
        if values <= budget:
            # ZMQ-022: an error's texts are cut to fit, every detail before any message,
            # so that the returns keep their codes; only values that do not fit fail them.
            room = budget - values - sum(len(r.error.message.encode()) for r in results if r.error is not None)
            cut_messages = room < 0
            room = max(room, 0) if not cut_messages else budget - values
            fitted = []
            for res in results:
                if res.error is not None:
                    e = res.error
                    if cut_messages:
                        message = _cut_text(e.message, room)
                        room -= len(message.encode())
                        e = replace(e, message=message, detail="")
                    else:
                        detail = _cut_text(e.detail, room)
                        room -= len(detail.encode())
                        e = replace(e, detail=detail)
                    res = replace(res, error=e)
                fitted.append(res)
            return tuple(fitted)
        total = values + texts
        for rid, res in zip(return_ids, results):
            if res.stored and res.error is None:
                self._out(FreeCopy(self._sid, rid))
        info = ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED,
                         f"the reply ({total} bytes of values) would exceed {owner.peer}'s frame limit of "
                         f"{owner.max_frame_bytes} bytes", "ZMQ-022")
        self._story(f"peer:{owner.peer}", "not-sent", "TaskReply: too large")
        return tuple(TaskResult(error=info) for _ in results)

    @staticmethod
    def _unsendable_return(owner: Remote | None, value: Value) -> tuple[str, str] | None:
        """Why ``value`` cannot travel to the task's submitter (HS-017, HS-020), or None."""
        if owner is None or owner.all_features or owner.state != "alive":
            return None
        if value.nested and Feature.BORROWING.value not in owner.features:
            return "the return embeds refs and the submitter's session has no borrowing", "HS-017"
        if (value.encoding == Encoding.PICKLE or value.buffers) and Feature.PYTHON_PICKLE.value not in owner.features:
            return "the return is a pickle value and the submitter's session has no python-pickle", "HS-020"
        return None

    def _forward_nested(self: Peer, d: RefDescriptor, ex: ExecTask, key: ExecKey, index: int) -> RefDescriptor:
        """Prepare a nested ref of a return value for the task's owner (BOR-002, BOR-004)."""
        if d.owner == ex.owner:
            return replace(d, forward_id="")
        fid = self._new_forward_id()
        if d.owner == self.peer_id:
            e = self.owned.get(d.object_id)
            if e is None:
                raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
            e.borrowers.setdefault(ex.owner, {})[fid] = self.peer_id  # BOR-004
            e.grant_incarnations[fid] = ex.owner_incarnation  # BOR-009
            self._story(d.object_id, "grant", f"{ex.owner} {fid} (owner forward)")
            if self.trace_events:
                self._trace("grant-added", d.object_id, borrower=ex.owner, borrowerIncarnation=str(ex.owner_incarnation),
                            forwardId=fid, requester=self.peer_id, reason="owner-forward")
            return replace(d, forward_id=fid)
        b = self.borrowed.get(d.object_id)
        if b is None:
            raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"returned ref {d.object_id} is not held here")
        if (b.owner, b.ref.owner_incarnation) in self.fenced:
            # The owner is dead: no grant can be had, and the receiver will see
            # OWNER_DIED when it uses the ref (FATE-001).
            return replace(d, forward_id="")
        b.outgoing_registrations += 1
        if self.trace_events:
            self._trace_hold(d.object_id, "outgoing_registrations", +1, b)
        ex.registrations[fid] = d.object_id
        self.outgoing[fid] = OutgoingRegistration(d.object_id, ex.owner, ("reply", key, index))
        self._send(d.owner, RegisterBorrower(d.object_id, ex.owner, ex.owner_incarnation, self._address_of(ex.owner), fid), b.ref.owner_address, b.ref.owner_incarnation)
        return replace(d, forward_id=fid)

    def _register_retained(self: Peer, ex: ExecTask, key: ExecKey, hinted: tuple[ObjectId, ...]) -> tuple[RefDescriptor, ...]:
        """BOR-007: refs from the arguments that outlive the task need a grant of their own."""
        out = []
        for oid in dict.fromkeys(list(ex.held) + list(hinted)):
            b = self.borrowed.get(oid)
            if b is None or b.grants or (b.owner, b.ref.owner_incarnation) in self.fenced:
                continue
            keeps = b.local_refs + b.submitted_task_refs + len(b.contained_in) + b.pins
            if not keeps:
                continue
            if not b.self_registration:
                fid = self._new_forward_id()
                b.self_registration = fid
                if self.trace_events:
                    self._trace_hold(oid, "self_registration", +1, b)
                self.outgoing[fid] = OutgoingRegistration(oid, self.peer_id, ("retain", key))
                self._send(b.owner, RegisterBorrower(oid, self.peer_id, self.incarnation, self.address, fid), b.ref.owner_address, b.ref.owner_incarnation)
            ex.registrations[b.self_registration] = oid
            out.append(replace(b.ref, forward_id=b.self_registration))
        return tuple(out)

    def _reply_registration_done(self: Peer, reg: OutgoingRegistration, error: ErrorInfo | None) -> None:
        """A registration a reply was waiting on is answered (BOR-002, BOR-007)."""
        ex = self.exec_tasks.get(reg.purpose[1])
        if error is not None and reg.purpose[0] == "reply" and ex is not None and ex.reply is not None:
            index = reg.purpose[2]
            self._abandon_grants(ex, index)  # BOR-014: the rest of this value won't be sent
            rets = list(ex.reply.returns)
            rid = rets[index].object_id
            rets[index] = ReturnValue(rid, ReturnKind.ERROR, error=error)  # BOR-003
            ex.reply = replace(ex.reply, returns=tuple(rets))
            self.primaries.discard(rid)
            if self.copies.pop(rid, None) is not None:
                self._out(FreeCopy(self._sid, rid))
        # One self-registration may serve several tasks: settle every task it unblocks.
        for key, other in list(self.exec_tasks.items()):
            if other.state != "registering":
                continue
            other.registrations = {
                f: o for f, o in other.registrations.items()
                if f in self.outgoing and self.outgoing[f].purpose[0] != "abandon"
            }
            if not other.registrations:
                self._transition_exec(other, "registered")
                if key in self.actor_creations:
                    self._creation_done(key)
                else:
                    self._send_reply(key, other)

    def _drop_from_retained(self: Peer, forward_id: str) -> None:
        """A self-registration was refused: no reply waiting on it lists it in ``retained`` (BOR-026)."""
        for other in self.exec_tasks.values():
            if other.state == "registering" and other.reply is not None and other.reply.retained:
                kept = tuple(d for d in other.reply.retained if d.forward_id != forward_id)
                if len(kept) != len(other.reply.retained):
                    other.reply = replace(other.reply, retained=kept)

    def _abandon_grants(self: Peer, ex: ExecTask, index: int | None = None) -> None:
        """BOR-014: release grants obtained for the task owner that it will never receive."""
        if ex.reply is None:
            return
        for i, rv in enumerate(ex.reply.returns):
            if index is not None and i != index:
                continue
            for d in rv.value.nested if rv.value else rv.nested:
                if not d.forward_id:
                    continue
                reg = self.outgoing.get(d.forward_id)
                if reg is not None:
                    reg.purpose = ("abandon",) + tuple(reg.purpose[1:])  # released once granted
                elif d.owner == self.peer_id:
                    e = self.owned.get(d.object_id)
                    grants = e.borrowers.get(ex.owner, {}) if e else {}
                    if grants.pop(d.forward_id, None) is not None:
                        e.grant_incarnations.pop(d.forward_id, None)  # type: ignore[union-attr]
                        if self.trace_events:
                            self._trace("grant-removed", d.object_id, borrower=ex.owner, forwardId=d.forward_id,
                                        requester=self.peer_id, reason="abandoned")
                        if not grants:
                            e.borrowers.pop(ex.owner, None)  # type: ignore[union-attr]
                        self._check_owned(d.object_id)
                else:
                    self.pending_releases.setdefault(d.owner, []).append(BorrowRelease(d.object_id, (d.forward_id,)))

    def _send_reply(self: Peer, key: ExecKey, ex: ExecTask) -> None:
        assert ex.reply is not None
        r = self.remotes.get(ex.owner)
        if ex.reply.retained and ex.owner != self.peer_id:
            ex.reply = _fit_retained(ex.reply, r.max_frame_bytes if r is not None and r.max_frame_bytes else 1 << 20)
        self._send(ex.owner, ex.reply)
        ex.reply_seq = r.out_seq if r is not None and r.state == "alive" else 0
        if ex.reply_seq:
            self.replied.setdefault(ex.owner, deque()).append((ex.reply_seq, key))
        self._release_exec_holds(ex)
        if ex.spec.actor_id:
            self._actor_call_done(key)
        if ex.owner == self.peer_id and self.exec_tasks.get(key) is ex:
            # Its own call (ACT-021): the reply goes through the loopback, which loses
            # nothing and acknowledges nothing, so the record can go now (RPC-002).
            del self.exec_tasks[key]
            self.exec_index.pop((ex.run_id, ex.spec.attempt), None)

    def _release_exec_holds(self: Peer, ex: ExecTask) -> None:
        held, ex.held = ex.held, ()
        for oid in held:
            self._hold(oid, "task_holds", -1)

    def _on_acked(self: Peer, r: Remote, ack: int) -> None:
        """RPC-002: a reply the owner has acknowledged needs no record any more."""
        replied = self.replied.get(r.peer)
        while replied and replied[0][0] <= ack:  # replies in seq order: O(1) each
            _, k = replied.popleft()
            ex = self.exec_tasks.get(k)
            if ex is None or ex.state != "replied":
                continue
            del self.exec_tasks[k]
            self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
            self._story(ex.spec.task_id, "reply_acked", "replied->forgotten")

    def _on_CancelTask(self: Peer, r: Remote, msg: CancelTask) -> None:
        for key, ex in list(self.exec_tasks.items()):
            if key[0] == r.peer and ex.spec.task_id == msg.task_id:
                ex.cancelled = True
                if ex.state == "running":
                    self._transition_exec(ex, "cancel")
                    self._out(StopTask(self._sid, ex.run_id, ex.spec.attempt))
                elif ex.state == "resolving" and not ex.spec.actor_id:
                    ex.waiting.clear()
                    self._maybe_start(key)
                elif ex.state == "resolving" and self._unhold_actor_call(key):
                    # ACT-023: a call held for its actor's creation never starts (TASK-008).
                    ex.waiting.clear()
                    info = ErrorInfo(ErrorCode.TASK_CANCELLED, "cancelled before its actor was created here", "TASK-008")
                    self._reply_unrun(key, ex, info, "cancel")

    def _drop_exec(self: Peer, key: ExecKey) -> None:
        """FATE-003: the owner is dead; nobody wants this task's result."""
        ex = self.exec_tasks.pop(key)
        self.exec_index.pop((ex.run_id, ex.spec.attempt), None)
        h = self.hosted.get(ex.spec.actor_id) if ex.spec.actor_id else None
        if h is not None:
            # TASK-064: a fenced caller's call stops counting against maxConcurrency and
            # leaves the order at once (the caller's pump, after every drop, starts the next).
            h.running.pop(key, None)
            if key in h.queue:
                h.queue.remove(key)
        if ex.state == "running":
            self._out(StopTask(self._sid, ex.run_id, ex.spec.attempt))
            # Its results may still arrive; their stored copies must then go (FATE-008).
            self.dropped_returns[(ex.run_id, ex.spec.attempt)] = ex.spec.return_ids
            if len(self.dropped_returns) > 4096:
                del self.dropped_returns[next(iter(self.dropped_returns))]
        if ex.state != "replied":
            self._transition_exec(ex, "owner_died")
        if ex.state == "dropped":
            self._abandon_grants(ex)  # BOR-014: the owner will never receive them
        for oid in list(self.arg_waiters):
            self.arg_waiters[oid] = [k for k in self.arg_waiters[oid] if k != key]
            if not self.arg_waiters[oid]:
                del self.arg_waiters[oid]
        self._release_exec_holds(ex)

    def _transition_exec(self: Peer, ex: ExecTask, event: str) -> None:
        self._transition("executor-task", ex, ex.spec.task_id, event)


def _cut_text(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, on a character boundary (ZMQ-022)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[:max(limit, 0)].decode("utf-8", errors="ignore")


def _descriptor_bytes(d: RefDescriptor) -> int:
    """An upper bound of one encoded RefDescriptor: its struct and its four texts."""
    return 48 + sum(8 + (len(t.encode()) + 8) // 8 * 8 for t in (d.object_id, d.owner, d.owner_address, d.forward_id))


def _fit_retained(reply: TaskReply, max_frame_bytes: int) -> TaskReply:
    """ZMQ-022: a reply whose ``retained`` alone would take it over the submitter's frame
    limit leaves descriptors out, the last first; the grants stay ours (BOR-007), and
    ``retained`` is information only (REF-005)."""
    used = FRAME_HEADROOM
    for rv in reply.returns:
        if rv.value is not None:
            used += len(rv.value.data) + sum(len(b) for b in rv.value.buffers)
            used += sum(_descriptor_bytes(d) for d in rv.value.nested)
        used += sum(_descriptor_bytes(d) for d in rv.nested)
        if rv.error is not None:
            used += len(rv.error.message.encode()) + len(rv.error.detail.encode()) + len(rv.error.requirement.encode())
    kept = []
    for d in reply.retained:
        used += _descriptor_bytes(d)
        if used > max_frame_bytes:
            break
        kept.append(d)
    return reply if len(kept) == len(reply.retained) else replace(reply, retained=tuple(kept))
