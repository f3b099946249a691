"""Programs the simulator runs on the driver: the paper's patterns.

Each is a generator taking a :class:`Driver`: it submits, puts and drops
directly, and ``yield``s a get token to wait for a value; the simulator sends
back a :class:`Outcome`. Each program drops every handle it made before it
ends, so a quiescent cluster must then be empty (liveness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

from refrpc.core.messages import ErrorCode, ErrorInfo, RefDescriptor

from ._sim import Driver, GetToken, SimFailure, ref, shared, val


@dataclass(frozen=True)
class Outcome:
    data: bytes | None
    nested: tuple[RefDescriptor, ...]
    error: ErrorInfo | None


Prog = Generator[GetToken, Outcome, None]


def expect(d: Driver, out: Outcome, data: bytes, what: str) -> bool:
    """True if ``out`` is ``data``; an allowed typed error gives False; anything else fails the run."""
    if out.error is not None:
        if out.error.code in d.expected_errors:
            d.errors_seen.append(out.error.code)
            return False
        raise SimFailure(f"{what}: unexpected error {out.error.code.value}: {out.error.message}")
    if out.data != data:
        raise SimFailure(f"{what}: expected {data!r}, got {out.data!r}")
    return True


def chain(d: Driver) -> Prog:
    # x = make.remote(20); y = append.remote(x, "!"); get(y)
    x = d.submit("make", val(b"20"), retries=3)[0]
    y = d.submit("append", ref(x), val(b"!"), retries=3)[0]
    expect(d, (yield d.get(y)), b"x" * 20 + b"!", "chain")
    d.drop(x, y)


def fan_in(d: Driver) -> Prog:
    # xs = [make.remote(n) for n in (3, 17, 5, 30)]; z = append.remote(*xs); get(z)
    xs = [d.submit("make", val(str(n).encode()), retries=2)[0] for n in (3, 17, 5, 30)]
    z = d.submit("append", *[ref(x) for x in xs], retries=2)[0]
    d.drop(*xs)
    expect(d, (yield d.get(z)), b"x" * 55, "fan-in")
    d.drop(z)


def returned_ref(d: Driver) -> Prog:
    # x = put(b"data"); r = nest.remote(shared(x)); del x; inner = get(r)[0]; get(inner)
    x = d.put(b"data")
    r = d.submit("nest", shared(x))[0]
    d.drop(x)
    out = yield d.get(r)
    if expect(d, out, b"nest", "nest"):
        (inner,) = d.materialize(r, out.nested)
        d.drop(r)
        expect(d, (yield d.get(inner)), b"data", "nested ref")
        d.drop(inner)
    else:
        d.drop(r)


def forward_chain(d: Driver) -> Prog:
    # A shared ref forwarded A -> B -> C: driver puts x, w? forwards it to a nested
    # task on another worker, which returns it nested; the driver follows both refs.
    x = d.put(b"payload-bigger-than-inline")
    r = d.submit("forward", shared(x))[0]
    d.drop(x)
    out = yield d.get(r)
    if not expect(d, out, b"fwd", "forward"):
        d.drop(r)
        return
    (inner,) = d.materialize(r, out.nested)
    d.drop(r)
    out2 = yield d.get(inner)
    if expect(d, out2, b"nest", "inner"):
        (back,) = d.materialize(inner, out2.nested)
        d.drop(inner)
        expect(d, (yield d.get(back)), b"payload-bigger-than-inline", "forwarded ref")
        d.drop(back)
    else:
        d.drop(inner)


def nested_in_put(d: Driver) -> Prog:
    # x = make.remote(40); c = put([x]); del x; get(get(c)[0])
    x = d.submit("make", val(b"40"), retries=2)[0]
    c = d.put(b"container", nested=(x,))
    d.drop(x)
    out = yield d.get(c)
    expect(d, out, b"container", "container")
    (x2,) = d.materialize(c, out.nested)
    d.drop(c)
    expect(d, (yield d.get(x2)), b"x" * 40, "contained ref")
    d.drop(x2)


def actor_keeps_ref(d: Driver) -> Prog:
    # keeper = Keeper.remote(); x = put(...); keeper.keep.remote(shared(x)); del x
    # h = keeper.held.remote(); get(get(h)[0]); keeper.release.remote()
    a = d.actor("Keeper")
    x = d.put(b"kept-value-larger-than-16")
    k = d.submit("keep", shared(x), actor=a)[0]
    d.drop(x)
    kept = expect(d, (yield d.get(k)), b"kept", "keep")
    d.drop(k)
    h = d.submit("held", actor=a)[0]
    out = yield d.get(h)
    if kept and expect(d, out, b"held", "held") and out.nested:
        (x2,) = d.materialize(h, out.nested)
        d.drop(h)
        expect(d, (yield d.get(x2)), b"kept-value-larger-than-16", "ref kept by actor")
        d.drop(x2)
    else:
        d.drop(h)
    rel = d.submit("release", actor=a)[0]
    expect(d, (yield d.get(rel)), b"released", "release")
    d.drop(rel)
    d.kill_actor(a)


def failing_task(d: Driver) -> Prog:
    f = d.submit("fail")[0]
    out = yield d.get(f)
    if out.error is None or out.error.code not in (ErrorCode.TASK_FAILED, *d.expected_errors):
        raise SimFailure(f"fail(): expected TASK_FAILED, got {out}")
    d.drop(f)


def rebuild(d: Driver) -> Prog:
    # a = make.remote(40); b = append.remote(a, "!"); del a; get(b).
    # a is released but kept as b's lineage (LIN-002); a worker killed at any point
    # loses b (and maybe a): the owner re-runs the minimal set of tasks (LIN-003, LIN-004).
    a = d.submit("make", val(b"40"), retries=3)[0]
    b = d.submit("append", ref(a), val(b"!"), retries=3)[0]
    d.drop(a)
    expect(d, (yield d.get(b)), b"x" * 40 + b"!", "rebuild")
    d.drop(b)


def split_rebuild(d: Driver) -> Prog:
    # x = make.remote(80); a, b = split.options(num_returns=2, max_retries=1).remote(x)
    # Both halves are stored where split ran; if that worker dies, its one retry
    # re-runs split once and rebuilds both (LIN-003, LIN-007, RPC-009).
    x = d.submit("make", val(b"80"), retries=2)[0]
    a, b = d.submit("split", ref(x), num_returns=2, retries=1)
    d.drop(x)
    expect(d, (yield d.get(a)), b"x" * 40, "split: first half")
    expect(d, (yield d.get(b)), b"x" * 40, "split: second half")
    d.drop(a, b)


def rebuild_evicted(d: Driver) -> Prog:
    # As ``rebuild``, with no room for lineage (max_lineage_bytes = 0): every settled
    # task is evicted at once, so a lost value fails with LINEAGE_EVICTED (LIN-005,
    # LIN-010), while a retry after an executor death still runs (RPC-004).
    yield from rebuild(d)


def unannounced_worker(d: Driver) -> Prog:
    # As ``forward_chain``, in a cluster whose peers never announce w1's death
    # (LIV-030, as members never announce their head's): every peer that holds
    # something of w1's has a session with it and must find out by itself.
    yield from forward_chain(d)


WORKLOADS = {
    "chain": chain,
    "fan_in": fan_in,
    "returned_ref": returned_ref,
    "forward_chain": forward_chain,
    "nested_in_put": nested_in_put,
    "actor_keeps_ref": actor_keeps_ref,
    "failing_task": failing_task,
    "rebuild": rebuild,
    "split_rebuild": split_rebuild,
    "rebuild_evicted": rebuild_evicted,
    "unannounced_worker": unannounced_worker,
}

#: Per-workload configuration changes, and the typed errors they make acceptable.
WORKLOAD_CONFIG: dict[str, dict] = {
    "rebuild_evicted": {"max_lineage_bytes": 0},
    "unannounced_worker": {"unannounced": ("w1",)},
}
WORKLOAD_ERRORS: dict[str, set[ErrorCode]] = {
    "rebuild_evicted": {ErrorCode.LINEAGE_EVICTED},
}
#: Workloads whose retry budgets cover one worker's death: with a single kill (and
#: the driver alive) every value must come out right, no typed error is acceptable.
SURVIVE_ONE_KILL = {"rebuild", "split_rebuild"}
