"""Named actors: a cluster-wide table of names, kept at the cluster's head.

Names are not part of the wire protocol: like membership, they are ordinary
RefRPC tasks run on the head (the peer ``head`` of a cluster started with
``refrpc start --head``; the driver of a local cluster started by
``refrpc.init()``). The head keeps, for each name, a handle to the actor: a ref
to its handle object (ACT-019), so the head is one of the actor's holders and
the actor lives while it is named (ACT-009, ACT-022).

A name is taken until the actor is dead: killed by its owner (which drops the
name first), its owner dead (the head's handle object then fails with
OWNER_DIED), or its host dead with no restart (the owner says so when asked).
A dead actor's name is free again.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import OwnerDiedError, RefRPCError
from ._refs import call_on, context, current_node

#: name -> the actor's handle, in the head's process.
_NAMES: dict[str, Any] = {}
_LOCK = threading.Lock()


def head_of_cluster() -> str:
    """The peer that keeps the names of this process's cluster."""
    head = context.head
    if not head:
        raise RefRPCError("this process belongs to no cluster with a head: named actors need refrpc.init()")
    return head


def actor_alive(actor_id: str) -> bool:
    """Run on an actor's owner: whether the actor is not dead (ACT-002)."""
    node = current_node()
    return bool(node.call(lambda: (a := node.core.owned_actors.get(actor_id)) is not None and a.state != "dead").result())


def actor_host(actor_id: str) -> tuple[str, str, str] | None:
    """Run on an actor's owner: where the actor is now (host, address, state), or None
    if this peer does not know it (ACT-021: a caller whose host died asks)."""
    node = current_node()

    def read() -> tuple[str, str, str] | None:
        a = node.core.owned_actors.get(actor_id)
        return None if a is None else (a.host, node.core._address_of(a.host), a.state)

    return node.call(read).result()  # type: ignore[no-any-return]


def _alive(handle: Any) -> bool:
    """Whether a named actor is still alive (run on the head; may ask its owner)."""
    node = current_node()
    aid = handle.actor_id

    def entry() -> tuple[str, bool]:
        core = node.core
        if aid in core.owned_actors:
            a = core.owned_actors[aid]
            return "", a.state != "dead"
        b = core.borrowed.get(aid)
        if b is None or b.error is not None:
            return "", False  # its owner died (FATE-001)
        return b.owner, True

    owner, alive = node.call(entry).result()
    if not owner or not alive:
        return alive
    try:
        return bool(call_on(node, owner, "refrpc.runtime._names:actor_alive", aid, timeout=10.0))
    except OwnerDiedError:
        return False
    except RefRPCError:
        return True  # cannot tell: keep the name rather than hand it out twice


def register(name: str, handle: Any) -> None:
    """Run on the head: give ``handle``'s actor the name ``name``.

    Raises:
        ValueError: A live actor has that name already.
    """
    with _LOCK:
        existing = _NAMES.get(name)
    if existing is not None and existing.actor_id != handle.actor_id and _alive(existing):
        raise ValueError(f"an actor named {name!r} exists already")
    with _LOCK:
        _NAMES[name] = handle  # the head holds the handle: the actor lives while named


def lookup(name: str) -> Any:
    """Run on the head: the handle of the live actor named ``name``, or None."""
    with _LOCK:
        handle = _NAMES.get(name)
    if handle is None:
        return None
    if not _alive(handle):
        unregister(name, handle.actor_id)
        return None
    return handle


def unregister(name: str, actor_id: str) -> None:
    """Run on the head: drop the name, if it still names that actor."""
    with _LOCK:
        handle = _NAMES.get(name)
        if handle is not None and handle.actor_id == actor_id:
            del _NAMES[name]


def names() -> list[str]:
    """Run on the head: every registered name."""
    with _LOCK:
        return sorted(_NAMES)


def create_detached(actor_class: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run on the head: create a detached actor, owned by the head, and name it.

    The head owns it, so it outlives the program that asked for it (it ends with
    the head, FATE-004); its name keeps it alive until it is killed.
    """
    return actor_class.remote(*args, **kwargs)


def kill_owned(actor_id: str) -> None:
    """Run on an actor's owner: kill it (ACT-006), for a process that holds a handle."""
    from ..core import events as ev

    node = current_node()
    node.handle_soon(lambda sid: ev.KillActorRequest(sid, actor_id)).result()
