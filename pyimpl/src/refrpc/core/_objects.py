"""Ownership table, borrowing and reclamation (OWN-*, BOR-*, GC-*, OBJ-*, LOC-*)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .errors import LocalUsageError, ProtocolViolation
from .events import FreeCopy, GetResult, IntrospectResult
from .messages import (
    FRAME_HEADROOM,
    AddLocation,
    BorrowConfirmed,
    BorrowerRegistered,
    BorrowRelease,
    ConfirmBorrow,
    ErrorCode,
    ErrorInfo,
    FreeObjects,
    GetObjectStatus,
    ActorEntry,
    IntrospectReply,
    IntrospectRequest,
    PeerSummary,
    StateCount,
    ObjectId,
    ObjectState,
    ObjectStatus,
    PeerId,
    RefDescriptor,
    RegisterBorrower,
    ReleaseBorrows,
    RemoveLocation,
    TableEntry,
    Value,
)
from .state import BorrowedObject, OutgoingRegistration, OwnedObject, Remote

if TYPE_CHECKING:
    from .peer import Peer


class Objects:
    """Mixin of :class:`Peer`: the ownership table and the borrower entries."""

    # ------------------------------------------------------------ lookups
    def _owns(self: Peer, oid: ObjectId) -> bool:
        return oid.startswith(self.id_prefix)

    def _counter_of(self: Peer, id_: str) -> int:
        """ID-006: the counter of one of this incarnation's ids (the decimal number after
        its prefix, up to the next dot), or 0 if it has none."""
        if not id_.startswith(self.id_prefix):
            return 0
        head = id_[len(self.id_prefix):].split(".", 1)[0]
        return int(head) if head.isascii() and head.isdigit() else 0

    def _note_allocated(self: Peer, id_: str) -> None:
        """An object, task or actor id of ours is in use: its counter has been reached (ID-006)."""
        self.highest_counter = max(self.highest_counter, self._counter_of(id_))

    def _allocated(self: Peer, id_: str) -> bool:
        """ID-006: whether this incarnation ever allocated ``id_`` (FREED rather than
        UNKNOWN; a forgotten task rather than WRONG_STATE), whatever follows the counter."""
        return 0 < self._counter_of(id_) <= self.highest_counter

    def _descriptor(self: Peer, oid: ObjectId, forward_id: str = "") -> RefDescriptor:
        """The on-wire descriptor of a ref this peer holds (REF-001)."""
        e = self.owned.get(oid)
        if e is not None:
            return RefDescriptor(oid, self.peer_id, self.incarnation, self.address, e.size, forward_id)
        b = self.borrowed.get(oid)
        if b is None:
            raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"this peer holds no ref to {oid}")
        return RefDescriptor(oid, b.ref.owner, b.ref.owner_incarnation, b.ref.owner_address, b.size if b.size >= 0 else b.ref.size_hint, forward_id)

    def _ref_conflict(self: Peer, body: object) -> tuple[str, str] | None:
        """Why a delivered message is malformed because of one of its descriptors, and
        the rule it breaks: an owner incarnation of 0 (REF-004), or (REF-007) another
        owner or owner incarnation than the entry this peer keeps for that object id
        (owned, or held as borrower, under a task hold or a cover), or than an earlier
        descriptor of the same message; None when nothing is wrong."""
        seen: dict[ObjectId, tuple[str, int]] = {}
        for d in _descriptors_in(body):
            oid = d.object_id
            if d.owner_incarnation == 0:
                return f"a descriptor of {oid} names owner incarnation 0", "REF-004"
            if oid in self.owned:
                kept = (self.peer_id, self.incarnation)
            elif oid in self.borrowed:
                ref = self.borrowed[oid].ref
                kept = (ref.owner, ref.owner_incarnation)
            else:
                kept = seen.setdefault(oid, (d.owner, d.owner_incarnation))
            if (d.owner, d.owner_incarnation) != kept:
                return (f"a descriptor of {oid} names owner {d.owner}/{d.owner_incarnation}, "
                        f"but {oid} is known here as owned by {kept[0]}/{kept[1]}", "REF-007")
        return None

    def _refs_agree(self: Peer, d: RefDescriptor) -> bool:
        """Whether ``d`` names the owner and incarnation of the entry kept for its
        object id, if any (REF-007: a conflicting descriptor is never merged)."""
        if d.owner_incarnation == 0:
            return False  # REF-004: names no incarnation; never acted on
        if d.object_id in self.owned:
            return d.owner == self.peer_id and d.owner_incarnation == self.incarnation
        b = self.borrowed.get(d.object_id)
        return b is None or (b.ref.owner == d.owner and b.ref.owner_incarnation == d.owner_incarnation)

    def settled(self: Peer, oid: ObjectId) -> bool:
        """Whether a ``Get`` of ``oid`` would be answered at once (its value, or an
        error, is known here). Reads state only."""
        return self._resolution(oid) is not None

    def descriptor(self: Peer, oid: ObjectId) -> RefDescriptor:
        """The descriptor of a ref this peer holds, for the shell to embed in a value.

        Reads state only; raises LocalUsageError if the peer holds no such ref.
        """
        self._require_held(oid)
        return self._descriptor(oid)

    def _require_held(self: Peer, oid: ObjectId) -> None:
        e = self.owned.get(oid)
        if e is not None and e.state != "released":
            return
        if oid in self.borrowed:
            return
        code = ErrorCode.OBJECT_FREED if self._owns(oid) else ErrorCode.UNKNOWN_OBJECT
        raise LocalUsageError(code, f"this peer holds no ref to {oid}")

    def _borrowed_entry(self: Peer, d: RefDescriptor) -> BorrowedObject:
        b = self.borrowed.get(d.object_id)
        if b is None:
            b = BorrowedObject(ref=replace(d, forward_id=""), size=d.size_hint)
            self.borrowed[d.object_id] = b
            self._story(d.object_id, "borrow-entry", f"owner {d.owner}")
            if d.owner == self.peer_id and d.owner_incarnation not in (0, self.incarnation):
                # LIV-020: an earlier incarnation of this peer, fenced like any other (TRC-008)
                if self.trace_events and (d.owner, d.owner_incarnation) not in self.fenced:
                    self._trace("peer-declared-dead", peer=d.owner, incarnation=str(d.owner_incarnation),
                                reason="an earlier incarnation of this peer", source="earlier-self")
                self._add_fence(d.owner, d.owner_incarnation)
            self._ensure_session(d.owner, d.owner_address, d.owner_incarnation)  # REF-006
            if (d.owner, d.owner_incarnation) in self.fenced:
                self._transition_borrowed(b, "owner_died")  # REF-002
                b.error = ErrorInfo(ErrorCode.OWNER_DIED, f"owner {d.owner} died", "FATE-001")
        return b

    def _location_pairs(self: Peer, e: OwnedObject) -> tuple[tuple[PeerId, str], ...]:
        out = []
        for p in e.locations:
            addr = self.address if p == self.peer_id else self._address_of(p)
            out.append((p, addr))
        return tuple(out)

    def _relay_pairs(self: Peer, e: OwnedObject, asker: PeerId) -> tuple[tuple[PeerId, str], ...]:
        """LOC-021: the relays listed to ``asker``, never ``asker``, none fenced or dead, at
        most ``relays_listed``: first those listed first fewer than ``relay_fanout`` times,
        oldest first (so the fetchers form a tree of that fan-out: 1 makes a chain), then
        the others, most recent first."""
        live = [p for p in e.relays if p != asker and (r := self.remotes.get(p)) is not None and r.state != "dead"]
        fanout = self.config.relay_fanout
        order = [p for p in live if e.relays[p] < fanout] + [p for p in reversed(live) if e.relays[p] >= fanout]
        return tuple((p, self._address_of(p)) for p in order[: self.config.relays_listed])

    def _add_relay(self: Peer, e: OwnedObject, peer: PeerId) -> None:
        """LOC-020: ``peer`` is about to fetch ``e``'s value and serves what it has meanwhile."""
        if peer in e.locations or e.value is not None:
            return  # it holds a whole copy already, or there is nothing to fetch
        known = e.relays.pop(peer, None) is not None
        e.relays[peer] = 0  # the most recent last, listed first to nobody yet
        if self.trace_events and not known:
            self._trace("relay-added", e.object_id, peer=peer)
        while len(e.relays) > self.config.relays_kept:
            self._drop_relay(e, next(iter(e.relays)), "forgotten")  # the oldest is forgotten first

    def _drop_relay(self: Peer, e: OwnedObject, peer: PeerId, reason: str) -> None:
        if e.relays.pop(peer, None) is not None and self.trace_events:
            self._trace("relay-removed", e.object_id, peer=peer, reason=reason)

    def _drop_relays(self: Peer, e: OwnedObject, reason: str) -> None:
        for peer in list(e.relays):
            self._drop_relay(e, peer, reason)

    def _address_of(self: Peer, peer: PeerId) -> str:
        r = self.remotes.get(peer)
        if r is not None and r.address:
            return r.address
        if peer in self.workers:
            return self.workers[peer][0]
        return self.addresses.get(peer, ("", 0))[0]

    # ------------------------------------------------------------ holds
    def _hold(self: Peer, oid: ObjectId, kind: str, delta: int, container: ObjectId = "") -> None:
        """Change one hold on an owned or borrowed entry, then reclaim if it was the last."""
        e = self.owned.get(oid)
        target: OwnedObject | BorrowedObject | None = e if e is not None else self.borrowed.get(oid)
        if target is None:
            if delta > 0:
                raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"no entry for {oid}")
            return
        if kind == "contained":
            if delta > 0:
                target.contained_in[container] = None
            else:
                target.contained_in.pop(container, None)
        else:
            value = getattr(target, kind) + delta
            if value < 0:
                self._story(oid, "hold-underflow", kind)
                value = 0
            setattr(target, kind, value)
        self._story(oid, f"{kind}{'+' if delta > 0 else '-'}", container)
        if self.trace_events:
            self._trace_hold(oid, kind, delta, target, container)
        if delta < 0:
            self._check(oid)

    def _check(self: Peer, oid: ObjectId) -> None:
        if oid in self.owned:
            self._check_owned(oid)
        elif oid in self.borrowed:
            self._check_borrowed(oid)

    def _hold_nested(self: Peer, container: ObjectId, refs: tuple[RefDescriptor, ...]) -> None:
        """GC-002: a value this peer keeps holds every ref nested in it."""
        for d in refs:
            if d.owner == self.peer_id and d.owner_incarnation == self.incarnation:
                e = self.owned.get(d.object_id)
                if e is None or e.state == "released":
                    self._story(d.object_id, "nested-unknown", container)
                    continue
                e.contained_in[container] = None
                if self.trace_events:
                    self._trace_hold(d.object_id, "contained", +1, e, container)
            else:
                b = self._borrowed_entry(d)
                b.contained_in[container] = None
                if d.forward_id:
                    b.grants[d.forward_id] = None
                if self.trace_events:
                    self._trace_hold(d.object_id, "contained", +1, b, container)
            self._story(d.object_id, "contained+", container)

    def _release_nested(self: Peer, container: ObjectId, refs: tuple[RefDescriptor, ...]) -> None:
        for d in refs:
            self._hold(d.object_id, "contained", -1, container)  # GC-003

    # ------------------------------------------------------------ reclamation
    def _check_owned(self: Peer, oid: ObjectId) -> None:
        e = self.owned[oid]
        if e.state == "pending" or e.in_scope():
            return
        if e.state in ("ready", "failed"):
            for p in list(e.locations):  # OWN-005
                if p == self.peer_id:
                    self._out(FreeCopy(self._sid, oid))
                else:
                    self.pending_frees.setdefault(p, []).append(oid)
                if self.trace_events:
                    self._trace("location-removed", oid, peer=p)
            e.locations.clear()
            self._drop_relays(e, "freed")
            e.value = None
            nested, e.nested = e.nested, ()
            e.reclaimed = True
            if oid in self.owned_actors:
                self._actor_handles_gone(oid)  # ACT-009: no handle is left anywhere
            if e.lineage_refs > 0 and not e.lineage_evicted:
                self._transition_owned(e, "out_of_scope")
            else:
                self._transition_owned(e, "out_of_scope_unneeded")
                self._delete_owned(oid)
            self._release_nested(oid, nested)
        elif e.state == "released" and e.lineage_refs == 0:
            self._transition_owned(e, "lineage_unneeded")  # OWN-006
            self._delete_owned(oid)

    def _delete_owned(self: Peer, oid: ObjectId) -> None:
        e = self.owned.pop(oid)
        self._forget_status_waits(oid)
        t = self.tasks.get(e.task_id) if e.task_id else None
        if t is not None:
            self._return_deleted(t)

    def _check_borrowed(self: Peer, oid: ObjectId) -> None:
        b = self.borrowed[oid]
        if b.holds() > 0:
            return
        owner_alive = (b.owner, b.ref.owner_incarnation) not in self.fenced
        if b.grants and owner_alive:  # BOR-005
            self.pending_releases.setdefault(b.owner, []).append(BorrowRelease(oid, tuple(b.grants)))
        self._transition_borrowed(b, "holds_zero")
        del self.borrowed[oid]
        if oid in self.copies and oid not in self.primaries:  # a secondary copy only (GC-005)
            self.copies.pop(oid)
            self._out(FreeCopy(self._sid, oid))
            if owner_alive:
                self._send(b.owner, RemoveLocation(oid), b.ref.owner_address)  # LOC-003
        elif b.relay_offered and oid not in self.copies and owner_alive:
            self._send(b.owner, RemoveLocation(oid), b.ref.owner_address)  # LOC-023: no longer a relay

    # ------------------------------------------------------------ settling and answers
    def _resolution(self: Peer, oid: ObjectId) -> tuple[Value | None, tuple, int, ErrorInfo | None] | None:
        """(value, locations, size, error) if the object is settled here, else None."""
        e = self.owned.get(oid)
        if e is not None:
            if e.state == "ready":
                return e.value, (() if e.value is not None else self._location_pairs(e)), e.size, None
            if e.state == "failed":
                return e.cause, (), -1, e.error  # the exception the task raised, if sent (TASK-018)
            if e.state == "released":
                return None, (), -1, ErrorInfo(ErrorCode.OBJECT_FREED, f"{oid} was reclaimed", "OBJ-003")
            return None
        b = self.borrowed.get(oid)
        if b is None:
            return None, (), -1, ErrorInfo(ErrorCode.UNKNOWN_OBJECT, f"no ref to {oid} here")
        if b.state == "ready":
            # FET-040: the relays the owner listed first, then the copies (FET-011).
            return b.value, (b.relays + b.locations if b.value is None else b.locations), b.size, None
        if b.state == "failed":
            return None, (), -1, b.error
        return None

    def _object_settled(self: Peer, oid: ObjectId) -> None:
        """Answer everyone waiting on ``oid``: local gets, remote askers, task args."""
        res = self._resolution(oid)
        if res is None:
            return
        value, locations, size, error = res
        for request_id in self.get_waiters.pop(oid, []):
            self._out(GetResult(self._sid, request_id, oid, value, locations, size, error))
        relays = dict(self.status_waiters.get(oid, {}))  # who offered to relay (LOC-020)
        for peer in self._forget_status_waits(oid):
            self._answer_status(peer, oid, bool(relays.get(peer)))
        for key in self.arg_waiters.pop(oid, []):
            self._arg_resolved(key, oid)

    def _answer_status(self: Peer, peer: PeerId, oid: ObjectId, relay: bool) -> None:
        """Send ``peer`` the status of ``oid``; a fetcher that offered to relay is
        listed as one to those who ask after it (LOC-020)."""
        status = self._status_message(oid, peer)
        self._send(peer, status)
        e = self.owned.get(oid)
        if e is not None and status.relays:
            e.relays[status.relays[0]] += 1  # the relay this asker will try first (LOC-021)
        if relay and e is not None and e.state == "ready" and self.config.relays_listed > 0:
            self._add_relay(e, peer)

    def _status_message(self: Peer, oid: ObjectId, asker: PeerId = "") -> ObjectStatus:
        e = self.owned.get(oid)
        if e is None:
            if self._allocated(oid):
                return ObjectStatus(oid, ObjectState.FREED)  # OBJ-003, ID-006
            if oid in self.borrowed:
                info = ErrorInfo(ErrorCode.NOT_OWNER, f"{oid} is owned by {self.borrowed[oid].owner}", "OBJ-007")
                return ObjectStatus(oid, ObjectState.UNKNOWN, error=info)
            return ObjectStatus(oid, ObjectState.UNKNOWN)
        if e.state == "ready":
            if e.value is None and e.nested and asker and not self._uses_borrowing(asker):
                # OBJ-012: a stored form with nested refs is not served to a peer that
                # cannot register for them (HS-017); the object itself stays ready.
                info = ErrorInfo(ErrorCode.FEATURE_NOT_NEGOTIATED,
                                 f"{oid} embeds refs and borrowing is not in use with {asker}", "OBJ-012")
                return ObjectStatus(oid, ObjectState.FAILED, error=info)
            pairs = self._location_pairs(e) if e.value is None else ()
            relays = self._relay_pairs(e, asker) if e.value is None else ()
            return ObjectStatus(
                oid, ObjectState.READY, e.size,
                tuple(p for p, _ in pairs), tuple(a for _, a in pairs), e.value,
                relays=tuple(p for p, _ in relays), relay_addresses=tuple(a for _, a in relays),
            )
        if e.state == "failed":
            return ObjectStatus(oid, ObjectState.FAILED, error=e.error)
        if e.state == "released":
            return ObjectStatus(oid, ObjectState.FREED)
        return ObjectStatus(oid, ObjectState.PENDING)

    def _uses_borrowing(self: Peer, peer: PeerId) -> bool:
        r = self.remotes.get(peer)
        return r is not None and (r.all_features or "borrowing" in r.features)

    def _request_status(self: Peer, b: BorrowedObject) -> None:
        if not b.status_requested and b.state == "unresolved":
            b.status_requested = True
            b.relay_offered = self.config.relay_fetches  # LOC-020
            self._send(b.owner, GetObjectStatus(b.ref.object_id, True, b.relay_offered), b.ref.owner_address,
                       b.ref.owner_incarnation)

    def _get(self: Peer, request_id: int, oid: ObjectId, urgent: bool = False) -> None:
        if oid not in self.owned and oid not in self.borrowed:
            code = ErrorCode.OBJECT_FREED if self._owns(oid) else ErrorCode.UNKNOWN_OBJECT
            self._out(GetResult(self._sid, request_id, oid, error=ErrorInfo(code, f"no ref to {oid} here")))
            return
        res = self._resolution(oid)
        if res is not None:
            value, locations, size, error = res
            self._out(GetResult(self._sid, request_id, oid, value, locations, size, error))
            return
        self.get_waiters.setdefault(oid, []).append(request_id)
        if urgent:
            self._expedite(oid)
        b = self.borrowed.get(oid)
        if b is not None:
            self._request_status(b)  # OBJ-002

    # ------------------------------------------------------------ owner-side handlers
    def _forget_status_waits(self: Peer, oid: ObjectId, peers: Iterable[PeerId] | None = None) -> list[PeerId]:
        """Remove the waits of ``peers`` (default: all) on ``oid``; the peers whose wait was removed."""
        waiters = self.status_waiters.get(oid)
        if not waiters:
            self.status_waiters.pop(oid, None)
            return []
        gone = [p for p in (list(waiters) if peers is None else peers) if p in waiters]
        for p in gone:
            del waiters[p]
        if not waiters:
            del self.status_waiters[oid]
        for p in gone:
            left = self.status_wait_counts.get(p, 0) - 1
            if left > 0:
                self.status_wait_counts[p] = left
            else:
                self.status_wait_counts.pop(p, None)
        return gone

    def _on_GetObjectStatus(self: Peer, r: Remote, msg: GetObjectStatus) -> None:
        e = self.owned.get(msg.object_id)
        if msg.wait and e is not None and e.state == "pending":
            waiters = self.status_waiters.setdefault(msg.object_id, {})
            if r.peer not in waiters:
                count = self.status_wait_counts.get(r.peer, 0)
                if count >= self.config.max_status_waits:
                    if not waiters:
                        del self.status_waiters[msg.object_id]
                    # SEC-009: the wait is refused as a request (ERR-003), nothing is remembered.
                    raise ProtocolViolation(ErrorCode.RESOURCE_EXHAUSTED,
                                            f"{r.peer} already waits on {count} objects here", "SEC-009")
                self.status_wait_counts[r.peer] = count + 1
            waiters[r.peer] = msg.relay  # whether it offered to relay (LOC-020), as it last said
            self._expedite(msg.object_id)  # the asker may hold a slot while it waits
            return
        self._answer_status(r.peer, msg.object_id, msg.relay)

    def _on_RegisterBorrower(self: Peer, r: Remote, msg: RegisterBorrower) -> None:
        e = self.owned.get(msg.object_id)
        if e is None or e.state == "released":
            code = ErrorCode.OBJECT_FREED if self._allocated(msg.object_id) else ErrorCode.UNKNOWN_OBJECT  # ID-006
            info = ErrorInfo(code, f"{msg.object_id} is not live here", "BOR-003")
            self._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id, info))
            return
        if msg.borrower == self.peer_id:
            info = ErrorInfo(ErrorCode.WRONG_STATE, "the owner cannot borrow its own object", "BOR-025")
            self._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id, info))
            return
        if (msg.borrower, msg.borrower_incarnation) in self.fenced:
            info = ErrorInfo(ErrorCode.PEER_DIED, f"borrower {msg.borrower} is dead", "BOR-003")
            self._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id, info))
            return
        refusal = self._grant_refusal(msg.borrower, msg.borrower_incarnation)
        if refusal is not None:
            self._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id, refusal))
            return
        self.addresses[msg.borrower] = (msg.borrower_address, msg.borrower_incarnation)
        self._ensure_session(msg.borrower, msg.borrower_address, msg.borrower_incarnation)  # OWN-011
        e.borrowers.setdefault(msg.borrower, {})[msg.forward_id] = r.peer  # BOR-003, BOR-012
        e.grant_incarnations[msg.forward_id] = msg.borrower_incarnation  # BOR-009
        self._story(msg.object_id, "grant", f"{msg.borrower} {msg.forward_id} via {r.peer}")
        if self.trace_events:
            self._trace("grant-added", msg.object_id, borrower=msg.borrower, borrowerIncarnation=str(msg.borrower_incarnation),
                        forwardId=msg.forward_id, requester=r.peer, reason="register-borrower")
        self._send(r.peer, BorrowerRegistered(msg.object_id, msg.forward_id))

    def _grant_refusal(self: Peer, borrower: PeerId, incarnation: int) -> ErrorInfo | None:
        """SEC-008, SEC-021: why a grant for ``borrower`` cannot be recorded now, or None.

        The grants a borrower incarnation holds are counted exactly only when an
        estimate (registrations since the last count) reaches the limit, so the
        common case costs a dict update.
        """
        cfg = self.config
        key = (borrower, incarnation)
        n = self.grants_registered.get(key, 0) + 1
        if n > cfg.max_grants_per_borrower:
            n = 1 + sum(1 for e in self.owned.values() for fid, inc in e.grant_incarnations.items()
                        if inc == incarnation and fid in e.borrowers.get(borrower, {}))
            if n > cfg.max_grants_per_borrower:
                self.grants_registered[key] = n - 1
                return ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED,
                                 f"{borrower} holds {n - 1} grants here, the limit", "SEC-008")
        if borrower not in self.remotes and len(self.remotes) >= cfg.max_sessions and \
                sum(1 for x in self.remotes.values() if x.state != "dead") >= cfg.max_sessions:
            return ErrorInfo(ErrorCode.RESOURCE_EXHAUSTED, f"already in session with {cfg.max_sessions} peers", "SEC-021")
        self.grants_registered[key] = n
        return None

    def _on_ReleaseBorrows(self: Peer, r: Remote, msg: ReleaseBorrows) -> None:
        for rel in msg.releases:
            e = self.owned.get(rel.object_id)
            if e is None:
                continue  # idempotent: already gone
            for fid in rel.forward_ids:
                # The borrower releases its grant, or the requester one it abandoned (BOR-014).
                for borrower, grants in list(e.borrowers.items()):
                    if fid not in grants:
                        continue
                    # BOR-018: only the grant's own borrower incarnation, or its requester.
                    own = borrower == r.peer and e.grant_incarnations.get(fid, r.incarnation) == r.incarnation
                    if own or grants[fid] == r.peer:
                        e.grant_incarnations.pop(fid, None)
                        if self.trace_events:
                            self._trace("grant-removed", rel.object_id, borrower=borrower, forwardId=fid,
                                        requester=grants[fid], reason="released")
                        del grants[fid]
                        if not grants:
                            del e.borrowers[borrower]
            self._story(rel.object_id, "release", f"{r.peer} {','.join(rel.forward_ids)}")
            self._check_owned(rel.object_id)

    def _on_BorrowConfirmed(self: Peer, r: Remote, msg: BorrowConfirmed) -> None:
        e = self.owned.get(msg.object_id)
        if e is None or msg.held:
            return
        grants = e.borrowers.get(r.peer, {})
        if msg.forward_id not in grants:
            return  # BOR-022: no grant of the sender's PeerId
        if e.grant_incarnations.get(msg.forward_id, r.incarnation) != r.incarnation:
            return  # BOR-022: the grant belongs to another incarnation of that PeerId
        requester = grants.pop(msg.forward_id, None)
        if requester is not None:  # BOR-011: phantom grant
            e.grant_incarnations.pop(msg.forward_id, None)
            self._story(msg.object_id, "phantom-grant-dropped", f"{r.peer} {msg.forward_id}")
            if self.trace_events:
                self._trace("grant-removed", msg.object_id, borrower=r.peer, forwardId=msg.forward_id,
                            requester=requester, reason="phantom")
            if not grants:
                e.borrowers.pop(r.peer, None)
            self._check_owned(msg.object_id)

    def _on_AddLocation(self: Peer, r: Remote, msg: AddLocation) -> None:
        e = self.owned.get(msg.object_id)
        if e is None or e.state != "ready":
            self.pending_frees.setdefault(r.peer, []).append(msg.object_id)
            return
        e.locations[r.peer] = None  # LOC-002
        self._drop_relay(e, r.peer, "copy")  # a whole copy now (LOC-022)
        if self.trace_events:
            self._trace("location-added", msg.object_id, peer=r.peer, primary=False)

    def _on_RemoveLocation(self: Peer, r: Remote, msg: RemoveLocation) -> None:
        e = self.owned.get(msg.object_id)
        if e is not None:
            self._drop_relay(e, r.peer, "gave-up")  # it serves nothing any more (LOC-020, LOC-023)
        if e is None or r.peer not in e.locations:
            return
        del e.locations[r.peer]  # LOC-003
        if self.trace_events:
            self._trace("location-removed", msg.object_id, peer=r.peer)
        if e.state == "ready" and not e.locations and e.value is None:
            self._object_lost(msg.object_id)

    # ------------------------------------------------------------ borrower-side handlers
    def _on_ObjectStatus(self: Peer, r: Remote, msg: ObjectStatus) -> None:
        b = self.borrowed.get(msg.object_id)
        if b is None or b.owner != r.peer:
            return  # released meanwhile
        b.status_requested = False
        if msg.state != ObjectState.READY or msg.value is not None:
            b.relay_offered = False  # nothing to fetch: the owner listed it nowhere (LOC-020)
        if b.state != "unresolved":
            # A late or repeated answer (GEN-005): keep what we know, take new locations.
            if b.state == "ready" and msg.state == ObjectState.READY and msg.locations:
                b.locations = tuple(zip(msg.locations, msg.location_addresses))
                b.relays = tuple(zip(msg.relays, msg.relay_addresses))
            return
        if msg.state == ObjectState.READY:
            b.value = msg.value
            b.locations = tuple(zip(msg.locations, msg.location_addresses))
            b.relays = tuple(zip(msg.relays, msg.relay_addresses))
            b.size = msg.size
            self._transition_borrowed(b, "status_ready")
        elif msg.state in (ObjectState.FAILED, ObjectState.FREED, ObjectState.UNKNOWN):
            b.error = msg.error or ErrorInfo(
                ErrorCode.OBJECT_FREED if msg.state == ObjectState.FREED else ErrorCode.UNKNOWN_OBJECT,
                f"owner {r.peer} reports {msg.object_id} as {msg.state.value}",
            )
            self._transition_borrowed(b, "status_failed")
        else:
            self._request_status(b)  # still pending: ask again, waiting
            return
        self._object_settled(msg.object_id)

    def _on_BorrowerRegistered(self: Peer, r: Remote, msg: BorrowerRegistered) -> None:
        reg = self.outgoing.pop(msg.forward_id, None)
        if reg is None:
            return
        kind = reg.purpose[0]
        b = self.borrowed.get(reg.object_id)
        if kind in ("reply", "abandon"):
            if b is not None:
                b.outgoing_registrations -= 1
                if self.trace_events:
                    self._trace_hold(reg.object_id, "outgoing_registrations", -1, b)
            if kind == "reply":
                self._reply_registration_done(reg, msg.error)
            elif msg.error is None and b is not None:
                # BOR-014: granted for a send that was abandoned meanwhile; give it back.
                self.pending_releases.setdefault(b.owner, []).append(BorrowRelease(reg.object_id, (msg.forward_id,)))
        else:
            if b is not None and b.self_registration == msg.forward_id:
                b.self_registration = ""
                if self.trace_events:
                    self._trace_hold(reg.object_id, "self_registration", -1, b)
                if msg.error is None:
                    b.grants[msg.forward_id] = None
                elif b.state != "failed":
                    b.error = msg.error
                    self._transition_borrowed(b, "registration_refused")  # BOR-026
                    self._object_settled(reg.object_id)
            if msg.error is not None:
                self._drop_from_retained(msg.forward_id)  # BOR-026: retained names confirmed grants only
            if kind == "self":
                self._hold(reg.purpose[1], "pins", -1)
            # A task may wait on this registration whichever need started it (BOR-021).
            self._reply_registration_done(reg, None)
        if b is not None and reg.object_id in self.borrowed:
            self._check_borrowed(reg.object_id)

    def _on_ConfirmBorrow(self: Peer, r: Remote, msg: ConfirmBorrow) -> None:
        if msg.forwarder in self.config.unannounced and (msg.forwarder, msg.forwarder_incarnation) not in self.fenced:
            # BOR-011, CLU-034: the head is judged by our own session only, never on an
            # owner's word; not fenced, it may still deliver the ref: held (the safe side).
            self._send(r.peer, BorrowConfirmed(msg.object_id, msg.forward_id, True))
            return
        # BOR-011: fence first, so a ref still in flight from the forwarder can never land.
        self._fence(msg.forwarder, msg.forwarder_incarnation, "confirm_borrow", f"{r.peer} says it died")
        b = self.borrowed.get(msg.object_id)
        held = b is not None and msg.forward_id in b.grants
        self._send(r.peer, BorrowConfirmed(msg.object_id, msg.forward_id, held))

    def _on_FreeObjects(self: Peer, r: Remote, msg: FreeObjects) -> None:
        for oid in msg.object_ids:
            if self.copies.get(oid) == r.peer:  # GC-004
                del self.copies[oid]
                self.primaries.discard(oid)
                self._out(FreeCopy(self._sid, oid))

    # ------------------------------------------------------------ materializing nested refs
    def _materialize(self: Peer, container: ObjectId, refs: tuple[RefDescriptor, ...]) -> None:
        if container not in self.owned and container not in self.borrowed:
            raise LocalUsageError(ErrorCode.UNKNOWN_OBJECT, f"no ref to container {container}")
        seen: dict[ObjectId, tuple[PeerId, int]] = {}
        for d in refs:  # check everything first: a refused stimulus changes nothing
            # REF-004, REF-007 (VAL-021): a descriptor read out of a value that names no
            # owner incarnation, or another owner than the entry kept here (or than an
            # earlier one of the same value), fails the read; nothing is merged.
            if d.owner_incarnation == 0 or not self._refs_agree(d) or \
                    seen.setdefault(d.object_id, (d.owner, d.owner_incarnation)) != (d.owner, d.owner_incarnation):
                rule = "REF-004" if d.owner_incarnation == 0 else "REF-007"
                raise LocalUsageError(ErrorCode.MALFORMED, f"{rule}: the value names {d.object_id} as owned by "
                                      f"{d.owner}/{d.owner_incarnation}, which cannot be")
            if d.owner == self.peer_id and d.owner_incarnation == self.incarnation:
                self._require_held(d.object_id)
        for d in refs:
            if d.owner == self.peer_id and d.owner_incarnation == self.incarnation:
                self._hold(d.object_id, "local_refs", +1)
                continue
            b = self._borrowed_entry(d)
            b.local_refs += 1
            if self.trace_events:
                self._trace_hold(d.object_id, "local_refs", +1, b)
            if b.grants or b.self_registration or b.task_holds or b.state == "failed":
                continue
            # BOR-008: register ourselves; the container keeps the ref alive meanwhile.
            fid = self._new_forward_id()
            b.self_registration = fid
            if self.trace_events:
                self._trace_hold(d.object_id, "self_registration", +1, b)
            self.outgoing[fid] = OutgoingRegistration(d.object_id, self.peer_id, ("self", container))
            self._hold(container, "pins", +1)
            self._send(d.owner, RegisterBorrower(d.object_id, self.peer_id, self.incarnation, self.address, fid), d.owner_address, d.owner_incarnation)

    def _new_forward_id(self: Peer) -> str:
        self.forward_counter += 1
        return f"{self.id_prefix}f{self.forward_counter}"

    # ------------------------------------------------------------ introspection
    def table(self: Peer) -> tuple[TableEntry, ...]:
        """The ownership table as INT-001 reports it; owned entries first, then borrowed."""
        rows = []
        for oid, e in self.owned.items():
            rows.append(TableEntry(
                oid, self.peer_id, "owner", e.state, e.local_refs, e.submitted_task_refs,
                tuple(e.contained_in), tuple(sorted(e.borrowers)), tuple(e.locations), e.lineage_refs, e.size,
                oid in self.spilled_copies,  # INT-020
            ))
        for oid, b in self.borrowed.items():
            rows.append(TableEntry(
                oid, b.owner, "borrower", b.state, b.local_refs, b.submitted_task_refs,
                tuple(b.contained_in), (), tuple(p for p, _ in b.locations), 0, b.size,
                oid in self.spilled_copies,
            ))
        return tuple(rows)

    def summary(self: Peer) -> PeerSummary:
        """What this peer is doing, counted, as INT-006 reports it (INT-009: each count
        list sorted by state name, no zero counts)."""

        def counts(states: Iterable[str]) -> tuple[StateCount, ...]:
            n: dict[str, int] = {}
            for state in states:
                n[state] = n.get(state, 0) + 1
            return tuple(StateCount(k, n[k]) for k in sorted(n, key=str.encode))

        return PeerSummary(
            owned_tasks=counts(t.state for t in self.tasks.values()),
            executing_tasks=counts(x.state for x in self.exec_tasks.values()),
            hosted_actors=tuple(ActorEntry(a, h.owner, h.state, "") for a, h in sorted(self.hosted.items())),
            owned_actors=tuple(ActorEntry(a, o.host, o.state, o.class_name) for a, o in sorted(self.owned_actors.items())),
            owned_objects=len(self.owned),
            borrowed_objects=len(self.borrowed),
        )

    def _introspect(self: Peer, request_id: int, peer: PeerId, summary: bool = False) -> None:
        if peer in ("", self.peer_id):
            mine = self.summary() if summary else None
            self._out(IntrospectResult(self._sid, request_id, self.peer_id, () if summary else self.table(), summary=mine))
            return
        r = self.remotes.get(peer)
        if r is not None and r.state == "dead":
            self._out(IntrospectResult(self._sid, request_id, peer, (), ErrorInfo(ErrorCode.PEER_DIED, f"{peer} is dead")))
            return
        self.introspections[request_id] = peer
        self._send(peer, IntrospectRequest(request_id, summary), self._address_of(peer))

    def _on_IntrospectRequest(self: Peer, r: Remote, msg: IntrospectRequest) -> None:
        if msg.summary:  # INT-006; the table is left out (INT-007): a status view needs counts only
            self._send(r.peer, IntrospectReply(msg.request_id, (), self.summary()))
        else:
            table = self.table()
            if r.max_frame_bytes and _table_bytes(table) > r.max_frame_bytes - FRAME_HEADROOM:
                # ZMQ-023: the whole table would not fit the requester's frames: the
                # counts only, which the requester reads as "not listed" (INT-007).
                self._send(r.peer, IntrospectReply(msg.request_id, (), self.summary()))
            else:
                self._send(r.peer, IntrospectReply(msg.request_id, table))

    def _on_IntrospectReply(self: Peer, r: Remote, msg: IntrospectReply) -> None:
        if self.introspections.get(msg.request_id) == r.peer:
            del self.introspections[msg.request_id]
            self._out(IntrospectResult(self._sid, msg.request_id, r.peer, msg.entries, summary=msg.summary))

    # ------------------------------------------------------------ flushing batched sends
    def _flush_batches(self: Peer) -> None:
        """Send the releases and frees one stimulus produced, one message per peer
        (BOR-005, GC-007), split where one would not fit a 1 MiB frame (GC-007, ZMQ-007)."""
        releases, self.pending_releases = self.pending_releases, {}
        for owner, rels in releases.items():
            for part in _split([piece for rel in rels for piece in _release_pieces(rel)], _release_bytes):
                self._send(owner, ReleaseBorrows(tuple(part)))
        frees, self.pending_frees = self.pending_frees, {}
        for peer, oids in frees.items():
            for part in _split(oids, _text_bytes):
                self._send(peer, FreeObjects(tuple(part)))

    # ------------------------------------------------------------ transitions
    def _transition_owned(self: Peer, e: OwnedObject, event: str) -> None:
        self._transition("owner-object", e, e.object_id, event)

    def _transition_borrowed(self: Peer, b: BorrowedObject, event: str) -> None:
        self._transition("borrower-object", b, b.ref.object_id, event)


