"""Actor handles: what a program holds to call an actor, in any process.

A handle is backed by the actor's *handle object* (ACT-019): an object its owner
puts when it creates the actor, whose id is the actor id and whose value is the
actor's descriptor. Every handle holds a :class:`Ref` to it, so the owner counts
handles exactly as it counts refs: a handle passed to a task or to another actor
(as an argument or inside a value) travels as a nested ref to the handle object
(ACT-020), its receiver becomes a borrower, and once no process holds a handle
the handle object is reclaimed and the owner kills the actor (ACT-009), unless
the actor is named or detached.

Each process that holds a handle is a caller of its own (ACT-021): it numbers
its calls to the actor 1, 2, 3, ... and sends them to the actor's host, which
runs each caller's calls in its order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core import events as ev
from ..errors import RefRPCError
from ..serialization import serialize
from ._refs import KWARGS_SUFFIX, ByRef, Ref, arg_specs, call_on, current_node

if TYPE_CHECKING:
    from ._node import Node


def pack_kwargs(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The protocol passes positional arguments; Python keywords ride as one trailing
    dict, flagged in the function name (a Python-only convention). A Ref given as a
    keyword is dereferenced for the callee, like a positional one."""
    if not kwargs:
        return name, args
    packed = {k: ByRef(v) if isinstance(v, Ref) else v for k, v in kwargs.items()}
    return name + KWARGS_SUFFIX, (*args, packed)


def descriptor_value(actor_id: str, owner: str, host: str, host_address: str, class_name: str) -> Any:
    """The handle object's value (ACT-019): the actor's descriptor, portable."""
    return serialize({"actorId": actor_id, "owner": owner, "host": host, "hostAddress": host_address,
                      "className": class_name}, ref_hook=lambda _: None, portable=True)


class ActorMethod:
    """``handle.method``: ``.remote(*args, **kwargs)`` calls it and returns a :class:`Ref`."""

    def __init__(self, handle: ActorHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any, **kwargs: Any) -> Ref[Any]:
        node = current_node()
        handle = self._handle
        handle._ensure_route(node)
        name, args = pack_kwargs(self._name, args, kwargs)
        specs, keep = arg_specs(node, args)
        aid = handle._actor_id
        task_id, rids = node.new_task_ids(1)
        # ACT-021: sent to the host the handle names (the owner routes by its own record);
        # this process's calls are numbered by its core, one sequence per actor.
        node.submit_nowait(rids, lambda sid: ev.Submit(sid, task_id, name, tuple(specs), rids, 0, False, aid, handle._host))
        del keep
        return Ref(node, rids[0], counted=True)


class ActorHandle:
    """A handle to an actor: ``handle.method.remote(...)`` calls it.

    Calls made through the handles of one process run in the order that process
    made them (ACT-003). A handle can be passed to tasks and other actors, in any
    process, as an argument or inside a value; the actor lives while any process
    holds a handle (or while it is named), and is killed once none does (ACT-009).
    """

    def __init__(self, actor_id: str, class_name: str, methods: frozenset[str], host: str, host_address: str,
                 ref: Ref[Any] | None, name: str = "") -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._host = host
        self._host_address = host_address
        #: The handle object this handle holds (None for an actor made without one).
        self._ref = ref
        #: The actor's name, if it is named.
        self._name = name
        #: The node this handle last made sure can reach the host.
        self._routed: Any = None
        #: Incarnations of the host fenced when this handle last looked (a restart
        #: under the same PeerId leaves a live host that no longer has the actor).
        self._host_deaths = 0

    @property
    def actor_id(self) -> str:
        """The actor's id (ID-003)."""
        return self._actor_id

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_") or name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name}")
        return ActorMethod(self, name)

    def __repr__(self) -> str:
        named = f" {self._name!r}" if self._name else ""
        return f"ActorHandle({self._class_name}{named}, {self._actor_id} on {self._host})"

    def __reduce__(self) -> Any:
        # Inside a value, the Ref travels as a nested ref (ACT-020): the receiver borrows
        # the handle object, so the owner counts it as a holder of the actor.
        if self._ref is None:
            raise TypeError(f"the handle of actor {self._actor_id} cannot leave its process (made without a handle object)")
        return (_rebuild, (self._actor_id, self._class_name, tuple(sorted(self._methods)), self._host,
                           self._host_address, self._ref, self._name))

    def _ensure_route(self, node: Node) -> None:
        """Make sure ``node`` can reach the host (a process that got the handle may never
        have met it), and follow the actor if its host died and its owner re-created it
        elsewhere (ACT-011, ACT-021)."""
        remote = node.core.remotes.get(self._host)  # reads without the lock: hints only
        deaths = node.core.fences_of.get(self._host, 0)
        if self._ref is not None and ((remote is not None and remote.state == "dead") or deaths > self._host_deaths):
            self._host_deaths = deaths
            self._follow(node)
        if self._routed is node:
            return
        host, address = self._host, self._host_address

        def known() -> bool:
            core = node.core
            return (host == node.peer_id or self._actor_id in core.owned_actors or host in core.remotes
                    or host in core.workers or not address)

        if not node.call(known).result():
            node.handle_soon(lambda sid: ev.Connect(sid, host, address)).result()
        self._routed = node

    def _follow(self, node: Node) -> None:
        """Ask the actor's owner where the actor is now (it may have re-created it on
        another host after this one died); calls already sent to the dead host fail."""
        aid = self._actor_id

        def owner() -> str:
            core = node.core
            b = core.borrowed.get(aid)
            return "" if aid in core.owned_actors or b is None or b.error is not None else b.owner

        found = node.call(owner).result()
        if not found:
            return  # the owner routes its own calls; or it is dead, and so is the actor
        try:
            where = call_on(node, found, "refrpc.runtime._names:actor_host", aid, timeout=10.0)
        except RefRPCError:
            return  # calls go to the dead host and fail with ActorDiedError
        if where is not None and where[0] != self._host and where[2] != "dead":
            self._host, self._host_address = where[0], where[1]
            self._routed = None
            self._host_deaths = node.core.fences_of.get(self._host, 0)

    def kill(self) -> None:
        """Stop the actor (ACT-006): its pending calls fail with ActorDiedError, and its
        name, if it has one, is free again. Any process holding a handle may kill it
        (its owner is asked to, since only the owner sends KillActor)."""
        from ._names import head_of_cluster

        node = current_node()
        aid = self._actor_id
        if self._name:
            try:
                call_on(node, head_of_cluster(), "refrpc.runtime._names:unregister", self._name, aid, timeout=10.0)
            except RefRPCError:
                pass  # the head is gone: so is the name

        def owner() -> str | None:
            core = node.core
            if aid in core.owned_actors:
                return ""
            b = core.borrowed.get(aid)
            return b.owner if b is not None else None

        found = node.call(owner).result()
        if found == "":
            node.handle_soon(lambda sid: ev.KillActorRequest(sid, aid)).result()
        elif found is None:
            raise RefRPCError(f"this process holds no handle of actor {aid}")
        else:
            call_on(node, found, "refrpc.runtime._names:kill_owned", aid, timeout=30.0)


def _rebuild(actor_id: str, class_name: str, methods: tuple[str, ...], host: str, host_address: str,
             ref: Ref[Any], name: str = "") -> ActorHandle:
    """Unpickle a handle: ``ref`` is the nested handle object, now held here."""
    return ActorHandle(actor_id, class_name, frozenset(methods), host, host_address, ref, name)


def methods_of(cls: type) -> frozenset[str]:
    """The public methods of an actor class (what a handle lets one call)."""
    return frozenset(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None)))
