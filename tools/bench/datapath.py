#!/usr/bin/env python3
"""Cross-host data path and broadcast: how fast stored values move between hosts.

One command, one machine, one run::

    python tools/bench/datapath.py [--quick] [--json out.json] [--only ROW,...] [--loopback] [--rate 1gbit] [--delay-ms 0.1]

Rows (each printed beside a floor measured in the same run):

- ``fetch_1gb``: one task on host B takes a 1 GB value (random bytes) that host A
  put; the time from submitting it to its reply, as a rate. Floor: one raw TCP
  stream of the same bytes from A to B (Python ``socket.sendall``), and the
  shaped link's nominal rate.
- ``fetch_1gb_lz4``: the same with an ``arange`` (compressible): the holder
  sends lz4-compressed chunks (FET-003, FET-016), so the value arrives faster
  than the link carries bytes. Same floor.
- ``broadcast_100mb_8``: one 100 MB value that host A put, taken by one task on
  each of 8 other hosts at once: the time until the last reply. Beside it, in
  the same run, one transfer to a single host (the floor) and the same broadcast
  with relays turned off at the owner (``relays_listed=0``: everyone fetches
  from A). With relays (LOC-020..LOC-023) the copies flow down a chain of
  fetchers, so the target is at most 2x one transfer; from the owner alone it
  is about 8x on shaped links.

Hosts: with root and the multi-host test bed (:mod:`refrpc.testing.hosts`) each
host is a set of namespaces with its own network stack and /dev/shm, its link
shaped with ``tc tbf`` to ``--rate`` (1 Gbit/s by default). Without the bed, or
with ``--loopback``, the hosts are processes with their own shared-memory
namespaces talking over 127.0.0.1 (no shaping: the figures then show CPU and
loopback cost, and the report says so). Every peer is a bare runtime node
(:func:`refrpc.runtime.working_node`), the owner included, each in a process
of its own; nothing here passes or fails on a timing.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(REPO, "pyimpl", "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

import refrpc  # noqa: E402

MB = 1_000_000

SETTINGS: dict[str, dict[str, int]] = {
    "default": dict(fetch_bytes=1000 * MB, fetch_reps=3, bcast_bytes=100 * MB, bcast_hosts=8, bcast_reps=3),
    "quick": dict(fetch_bytes=100 * MB, fetch_reps=1, bcast_bytes=20 * MB, bcast_hosts=4, bcast_reps=1),
}
ROWS = ("fetch_1gb", "fetch_1gb_lz4", "broadcast_100mb_8")
#: Every wait on a peer is bounded: a lost reply is an error, not a hang.
STEP_TIMEOUT_S = 300.0
#: How long the consumers of a broadcast whose first relay was lost may take in all.
LOSS_TIMEOUT_S = 90.0


# ---------------------------------------------------------------- what the consumers run
@refrpc.remote
def touch(x: Any) -> list[int]:
    """A consumer's task: the value's length and a sample of its bytes (every
    1,000,003rd of each part), which the owner checks; nothing is copied."""
    parts = x if isinstance(x, list) else [x]
    views = [memoryview(p).cast("B") for p in parts]
    return [sum(len(v) for v in views), sum(sum(v[::1_000_003]) for v in views)]


def _touch_here(parts: list[Any]) -> list[int]:
    views = [memoryview(p).cast("B") for p in parts]
    return [sum(len(v) for v in views), sum(sum(v[::1_000_003]) for v in views)]


# ---------------------------------------------------------------- roles (one process each)
def _key(args: argparse.Namespace) -> Any:
    """The cluster key the hosts share, or None (``--insecure``: no CURVE)."""
    from refrpc.transport import ClusterKey

    return ClusterKey.load(args.key_file) if args.key_file else None


def _report_deaths(me: str) -> Any:
    """An instruction handler that writes each peer this node declares dead, and why, to stderr."""
    from refrpc.core import events as ev

    def on_instruction(ins: Any) -> None:
        if isinstance(ins, ev.PeerDeclaredDead):
            print(f"{me}: declared {ins.peer} dead: {ins.reason}", file=sys.stderr, flush=True)

    return on_instruction


def _cpu(who: str) -> None:
    """This process's CPU time so far (user + system, all threads), for the report."""
    import resource

    use = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{who}: cpu {use.ru_utime + use.ru_stime:.2f} s", file=sys.stderr, flush=True)