def _table_bytes(table: tuple[TableEntry, ...]) -> int:
    """A generous estimate of the encoded size of ``table`` (ZMQ-023): its texts,
    plus 128 bytes of pointers and counters per entry and 8 per listed id."""
    total = 0
    for e in table:
        ids = (*e.contained_in, *e.borrowers, *e.locations)
        total += 128 + len(e.object_id) + len(e.owner) + len(e.role) + len(e.state) + sum(8 + len(i) for i in ids)
    return total


def _descriptors_in(body: object) -> Iterable[RefDescriptor]:
    """Every ref descriptor a message carries: arguments, returns, ``retained`` and the
    ``nested`` lists of its values (REF-007)."""
    args = getattr(body, "args", None)
    if args is not None:  # SubmitTask, CreateActor
        for a in args:
            if a.ref is not None:
                yield a.ref
            if a.value is not None:
                yield from a.value.nested
    returns = getattr(body, "returns", None)
    if returns is not None:  # TaskReply
        for rv in returns:
            if rv.value is not None:
                yield from rv.value.nested
            yield from rv.nested
        yield from body.retained  # type: ignore[attr-defined]
    if isinstance(body, ObjectStatus) and body.value is not None:
        yield from body.value.nested


#: What a batch of releases or frees may take, estimated: 1 MiB, the least frame limit
#: a peer may announce (HS-012), less the room left for the envelope (GC-007).
BATCH_BYTES = (1 << 20) - FRAME_HEADROOM


