"""Cluster membership for multi-host clusters: who can run tasks, and where
(spec/membership.md, CLU-*).

Membership is a layer above the wire protocol, made of ordinary RefRPC tasks:
the head peer (``refrpc start --head``) keeps the registry. A worker that
starts registers itself with :func:`register`; a driver that joins registers
with :func:`register_driver`; both get the current *view* (a version number,
the live workers, the members known to have died) and add every worker to
their placement candidates. Each change of the registry (a worker joins, a
member dies or leaves) makes the head push the new view to every live member
with :func:`learn`, a zero-CPU task that never waits for a slot (CLU-010), so
that everyone places work on every live worker and fences every dead one, also
a peer it has no session with yet (CLU-012).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any

from ..core import events as ev
from ._refs import current_node

#: The head's peer id in every cluster started with ``refrpc start --head``.
HEAD = "head"


def address_towards(address: str) -> str:
    """This host's address on the route to ``address`` (``tcp://HOST:PORT``): the
    address a peer there reaches this host at (CLU-003). Nothing is sent; with no
    route, the loopback address."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, int(port)))  # picks the route and its source address only
            return s.getsockname()[0]
    except (OSError, ValueError):
        return "127.0.0.1"


def _head_node():
    return current_node()


#: On the head: the process id each registered worker and driver gave (for status).
PIDS: dict[str, int] = {}


#: On the head: the named resources each registered worker offers (TASK-012).
RESOURCES: dict[str, dict[str, float]] = {}

#: On the head: each member's incarnation as it registered (ID-002).
INCARNATIONS: dict[str, int] = {}

#: On the head: the view's version, raised by every change (CLU-008), and the
#: incarnations known to have died or left, newest last (CLU-008), at most DEAD_KEPT.
VERSION = [0]
DEAD: dict[tuple[str, int], str] = {}
DEAD_KEPT = 1024
#: On the head: the version in which each part of the view last changed -- a worker's
#: row, a death, a key binding -- so that a push can carry only what a member has not
#: applied yet (CLU-071). Written, with VERSION, under the head node's lock.
ROW_AT: dict[str, int] = {}
DEAD_AT: dict[tuple[str, int], int] = {}
KEY_AT: dict[str, int] = {}


#: How long the head waits for the answers to one push before it lets the next go.
PUSH_WAIT_S = 2.0


