"""Reading traces: damaged, foreign and missing input gives clear messages and
partial results, never a traceback; long traces stream in bounded memory with
progress on stderr (issue 6, "Bad input" and "Large traces")."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest

from refrpc.codec import read_trace, write_trace
from refrpc.core import messages as m

import refrpc_trace
from refrpc_trace import Diagnostics, Merger, Progress, check_run, open_run
from refrpc_trace import _replay

from conftest import run_process
from tracekit import Net, borrowing_run, churn_run

pytestmark = pytest.mark.timeout(120)


def clean_dir(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    net, _, _ = borrowing_run()
    directory = tmp_path / "run"
    return directory, net.write(directory)


def test_a_trace_cut_inside_its_last_record_is_read_up_to_it_TRC_012(tmp_path: Path, cli) -> None:
    # a worker killed while writing: its file ends inside a record
    directory, paths = clean_dir(tmp_path)
    data = paths["worker-1"].read_bytes()
    whole = list(read_trace(data))
    paths["worker-1"].write_bytes(data[:-7])
    code, out, err = cli("show", "--json", directory)
    assert code == 0  # a cut last record is what TRC-012 tells readers to accept: nothing is partial
    assert "ends inside record" in err and "TRC-012" in err
    shown = [line for line in out.splitlines() if '"peer": "worker-1"' in line]
    assert shown, out
    # the last complete record of the cut file is still used (here: its last send before the cut one)
    last_send_no = max(r.record_no for r in whole[:-1] if r.kind.value == "send")
    run = open_run([directory])
    numbers = [it.rec.record_no for it in Merger(run) if it.peer == "worker-1"]
    assert last_send_no in numbers and len(whole) - 1 not in numbers


def test_a_corrupt_trace_gives_the_records_before_the_damage_and_exit_3(tmp_path: Path, cli) -> None:
    directory, paths = clean_dir(tmp_path)
    data = bytearray(paths["worker-1"].read_bytes())
    records = list(read_trace(bytes(data)))
    offset = sum(len(write_bytes(r)) for r in records[:10])
    data[offset:offset + 8] = b"\xff" * 8  # a segment table that claims 2^32 segments
    paths["worker-1"].write_bytes(bytes(data))
    code, out, err = cli("show", directory)
    assert code == 3
    assert f"corrupt at byte {offset} (record 10)" in err and "the 10 records before it are used" in err
    assert "worker-1" in out  # its first records are merged with the driver's
    code, out, err = cli("check", directory)
    assert code in (1, 3) and "partial input" in out


def write_bytes(record) -> bytes:
    buf = io.BytesIO()
    write_trace(buf, [record])
    return buf.getvalue()


def test_a_trace_from_a_newer_protocol_major_is_left_out_with_a_clear_message(tmp_path: Path, cli) -> None:
    net, d, w = borrowing_run()
    header = w.records[0]
    w.records[0] = type(header)(header.peer, header.incarnation, 0, header.monotonic_ns, header.kind,
                                protocol_major=1, protocol_minor=3, implementation="refrpc-future/9.0")
    directory = tmp_path / "run"
    net.write(directory)
    code, out, err = cli("show", directory)
    assert code == 3
    assert "protocol 1.3" in err and "refrpc-future/9.0" in err and "left out" in err
    # the driver's trace is still shown; worker-1's messages appear from the driver's side only
    assert "driver" in out and "SubmitTask" in out
    assert "[received; no send of it in any trace]" in out


def test_a_newer_minor_version_is_read_with_a_note(tmp_path: Path, cli) -> None:
    net, d, w = borrowing_run()
    header = w.records[0]
    w.records[0] = type(header)(header.peer, header.incarnation, 0, header.monotonic_ns, header.kind,
                                protocol_major=m.PROTOCOL_MAJOR, protocol_minor=m.PROTOCOL_MINOR + 5,
                                implementation="refrpc-py/0.9")
    directory = tmp_path / "run"
    net.write(directory)
    code, out, err = cli("check", directory)
    assert code == 0 and "0 findings" in out
    assert f"protocol {m.PROTOCOL_MAJOR}.{m.PROTOCOL_MINOR + 5}" in err


def test_a_missing_peer_trace_is_named_and_results_are_partial(tmp_path: Path, cli) -> None:
    # only the driver's trace was collected
    net, d, w = borrowing_run()
    directory = tmp_path / "run"
    net.write(directory, only=(d,))
    code, out, err = cli("show", directory)
    assert code == 3
    assert f"no trace of worker-1/{w.inc:x}" in err and "messages to it" in err
    assert "RegisterBorrower" in out  # known from the driver's receive alone
    code, out, err = cli("check", directory)
    assert code == 3 and "0 findings" in out


def test_inputs_that_are_no_trace_at_all_exit_2_with_a_message(tmp_path: Path) -> None:
    text = tmp_path / "notes.rrtrace"
    text.write_text("this is not a trace\n" * 10)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    for args, message in [((text,), "not a trace file"), ((empty_dir,), "no *.rrtrace files"),
                          ((tmp_path / "nowhere",), "no such file or directory")]:
        p = run_process("check", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert message in p.stderr and "no readable trace" in p.stderr
        assert "Traceback" not in p.stderr


def test_every_command_on_damaged_input_gives_results_and_no_traceback(tmp_path: Path, cli) -> None:
    net, d, w = borrowing_run()
    e = net.peer("worker-2", 0xB2)
    net.connect(d, e)
    directory = tmp_path / "run"
    paths = net.write(directory)
    data = paths["worker-1"].read_bytes()
    boundary = sum(len(write_bytes(r)) for r in list(read_trace(data))[:15])
    paths["worker-1"].write_bytes(data[:boundary] + b"\xff" * 8 + b"garbage!" * 3)
    paths["worker-2"].write_bytes(paths["worker-2"].read_bytes()[:-3])
    (directory / "junk.rrtrace").write_bytes(b"\x07" * 64)
    (directory / "empty.rrtrace").write_bytes(b"")
    oid = "driver.d1.2"
    commands = [("show",), ("show", "--all", "--events"), ("object", oid), ("holders", oid, "--at", "99s"),
                ("lineage", "driver.d1.3.r0"), ("check",), ("export", "--perfetto", tmp_path / "p.json"),
                ("html", "-o", tmp_path / "p.html")]
    for i, cmd in enumerate(commands):
        if i < 2:  # as a real process: the console's view
            p = run_process(*cmd, directory)
            code, err = p.returncode, p.stderr
        else:  # the same entry point, in this process (faster)
            code, _, err = cli(*cmd, directory)
        assert "Traceback" not in err, (cmd, err)
        assert code in (1, 3), (cmd, code, err)
        assert "junk.rrtrace: not a trace file" in err, cmd
        assert "empty trace file" in err, cmd
        assert "worker-1" in err and "corrupt" in err, cmd
    assert (tmp_path / "p.json").stat().st_size > 0 and (tmp_path / "p.html").stat().st_size > 0


def test_gaps_and_clocks_going_back_are_TRC_004_findings(tmp_path: Path, cli) -> None:
    net, d, w = borrowing_run()
    del w.records[12]  # a record the writer lost
    r = w.records[20]
    w.records[20] = type(r)(r.peer, r.incarnation, r.record_no, 0, r.kind, r.remote_peer, r.remote_incarnation,
                            r.seq, r.envelope, r.event_name, r.object_id, r.task_id, r.detail)
    directory = tmp_path / "run"
    net.write(directory)
    code, out, _ = cli("check", directory)
    assert code == 1
    assert "[TRC-004] trace-format: worker-1: record number 13 where 12 was due (records are missing)" in out
    assert "[TRC-004] trace-format: worker-1: monotonicNs goes back" in out


def test_two_files_of_one_incarnation_use_the_larger(tmp_path: Path, cli) -> None:
    directory, paths = clean_dir(tmp_path)
    copy = directory / "copy-of-worker.rrtrace"
    copy.write_bytes(paths["worker-1"].read_bytes()[:400])
    code, out, err = cli("check", directory)
    assert "a second trace of worker-1" in err and "only the larger file is used" in err
    assert code == 3 and "0 findings" in out


def test_progress_is_reported_on_stderr(tmp_path: Path, cli) -> None:
    net = churn_run(600)
    net.write(tmp_path / "run")
    code, out, err = cli("check", "--progress", tmp_path / "run")
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("refrpc-trace: read ")]
    records = sum(len(p.records) - 1 for p in net.peers)
    assert lines and f"read {records:,} records (100% of" in lines[-1]
    # and a reader that reports as it goes, once per interval
    stream = io.StringIO()
    run = open_run([tmp_path / "run"])
    progress = Progress(run.total_bytes, enabled=True, stream=stream, interval_s=0.0)
    for _ in Merger(run, progress):
        pass
    assert progress.lines >= records // 4096, stream.getvalue()
    assert stream.getvalue().splitlines()[-1].endswith(f"(100% of {run.total_bytes / 1e6:,.1f} MB)")


@pytest.fixture(scope="module")
def churns(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    out = {}
    for n in (200, 800):
        directory = tmp_path_factory.mktemp(f"churn{n}")
        churn_run(n).write(directory)
        out[n] = directory
    return out


def test_a_long_trace_is_replayed_in_bounded_memory(churns: dict[int, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # The replay keeps what is alive plus fixed-size caches (the graveyard of reclaimed
    # objects, the last states of finished tasks). With the caches at their bound, a run
    # four times as long must not need four times the memory.
    monkeypatch.setattr(_replay, "GRAVEYARD", 100)
    monkeypatch.setattr(_replay, "STATES_KEPT", 100)
    peaks = {}
    for n, directory in churns.items():
        run = open_run([directory], Diagnostics())
        tracemalloc.start()
        try:
            findings = check_run(run)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert findings == [], [f.render() for f in findings]
    assert peaks[800] < 1.5 * peaks[200] + 200_000, peaks


def test_public_names_are_exported() -> None:
    assert set(refrpc_trace.__all__) <= set(dir(refrpc_trace))
    for name in ("check", "open_run", "Merger", "Replay", "holders", "lineage", "PerfettoWriter", "render_html"):
        assert name in refrpc_trace.__all__