def _watch_loop(node: Any) -> list[float]:
    """The longest time between two turns of ``node``'s loop (its ticks), kept up to date."""
    longest = [0.0]
    last = [time.monotonic()]
    tick = node.fetcher.tick

    def timed() -> None:
        now = time.monotonic()
        longest[0] = max(longest[0], now - last[0])
        last[0] = now
        tick()

    node.fetcher.tick = timed
    return longest


def _dump_state(who: str, node: Any) -> None:
    """What ``node`` is still doing, to stderr: its fetches in progress and the story of
    each object it borrows or task it owns that is not settled (for a run that hung)."""
    def collect() -> list[str]:
        out = []
        fetcher = node.fetcher
        for oid, f in fetcher._by_object.items():
            out.append(f"fetch {oid}: locations {[p for p, _ in f.locations]}, asking {f.asked}, total {f.total}, "
                       f"outstanding {sorted(f.outstanding.values())}, failures {f.failures}, "
                       f"{time.monotonic() - f.last_progress:.1f} s since progress")
        out.append(f"serving {len(fetcher._serving)} requests, parked {sum(map(len, fetcher._parked.values()))}")
        core = node.core
        for oid in list(core.borrowed)[:8]:
            out.append(f"borrowed {oid}: {core.story(oid)[-6:]}")
        for tid, t in list(core.tasks.items()):
            if t.state in ("submitted", "queued"):
                out.append(f"task {tid} {t.state} on {t.executor or '-'}: {core.story(tid)[-8:]}")
        return out

    try:
        lines = node.call(collect).result(10)
    except Exception as exc:  # noqa: BLE001 - a report of a stuck node must not raise
        lines = [f"(its loop did not answer: {exc!r})"]
    for line in lines:
        print(f"{who}: {line}", file=sys.stderr, flush=True)


def role_node(args: argparse.Namespace) -> int:
    """A consumer host's peer: runs tasks (``touch``) until its stdin closes."""
    from refrpc.runtime import working_node
    from refrpc.runtime._node import default_config
    from refrpc.store import cleanup_namespace

    import datapath  # noqa: F401 - exposes datapath:touch and datapath:nothing here (SEC-006)

    key = _key(args)
    node, executor = working_node(args.name, args.bind, args.namespace, default_config(**json.loads(args.settings)),
                                  _report_deaths(args.name), cluster_key=key, insecure=key is None)
    gaps = _watch_loop(node)
    print(f"READY {node.address}", flush=True)
    try:
        for line in sys.stdin:  # until it closes; "DUMP": the run failed, say what is still going on
            if line.strip() == "DUMP":
                _dump_state(args.name, node)
    finally:
        if gaps[0] > 1.0:
            print(f"{args.name}: the loop's longest pause {gaps[0]:.2f} s", file=sys.stderr, flush=True)
        _cpu(args.name)
        fenced = sorted(p for p, _ in node.core.fenced)
        if fenced or node.failure:  # for the report: who this host declared dead, or why it stopped
            print(f"{args.name}: declared dead {fenced}; {node.failure or 'running'}", file=sys.stderr, flush=True)
        executor.stop()
        node.stop()
        cleanup_namespace(args.namespace)
    return 0