class _Pusher:
    """On the head: pushes the view to every live member after each change (CLU-010).

    A change only sets an event (the node calls :func:`noticed` holding its lock,
    where nothing may block); this thread submits the pushes, one view to every
    member at once, then waits a little for their answers. The ref of a push is
    kept until it is answered (or the next push to that member replaces it), so
    that no call is abandoned while in flight.
    """

    def __init__(self) -> None:
        self.changed = threading.Event()
        self.node: Any = None
        self.inflight: dict[str, Any] = {}
        self.pushes = 0
        self._thread: threading.Thread | None = None
        #: PeerId -> the version of the last view it answered (see wait_pushed).
        self.answered: dict[str, int] = {}
        #: (PeerId, incarnation) -> the version of the view it says it has applied
        #: (``learn``'s answer): the next push to it carries only what changed since.
        self.applied: dict[tuple[str, int], int] = {}
        #: Pushes that carried a whole view, and those that carried only changes.
        self.whole = self.partial = 0
        self._answers = threading.Condition()

    def start(self, node: Any) -> None:
        self.node = node
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="refrpc-membership", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self.changed.wait()
            self.changed.clear()
            node = self.node
            if node is None or node.stopped.is_set():
                return
            try:
                self._push(node)
            except Exception:  # the node is stopping; the next change pushes again
                if node.stopped.is_set():
                    return

    def _push(self, node: Any) -> None:
        from ..errors import GetTimeoutError
        from ._refs import submit_to, value_of

        view = _view(node)
        targets = [row[0] for row in view["members"]] + [p for p, _a in drivers()]
        sent: dict[str, int] = {}
        partial: dict[int, dict[str, Any]] = {}
        for peer in targets:
            if peer != node.peer_id:
                since = self.applied.get((peer, INCARNATIONS.get(peer, 0)), 0)
                if since and since < view["version"]:
                    if since not in partial:
                        partial[since] = _view(node, since, view["version"])
                    this = partial[since]
                    self.partial += 1
                else:
                    this = view
                    self.whole += 1
                self.inflight[peer] = submit_to(node, peer, "refrpc.runtime._membership:learn", this)
                sent[peer] = view["version"]
        self.pushes += 1
        # Let go of each answered push (its result is nothing to keep); one not answered
        # within PUSH_WAIT_S stays in flight until the next push replaces it.
        deadline = time.monotonic() + PUSH_WAIT_S
        for peer, ref in list(self.inflight.items()):
            try:
                applied = value_of(node, ref, deadline)
            except GetTimeoutError:
                continue
            except Exception:  # noqa: S110 - a failed push is settled too: the next view goes again
                pass
            else:
                self._applied(peer, sent.get(peer, 0), applied)
            if self.inflight.get(peer) is ref:
                del self.inflight[peer]
            if peer in sent:
                with self._answers:
                    self.answered[peer] = max(self.answered.get(peer, 0), sent[peer])
                    self._answers.notify_all()

    def _applied(self, peer: str, sent: int, answer: Any) -> None:
        """Record that ``peer`` applied every view up to ``answer`` (CLU-011, CLU-071):
        only for the incarnation pushed to, only up to the version sent (a later one it
        applied may have come from another source), and never backwards."""
        if not sent or not isinstance(answer, int) or isinstance(answer, bool) or answer < sent:
            return
        key = (peer, INCARNATIONS.get(peer, 0))
        self.applied[key] = max(self.applied.get(key, 0), sent)

    def forget(self, peer: str) -> None:
        """A member registered again: its next push carries the whole view."""
        for key in [k for k in self.applied if k[0] == peer]:
            del self.applied[key]

    def wait_pushed(self, version: int, but: str, within: float) -> None:
        """Wait (at most ``within`` s) until every live member other than ``but`` has
        answered a view of at least ``version``: a joiner's key is then known to every
        member before it is told the view and starts talking to them (CLU-051)."""
        node = self.node
        deadline = time.monotonic() + within
        with self._answers:
            while (left := deadline - time.monotonic()) > 0:
                targets = [row[0] for row in members()] + [p for p, _a in drivers()]
                if all(self.answered.get(p, 0) >= version for p in targets if p not in (but, node.peer_id)):
                    return
                self._answers.wait(min(left, 0.2))


PUSHER = _Pusher()


def noticed(ins: Any) -> None:
    """On the head (holding its node's lock): a member incarnation was declared dead;
    drop it from the registry and push the change (CLU-008). Never blocks."""
    if not isinstance(ins, ev.PeerDeclaredDead):
        return
    node = PUSHER.node
    if node is None:
        return
    for table in (node.members, node.drivers):
        if ins.peer in table and INCARNATIONS.get(ins.peer, 0) in (0, ins.incarnation):
            del table[ins.peer]
            _died(ins.peer, ins.incarnation, ins.reason)


def _remember_death(peer: str, incarnation: int, reason: str) -> None:
    """Most recent last, the oldest dropped beyond DEAD_KEPT (CLU-032); it enters the
    next version (the caller raises it, holding the head node's lock)."""
    DEAD.pop((peer, incarnation), None)
    DEAD[(peer, incarnation)] = reason
    DEAD_AT[(peer, incarnation)] = VERSION[0] + 1
    while len(DEAD) > DEAD_KEPT:
        DEAD_AT.pop(oldest := next(iter(DEAD)), None)
        DEAD.pop(oldest)


def _died(peer: str, incarnation: int, reason: str) -> None:
    """Called holding the head node's lock (see :func:`noticed`)."""
    _remember_death(peer, incarnation, reason)
    _changed()


def _changed() -> None:
    """A new version of the view, to be pushed (CLU-008); called holding the head
    node's lock, with what changed recorded for this version (CLU-071)."""
    VERSION[0] += 1
    PUSHER.changed.set()


