"""``object``, ``holders`` and ``lineage``: following one object through a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refrpc.codec import TraceKind
from refrpc.core import messages as m

from refrpc_trace import Merger, holders, lineage, open_run, replay

from tracekit import Net, borrowing_run

pytestmark = pytest.mark.timeout(60)
X = "driver.d1.2"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    return tmp_path / "run"


def index_of(run_dir: Path, peer: str, kind: TraceKind, typ: str, nth: int = 1) -> int:
    for it in Merger(open_run([run_dir])):
        if it.peer == peer and it.rec.kind is kind and it.type == typ:
            nth -= 1
            if not nth:
                return it.index
    raise AssertionError(f"no {kind} {typ} at {peer}")


def test_an_objects_life_line_shows_each_step_and_its_cause(run_dir: Path, cli) -> None:
    code, out, _ = cli("object", "--json", X, run_dir)
    assert code == 0
    data = json.loads(out)
    assert data["owner"] == "driver" and data["state"] == "deleted"
    steps = [(s["what"], s["peer"]) for s in data["steps"]]
    assert steps == [
        ("created", "driver"),  # put
        ("shared", "driver"),  # passed to the task that keeps it
        ("borrowed", "driver"),  # the owner records worker-1's grant
        ("dropped-ref", "worker-1"),  # worker-1 holds it no more
        ("released", "worker-1"),  # ... and releases its grant
        ("released", "driver"),  # the owner removes the grant
        ("freed", "driver"),  # and reclaims the value
    ]
    assert "passed to task driver.d1.3 mod:keep on worker-1" in data["steps"][1]["text"]
    assert data["steps"][2]["text"] == "borrowed by worker-1 under grant worker-1.a1.1"
    code, text, _ = cli("object", X, run_dir)
    assert text.splitlines()[0] == f"object {X} (owner driver; at the end: deleted)"
    code, _, err = cli("object", "no-such-object", run_dir)
    assert code == 1 and "no record mentions object no-such-object" in err


def test_holders_at_each_point_of_the_borrow(run_dir: Path, cli) -> None:
    submitted = index_of(run_dir, "worker-1", TraceKind.RECV, "SubmitTask", nth=2)  # the keeping task arrived
    registered = index_of(run_dir, "worker-1", TraceKind.RECV, "BorrowerRegistered")
    released = index_of(run_dir, "driver", TraceKind.RECV, "ReleaseBorrows")
    run = open_run([run_dir])

    def at(index: int) -> dict[str, list[str]]:
        r = replay(open_run([run_dir]), stop=lambda it: it.index > index)
        _, hs = holders(r, X)
        return {h.peer: h.reasons for h in hs}

    assert run.files  # the traces opened
    during = at(submitted)
    assert "owner (entry ready)" in during["driver"] and "pending task driver.d1.3" in during["driver"]
    assert "task hold for driver.d1.3 (attempt 1) from driver" in during["worker-1"]
    assert not any("grant" in r for r in during["worker-1"])
    after = at(registered)
    assert "borrowed under grant worker-1.a1.1" in after["worker-1"]
    done = at(released + 3)
    assert done == {}  # reclaimed: nobody holds it
    code, out, _ = cli("holders", X, "--at", f"#{registered}", run_dir)
    assert code == 0 and out.startswith(f"holders of {X} at #{registered}")
    assert "  worker-1:\n" in out and "    - borrowed under grant worker-1.a1.1\n" in out
    code, out, _ = cli("holders", "--json", X, "--at", "0s", run_dir)
    assert json.loads(out)["holders"] == [] or code == 1


def chain_run() -> Net:
    """User program modelled::

        x = refrpc.put(data)
        a = f.remote(x)                   # t1
        b = g.remote(a, [y])              # t2: y nested in a value argument
        c = h.remote(b)                   # t3, retried once
    """
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    d.transition("owner-object", "x", "ready", "put", "ready", "OWN-001")
    d.transition("owner-object", "y", "ready", "put", "ready", "OWN-001")
    net.msg(d, w, m.SubmitTask("t1", "mod:f", (m.Arg(m.ArgKind.REF, ref=d.ref("x")),), ("t1.r0",)))
    value = m.Value(m.Encoding.PORTABLE, b"\0" * 8, nested=(d.ref("y"),))
    net.msg(d, w, m.SubmitTask("t2", "mod:g", (m.Arg(m.ArgKind.REF, ref=d.ref("t1.r0")),
                                               m.Arg(m.ArgKind.VALUE, value=value)), ("t2.r0",)))
    net.msg(d, w, m.SubmitTask("t3", "mod:h", (m.Arg(m.ArgKind.REF, ref=d.ref("t2.r0")),), ("t3.r0",)))
    net.msg(d, w, m.SubmitTask("t3", "mod:h", (m.Arg(m.ArgKind.REF, ref=d.ref("t2.r0")),), ("t3.r0",), attempt=2))
    return net


def test_lineage_follows_task_arguments_back_to_puts(tmp_path: Path, cli) -> None:
    chain_run().write(tmp_path / "run")
    code, out, _ = cli("lineage", "t3.r0", tmp_path / "run")
    assert code == 0
    assert out.splitlines() == [
        "t3.r0: return of task t3 mod:h (submitted by driver, ran on worker-1) attempts 1,2",
        "  <- t2.r0: return of task t2 mod:g (submitted by driver, ran on worker-1)",
        "    <- t1.r0: return of task t1 mod:f (submitted by driver, ran on worker-1)",
        "      <- x: put at driver",
        "    <- y: put at driver",
    ]
    code, out, err = cli("lineage", "nothing", tmp_path / "run")
    assert code == 1 and "no SubmitTask or put creates nothing" in err


def test_lineage_level_by_level_when_the_task_index_would_be_too_large(tmp_path: Path) -> None:
    chain_run().write(tmp_path / "run")
    run = open_run([tmp_path / "run"])
    small = lineage(run, "t3.r0", index_limit=1)  # forces one pass per level
    whole = lineage(run, "t3.r0")
    assert small.render() == whole.render()
    assert [p.object_id for _, p in whole.walk()] == ["t3.r0", "t2.r0", "t1.r0", "x", "y"]
    cut = lineage(run, "t3.r0", max_depth=1)
    assert cut.truncated and "x" not in cut.producers


def test_a_wait_appears_on_the_life_line_of_every_object_it_names(tmp_path: Path, cli) -> None:
    # pyimpl records refrpc.wait as one program event listing its refs (objects=[...]).
    net = Net()
    d = net.peer("driver")
    for oid in ("a", "b"):
        d.transition("owner-object", oid, "ready", "put", "ready", "OWN-001")
    d.event("program", "", "", op="wait", objects=["a", "b"], numReturns=1)
    net.write(tmp_path / "run")
    for oid in ("a", "b"):
        code, out, _ = cli("object", "--json", oid, tmp_path / "run")
        assert code == 0
        assert [s["what"] for s in json.loads(out)["steps"]] == ["created", "program"]
    code, out, _ = cli("show", "--object", "b", "--type", "program", tmp_path / "run")
    assert code == 0 and "wait" in out


def test_relays_appear_on_the_life_line_with_why_they_ended(tmp_path: Path, cli) -> None:
    # the owner lists w1 as a relay for X while it fetches, then w1 holds a whole copy   LOC-020, LOC-022
    net = Net()
    d, w1, w2 = net.peer("driver"), net.peer("worker-1"), net.peer("worker-2")
    net.connect(w1, d)
    net.connect(w2, d)
    d.event("copy-stored", X, size=1 << 20, primary=True, reason="put")
    net.msg(w1, d, m.GetObjectStatus(X, True, True))
    d.event("relay-added", X, peer="worker-1")
    net.msg(w2, d, m.GetObjectStatus(X, True, True))
    net.msg(w1, d, m.AddLocation(X, 1 << 20))
    d.event("relay-removed", X, peer="worker-1", reason="copy")
    d.event("location-added", X, peer="worker-1", primary=False)
    net.write(tmp_path / "run")
    code, out, _ = cli("object", "--json", X, tmp_path / "run")
    assert code == 0
    relay = [s["text"] for s in json.loads(out)["steps"] if s["what"] == "relay"]
    assert relay == ["worker-1 relays it while it fetches (listed by driver)", "worker-1 relays it no more (copy)"]
    code, out, _ = cli("check", tmp_path / "run")
    assert "TRC-007" not in out  # registry names, not unknown events