def role_sink(args: argparse.Namespace) -> int:
    """The floor's receiver: accepts one TCP stream, reads ``--bytes`` bytes, answers one byte."""
    with socket.create_server((args.ip, 0)) as server:
        print(f"READY {server.getsockname()[1]}", flush=True)
        for _ in range(args.reps):
            conn, _ = server.accept()
            with conn:
                buf = bytearray(4 * 1024 * 1024)
                view, left = memoryview(buf), args.bytes
                while left > 0:
                    n = conn.recv_into(view[: min(left, len(buf))])
                    if n == 0:
                        break
                    left -= n
                conn.sendall(b"k")
    return 0


def _stream(host: str, port: int, parts: list[Any]) -> float:
    """Seconds to send ``parts`` over one TCP connection until the sink has it all."""
    with socket.create_connection((host, port)) as conn:
        t0 = time.perf_counter()
        for part in parts:
            conn.sendall(memoryview(part).cast("B"))
        if conn.recv(1) != b"k":
            raise RuntimeError("the sink did not confirm")
        return time.perf_counter() - t0


class Owner:
    """The owner host's peer: puts values and submits ``touch`` to consumers."""

    def __init__(self, bind: str, namespace: str, peers: dict[str, str], key: Any, settings: dict[str, Any]) -> None:
        from refrpc.core import events as ev
        from refrpc.runtime import Node
        from refrpc.runtime._node import default_config

        self.ev = ev
        self.namespace = namespace
        self.node = Node("owner", bind, namespace, default_config(**settings), on_instruction=_report_deaths("owner"),
                         cluster_key=key, insecure=key is None)
        self.node.handle_soon(*[lambda sid, n=n, a=a: ev.AddPeer(sid, n, a, 1) for n, a in peers.items()]).result()
        self.peers = list(peers)

    def put(self, parts: list[Any]) -> str:
        from refrpc.serialization import serialize

        node, ev = self.node, self.ev
        value = serialize(parts, ref_hook=lambda obj: None, allow_pickle=True)  # arrays: pickle 5, each part an out-of-band buffer

        from refrpc.core.messages import Encoding, Value

        oid = node.call(node.ids.next).result(STEP_TIMEOUT_S)
        # Written here, not on the loop thread: a 1 GB copy there would stop its heartbeats.
        size = node.store.put(oid, value)
        node.call(lambda: node.handle(ev.Put(node.sid(), oid, Value(Encoding.RAW, b""), True, size))).result(STEP_TIMEOUT_S)
        return oid

    def submit(self, oid: str, consumers: list[str], retries: int = 0) -> list[str]:
        """``touch(oid)`` (``nothing()`` without ``oid``) on each consumer; the return ids."""
        node, ev = self.node, self.ev

        def do() -> list[str]:
            rids = []
            for name in consumers:
                task_id, returns = node.ids.task(1)
                args = (ev.ArgSpec(object_id=oid),) if oid else ()
                node.handle(ev.Submit(node.sid(), task_id, "datapath:touch" if oid else "datapath:nothing", args,
                                      returns, max_retries=retries, executor=name))
                rids.append(returns[0])
            return rids

        return node.call(do).result(STEP_TIMEOUT_S)

    def outcome(self, rid: str, timeout: float = STEP_TIMEOUT_S) -> Any:
        """A task's answer, or its error code (a typed failure) as a string. Past
        ``timeout`` seconds, a RuntimeError with the story of its task."""
        from concurrent.futures import TimeoutError as FutureTimeout

        from refrpc.serialization import deserialize

        try:
            res = self.node.get_result(rid).result(max(0.0, timeout))
        except FutureTimeout:
            core = self.node.core

            def story() -> list[Any]:
                e = core.owned.get(rid)
                return core.story(e.task_id) if e is not None and e.task_id else core.story(rid)

            raise RuntimeError(f"no outcome of {rid} in {timeout:.0f} s; its task: "
                               f"{self.node.call(story).result(10)}") from None
        if res.error is not None:
            return res.error.code.value
        got = deserialize(res.value, ref_factory=lambda d: d)
        return list(got) if isinstance(got, (list, tuple)) else got

    def take(self, oid: str, consumers: list[str], expected: list[int] | None) -> float:
        """Submit ``touch(oid)`` on each consumer; seconds until every reply is in."""
        t0 = time.perf_counter()
        rids = self.submit(oid, consumers)
        for rid in rids:
            got = self.outcome(rid)
            if isinstance(got, str):
                raise RuntimeError(f"a consumer failed: {got}")
            if expected is not None and got != expected:
                raise AssertionError(f"a consumer got the wrong bytes: {got}, expected {expected}")
        elapsed = time.perf_counter() - t0
        self.drop(*rids)
        return elapsed

    def lose_first_relay(self, oid: str, parts: list[Any], size: int) -> dict[str, Any]:
        """Broadcast ``oid`` to every consumer and, once the first fetcher (the head of
        the relay chain: whichever consumer asked the owner first) has received a
        quarter of it from the owner, ask for its host to be lost (``LOSE name`` on
        stdout). Every other consumer must get the right bytes (the ones behind the
        lost relay from the next source, FET-041); the lost one's task ends with a
        typed error, or right if its retry ran elsewhere. The outcomes are by consumer."""
        want = _touch_here(parts)
        rids = self.submit(oid, self.peers, retries=1)
        node = self.node
        end = time.monotonic() + LOSS_TIMEOUT_S
        while True:
            served = node.call(lambda: dict(node.fetcher.served)).result(STEP_TIMEOUT_S)
            ahead = [p for p in self.peers if served.get(p, 0) >= size // 4]
            if ahead:
                victim = ahead[0]
                break
            if time.monotonic() > end:
                raise RuntimeError(f"no consumer fetched a quarter of the value from the owner: {served}")
            time.sleep(0.005)
        print(f"LOSE {victim}", flush=True)
        # Each consumer ends well within this (a lost source costs a few progress
        # timeouts at most, FET-006); a hang is reported with what its task went through.
        end = time.monotonic() + LOSS_TIMEOUT_S
        outcomes = [self.outcome(rid, end - time.monotonic()) for rid in rids]
        self.drop(*rids)
        return {"victim": victim,
                "outcomes": {p: o if isinstance(o, str) else o == want for p, o in zip(self.peers, outcomes)}}

    def drop(self, *oids: str) -> None:
        self.node.handle_soon(*[lambda sid, o=o: self.ev.DropRef(sid, o) for o in oids]).result(STEP_TIMEOUT_S)

    def relays(self, listed: int, fanout: int = 2) -> None:
        def do() -> None:
            self.node.core.config.relays_listed = listed
            self.node.core.config.relay_fanout = fanout

        self.node.call(do).result(STEP_TIMEOUT_S)

    def served(self) -> int:
        return self.node.call(lambda: sum(self.node.fetcher.served.values())).result(STEP_TIMEOUT_S)

    def close(self) -> None:
        from refrpc.store import cleanup_namespace

        self.node.stop()
        cleanup_namespace(self.namespace)


@refrpc.remote
def nothing() -> int:
    return 0


#: The largest part of a value: one payload of a stored form holds at most 512 MiB (OBJ-010).
PART_BYTES = 250 * MB


def _value(kind: str, size: int) -> list[Any]:
    """A value of ``size`` bytes as numpy arrays of at most PART_BYTES each."""
    import numpy as np

    if kind == "arange":
        whole = np.arange(size // 8, dtype=np.int64)
        step = PART_BYTES // 8
    else:
        whole = np.frombuffer(os.urandom(size), dtype=np.uint8)
        step = PART_BYTES
    return [whole[i:i + step] for i in range(0, len(whole), step)]


def role_owner(args: argparse.Namespace) -> int:
    """Run one scenario and print its figures as ``RESULT {json}``."""
    scenario = json.loads(args.scenario)
    peers = dict(p.split("=", 1) for p in args.peers.split(",") if p)
    owner = Owner(args.bind, args.namespace, peers, _key(args), json.loads(args.settings))
    out: dict[str, Any] = {}
    try:
        owner.take("", owner.peers, None)  # sessions open (handshakes are not timed)
        if scenario["kind"] == "fetch":
            data = _value(scenario["data"], scenario["bytes"])
            want = _touch_here(data)
            if scenario.get("sink"):
                host, port = scenario["sink"].rsplit(":", 1)
                out["stream_s"] = [_stream(host, int(port), data) for _ in range(scenario["reps"])]
            times = []
            for _ in range(scenario["reps"]):
                oid = owner.put(data)
                times.append(owner.take(oid, owner.peers[:1], want))
                owner.drop(oid)
            out["fetch_s"] = times
            out["served"] = owner.served()
        elif scenario["kind"] == "loss":
            data = _value("random", scenario["bytes"])
            oid = owner.put(data)
            before = owner.served()
            out["clean_s"] = owner.take(oid, owner.peers, _touch_here(data))
            out["clean_owner_sent"] = owner.served() - before
            owner.drop(oid)
            oid = owner.put(data)
            out.update(owner.lose_first_relay(oid, data, scenario["bytes"]))
            owner.drop(oid)
        else:
            data = _value("random", scenario["bytes"])
            want = _touch_here(data)
            for mode, consumers, listed, fanout in (("single", owner.peers[:1], 4, 2), ("relays", owner.peers, 4, 2),
                                                    ("chain", owner.peers, 4, 1), ("from_owner", owner.peers, 0, 2)):
                owner.relays(listed, fanout)
                times, served = [], []
                for _ in range(scenario["reps"]):
                    oid = owner.put(data)
                    before = owner.served()
                    times.append(owner.take(oid, consumers, want))
                    served.append(owner.served() - before)
                    owner.drop(oid)
                out[f"{mode}_s"] = times
                out[f"{mode}_owner_sent"] = served
                print(f"owner: {mode} {times}", file=sys.stderr, flush=True)
    except BaseException:
        node = owner.node
        print(f"owner: declared dead {sorted(p for p, _ in node.core.fenced)}; {node.failure or 'running'}",
              file=sys.stderr, flush=True)
        _dump_state("owner", node)
        raise
    finally:
        owner.close()
        _cpu("owner")
    print("RESULT " + json.dumps(out), flush=True)
    return 0


# ---------------------------------------------------------------- hosts
class LoopbackHosts:
    """Hosts as processes on this machine over 127.0.0.1, each with its own store namespace."""

    shaped = False
    kind = "loopback (processes over 127.0.0.1, own shared-memory namespaces, no shaping)"

    def __init__(self, n: int, rate: str, insecure: bool = False) -> None:
        import tempfile

        from refrpc.transport import ClusterKey

        self.procs: list[subprocess.Popen] = []
        self.directory = tempfile.mkdtemp(prefix="refrpc-datapath-")
        self.key_file = os.path.join(self.directory, "cluster.key")
        if insecure:
            self.key_file = ""
        else:
            ClusterKey.generate().save(self.key_file)  # authenticated like a real cluster (CURVE, SEC-002)
        self.logs: list[str] = []
        self.by_host: dict[int, list[subprocess.Popen]] = {}

    def ip(self, i: int) -> str:
        return "127.0.0.1"

    def _log(self, i: int) -> Any:
        path = os.path.join(self.directory, f"host{i}-{len(self.logs)}.log")
        self.logs.append(path)
        return open(path, "w")

    def spawn(self, i: int, argv: list[str]) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, HERE, os.environ.get("PYTHONPATH", "")]))
        with self._log(i) as log:
            p = subprocess.Popen(argv + ["--key-file", self.key_file] * bool(self.key_file), env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(p)
        self.by_host.setdefault(i, []).append(p)
        return p

    def lose(self, i: int) -> None:
        """Host ``i`` is gone for good: its processes are killed (kill -9)."""
        for p in self.by_host.get(i, []):
            p.kill()

    def errors(self) -> str:
        """The last lines of every process's stderr that wrote any."""
        out = []
        for path in self.logs:
            with open(path) as f:
                text = f.read().strip()
            if text:
                out.append(f"--- {os.path.basename(path)}\n" + "\n".join(text.splitlines()[-30:]))
        return "\n".join(out)

    def close(self) -> None:
        import shutil

        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class BedHosts(LoopbackHosts):
    """Hosts on the multi-host test bed: own network stack and /dev/shm each, links
    shaped with tc tbf to ``rate``."""

    shaped = True

    def __init__(self, n: int, rate: str, insecure: bool = False, delay_ms: float = 0.0) -> None:
        from refrpc.testing.hosts import HostBed

        super().__init__(n, rate, insecure)
        self.bed = HostBed(n, shm_size="3g")
        self.kind = f"test bed ({n} network namespaces with private /dev/shm, links shaped to {rate} with tc tbf"
        self.kind += f", {2 * delay_ms:g} ms one way between two hosts)" if delay_ms else ")"
        for i in range(1, n + 1):
            self.bed.shape(i, rate)
            if delay_ms:
                self.bed.delay(i, delay_ms / 1000)

    def ip(self, i: int) -> str:
        return self.bed.address(i + 1)

    def spawn(self, i: int, argv: list[str]) -> subprocess.Popen:
        env = {"PYTHONPATH": os.pathsep.join([SRC, HERE, os.environ.get("PYTHONPATH", "")])}
        with self._log(i) as log:
            p = self.bed.spawn(i + 1, argv + ["--key-file", self.key_file] * bool(self.key_file), env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(p)
        return p

    def lose(self, i: int) -> None:
        """Host ``i`` is lost for good: its processes killed, its link down."""
        self.bed.lose(i + 1)

    def close(self) -> None:
        super().close()
        self.bed.close()


def bed_unavailable() -> str:
    try:
        from refrpc.testing.hosts import unavailable
    except ImportError:
        return "the multi-host test bed (refrpc.testing.hosts) is not in this checkout"
    return unavailable()


def _ready(p: subprocess.Popen, what: str) -> str:
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"{what} did not start: {line!r}")
    return line.split(" ", 1)[1]


def _result(p: subprocess.Popen, on_lose: Any = None) -> dict[str, Any]:
    """The owner's RESULT line; each ``LOSE name`` line before it calls ``on_lose(name)``."""
    assert p.stdout is not None
    lines: list[str] = []

    def read() -> None:
        for line in p.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("LOSE ") and on_lose is not None:
                on_lose(line.split()[1])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(STEP_TIMEOUT_S * 4)
    for line in lines:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"the owner gave no result (exit {p.poll()}): {''.join(lines)[-2000:]}")


