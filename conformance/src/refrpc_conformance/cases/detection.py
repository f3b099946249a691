"""session.md §3: failure detection measured with the remote's announced heartbeat interval."""

from __future__ import annotations

import time

from refrpc.core.messages import FetchChunk, FetchRequest, Heartbeat, PeerDeadNotice, ProtocolError

from .._build import by_value
from .._case import case
from .._context import CaseContext
from ._common import FAST_DETECTION, expect_reply, task

#: What the slow peer announces, and how often it really speaks: every gap is 2.5 times
#: the IUT's own detection timeout (100 ms x 4) and half of the one it must use (500 ms x 4).
ANNOUNCED_MS = 500
GAP_S = 1.0
GAPS = 3

#: The busy peer speaks every BUSY_GAP_S with a FetchRequest, never a Heartbeat: each gap
#: is under the IUT's detection timeout (100 ms x 4) and their sum BUSY_GAPS times it.
BUSY_GAP_S = 0.15
BUSY_GAPS = 10


@case(
    "liveness/LIV-007-remote-heartbeat-interval",
    requirements=["LIV-007", "LIV-003", "LIV-004", "LIV-013"],
    iut_env=FAST_DETECTION,
    summary=(
        f"The IUT runs with 100 ms heartbeats and missLimit 4. Suite peer P announces {ANNOUNCED_MS} ms and then "
        f"speaks only every {GAP_S:g} s (a Heartbeat each time), {GAPS} times. The IUT must measure P's silence "
        f"against P's interval times its own missLimit ({ANNOUNCED_MS * 4} ms), so P is never declared dead: "
        "suite peer W, which keeps its session alive, gets no PeerDeadNotice, and P's task is then answered. "
        "When P finally goes silent for good, the IUT must declare it dead (W gets the notice)."
    ),
    timeout=60.0,
)
def remote_interval(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    p = ctx.wire_peer("slow", heartbeat_ms=ANNOUNCED_MS)
    w = ctx.wire_peer("witness", heartbeat_ms=100)
    link_p = ctx.session(p, iut)
    ctx.session(w, iut)
    p.heartbeats = False  # the case speaks for P, at its own pace
    p.acks = False
    for _ in range(GAPS):
        time.sleep(GAP_S)  # the stimulus: a silence shorter than P's detection timeout
        link_p.send(Heartbeat())
    notices = w.received(PeerDeadNotice, lambda m: m.peer == p.peer_id)
    ctx.require("LIV-007", not notices, f"no PeerDeadNotice for {p.peer_id} (never silent for {ANNOUNCED_MS * 4} ms)",
                [str(n.body) for n in notices])
    dead = p.received(ProtocolError)
    ctx.require("LIV-007", not dead, "no ProtocolError (DECLARED_DEAD) to the slow peer", [str(e.body.error) for e in dead])
    p.acks = True
    t = task(p, "echo", [by_value("still here")])
    link_p.send(t)
    expect_reply(ctx, p, t, requirement="LIV-007")
    p.go_silent()
    ctx.expect(w, PeerDeadNotice, lambda m: m.peer == p.peer_id, requirement="LIV-003",
               what=f"PeerDeadNotice for {p.peer_id} once it is silent for good", timeout=20.0)


@case(
    "liveness/LIV-002-any-message-is-evidence",
    requirements=["LIV-002", "LIV-003", "FET-005"],
    iut_env=FAST_DETECTION,
    summary=(
        "The IUT runs with 100 ms heartbeats and missLimit 4 (detection after 400 ms). Suite peer P announces "
        "100 ms too, then sends no Heartbeat at all for {0:g} s: only a FetchRequest (sequence number 0, for an "
        "object the IUT does not hold) every {1:g} s. Any message is evidence of life (LIV-002, FET-005), so "
        "the IUT must not declare P dead: suite peer W gets no PeerDeadNotice, P gets no DECLARED_DEAD, each "
        "request is answered, and P's task is answered afterwards."
    ).format(BUSY_GAP_S * BUSY_GAPS, BUSY_GAP_S),
    timeout=30.0,
)
def data_plane_is_evidence(ctx: CaseContext) -> None:
    iut = ctx.start_iut()
    p = ctx.wire_peer("busy", heartbeat_ms=100)
    w = ctx.wire_peer("witness", heartbeat_ms=100)
    link_p = ctx.session(p, iut)
    ctx.session(w, iut)
    p.heartbeats = False  # the case speaks for P: data-plane messages only
    p.acks = False
    absent = ctx.new_id(p)  # owned by P: the IUT holds no copy, and answers OBJECT_FREED (FET-004)
    for request_id in range(1, BUSY_GAPS + 1):
        time.sleep(BUSY_GAP_S)  # the stimulus: P is never silent for the detection timeout
        link_p.send(FetchRequest(absent, request_id, 0, 16, 1024, False))
    notices = w.received(PeerDeadNotice, lambda m: m.peer == p.peer_id)
    ctx.require("LIV-002", not notices, f"no PeerDeadNotice for {p.peer_id} (it spoke every {BUSY_GAP_S:g} s)",
                [str(n.body) for n in notices])
    dead = p.received(ProtocolError)
    ctx.require("LIV-002", not dead, "no ProtocolError (DECLARED_DEAD) to the busy peer",
                [str(e.body.error) for e in dead])
    ctx.wait_until(p, lambda: {c.body.request_id for c in p.received(FetchChunk)} >= set(range(1, BUSY_GAPS + 1)),
                   requirement="FET-004", what="an error chunk for every request", timeout=5.0)
    p.acks = True
    t = task(p, "echo", [by_value("still here")])
    link_p.send(t)
    expect_reply(ctx, p, t, requirement="LIV-002")
