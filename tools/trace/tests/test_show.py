"""``show``: the merged message list, requests matched to replies, and its filters."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from refrpc.core import messages as m

from tracekit import Net, borrowing_run

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    net, _, _ = borrowing_run()
    net.write(tmp_path / "run")
    return tmp_path / "run"


def rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_each_message_is_listed_once_decoded_in_merged_order(run_dir: Path, cli) -> None:
    code, out, _ = cli("show", "--json", run_dir)
    assert code == 0
    got = rows(out)
    assert [r["type"] for r in got] == [
        "Hello", "Welcome", "SubmitTask", "TaskReply", "SubmitTask", "RegisterBorrower", "BorrowerRegistered",
        "TaskReply", "ReleaseBorrows", "Goodbye", "peer-declared-dead"]
    assert [r["index"] for r in got] == sorted(r["index"] for r in got)
    assert got[4]["text"].startswith("-> worker-1: SubmitTask driver.d1.3 mod:keep(shared driver.d1.2@driver)")


def test_replies_name_the_request_they_answer(tmp_path: Path, cli) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    net.msg(a, b, m.GetObjectStatus("o1"))
    net.msg(a, b, m.FetchRequest("o1", 4))
    net.msg(a, b, m.IntrospectRequest(9))
    net.msg(b, a, m.ObjectStatus("o1", m.ObjectState.READY, 10, ("b",), ("ipc://b",)))
    net.msg(b, a, m.FetchChunk("o1", 4, 0, 10, False, data=b"01234"))
    net.msg(b, a, m.FetchChunk("o1", 4, 5, 10, True, data=b"56789"))
    net.msg(b, a, m.IntrospectReply(9, ()))
    net.msg(a, b, m.ConfirmBorrow("o2", "g1", "c", 3))
    net.msg(b, a, m.BorrowConfirmed("o2", "g1", False))
    net.write(tmp_path / "run")
    code, out, _ = cli("show", "--json", tmp_path / "run")
    got = {r["index"]: r for r in rows(out)}
    by_type: dict[str, list[dict]] = {}
    for r in got.values():
        by_type.setdefault(r["type"], []).append(r)
    assert got[by_type["Welcome"][0]["reply_to"]]["type"] == "Hello"
    assert got[by_type["ObjectStatus"][0]["reply_to"]]["type"] == "GetObjectStatus"
    assert [got[c["reply_to"]]["type"] for c in by_type["FetchChunk"]] == ["FetchRequest", "FetchRequest"]
    assert got[by_type["IntrospectReply"][0]["reply_to"]]["type"] == "IntrospectRequest"
    assert got[by_type["BorrowConfirmed"][0]["reply_to"]]["type"] == "ConfirmBorrow"
    code, text, _ = cli("show", tmp_path / "run")
    assert re.search(r"ObjectStatus o1 READY at \[b\].*re #\d+ \(\+\d+\.\d ms\)", text), text


def test_filters_by_peer_object_task_type_and_time(run_dir: Path, cli) -> None:
    _, out, _ = cli("show", "--json", "--type", "SubmitTask", run_dir)
    assert {r["type"] for r in rows(out)} == {"SubmitTask"} and len(rows(out)) == 2
    _, out, _ = cli("show", "--json", "--task", "driver.d1.3", run_dir)
    assert [r["type"] for r in rows(out)] == ["SubmitTask", "TaskReply"]
    _, out, _ = cli("show", "--json", "--object", "driver.d1.2", run_dir)
    assert [r["type"] for r in rows(out)] == ["SubmitTask", "RegisterBorrower", "BorrowerRegistered", "TaskReply",
                                               "ReleaseBorrows"]
    _, out, _ = cli("show", "--json", "--object", "driver.d1.2", "--events", run_dir)
    assert {"transition", "hold", "grant-added"} - {r["type"] for r in rows(out)} == {"hold"}  # holds need --all
    _, out, _ = cli("show", "--json", "--peer", "worker-1", "--type", "TaskReply", run_dir)
    assert all(r["peer"] == "worker-1" for r in rows(out)) and len(rows(out)) == 2
    _, everything, _ = cli("show", "--json", run_dir)
    all_rows = rows(everything)
    middle = all_rows[3]["index"]
    _, out, _ = cli("show", "--json", "--since", f"#{middle}", "--until", f"#{all_rows[5]['index']}", run_dir)
    assert [r["index"] for r in rows(out)] == [r["index"] for r in all_rows[3:6]]
    t = all_rows[3]["time_s"]
    _, out, _ = cli("show", "--json", "--since", f"{t * 1000:.3f}ms", run_dir)
    assert rows(out)[0]["index"] == middle
    with pytest.raises(SystemExit) as exc:
        cli("show", "--since", "yesterday", run_dir)
    assert exc.value.code == 2


def test_all_shows_heartbeats_retransmissions_and_duplicates(tmp_path: Path, cli) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    net.msg(a, b, m.Heartbeat())
    env = a.envelope(b, m.CancelTask("t1"))
    frame0 = a.send_env(env)
    a.send_env(env)
    b.recv_env(env, frame0)
    b.recv_env(env, frame0)
    net.write(tmp_path / "run")
    _, plain, _ = cli("show", tmp_path / "run")
    assert "Heartbeat" not in plain and plain.count("CancelTask") == 1
    _, full, _ = cli("show", "--all", tmp_path / "run")
    assert "Heartbeat" in full
    assert re.search(r"CancelTask t1 seq 1   \[retransmission of #\d+\]", full)
    assert re.search(r"<- a: CancelTask t1 seq 1   \[duplicate of #\d+\]", full)


def test_limit_and_lost_messages(tmp_path: Path, cli) -> None:
    net = Net()
    a, b = net.peer("a"), net.peer("b")
    net.connect(a, b)
    for i in range(5):
        net.msg(a, b, m.CancelTask(f"t{i}"), deliver=i != 3)
    net.write(tmp_path / "run")
    _, out, _ = cli("show", tmp_path / "run")
    assert "-- 1 CancelTask from a to b never received" in out
    _, out, _ = cli("show", "--limit", "3", tmp_path / "run")
    assert len([line for line in out.splitlines() if line.startswith("#")]) == 3
