"""pyimpl as an implementation under test: ``python -m refrpc.iut`` (spec/conformance-hooks.md).

The conformance suite starts this process once per case and knows it only through
its ZeroMQ socket and its control channel. So do these tests: each starts IUT
processes and drives them only through the control channel (JSON lines on stdin
and stdout) and through a second IUT as their peer; what no pair of IUTs can show
(two fault switches, fail-stop) is checked with a bare protocol peer.
Bounds are generous (the machine is shared). Only the two switches whose effect
is an absence (a fetch never answered, a Goodbye never sent) decide on a timer:
a ``get`` that times out after a few seconds where a correct peer answers at once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import zmq

from refrpc import codec
from refrpc.testing import wait_until
from refrpc.core.messages import (
    Arg,
    ArgKind,
    Envelope,
    ErrorCode,
    ErrorInfo,
    Heartbeat,
    Hello,
    PeerDeadNotice,
    ProtocolError,
    SubmitTask,
    TaskReply,
    Welcome,
)
from refrpc.iut import FAULTS
from refrpc.serialization import to_portable

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
#: How long any single answer or event may take on a loaded machine.
BOUND_S = 30.0
#: Detection after 1 s (100 ms x 10): for tests that make a peer go silent.
FAST = {"REFRPC_IUT_HEARTBEAT_MS": "100", "REFRPC_IUT_MISS_LIMIT": "10"}
#: Detection after 60 s: nothing in a test is ever noticed by silence.
SLOW = {"REFRPC_IUT_HEARTBEAT_MS": "10000", "REFRPC_IUT_MISS_LIMIT": "6"}


class ControlFailed(AssertionError):
    def __init__(self, op: str, error: dict[str, str]) -> None:
        super().__init__(f"{op}: {error['code']}: {error['message']}")
        self.code = error["code"]
        self.message = error["message"]


class Iut:
    """One ``python -m refrpc.iut`` process and its control channel."""

    def __init__(self, name: str, *, faults: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 endpoint: str = "tcp://127.0.0.1:0") -> None:
        cmd = [sys.executable, "-m", "refrpc.iut", "--endpoint", endpoint, "--peer-id", name]
        for f in faults:
            cmd += ["--fault", f]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("REFRPC_IUT_")}
        environment["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        environment.update(env or {})
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment)
        #: Answers by request id, events in order, and any stdout line that was not JSON.
        self.answers: dict[int | None, list[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.stray: list[bytes] = []
        self._cv = threading.Condition()
        self._next_id = 0
        self._ready: dict[str, Any] | None = None
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def ready(self) -> dict[str, Any]:
        """The ``ready`` event, waited for on first use (so several IUTs start at once)."""
        if self._ready is None:
            self._ready = self.event("ready")
        return self._ready

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            with self._cv:
                if not isinstance(obj, dict):
                    self.stray.append(line)
                elif "event" in obj and "id" not in obj:
                    self.events.append(obj)
                else:
                    self.answers.setdefault(obj.get("id"), []).append(obj)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    @property
    def address(self) -> str:
        return self.ready["address"]  # type: ignore[no-any-return]

    def event(self, name: str, peer_id: str | None = None, timeout: float = BOUND_S) -> dict[str, Any]:
        """The first event ``name`` (about ``peer_id``), waiting for it with a bound."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if e["event"] == name and peer_id in (None, e.get("peer_id"))), None)

        with self._cv:
            assert self._cv.wait_for(lambda: found() is not None or self.proc.poll() is not None, timeout), f"{self.name}: no {name} event"
            e = found()
        assert e is not None, f"{self.name} exited with {self.proc.returncode} before a {name} event"
        return e

    def write(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.rstrip(b"\n") + b"\n")
        self.proc.stdin.flush()

    def send(self, op: str, **args: Any) -> int:
        self._next_id += 1
        self.write(json.dumps({"id": self._next_id, "op": op, **args}).encode())
        return self._next_id

    def answer(self, rid: int | None, timeout: float = BOUND_S) -> dict[str, Any]:
        with self._cv:
            assert self._cv.wait_for(lambda: bool(self.answers.get(rid)), timeout), f"{self.name}: no answer to request {rid}"
            return self.answers[rid].pop(0)

    def __call__(self, op: str, **args: Any) -> Any:
        """Send a request; its result, or ControlFailed with the error it got."""
        a = self.answer(self.send(op, **args))
        if not a["ok"]:
            raise ControlFailed(op, a["error"])
        return a["result"]

    def get(self, object_id: str, timeout_ms: int = 20_000) -> dict[str, Any]:
        return self("get", object_id=object_id, timeout_ms=timeout_ms)  # type: ignore[no-any-return]

    def submit(self, function: str, *args: dict[str, Any], executor: str, **options: Any) -> str:
        """Submit; the id of its (first) return."""
        return self("submit", function=function, args=list(args), executor=executor, **options)["returns"][0]  # type: ignore[no-any-return]

    def entry(self, object_id: str) -> dict[str, Any] | None:
        return next((e for e in self("table")["entries"] if e["objectId"] == object_id), None)

    def wait_exit(self, timeout: float = BOUND_S) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(BOUND_S)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass


def value(v: Any) -> dict[str, Any]:
    return {"value": v}


def data(b: bytes) -> dict[str, str]:
    return {"data": base64.b64encode(b).decode()}


def pattern(n: int) -> bytes:
    return bytes(i % 256 for i in range(n))


def connect(*iuts: Iut) -> None:
    for a in iuts:
        for b in iuts:
            if a is not b:
                a("add_peer", peer_id=b.name, address=b.address, slots=1)


@pytest.fixture
def started() -> Iterator[list[Iut]]:
    """IUT processes a test starts; every one is killed at the end, whatever happened."""
    procs: list[Iut] = []
    yield procs
    for p in procs:
        p.close()


def start(started: list[Iut], name: str, **kw: Any) -> Iut:
    iut = Iut(name, **kw)
    started.append(iut)
    iut.ready
    return iut


def two(started: list[Iut], a: dict[str, Any] | None = None, b: dict[str, Any] | None = None) -> tuple[Iut, Iut]:
    """IUTs "a" and "b", started together, each told of the other (add_peer)."""
    x, y = Iut("a", **(a or {})), Iut("b", **(b or {}))
    started += [x, y]
    connect(x, y)
    return x, y


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Iut, Iut]]:
    """Two connected IUTs with default settings, shared by the fixture-catalog tests."""
    a = Iut("alice")
    try:
        b = Iut("bob")  # starts while alice does
        try:
            connect(a, b)
            yield a, b
        finally:
            b.close()
    finally:
        a.close()


# ---------------------------------------------------------------- starting and the control channel
def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_ready_event_describes_the_peer_bound_where_the_suite_said(started: list[Iut]) -> None:
    """CNF-006, CNF-011: the IUT binds the given endpoint, takes the given PeerId, and
    says so once in ``ready``; ``info`` answers the same fields; no fault is on."""
    endpoint = free_endpoint()
    a = start(started, "p-1", endpoint=endpoint)
    ready = dict(a.ready)
    assert ready.pop("event") == "ready"
    assert ready["peer_id"] == "p-1" and ready["address"] == endpoint
    assert int(ready["incarnation"]) > 0 and ready["incarnation"] == str(int(ready["incarnation"]))
    assert {"core", "borrowing", "recovery", "actors"} <= set(ready["features"])
    assert "python-pickle" not in ready["features"]
    assert ready["inline_threshold"] == 100 * 1024
    assert a("info") == ready
    assert a("x-faults") == {"faults": []}
    assert [e["event"] for e in a.events] == ["ready"]