def _close_nodes(nodes: list[subprocess.Popen], dump: bool = False) -> None:
    """Close each consumer's stdin (after ``DUMP``: it reports what it still does) and
    wait for it to exit."""
    for p in nodes:
        if p.stdin is not None and not p.stdin.closed and p.poll() is None:
            try:
                if dump:
                    p.stdin.write("DUMP\n")
                p.stdin.close()
            except OSError:
                pass  # a lost host's pipe
    for p in nodes:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def run_scenario(hosts: LoopbackHosts, consumers: int, scenario: dict[str, Any], *, sink: bool = False,
                 settings: str = "{}") -> dict[str, Any]:
    """Start ``consumers`` consumer nodes on hosts 1.. (consumer ``cK`` on host K), the
    owner on host 0; its result. A ``LOSE cK`` from the owner loses host K."""
    me = [sys.executable, os.path.abspath(__file__)]
    peers = []
    nodes = []
    try:
        for i in range(1, consumers + 1):  # all at once: each takes a while to import
            ns = f"dp{os.getpid()}x{secrets.token_hex(3)}"
            nodes.append(hosts.spawn(i, me + ["--role", "node", "--name", f"c{i}", "--bind", f"tcp://{hosts.ip(i)}:0",
                                              "--namespace", ns, "--settings", settings]))
        peers = [f"c{i}={_ready(p, f'consumer c{i}')}" for i, p in enumerate(nodes, 1)]
        if sink:
            s = hosts.spawn(1, me + ["--role", "sink", "--ip", hosts.ip(1), "--bytes", str(scenario["bytes"]),
                                     "--reps", str(scenario["reps"])])
            scenario = dict(scenario, sink=f"{hosts.ip(1)}:{_ready(s, 'the sink')}")
        ns = f"dp{os.getpid()}x{secrets.token_hex(3)}"
        owner = hosts.spawn(0, me + ["--role", "owner", "--bind", f"tcp://{hosts.ip(0)}:0", "--namespace", ns,
                                     "--peers", ",".join(peers), "--scenario", json.dumps(scenario), "--settings", settings])
        try:
            res = _result(owner, lambda name: hosts.lose(int(name[1:])))
        except RuntimeError as exc:
            _close_nodes(nodes, dump=True)  # each says what it still does, then its log is complete
            raise RuntimeError(f"{exc}\n{hosts.errors()}") from None
        _close_nodes(nodes)  # let each host write what it saw (deaths it declared, long pauses) before the logs are read
        res["logs"] = hosts.errors()
        return res
    finally:
        _close_nodes(nodes)


