"""SEC-023's bound on the head's bindings of joiners that have not registered, checked on
the node's own decision (``Node._bound``) with everything around it stubbed: the real
head is exercised by the conformance case
``security/SEC-023-CNF-054-bindings-of-unregistered-joiners-bounded``."""

from __future__ import annotations

from types import SimpleNamespace

from refrpc.core.state import Config
from refrpc.runtime._node import Node


def _head(max_sessions: int) -> SimpleNamespace:
    """What ``_bound`` reads of a head node: its own binding, no members yet, a credential
    that accepts every proof."""
    return SimpleNamespace(
        peer_id="head", keys={"head": "HEADKEY"}, members={}, drivers={}, admits_joiners=True,
        config=Config(max_sessions=max_sessions), clock=lambda: 0.0,
        cluster_key=SimpleNamespace(accepts_join=lambda sender, user_id, proof, now: True),
    )


def bind(head: SimpleNamespace, peer: str, key: str) -> bool:
    return Node._bound(head, peer, key, b"proof")  # type: ignore[arg-type]


def test_max_sessions_joiners_are_bound_not_counting_the_heads_own_key():
    head = _head(2)
    assert bind(head, "a", "KA") and bind(head, "b", "KB")  # two joiners, as SEC-021 lets two sessions open
    assert not bind(head, "c", "KC") and "c" not in head.keys  # a third unregistered binding is refused


def test_registered_members_do_not_count_against_the_bound():
    head = _head(2)
    assert bind(head, "a", "KA") and bind(head, "b", "KB")
    head.members["a"] = ("addr", 1, "worker", 0.0)  # a registered (CLU-005)
    assert bind(head, "c", "KC")
    assert bind(head, "a", "KA") and not bind(head, "a", "OTHER")  # a's binding holds