def test_bad_requests_are_refused_and_the_process_stays_up(started: list[Iut]) -> None:
    """CNF-005, CNF-007: every request line gets exactly one answer; an unknown op is
    ``unknown_op``, missing or ill-typed arguments ``bad_request``, and nothing but
    JSON lines ever appears on standard output."""
    a = start(started, "p-1")
    a.write(b"this is not json")
    assert a.answer(None)["error"]["code"] == "bad_request"
    a.write(b'{"op": "info"}')  # no id
    assert a.answer(None)["error"]["code"] == "bad_request"
    a.write(b'{"id": 1, "op": "info", "x": NaN}')  # not JSON: its id cannot be read
    assert a.answer(None)["error"]["code"] == "bad_request"
    refused = {
        "unknown_op": [dict(op="frobnicate"), dict(op="x-nothing")],
        "bad_request": [
            dict(op="submit"),
            dict(op="submit", function="echo", args=[value(1)], executor=""),
            dict(op="submit", function="echo", args=[{"later": 1}], executor="bob"),
            dict(op="submit", function="echo", args=[value(1)], executor="nobody-added"),
            dict(op="submit", function="echo", args=[{"ref": "p-1.1.99"}], executor="bob"),
            dict(op="submit", function="echo", args=[value(1)], executor="p-1"),
            dict(op="submit", function="x" * 257, args=[], executor="p-1"),
            dict(op="get", object_id="p-1.1.99", timeout_ms=10),
            dict(op="get", object_id="x", timeout_ms="soon"),
            dict(op="drop", object_id="never-held"),
            dict(op="put"),
            dict(op="put", value=1.5),
            dict(op="put", value=2**63),
            dict(op="put", value={"ref": "unknown"}),
            dict(op="put", value={"map": [["k", 1], ["k", 2]]}),
            dict(op="put", value={"data": "not base64!"}),
            dict(op="put", value={"float64": "huge"}),
            dict(op="put", value={"text": "x"}),
            dict(op="add_peer", peer_id="bob", address="tcp://127.0.0.1:1", slots=True),
            dict(op="add_peer", peer_id="bob", address="tcp://127.0.0.1:1", slots=-1),
            dict(op="actor_call", actor_id="none", method="get", args=[]),
            dict(op="quiesce", timeout_ms=-5),
        ],
    }
    for code, requests in refused.items():
        for req in requests:
            op = req.pop("op")
            with pytest.raises(ControlFailed) as failed:
                a(op, **req)
            assert failed.value.code == code, (op, req, failed.value)
    assert a("info")["peer_id"] == "p-1"
    assert a.proc.poll() is None
    assert a.stray == []
    a.send("shutdown")
    assert a.wait_exit() == 0


def test_every_json_portable_value_round_trips(started: list[Iut]) -> None:
    """Section 2's JSON portable values, through ``put`` and ``get`` of an owned
    object: every member, integer extremes, special floats, map order (VAL-005)."""
    a = start(started, "p-1")
    v = {"map": [
        ["z", None],
        ["a", [True, False, 0, -(2**63), 2**63 - 1, "text ü ☃", data(b""), data(bytes(range(256)))]],
        ["f", [{"float64": 1.5}, {"float64": -0.25}, {"float64": "nan"}, {"float64": "inf"}, {"float64": "-inf"}]],
        ["nested", {"map": [["k", [[[]]]]]}],
    ]}
    oid = a("put", value=v)["object_id"]
    assert a.get(oid) == {"value": v}
    big = pattern(300_000)
    oid_big = a("put", value=data(big))["object_id"]
    assert a.entry(oid_big)["locations"] == ["p-1"]  # stored, not inline: the owner's own copy
    assert base64.b64decode(a.get(oid_big)["value"]["data"]) == big