def _view(node: Any, since: int = 0, upto: int = 0) -> dict[str, Any]:
    """The registry as members get it (CLU-008), with the key bound to each live
    member's PeerId and the head's own (CLU-050; empty without own keys). With
    ``since``, only what changed after that version (CLU-071): the rows of workers
    that registered since, the deaths since, the keys bound since; ``upto`` keeps
    the version of the whole view this one stands for."""
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}

    def new(at: dict[Any, int], key: Any) -> bool:
        return not since or at.get(key, 0) > since

    with node.lock:  # the registry and its version, read together
        version = upto or VERSION[0]
        rows = [(p, a, sl, h, RESOURCES.get(p, {})) for p, (a, sl, h, _) in node.members.items()
                if p not in dead and new(ROW_AT, p)]
        keys: dict[str, str] = {}
        if node.own_key is not None:
            keys = {p: node.keys[p] for p in [*node.members, *node.drivers] if p in node.keys and new(KEY_AT, p)}
            if not since:
                keys[node.peer_id] = node.own_key.public.decode()
        return {"version": version, "members": rows,
                "incarnations": {p: INCARNATIONS.get(p, 0) for p, *_ in rows},
                "dead": [(p, i, why) for (p, i), why in DEAD.items() if new(DEAD_AT, (p, i))],
                "keys": keys}


def spread(resources: dict[str, float] | None, names: list[str]) -> dict[str, dict[str, float]]:
    """Share the resources one host offers among its worker processes, so that the
    cluster offers what was asked in all: with at least one of a resource per worker,
    each gets an equal share; with less, the first workers get one each (the last a
    fraction) and the others none. ``{"gpu": 1}`` over w1, w2 -> w1 has the gpu."""
    out: dict[str, dict[str, float]] = {n: {} for n in names}
    for name, total in (resources or {}).items():
        if total >= len(names):
            for n in names:
                out[n][name] = total / len(names)
            continue
        left = float(total)
        for n in names:
            if left <= 0:
                break
            out[n][name] = min(1.0, left)
            left -= out[n][name]
    return out


def _adds(rows: list[tuple[str, str, int, str, dict[str, float]]]) -> list:
    """AddPeer stimuli for members as :func:`members` gives them (the receiving peer's
    own row only tells its core which host it is on, TASK-041)."""
    return [lambda sid, p=p, a=a, s=s, r=r, h=h: ev.AddPeer(sid, p, a, s, tuple(sorted(r.items())), h)
            for p, a, s, h, r in rows]


def register(peer: str, address: str, slots: int, host: str, pid: int = 0,
             resources: dict[str, float] | None = None, incarnation: int = 0) -> dict[str, Any]:
    """Run on the head: record a worker (its CPU slots, named resources and
    incarnation), push the change to every member, and return the view (CLU-005)."""
    _only_oneself(peer)
    node = _head_node()
    _head_only(node)
    PUSHER.start(node)
    earlier = INCARNATIONS.get(peer, 0)
    if earlier and earlier != incarnation:
        # A new incarnation replaces the old one (a restarted worker): that one is gone (CLU-007).
        node.handle_soon(lambda sid: ev.PeerFailed(sid, peer, earlier, "replaced by a new incarnation")).result()
    node.handle_soon(*_adds([(peer, address, slots, host, dict(resources or {}))])).result()
    with node.lock:  # the change and its version, together (CLU-071)
        node.members[peer] = (address, slots, host, time.time())
        PIDS[peer] = pid
        RESOURCES[peer] = dict(resources or {})
        INCARNATIONS[peer] = incarnation
        if earlier and earlier != incarnation:
            _remember_death(peer, earlier, "replaced by a new incarnation")
        ROW_AT[peer] = KEY_AT[peer] = VERSION[0] + 1
        PUSHER.forget(peer)
        _changed()
    PUSHER.wait_pushed(VERSION[0], peer, PUSH_WAIT_S)
    return _view(node)


def register_driver(peer: str, address: str, host: str, pid: int = 0, incarnation: int = 0) -> dict[str, Any]:
    """Run on the head: record a driver (it runs no tasks, but `refrpc memory` shows
    it, and it gets every later view: CLU-006); return the view."""
    _only_oneself(peer)
    node = _head_node()
    _head_only(node)
    PUSHER.start(node)
    with node.lock:
        node.drivers[peer] = (address, 0, host, time.time())
        PIDS[peer] = pid
        INCARNATIONS[peer] = incarnation
        PUSHER.forget(peer)
        if node.own_key is not None:  # its key is news to every member (CLU-050, CLU-051)
            KEY_AT[peer] = VERSION[0] + 1
            _changed()
    if node.own_key is not None:
        PUSHER.wait_pushed(VERSION[0], peer, PUSH_WAIT_S)
    return _view(node)