# ---------------------------------------------------------------- the report
def _rate_bits(rate: str) -> float:
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1.0}
    for unit, factor in units.items():
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * factor
    return float(rate)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller values, fewer hosts and repetitions")
    ap.add_argument("--json", help="write every raw number here")
    ap.add_argument("--only", default="", help=f"comma-separated rows ({', '.join(ROWS)})")
    ap.add_argument("--loopback", action="store_true", help="processes over 127.0.0.1 even where the test bed runs")
    ap.add_argument("--rate", default="1gbit", help="the shaped link rate on the test bed (tc tbf)")
    ap.add_argument("--insecure", action="store_true", help="no cluster key: plain TCP instead of CURVE")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="on the test bed, hold each packet this long on each host's link (HostBed.delay; a packet "
                         "between two hosts crosses two links); each held packet passes through a small program, "
                         "which costs CPU the figures then include")
    ap.add_argument("--config", default="{}", help="JSON of refrpc.core.Config fields for every node (default: none)")
    ap.add_argument("--role", help=argparse.SUPPRESS)
    for hidden in ("--name", "--bind", "--namespace", "--settings", "--peers", "--scenario", "--ip", "--key-file"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role:
        return {"node": role_node, "sink": role_sink, "owner": role_owner}[args.role](args)

    mode = "quick" if args.quick else "default"
    cfg = SETTINGS[mode]
    only = {n.strip() for n in args.only.split(",") if n.strip()} or set(ROWS)
    why = "--loopback" if args.loopback else bed_unavailable()
    make = LoopbackHosts if why else functools.partial(BedHosts, delay_ms=args.delay_ms)
    link_bps = _rate_bits(args.rate) if not why else None
    print(f"RefRPC data path ({mode}), {os.cpu_count()} CPUs; hosts: "
          f"{'loopback (' + why + ')' if why else 'test bed, links ' + args.rate}", flush=True)
    rows: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for name, data in (("fetch_1gb", "random"), ("fetch_1gb_lz4", "arange")):
        if name not in only:
            continue
        hosts = make(2, args.rate, args.insecure)
        try:
            n = cfg["fetch_bytes"]
            res = run_scenario(hosts, 1, {"kind": "fetch", "data": data, "bytes": n, "reps": cfg["fetch_reps"]}, sink=True,
                               settings=args.config)
            fetch = min(res["fetch_s"])
            stream = min(res["stream_s"])
            rows[name] = {
                "value": n / fetch / MB, "unit": "MB/s", "bytes": n, "data": data, "fetch_s": res["fetch_s"],
                "floor_stream_MBps": n / stream / MB, "stream_s": res["stream_s"], "owner_sent": res["served"],
                "link_MBps": link_bps / 8 / MB if link_bps else None, "hosts": hosts.kind, "logs": res.get("logs", ""),
            }
        except Exception as exc:  # noqa: BLE001 - a row that fails shows its error; the run goes on
            rows[name] = {"value": None, "error": f"{type(exc).__name__}: {exc}", "logs": hosts.errors()}
        finally:
            hosts.close()
        r = rows[name]
        if r.get("logs"):
            print(r["logs"], flush=True)
        if r.get("value") is not None:
            link = f", {r['value'] / r['link_MBps'] * 100:.0f}% of the {args.rate} link" if r["link_MBps"] else ""
            print(f"  {name:<18} {r['value']:8.1f} MB/s   floor: one TCP stream {r['floor_stream_MBps']:8.1f} MB/s "
                  f"({r['value'] / r['floor_stream_MBps'] * 100:.0f}%){link}", flush=True)
        else:
            print(f"  {name:<18} error: {r['error']}\n{r.get('logs', '')}", flush=True)
    if "broadcast_100mb_8" in only:
        k, n = cfg["bcast_hosts"], cfg["bcast_bytes"]
        hosts = make(k + 1, args.rate, args.insecure)
        try:
            res = run_scenario(hosts, k, {"kind": "broadcast", "bytes": n, "reps": cfg["bcast_reps"]}, settings=args.config)
            # best of the repetitions: the machine may be shared
            single, relays, chain, alone = (min(res[f"{m}_s"]) for m in ("single", "relays", "chain", "from_owner"))
            rows["broadcast_100mb_8"] = {
                "value": relays, "unit": "s", "bytes": n, "consumers": k, "floor_single_s": single,
                "from_owner_s": alone, "x_single": relays / single, "from_owner_x_single": alone / single,
                "chain_s": chain, "chain_x_single": chain / single,
                "owner_sent_copies": statistics.median(res["relays_owner_sent"]) / n,
                "from_owner_sent_copies": statistics.median(res["from_owner_owner_sent"]) / n, "raw": res,
                "hosts": hosts.kind, "logs": res.get("logs", ""),
            }
            if r_logs := res.get("logs"):
                print(r_logs, flush=True)
        except Exception as exc:  # noqa: BLE001
            rows["broadcast_100mb_8"] = {"value": None, "error": f"{type(exc).__name__}: {exc}", "logs": hosts.errors()}
        finally:
            hosts.close()
        r = rows["broadcast_100mb_8"]
        if r.get("value") is not None:
            print(f"  broadcast {n // MB} MB to {k}: relays (a tree of fan-out 2) {r['value']:.2f} s = {r['x_single']:.2f}x "
                  f"one transfer ({r['floor_single_s']:.2f} s; target <= 2x); a chain of relays {r['chain_s']:.2f} s = "
                  f"{r['chain_x_single']:.2f}x; everyone from the owner {r['from_owner_s']:.2f} s = "
                  f"{r['from_owner_x_single']:.2f}x; the owner sent {r['owner_sent_copies']:.1f} copies with relays, "
                  f"{r['from_owner_sent_copies']:.1f} without", flush=True)
        else:
            print(f"  broadcast_100mb_8  error: {r['error']}\n{r.get('logs', '')}", flush=True)
    wall = time.perf_counter() - started
    print(f"total {wall:.1f} s", flush=True)
    if args.json:
        report = {
            "suite": "refrpc-datapath", "mode": mode, "settings": cfg, "cpus": os.cpu_count(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "hosts": "loopback: " + why if why else f"test bed, {args.rate}", "rows": rows, "wall_seconds": wall,
        }
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
