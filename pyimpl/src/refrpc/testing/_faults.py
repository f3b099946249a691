"""Fault injection on a running cluster: set rules on any peer, read what they did.

The rules themselves, and the transport that applies them, are in
:mod:`refrpc.transport` (:class:`~refrpc.transport.FaultRule`,
:class:`~refrpc.transport.FaultyTransport`). A process sets its own rules with
``node.set_faults``; these helpers also reach the other peers of a running
cluster, through an ordinary task pinned to the peer (so a peer whose task
thread is busy answers once its current task is done, and a peer cut off by
its own rules cannot be reached at all: give such rules at start, with
``REFRPC_FAULTS``, or make them heal themselves with ``count``).
"""

from __future__ import annotations

from typing import Any, Sequence

from ..transport import FaultRule

#: What :func:`faults_report` returns for a peer that never had a rule.
_NO_FAULTS: dict[str, Any] = {"rules": [], "matched": [], "applied": [], "holding": 0}


def set_faults(rules: Sequence[FaultRule], peer: str | None = None, *, timeout: float = 30.0) -> None:
    """Replace the fault rules of this process's peer, or of the peer ``peer``.

    Args:
        rules: The new rules (an empty list turns injection off there). Rules
            whose ``at`` names another peer are ignored where they land.
        peer: A PeerId of the cluster (``"w1"``); None: this process.
        timeout: How long to wait for a remote peer to install them.
    """
    from .. import api

    node = api._node()
    data = [r.to_dict() for r in rules]
    if peer is None or peer == node.peer_id:
        _install(data)
    else:
        api._call_on(peer, "refrpc.testing._faults:_install", data, timeout=timeout)


def faults_report(peer: str | None = None, *, timeout: float = 30.0) -> dict[str, Any]:
    """What the fault rules of a peer (this process's if None) have done so far.

    Returns:
        A dict with the rules in force (``rules``, as dicts), how many
        messages each one matched and acted on (``matched``, ``applied``: one
        count per rule) and how many messages are held back now
        (``holding``).
    """
    from .. import api

    node = api._node()
    if peer is None or peer == node.peer_id:
        return _report()
    result: dict[str, Any] = api._call_on(peer, "refrpc.testing._faults:_report", timeout=timeout)
    return result


def _install(data: list[dict[str, Any]]) -> None:
    """Runs on the target peer (a control task, or in process)."""
    from .. import api

    api._node().set_faults([FaultRule.from_dict(d) for d in data]).result(30)


def _report() -> dict[str, Any]:
    from .. import api

    node = api._node()

    def read() -> dict[str, Any]:  # on the loop thread, which owns the injector
        faults = node.faults
        if faults is None:
            return dict(_NO_FAULTS)
        return {
            "rules": [r.to_dict() for r in faults.rules],
            "matched": list(faults.matched),
            "applied": list(faults.applied),
            "holding": faults.holding,
        }

    result: dict[str, Any] = node.call(read).result(30)
    return result