def _text_bytes(text: str) -> int:
    """An upper bound of a Text's encoded bytes in a list: its pointer, the text and
    its NUL, padded to a word."""
    return 8 + (len(text.encode()) + 1 + 7) // 8 * 8


def _release_bytes(rel: BorrowRelease) -> int:
    """An upper bound of one encoded ``BorrowRelease``: its struct, its id and its list."""
    return 24 + _text_bytes(rel.object_id) + sum(_text_bytes(f) for f in rel.forward_ids)


def _release_pieces(rel: BorrowRelease) -> list[BorrowRelease]:
    """``rel``, or, if its grants alone would not fit a batch, several releases of the
    same object, each naming some of them."""
    if _release_bytes(rel) <= BATCH_BYTES:
        return [rel]
    head = 24 + _text_bytes(rel.object_id)
    return [BorrowRelease(rel.object_id, tuple(part))
            for part in _split(list(rel.forward_ids), _text_bytes, BATCH_BYTES - head)]


def _split(items: list, size: Callable[[Any], int], limit: int = BATCH_BYTES) -> list[list]:
    """``items`` in order, cut into runs each within ``limit`` bytes (one item alone stays one
    run: ids are bounded, ID-007, so no single one comes near it)."""
    parts: list[list] = [[]]
    used = 0
    for item in items:
        n = size(item)
        if parts[-1] and used + n > limit:
            parts.append([])
            used = 0
        parts[-1].append(item)
        used += n
    return parts