def _only_oneself(peer: str) -> None:
    """CLU-013: a member registers itself, under the PeerId it authenticated as."""
    from ._executor import current_owner

    if current_owner() not in ("", peer):
        raise PermissionError(f"{current_owner()} may not register {peer}: a member registers only itself (CLU-013)")


def _head_only(node: Any) -> None:
    """CLU-076: the head's membership calls run only on the head. A member that is not
    the head fails them, so that no peer can make a worker keep a registry or push
    views as if it were the head."""
    if node.peer_id != HEAD and not getattr(node, "admits_joiners", False):
        raise PermissionError(f"{node.peer_id} is not the head: it serves no membership calls but learn (CLU-076)")


def learn(view: dict[str, Any]) -> int:
    """Run on a member, sent by the head: apply a newer view (CLU-011): every worker
    in it becomes a place to run tasks, and every incarnation it names as dead is
    fenced, session or not (CLU-012). Returns the version applied now."""
    from ._executor import current_owner

    if current_owner() not in ("", HEAD):
        raise PermissionError("only the head sends membership views (CLU-013)")
    node = current_node()
    if node.cluster_key is None and node.head_address and current_owner() == HEAD:
        # SEC-026: without authentication anyone can claim to be the head; a view comes
        # only from the head this member joined through (the address its session announced).
        head = node.call(lambda: node.core.remotes.get(HEAD)).result()
        if head is None or not same_address(head.address, node.head_address):
            raise PermissionError(f"a view from a head at {head.address if head else '?'}, not the one this "
                                  f"member joined through ({node.head_address}): refused (SEC-026)")
    return apply_view(node, view)


def same_address(a: str, b: str) -> bool:
    """Whether two ``tcp://HOST:PORT`` addresses name the same endpoint (host names resolved)."""
    if a == b:
        return True

    def resolved(address: str) -> tuple[str, str]:
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        try:
            return socket.gethostbyname(host.strip("[]")), port
        except OSError:
            return host, port

    return a.startswith("tcp://") and b.startswith("tcp://") and resolved(a) == resolved(b)


#: Views are applied one at a time, wholly: ``learn`` runs on a thread of its own as
#: soon as it arrives (CLU-033), so two pushes may arrive together, and an older view
#: must not be applied over a newer one (CLU-011).
_APPLYING = threading.Lock()


def apply_view(node: Any, view: dict[str, Any]) -> int:
    """Apply ``view`` to ``node`` unless a view as new was applied already (CLU-011)."""
    with _APPLYING:
        return _apply_view(node, view)


def _apply_view(node: Any, view: dict[str, Any]) -> int:
    version = int(view["version"])
    with node.lock:
        if version <= node.view_version:
            return node.view_version
        node.view_version = version
        if hasattr(node, "views_applied"):
            node.views_applied.append((version, len(view["members"]), len(view.get("dead", []))))
        # CLU-050: the keys bound to members' PeerIds; a binding is replaced by a newer
        # one and otherwise kept (a fenced member is still told so, LIV-005).
        if view.get("keys"):
            node.keys.update({p: k for p, k in view["keys"].items()
                              if isinstance(p, str) and isinstance(k, str) and p != node.peer_id})
    alive = {row[0]: row for row in view["members"]}
    incarnations = view.get("incarnations", {})
    stimuli = []
    for peer, incarnation, reason in view.get("dead", []):
        if peer == node.peer_id or (peer, incarnation) in node.core.fenced:
            continue
        newer = alive.get(peer)
        successor = incarnations.get(peer, 0) if newer is not None else 0
        stimuli.append(lambda sid, p=peer, i=incarnation, r=reason, s=successor, a=newer[1] if newer else "":
                       ev.PeerFailed(sid, p, i, f"the head says: {r}", s if s != i else 0, a if s != i else ""))
    stimuli += _adds(view["members"])  # its own row names its host (TASK-041)
    # A worker whose earlier incarnation this member fenced (by itself, or from an
    # earlier view) is known here only as dead: meet the listed incarnation now, or
    # it would never be placed on nor fetched from (CLU-011).
    for peer, address, *_ in view["members"]:
        incarnation = incarnations.get(peer, 0)
        if peer == node.peer_id or not incarnation or (peer, incarnation) in node.core.fenced:
            continue
        r = node.core.remotes.get(peer)
        stale = (r is not None and r.state == "dead" and r.incarnation != incarnation) or \
                (r is None and any(p == peer for p, _ in node.core.fenced))
        if stale:
            stimuli.append(lambda sid, p=peer, a=address, i=incarnation: ev.Connect(sid, p, a, i))
    if stimuli:
        node.handle_soon(*stimuli).result()
    return version


