"""``check``: replaying a run against the protocol's rules. Every deliberately
faulty trace gives the expected finding, citing the requirement and the shortest
sequence of records that shows it; the same run without the fault gives none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refrpc.core import messages as m

from refrpc_trace import Finding, check, open_run, check_run

from tracekit import Net, borrowing_run, task_round_trip

pytestmark = pytest.mark.timeout(60)


def findings_of(net: Net, tmp_path: Path) -> list[Finding]:
    net.write(tmp_path / "run")
    found, diag = check([tmp_path / "run"])
    assert not diag.partial, [str(p) for p in diag.problems]
    return found


def only(found: list[Finding], requirement: str) -> Finding:
    hits = [f for f in found if f.requirement == requirement]
    assert len(hits) == 1, [f.render() for f in found]
    return hits[0]


def test_a_clean_run_has_no_findings(tmp_path: Path, cli) -> None:
    net, _, _ = borrowing_run()
    assert findings_of(net, tmp_path) == []
    code, out, _ = cli("check", tmp_path / "run")
    assert code == 0 and out.strip() == "0 findings in 2 traces"


def test_a_release_never_sent_is_a_leak_BOR_005(tmp_path: Path, cli) -> None:
    # worker-1 drops its last hold on X but never sends ReleaseBorrows: the driver keeps
    # X alive for a borrower that holds nothing
    net, d, w = borrowing_run(release=False)
    found = findings_of(net, tmp_path)
    f = only(found, "BOR-005")
    assert f.kind == "leak" and f.object_id == "driver.d1.2"
    assert "worker-1 stopped holding it but never released grant worker-1.a1.1" in f.summary
    texts = [e.text for e in f.evidence]
    assert texts[0].startswith("event grant-added driver.d1.2") and "forwardId=worker-1.a1.1" in texts[0]
    assert "holds_zero" in texts[1] and [e.peer for e in f.evidence] == ["driver", "worker-1"]
    code, out, _ = cli("check", tmp_path / "run")
    assert code == 1 and "[BOR-005] leak: driver.d1.2 leaks" in out and "1 finding in 2 traces" in out


def test_a_free_while_a_borrower_holds_a_grant_OWN_004(tmp_path: Path) -> None:
    net, _, _ = borrowing_run(free_early=True)
    f = only(findings_of(net, tmp_path), "OWN-004")
    assert f.kind == "free-while-held"
    assert f.summary == "driver reclaimed driver.d1.2 while worker-1 holds grant worker-1.a1.1"
    assert [e.text.split(" ")[1] for e in f.evidence] == ["grant-added", "transition"]
    assert "out_of_scope_unneeded" in f.evidence[1].text


def test_a_message_to_a_peer_declared_dead_SES_013(tmp_path: Path) -> None:
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    task_round_trip(net, d, w, "t1")
    d.declare_dead(w)
    net.msg(d, w, m.SubmitTask("t2", "mod:f", (), ("t2.r0",)), deliver=False)
    net.msg(d, w, m.CancelTask("t2"), deliver=False)
    found = findings_of(net, tmp_path)
    f = only(found, "SES-013")  # one finding per pair, at the first message
    assert f.kind == "message-to-dead-peer"
    assert f.summary.startswith("driver sent SubmitTask to a peer incarnation it had declared dead")
    assert [e.text.split(" ")[1] for e in f.evidence] == ["peer-declared-dead", "worker-1:"]


def test_orphaned_task_replies_and_releases_to_a_dead_owner_FATE_003_BOR_024(tmp_path: Path) -> None:
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    net.msg(d, w, m.SubmitTask("t1", "mod:f", (m.Arg(m.ArgKind.SHARED, ref=d.ref("x")),), ("t1.r0",)))
    w.declare_dead(d)  # the submitter died while the task ran
    net.msg(w, d, m.TaskReply("t1", 1, (m.ReturnValue("t1.r0", m.ReturnKind.INLINE, m.Value(m.Encoding.RAW, b"")),)),
            deliver=False)
    net.msg(w, d, m.ReleaseBorrows((m.BorrowRelease("x", ("g",)),)), deliver=False)
    found = findings_of(net, tmp_path)
    assert "replied to a task of a submitter it had declared dead" in only(found, "FATE-003").summary
    assert "released grants to an owner it had declared dead" in only(found, "BOR-024").summary


def test_delivering_a_message_from_a_fenced_peer_SES_005(tmp_path: Path) -> None:
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    d.declare_dead(w)
    net.msg(w, d, m.CancelTask("late"))  # delivered: no `discarded` event follows
    net.msg(w, d, m.CancelTask("later"))
    d.event("discarded", reason="fenced", recordNo=d.records[-1].record_no)  # this one was discarded
    f = only(findings_of(net, tmp_path), "SES-005")
    assert "delivered CancelTask from worker-1" in f.summary and "CancelTask late" in f.evidence[-1].text


def test_use_after_release_BOR_001_and_the_owner_answering_freed_OWN_013(tmp_path: Path) -> None:
    net, _, _ = borrowing_run(use_after=True)
    found = findings_of(net, tmp_path)
    f = only(found, "BOR-001")
    assert f.kind == "use-after-release"
    assert "worker-1 asks its owner for it (driver.d1.2) after it released its hold" in f.summary
    assert "holds_zero" in f.evidence[0].text and "GetObjectStatus driver.d1.2" in f.evidence[1].text
    g = only(found, "OWN-013")
    assert "FREED" in g.evidence[-1].text and "GetObjectStatus" in g.evidence[-2].text


@pytest.mark.parametrize("sender", ["owner", "relay"])
def test_a_freed_fetch_answer_is_a_use_after_release_only_from_the_owner_OWN_013(tmp_path: Path, sender: str) -> None:
    # w2 fetches t1.r0 after its owner d reclaimed it: d's FREED chunk is OWN-013. A
    # relay w1 whose own copy is gone answers FREED for that copy only: the fetcher
    # goes on from its next source (FET-041), and nothing was used after release.
    net = Net()
    d, w1, w2 = net.peer("driver"), net.peer("worker-1"), net.peer("worker-2")
    net.connect(d, w1)
    net.connect(d, w2)
    net.connect(w1, w2)
    rid = task_round_trip(net, d, w1, "t1")
    d.transition("owner-object", rid, "ready", "out_of_scope", "released", "OWN-005")
    holder = d if sender == "owner" else w1
    net.msg(w2, holder, m.FetchRequest(rid, 7))
    net.msg(holder, w2, m.FetchChunk(rid, 7, 0, 0, True, error=m.ErrorInfo(m.ErrorCode.OBJECT_FREED, "no copy here")))
    found = [f for f in findings_of(net, tmp_path) if f.requirement == "OWN-013"]
    if sender == "owner":
        assert len(found) == 1 and "its owner driver answers FREED" in found[0].summary
    else:
        assert found == []


def test_a_grant_released_twice_is_a_double_free_BOR_019(tmp_path: Path) -> None:
    net, _, _ = borrowing_run(double_release=True)
    f = only(findings_of(net, tmp_path), "BOR-019")
    assert f.kind == "double-free" and len(f.evidence) == 2
    assert all("ReleaseBorrows driver.d1.2 [worker-1.a1.1]" in e.text for e in f.evidence)


def test_an_object_reclaimed_twice_is_a_double_free_OWN_005(tmp_path: Path) -> None:
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    rid = task_round_trip(net, d, w, "t1")
    d.transition("owner-object", rid, "ready", "out_of_scope", "released", "OWN-005")
    d.transition("owner-object", rid, "released", "out_of_scope", "released", "OWN-005")
    f = only(findings_of(net, tmp_path), "OWN-005")
    assert f.kind == "double-free" and "reclaimed t1.r0 a second time" in f.summary


@pytest.mark.parametrize("delivered", [True, False])
def test_a_copy_kept_after_its_free_arrived_is_a_leak_GC_004(tmp_path: Path, delivered: bool) -> None:
    # w stores X; its owner reclaims X and sends FreeObjects. If w received it and still
    # holds the copy at the end, the copy leaks; if w left before it arrived, the copy
    # went with w's process: no finding.
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    w.event("copy-stored", "X", size=200_000, primary=False, reason="fetched")
    d.transition("owner-object", "X", "ready", "put", "ready", "OWN-001")
    d.transition("owner-object", "X", "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    net.msg(d, w, m.FreeObjects(("X",)), deliver=delivered)
    found = findings_of(net, tmp_path)
    if delivered:
        f = only(found, "GC-004")
        assert f.object_id == "X" and "told it to drop the copy and it never did" in f.summary
    else:
        assert [f for f in found if f.requirement == "GC-004"] == [], [f.render() for f in found]


def test_a_transition_the_tables_do_not_allow_TRC_008(tmp_path: Path) -> None:
    # the tables of refrpc.core.tables judge every recorded transition
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    rid = task_round_trip(net, d, w, "t1")
    d.transition("owner-object", rid, "ready", "task_succeeded", "ready", "TASK-005")  # not a row
    w.transition("executor-task", "t1", "running", "finished", "replied")  # but t1 already replied: skipped a step
    found = findings_of(net, tmp_path)
    illegal = [f for f in found if f.kind == "illegal-transition"]
    assert len(illegal) == 2, [f.render() for f in found]
    summaries = " | ".join(f.summary for f in illegal)
    assert "owner-object t1.r0: ready --task_succeeded--> ready is not a transition of the table" in summaries
    assert "executor-task t1 was last recorded in 'replied'" in summaries
    assert sorted(f.requirement for f in illegal) == ["SM-001", "TRC-008"]  # not in the table; a step missing


@pytest.mark.parametrize("forgotten", [True, False])
def test_a_forgotten_handshake_ends_its_record_SM_003(tmp_path: Path, forgotten: bool) -> None:
    # SM-003: a handshake SEC-021 forgets is deleted without a transition; with its
    # peer-forgotten event, the PeerId's next greeting starts a new record. Without
    # the event, that greeting starts from a state the record is not in (TRC-008).
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    d.transition("peer", "worker-1", "connecting", "hello", "alive", "HS-002")
    if forgotten:
        d.event("peer-forgotten", peer="worker-1", incarnation=str(w.inc))
    d.transition("peer", "worker-1", "connecting", "hello", "alive", "HS-002")
    found = [f.requirement for f in findings_of(net, tmp_path)]
    assert found == ([] if forgotten else ["TRC-008"])


def test_initial_states_of_SM_002_are_accepted(tmp_path: Path) -> None:
    # SM-002: a put object starts ready (its creation is the ready --put--> ready row); a
    # task starts submitted, and one queued at once is recorded as submitted --no_slot-->
    # queued before anything is sent; a queued task that finds no executor left fails.
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    d.transition("owner-object", "P", "ready", "put", "ready", "OWN-001")
    d.transition("owner-task", "t1", "submitted", "no_slot", "queued", "TASK-020")
    d.transition("owner-task", "t1", "queued", "dispatch", "submitted", "TASK-020")
    task_round_trip(net, d, w, "t1")
    d.transition("owner-task", "t2", "submitted", "no_slot", "queued", "TASK-020")
    d.transition("owner-task", "t2", "queued", "no_executor", "failed", "TASK-022")
    d.transition("owner-object", "t2.r0", "pending", "no_executor", "failed", "TASK-022")
    d.transition("owner-object", "P", "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    assert findings_of(net, tmp_path) == []


def test_an_entry_whose_first_transition_is_not_from_its_initial_state_SM_002(tmp_path: Path) -> None:
    # SM-002: a task recorded as created in `queued` (no `submitted --no_slot-->`), and a
    # put object whose creation row is missing, are each one finding; the entries that
    # start as the table says are not.
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    d.transition("owner-task", "t1", "queued", "dispatch", "submitted", "TASK-020")
    d.transition("owner-object", "P", "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    d.transition("owner-object", "Q", "ready", "put", "ready", "OWN-001")
    d.transition("owner-object", "Q", "ready", "out_of_scope_unneeded", "deleted", "OWN-005")
    found = [f for f in findings_of(net, tmp_path) if f.requirement == "SM-002"]
    assert len(found) == 2, [f.render() for f in found]
    summaries = " | ".join(f.summary for f in found)
    assert "owner-task t1 starts from 'queued'" in summaries and "owner-object P starts from 'ready'" in summaries


def test_a_borrower_entry_kept_after_its_owner_died_FATE_001(tmp_path: Path) -> None:
    net = Net()
    d, w = net.peer("driver"), net.peer("worker-1")
    net.connect(d, w)
    net.msg(d, w, m.SubmitTask("t1", "mod:f", (m.Arg(m.ArgKind.REF, ref=d.ref("x")),), ("t1.r0",)))
    net.msg(w, d, m.GetObjectStatus("x"))
    net.msg(d, w, m.ObjectStatus("x", m.ObjectState.READY, 1, value=m.Value(m.Encoding.RAW, b"1")))
    w.transition("borrower-object", "x", "unresolved", "status_ready", "ready", "OBJ-004")
    w.declare_dead(d)
    # no `owner_died` transition for x follows: the entry stays ready
    f = only(findings_of(net, tmp_path), "FATE-001")
    assert f.kind == "owner-death" and "its entry for x stays ready" in f.summary


def test_a_ref_forwarded_before_its_registration_was_answered_BOR_002(tmp_path: Path) -> None:
    # o owns X; e got X in a task from s, and returns it inside a value to s without
    # waiting for o's BorrowerRegistered (the undercount register-before-send prevents)
    net = Net()
    o, s, e = net.peer("owner"), net.peer("submitter"), net.peer("executor")
    net.connect(s, e)
    net.connect(e, o)
    x = o.ref("X")
    net.msg(s, e, m.SubmitTask("t1", "mod:g", (m.Arg(m.ArgKind.SHARED, ref=m.RefDescriptor("X", "owner", o.inc,
                                                                                                 o.address)),),
                                ("t1.r0",)))
    net.msg(e, o, m.RegisterBorrower("X", s.name, s.inc, s.address, "e.g1"))
    value = m.Value(m.Encoding.PORTABLE, b"\x00" * 8, nested=(m.RefDescriptor("X", "owner", o.inc, o.address, -1,
                                                                               "e.g1"),))
    net.msg(e, s, m.TaskReply("t1", 1, (m.ReturnValue("t1.r0", m.ReturnKind.INLINE, value),)))
    net.msg(o, e, m.BorrowerRegistered("X", "e.g1"))
    assert x
    f = only(findings_of(net, tmp_path), "BOR-002")
    assert "sent X with grant e.g1 to submitter before the owner's BorrowerRegistered" in f.summary


def test_a_grant_obtained_for_a_peer_that_never_got_the_ref_BOR_014(tmp_path: Path) -> None:
    net = Net()
    o, f_, r = net.peer("owner"), net.peer("forwarder"), net.peer("receiver")
    net.connect(f_, o)
    net.connect(f_, r)
    net.msg(f_, o, m.RegisterBorrower("X", r.name, r.inc, r.address, "f.g1"))
    net.msg(o, f_, m.BorrowerRegistered("X", "f.g1"))
    # the send to the receiver was abandoned, and the grant never released
    found = findings_of(net, tmp_path)
    g = only(found, "BOR-014")
    assert "forwarder obtained grant f.g1 for receiver but never sent it the ref" in g.summary


def test_findings_as_json(tmp_path: Path, cli) -> None:
    net, _, _ = borrowing_run(release=False)
    net.write(tmp_path / "run")
    code, out, _ = cli("check", "--json", tmp_path / "run")
    data = json.loads(out)
    assert code == 1 and [f["requirement"] for f in data["findings"]] == ["BOR-005"]
    assert data["partial"] is False and data["findings"][0]["evidence"][0]["peer"] == "driver"


def test_findings_cite_only_requirements_the_spec_defines(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parents[3] / "spec" / "requirements.json"
    if not spec.exists():
        pytest.skip("spec/requirements.json is not next to this checkout")
    defined = {r["id"] for r in json.loads(spec.read_text())["requirements"]}
    runs = [borrowing_run(release=False)[0], borrowing_run(free_early=True)[0], borrowing_run(use_after=True)[0],
            borrowing_run(double_release=True)[0]]
    cited = set()
    for i, net in enumerate(runs):
        net.write(tmp_path / f"r{i}")
        cited |= {f.requirement for f in check_run(open_run([tmp_path / f"r{i}"]))}
    assert cited and cited <= defined, cited - defined