# ---------------------------------------------------------------- the fixture catalog, between two IUTs
def test_echo_returns_its_argument_with_nested_refs_held(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``echo``: the value comes back unchanged; a ref nested in it comes back
    nested, and the program that reads it holds it once more (BOR-002, BOR-008)."""
    a, b = pair
    x = a("put", value="payload")["object_id"]
    arg = [{"ref": x}, "s", {"map": [["k", {"float64": "nan"}]]}, data(b"\x00\xff")]
    r = a.submit("echo", value(arg), executor=b.name)
    assert a.get(r) == {"value": arg}
    assert a.entry(x)["localRefs"] == 2  # the put's handle and the one the get handed out
    for oid in (x, x, r):
        a("drop", object_id=oid)
    # bob's release of x is acknowledged once bob is quiescent (CNF-019), and alice
    # reclaims x on its delivery: alice's quiescence alone does not cover bob's side
    for iut in (b, a):
        assert iut("quiesce", timeout_ms=20_000) == {"quiescent": True}
    assert a.entry(x) is None and a.entry(r) is None


def test_make_bytes_inline_and_stored_and_sum_bytes_fetches(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``make_bytes`` (byte i = i mod 256) and ``sum_bytes``: a small result
    travels inline, one above the inline threshold stays at the executor (TASK-004)
    and is fetched from there (FET-001), also by a task given it by ref (TASK-002)."""
    a, b = pair
    empty = a.submit("make_bytes", value(0), executor=b.name)
    small = a.submit("make_bytes", value(1000), executor=b.name)
    big = a.submit("make_bytes", value(300_000), executor=b.name)
    assert a.get(empty) == {"value": data(b"")}
    assert a.get(small) == {"value": data(pattern(1000))}
    assert a.entry(small)["locations"] == []  # inline at the owner
    # big ran after small (in order), maybe not yet done: wait for its reply, not its value
    assert wait_until(lambda: a.entry(big)["locations"], 30), a.entry(big)
    assert a.entry(big)["locations"] == [b.name]  # stored at the executor
    assert base64.b64decode(a.get(big)["value"]["data"]) == pattern(300_000)
    assert a.entry(big)["locations"] == [b.name, a.name]  # the fetched copy is a location (LOC-002)
    total = a.submit("sum_bytes", {"ref": big}, executor=b.name)
    assert a.get(total) == {"value": sum(pattern(300_000))}
    put = a("put", value=data(pattern(200_000)))["object_id"]  # stored at a: b fetches it
    assert a.get(a.submit("sum_bytes", {"ref": put}, executor=b.name)) == {"value": sum(pattern(200_000))}
    assert a.get(a.submit("sum_bytes", value(data(b"")), executor=b.name)) == {"value": 0}


def test_fail_is_task_failed_with_the_message(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``fail``, TASK-007: every return fails with TASK_FAILED and the text."""
    a, b = pair
    r = a.submit("fail", value("boom-42"), executor=b.name)
    got = a.get(r)["error"]
    assert got["code"] == "TASK_FAILED" and "boom-42" in got["message"]


def test_wrong_argument_types_and_unknown_names_fail_the_task(pair: tuple[Iut, Iut]) -> None:
    """CNF-003: a fixture given an argument of the wrong type raises (TASK_FAILED);
    VAL-010, TASK-006: only the catalog's exact names run, not importable paths."""
    a, b = pair
    for function, arg in [("hold", 5), ("forward", "x"), ("make_bytes", "7"), ("make_bytes", -1),
                          ("sum_bytes", 3), ("sleep", True), ("fail", 1)]:
        r = a.submit(function, value(arg), executor=b.name)
        assert a.get(r)["error"]["code"] == "TASK_FAILED", (function, arg)
    for name in ["no_such_function", "refrpc.iut._fixtures:echo", "Echo", "echo "]:
        r = a.submit(name, value(1), executor=b.name)
        assert a.get(r)["error"]["code"] == "UNKNOWN_FUNCTION", name


def test_hold_keeps_the_ref_until_drop_held(pair: tuple[Iut, Iut]) -> None:
    """CNF-004: ``hold`` keeps its ref after the task (BOR-007: the executor registers
    as a borrower), neither the owner's drop nor garbage collection frees it, and
    ``drop_held`` releases it (BOR-005) so that the owner reclaims it (OWN-005)."""
    a, b = pair
    x = a("put", value=[1, 2, 3])["object_id"]
    assert a.get(a.submit("hold", {"shared": x}, executor=b.name)) == {"value": None}
    assert a.entry(x)["borrowers"] == [b.name]
    held = b.entry(x)
    assert held is not None and held["role"] == "borrower" and held["owner"] == a.name and held["localRefs"] == 1
    a("drop", object_id=x)
    a("gc")
    b("gc")
    assert b("quiesce", timeout_ms=20_000) == {"quiescent": True}
    assert a.entry(x)["state"] == "ready" and a.entry(x)["borrowers"] == [b.name]  # OWN-004
    assert b("drop_held") == {"dropped": 1}
    assert b.entry(x) is None
    assert b("quiesce", timeout_ms=20_000) == {"quiescent": True}  # the release is acknowledged
    assert a.entry(x) is None


def test_forward_returns_the_ref_itself(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``forward``: the result is the shared ref; the submitter, its owner,
    reads it as a second handle to its own object."""
    a, b = pair
    x = a("put", value="mine")["object_id"]
    r = a.submit("forward", {"shared": x}, executor=b.name)
    assert a.get(r) == {"value": {"ref": x}}
    assert a.entry(x)["localRefs"] == 2
    assert a.get(x) == {"value": "mine"}


def test_nest_returns_an_object_the_executor_owns_that_embeds_the_ref(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``nest``: the executor puts ``[r]`` and returns a ref to it, with an
    owner-created grant for the submitter (BOR-004); the new object holds ``r``
    through containedIn (GC-002); reading it yields ``[r]``."""
    a, b = pair
    x = a("put", value="inner")["object_id"]
    r = a.submit("nest", {"shared": x}, executor=b.name)
    n = a.get(r)["value"]["ref"]
    assert n.startswith(b.name + ".")
    owned = b.entry(n)
    assert owned["role"] == "owner" and owned["borrowers"] == [a.name] and owned["localRefs"] == 0
    assert b.entry(x)["containedIn"] == [n]
    assert a.get(n) == {"value": [{"ref": x}]}


def test_counter_actor_keeps_state_and_refs(pair: tuple[Iut, Iut]) -> None:
    """CNF-001 ``Counter``: add/get on the actor's state, in call order (ACT-003);
    ``keep`` holds a ref in actor state until ``drop_held`` (CNF-004)."""
    a, b = pair
    actor = a("actor_create", **{"class": "Counter", "args": [value(5)], "host": b.name})["actor_id"]
    calls = [a("actor_call", actor_id=actor, method="add", args=[value(n)])["returns"][0] for n in (3, -10, 2)]
    assert [a.get(r)["value"] for r in calls] == [8, -2, 0]
    got = a("actor_call", actor_id=actor, method="get", args=[])["returns"][0]
    assert a.get(got) == {"value": 0}
    x = a("put", value="kept")["object_id"]
    keep = a("actor_call", actor_id=actor, method="keep", args=[{"shared": x}])["returns"][0]
    assert a.get(keep) == {"value": None}
    assert b.entry(x)["localRefs"] == 1
    assert b("drop_held") == {"dropped": 1}
    bad = a("actor_call", actor_id=actor, method="state", args=[])["returns"][0]
    assert a.get(bad)["error"]["code"] == "UNKNOWN_FUNCTION"  # not a method of the catalog
    other = a("actor_create", **{"class": "NoSuchClass", "args": [], "host": b.name})["actor_id"]
    call = a("actor_call", actor_id=other, method="get", args=[])["returns"][0]
    assert "error" in a.get(call)


def test_get_may_be_answered_after_later_requests(pair: tuple[Iut, Iut]) -> None:
    """CNF-005: a ``get`` that waits does not hold up the requests after it; ``sleep``
    returns null after its time, during which heartbeats keep the session alive
    (the 3 s are twice the 1.5 s detection timeout: LIV-001, LIV-003)."""
    a, b = pair
    r = a.submit("sleep", value(3000), executor=b.name)
    pending = a.send("get", object_id=r, timeout_ms=60_000)
    assert a("info")["peer_id"] == a.name
    assert not a.answers.get(pending)  # the info came first
    assert a.answer(pending) == {"id": pending, "ok": True, "result": {"value": None}}
    assert [e["event"] for e in a.events + b.events] == ["ready", "ready"]


# ---------------------------------------------------------------- leaving
def test_shutdown_sends_goodbye_and_exits_zero(started: list[Iut]) -> None:
    """CNF-008 ``shutdown``, LIV-006: the other peer learns at once (reason
    "shutdown"), not by silence (60 s here), and fails the task that was running
    there (RPC-004); the process exits with status 0."""
    a, b = two(started, a=dict(env=SLOW), b=dict(env=SLOW))
    assert a.get(a.submit("echo", value(1), executor=b.name)) == {"value": 1}  # the session is open
    r = a.submit("sleep", value(120_000), executor=b.name)
    pending = a.send("get", object_id=r, timeout_ms=60_000)
    assert b("shutdown") is None
    assert b.wait_exit() == 0
    assert a.event("peer_dead", b.name)["reason"] == "shutdown"
    assert a.answer(pending)["result"]["error"]["code"] == "WORKER_DIED"


def test_end_of_input_leaves_like_shutdown(started: list[Iut]) -> None:
    """An IUT whose control channel closes (the suite died) leaves with Goodbye and
    status 0 instead of lingering."""
    a, b = two(started, a=dict(env=SLOW), b=dict(env=SLOW))
    assert a.get(a.submit("echo", value(1), executor=b.name)) == {"value": 1}
    b.proc.stdin.close()  # type: ignore[union-attr]
    assert b.wait_exit() == 0
    assert a.event("peer_dead", b.name)["reason"] == "shutdown"


def test_crash_exits_at_once_without_goodbye(started: list[Iut]) -> None:
    """CNF-008 ``crash``: the process dies as with kill -9, sending nothing; the other
    peer declares it dead by silence (LIV-003) and fails its running task."""
    a, b = two(started, a=dict(env=FAST), b=dict(env=FAST))
    assert a.get(a.submit("echo", value(1), executor=b.name)) == {"value": 1}  # the session is open
    r = a.submit("sleep", value(120_000), executor=b.name)
    pending = a.send("get", object_id=r, timeout_ms=60_000)
    assert a("quiesce", timeout_ms=300) == {"quiescent": False}  # the task is out
    b.send("crash")
    assert b.wait_exit() == -signal.SIGKILL
    assert a.event("peer_dead", b.name)["reason"].startswith("silent")
    assert a.answer(pending)["result"]["error"]["code"] == "WORKER_DIED"


def test_timing_settings_come_from_the_environment(started: list[Iut]) -> None:
    """CNF-012: REFRPC_IUT_HEARTBEAT_MS is the interval the IUT announces (the other
    side's ``x-peers`` shows it); without it, the spec's 250 ms; a bad value is a
    usage error."""
    a, b = two(started, a=dict(env={"REFRPC_IUT_HEARTBEAT_MS": "700", "REFRPC_IUT_MISS_LIMIT": "9"}))
    assert a.get(a.submit("echo", value(1), executor=b.name)) == {"value": 1}
    seen_by_b = {p["peer_id"]: p for p in b("x-peers")["peers"]}
    seen_by_a = {p["peer_id"]: p for p in a("x-peers")["peers"]}
    assert seen_by_b[a.name]["heartbeat_interval_ms"] == 700 and seen_by_b[a.name]["state"] == "alive"
    assert seen_by_a[b.name]["heartbeat_interval_ms"] == 250
    bad = subprocess.run([sys.executable, "-m", "refrpc.iut", "--endpoint", "tcp://127.0.0.1:0", "--peer-id", "c"],
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "REFRPC_IUT_MISS_LIMIT": "1"},
                         capture_output=True, timeout=BOUND_S)
    assert bad.returncode == 2 and b"LIV-013" in bad.stderr and bad.stdout == b""


# ---------------------------------------------------------------- fault switches
def test_every_fault_switch_names_a_spec_requirement(started: list[Iut]) -> None:
    """Each switch documents the requirement it breaks (an id the spec defines);
    switches come from --fault and REFRPC_IUT_FAULTS; an unknown one is refused."""
    defined = {r["id"] for r in json.loads((REPO / "spec" / "requirements.json").read_text())["requirements"]}
    assert len(FAULTS) >= 8
    for name, (requirement, description) in FAULTS.items():
        assert requirement in defined, name
        assert len(description) > 40, name
    a = start(started, "a", faults=("skip-release",), env={"REFRPC_IUT_FAULTS": "no-heartbeat, skip-release"})
    assert [(f["name"], f["requirement"]) for f in a("x-faults")["faults"]] == [("skip-release", "BOR-005"), ("no-heartbeat", "LIV-001")]
    bad = subprocess.run([sys.executable, "-m", "refrpc.iut", "--endpoint", "tcp://127.0.0.1:0", "--peer-id", "c", "--fault", "no-such"],
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True, timeout=BOUND_S)
    assert bad.returncode == 2 and b"no-such" in bad.stderr and bad.stdout == b""


def test_fault_free_while_borrowed(started: list[Iut]) -> None:
    """OWN-004 broken: once the owner drops its own ref, the object is gone from its
    table although the borrower still holds it (compare test_hold_keeps_the_ref...)."""
    a, b = two(started, a=dict(faults=("free-while-borrowed",)))
    x = a("put", value=7)["object_id"]
    assert a.get(a.submit("hold", {"shared": x}, executor=b.name)) == {"value": None}
    assert a.entry(x)["borrowers"] == [b.name]
    a("drop", object_id=x)
    assert a.entry(x) is None
    assert b.entry(x)["role"] == "borrower"


def test_fault_skip_release(started: list[Iut]) -> None:
    """BOR-005 broken: the borrower drops its entry but the owner keeps its grant."""
    a, b = two(started, b=dict(faults=("skip-release",)))
    x = a("put", value=7)["object_id"]
    assert a.get(a.submit("hold", {"shared": x}, executor=b.name)) == {"value": None}
    assert b("drop_held") == {"dropped": 1}
    assert b.entry(x) is None
    assert b("quiesce", timeout_ms=20_000) == {"quiescent": True}
    assert a.entry(x)["borrowers"] == [b.name]


def test_fault_wrong_error_code(started: list[Iut]) -> None:
    """TASK-007 broken: a raised exception comes back as another code."""
    a, b = two(started, b=dict(faults=("wrong-error-code",)))
    got = a.get(a.submit("fail", value("boom"), executor=b.name))["error"]
    assert got["code"] != "TASK_FAILED" and "boom" in got["message"]


def test_fault_never_answer_fetch(started: list[Iut]) -> None:
    """FET-001 broken: a value stored at the executor cannot be fetched from it."""
    a, b = two(started, b=dict(faults=("never-answer-fetch",)))
    big = a.submit("make_bytes", value(300_000), executor=b.name)
    assert a.get(a.submit("make_bytes", value(10), executor=b.name)) == {"value": data(pattern(10))}  # inline: fine
    assert a.get(big, timeout_ms=3000)["error"]["code"] == "timeout"
    assert a.entry(big)["locations"] == [b.name]


def test_fault_inline_large_results(started: list[Iut]) -> None:
    """TASK-004 broken: a result above the inline threshold comes back inline."""
    a, b = two(started, b=dict(faults=("inline-large-results",)))
    big = a.submit("make_bytes", value(300_000), executor=b.name)
    assert base64.b64decode(a.get(big)["value"]["data"]) == pattern(300_000)
    assert a.entry(big)["locations"] == []


def test_fault_no_heartbeat(started: list[Iut]) -> None:
    """LIV-001 broken: an executor busy with a long task sends nothing, and the
    submitter declares it dead although its process runs on (the same task between
    correct peers: test_get_may_be_answered_after_later_requests)."""
    a, b = two(started, a=dict(env=FAST), b=dict(env=FAST, faults=("no-heartbeat",)))
    r = a.submit("sleep", value(120_000), executor=b.name)
    assert a.get(r, timeout_ms=60_000)["error"]["code"] == "WORKER_DIED"
    assert a.event("peer_dead", b.name)["reason"].startswith("silent")
    assert b.proc.poll() is None


def test_fault_no_goodbye(started: list[Iut]) -> None:
    """LIV-006 broken: shutdown leaves without Goodbye, so the other peer does not
    learn it (compare test_shutdown_sends_goodbye_and_exits_zero)."""
    a, b = two(started, a=dict(env=SLOW), b=dict(env=SLOW, faults=("no-goodbye",)))
    assert a.get(a.submit("echo", value(1), executor=b.name)) == {"value": 1}  # the session is open
    r = a.submit("sleep", value(120_000), executor=b.name)
    assert a("quiesce", timeout_ms=300) == {"quiescent": False}
    assert b("shutdown") is None
    assert b.wait_exit() == 0
    assert a.get(r, timeout_ms=4000)["error"]["code"] == "timeout"
    assert not [e for e in a.events if e["event"] == "peer_dead"]


def test_fault_no_register_before_send_starts(started: list[Iut]) -> None:
    """BOR-002's switch needs a third peer to show (a ref owned by neither side of the
    call); the conformance suite checks it on the wire. Here: it starts and is listed."""
    a = start(started, "a", faults=("no-register-before-send",))
    assert a("x-faults")["faults"][0]["requirement"] == "BOR-002"


# ---------------------------------------------------------------- a bare protocol peer
class BarePeer:
    """Just enough of a peer to greet an IUT and submit tasks: no session logic
    beyond numbering what it sends and acknowledging what it receives."""

    def __init__(self, ready: dict[str, Any]) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.address = f"tcp://127.0.0.1:{self.router.bind_to_random_port('tcp://127.0.0.1')}"
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect(ready["address"])
        self.peer, self.incarnation = "bare", 0x5EED
        self.iut, self.iut_incarnation = ready["peer_id"], int(ready["incarnation"])
        self.seq = self.delivered = 0

    def send(self, body: Any, sequenced: bool = True) -> None:
        seq = 0
        if sequenced:
            self.seq += 1
            seq = self.seq
        receiver = 0 if isinstance(body, Hello) else self.iut_incarnation
        env = Envelope(self.peer, self.incarnation, self.iut, receiver, seq, self.delivered, body)
        self.dealer.send_multipart(codec.encode(env))

    def receive(self, timeout: float = BOUND_S) -> tuple[Envelope, bool]:
        """The next message, and whether it is a sequenced one not seen before."""
        assert self.router.poll(int(timeout * 1000)), "the IUT sent nothing"
        env = codec.decode(self.router.recv_multipart()[1:])
        fresh = env.seq == self.delivered + 1
        if fresh:
            self.delivered = env.seq
            self.send(Heartbeat(), sequenced=False)  # acknowledge it
        return env, fresh

    def hello(self, major: int = 0) -> Any:
        """Greet the IUT; its Welcome or ProtocolError."""
        self.send(Hello(major, 1, self.address, ("core", "borrowing", "recovery", "actors"), 64 << 20, 10_000), sequenced=False)
        while True:
            env, _ = self.receive()
            if isinstance(env.body, (Welcome, ProtocolError)):
                return env.body

    def close(self) -> None:
        self.router.close(0)
        self.dealer.close(0)
        self.ctx.term()


@pytest.mark.parametrize("faults", [(), ("accept-unknown-version",)])
def test_fault_accept_unknown_version(started: list[Iut], faults: tuple[str, ...]) -> None:
    """HS-002: a Hello of major version 1 is refused with PROTOCOL_VERSION; the switch
    answers it with Welcome."""
    a = start(started, "a", faults=faults)
    bare = BarePeer(a.ready)
    try:
        answer = bare.hello(major=1)
    finally:
        bare.close()
    if faults:
        assert isinstance(answer, Welcome)
    else:
        assert isinstance(answer, ProtocolError) and answer.error.code == ErrorCode.PROTOCOL_VERSION


def test_an_iut_declared_dead_stops(started: list[Iut]) -> None:
    """LIV-005: an IUT that a peer which fenced it answers DECLARED_DEAD stops at once;
    it says so in a ``fail_stop`` event (CNF-006 allows more events) and exits 0. A
    notice about itself changes nothing (LIV-019)."""
    a = start(started, "a", env={"REFRPC_IUT_HEARTBEAT_MS": "10000"})
    bare = BarePeer(a.ready)
    try:
        assert isinstance(bare.hello(), Welcome)
        bare.send(PeerDeadNotice(a.name, int(a.ready["incarnation"]), "a test says so"))
        info = ErrorInfo(ErrorCode.DECLARED_DEAD, "that incarnation was declared dead", "LIV-005")
        bare.send(ProtocolError(info), sequenced=False)
        assert "declared" in a.event("fail_stop")["reason"]
        assert a.wait_exit() == 0
    finally:
        bare.close()


@pytest.mark.parametrize("faults", [(), ("ignore-duplicate-task",)])
def test_fault_ignore_duplicate_task(started: list[Iut], faults: tuple[str, ...]) -> None:
    """RPC-001: a duplicate SubmitTask (same task id and attempt, new sequence number)
    that arrives while the task runs is ignored: one TaskReply. The switch runs it
    again: two. A task sent after the first reply is the marker: the executor runs
    tasks in order, so a second run's reply would come before the marker's."""
    a = start(started, "a", faults=faults, env={"REFRPC_IUT_HEARTBEAT_MS": "10000"})
    bare = BarePeer(a.ready)
    try:
        assert isinstance(bare.hello(), Welcome)

        def arg(v: Any) -> Arg:
            return Arg(ArgKind.VALUE, value=to_portable(v, ref_hook=lambda o: None))

        prefix = f"{bare.peer}.{bare.incarnation:x}"
        task = SubmitTask(f"{prefix}.1", "sleep", (arg(1000),), (f"{prefix}.1.r0",))
        bare.send(task)
        bare.send(task)  # the duplicate, with the next sequence number
        replies: list[str] = []
        while f"{prefix}.2" not in replies:
            env, fresh = bare.receive()
            if fresh and isinstance(env.body, TaskReply):
                replies.append(env.body.task_id)
                if len(replies) == 1:
                    bare.send(SubmitTask(f"{prefix}.2", "echo", (arg("marker"),), (f"{prefix}.2.r0",)))
    finally:
        bare.close()
    assert replies == [f"{prefix}.1"] * (2 if faults else 1) + [f"{prefix}.2"]