def rotate(join: str | None, grace_s: float) -> bool:
    """Run on the head, by the operator: make ``join`` (64 hexadecimal digits) the
    cluster's join credential, and accept the one it replaces for ``grace_s`` more
    seconds; ``join`` None ends every grace period now (SEC-025, CLU-052). The
    operator is whoever holds the head's own key pair (the head key file, on the
    head's host): the caller's PeerId must be bound to the head's public key.
    Members already joined keep their keys; only joining needs the credential."""
    import hmac

    from ._executor import current_owner

    node = _head_node()
    _head_only(node)
    if node.own_key is None or node.cluster_key is None:
        raise RuntimeError("this cluster has no join credential to rotate (it runs without a key)")
    caller = current_owner()
    with node.lock:
        bound = node.keys.get(caller, "") if caller else node.own_key.public.decode()
    if not hmac.compare_digest(bound.encode("ascii", "replace"), node.own_key.public):
        raise PermissionError("only the operator, who holds the head's own key (the head key file on the head's "
                              "host), may rotate the join credential (CLU-052)")
    if join is not None and not (isinstance(join, str) and re.fullmatch(r"[0-9a-fA-F]{64}", join)):
        raise ValueError("a join credential is 64 hexadecimal digits, nothing else (CLU-052)")
    credential = None if join is None else bytes.fromhex(join)
    with node.lock:
        node.cluster_key.rotate(credential, float(grace_s), node.clock())
        # Its own proofs, under each credential now accepted, for the joiners it meets from now on.
        node.wire.join_proof = node.cluster_key.join_proofs(node.peer_id, node.own_key.public, node.clock())
    return True


def peers() -> list[tuple[str, str, int, str]]:
    """Run on the head: every live worker and driver (for `refrpc memory`)."""
    node = _head_node()
    _head_only(node)
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    everyone = {**node.members, **node.drivers}
    return [(p, a, s, h) for p, (a, s, h, _) in everyone.items() if p not in dead]


def drivers() -> list[tuple[str, str]]:
    """Run on the head: every live driver as (peer, address). A worker that registers
    opens a session with each, so that a driver that placed work on an earlier
    incarnation of the same worker learns of the new one (HS-006) and uses it."""
    node = _head_node()
    _head_only(node)
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    return [(p, a) for p, (a, _s, _h, _t) in node.drivers.items() if p not in dead]


def members() -> list[tuple[str, str, int, str, dict[str, float]]]:
    """Run on the head: every registered worker as (peer, address, slots, host, resources)."""
    node = _head_node()
    _head_only(node)
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    return [(p, a, s, h, RESOURCES.get(p, {})) for p, (a, s, h, _) in node.members.items() if p not in dead]


def cluster() -> list[tuple[str, str, str, int, str, int, dict[str, float]]]:
    """Run on the head: every live peer as (peer, role, address, slots, host, pid, resources),
    the head first, then the workers, then the drivers (for ``refrpc status``)."""
    import os

    node = _head_node()
    _head_only(node)
    dead = {p for p, r in node.call(lambda: dict(node.core.remotes)).result().items() if r.state == "dead"}
    rows = [(node.peer_id, "head", node.address, 0, socket.gethostname(), os.getpid(), {})]
    rows += [(p, "worker", a, s, h, PIDS.get(p, 0), RESOURCES.get(p, {})) for p, (a, s, h, _) in node.members.items()
             if p not in dead]
    rows += [(p, "driver", a, 0, h, PIDS.get(p, 0), {}) for p, (a, _s, h, _) in node.drivers.items() if p not in dead]
    return rows
