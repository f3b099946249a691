"""RefRPC clusters on a :class:`~refrpc.testing.hosts.HostBed`, and the jobs they run.

:class:`BedCluster` starts a head (``refrpc start --head``) on one host of a
bed, workers (``refrpc start --address``) on others, all with one cluster key
file, and drivers: each driver is an :class:`Agent`, a process on a host that
joined the cluster with ``refrpc.init(address=...)`` and runs the commands it
is sent (one JSON object a line on its stdin, one answer a line on stdout), so
that a test can act on a running program between faults.

The remote functions here are importable on every host (they live in the
``refrpc`` package), so no host needs the test's own files.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import refrpc

from .hosts import HostBed


# ------------------------------------------------------------------ remote functions
@refrpc.remote
def where(delay: float = 0.0) -> str:
    """The hostname of the worker that ran this."""
    if delay:
        time.sleep(delay)
    return socket.gethostname()


@refrpc.remote
def where_nested(n: int, delay: float = 0.0, resources: dict[str, float] | None = None) -> list[str]:
    """Submit ``n`` nested tasks from a worker and return where they ran."""
    fn = where.options(resources=resources) if resources else where
    return [socket.gethostname()] + refrpc.get([fn.remote(delay) for _ in range(n)], timeout=60)


def _bytes(size: int, seed: int) -> bytes:
    block = bytes((seed + i) % 251 for i in range(251))
    return (block * (size // 251 + 1))[:size]


@refrpc.remote
def make_bytes(size: int, seed: int) -> bytes:
    return _bytes(size, seed)


@refrpc.remote
def checksum(data: Any) -> int:
    import zlib

    return zlib.crc32(bytes(data))


@refrpc.remote
class Log:
    """An actor that records, per caller, the order its entries came in."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    def add(self, caller: str, i: int) -> int:
        self.entries.append((caller, i))
        return len(self.entries)

    def entries_of(self) -> list[tuple[str, int]]:
        return list(self.entries)

    def host(self) -> str:
        return socket.gethostname()


@refrpc.remote
def add_through(log: Any, caller: str, n: int) -> str:
    """Given an actor handle, call it ``n`` times in order (and say where this ran)."""
    refrpc.get([log.add.remote(caller, i) for i in range(n)], timeout=60)
    return socket.gethostname()


def _error(exc: BaseException) -> str:
    return type(exc).__name__


# ------------------------------------------------------------------ the agent (a driver process)
def _op(cmd: dict[str, Any], state: dict[str, Any]) -> Any:
    op = cmd["op"]
    timeout = float(cmd.get("timeout", 60))
    if op == "where":
        fn = where.options(resources=cmd["resources"]) if cmd.get("resources") else where
        if "retries" in cmd:
            fn = fn.options(max_retries=int(cmd["retries"]))
        refs = [fn.remote(cmd.get("delay", 0.0)) for _ in range(int(cmd.get("n", 1)))]
        return _outcomes(refs, timeout)
    if op == "round_trips":
        # One task at a time, each waited for: where it ran and how long each took.
        fn = where.options(resources=cmd["resources"]) if cmd.get("resources") else where
        hosts, seconds = [], []
        for _ in range(int(cmd.get("n", 5))):
            start = time.monotonic()
            hosts.append(refrpc.get(fn.remote(), timeout=timeout))
            seconds.append(time.monotonic() - start)
        return {"values": hosts, "seconds": seconds}
    if op == "nested":
        fn = where_nested.options(resources=cmd["outer"]) if cmd.get("outer") else where_nested
        refs = [fn.remote(int(cmd.get("k", 2)), cmd.get("delay", 0.0), cmd.get("resources"))
                for _ in range(int(cmd.get("n", 1)))]
        return _outcomes(refs, timeout)
    if op == "data":
        # Values made on workers, read by other tasks and by this driver (CRCs compared).
        # ``make_on`` / ``read_on``: resources that place the makers / readers (a host's).
        sizes = [int(s) for s in cmd.get("sizes", [300_000])]
        maker = make_bytes.options(resources=cmd["make_on"]) if cmd.get("make_on") else make_bytes
        reader = checksum.options(resources=cmd["read_on"]) if cmd.get("read_on") else checksum
        made = [maker.remote(s, i) for i, s in enumerate(sizes)]
        sums = [reader.remote(m) for m in made]
        out = _outcomes(sums, timeout)
        import zlib

        expect = [zlib.crc32(_bytes(s, i)) for i, s in enumerate(sizes)]
        out["right"] = [v == e for v, e in zip(out["values"], expect)]
        return out
    if op == "actor":
        log = Log.options(resources=cmd["resources"]).remote() if cmd.get("resources") else Log.remote()
        state["actor"] = log
        return {"host": refrpc.get(log.host.remote(), timeout=timeout), "id": _actor_id(log)}
    if op == "through":
        log = state["actor"]
        fn = add_through.options(resources=cmd["resources"]) if cmd.get("resources") else add_through
        refs = [fn.remote(log, f"c{i}", int(cmd.get("k", 5))) for i in range(int(cmd.get("n", 2)))]
        hosts = refrpc.get(refs, timeout=timeout)
        return {"hosts": hosts, "entries": refrpc.get(log.entries_of.remote(), timeout=timeout)}
    if op == "drop_actor":
        state.pop("actor", None)
        import gc

        gc.collect()
        return True
    if op == "view":
        node = refrpc.api._node()
        with node.lock:
            return {"version": node.view_version, "workers": sorted(node.core.workers),
                    "fenced": sorted({p for p, _ in node.core.fenced}),
                    "dead": sorted(p for p, r in node.core.remotes.items() if r.state == "dead")}
    if op == "actors":
        # Every actor a live worker hosts and has not stopped, as the workers answer (INT-006).
        return sorted(a["id"] for r in refrpc.nodes(timeout=timeout) if r["role"] == "worker" and r["alive"]
                      for a in r["actors"] or [] if a["state"] != "dead")
    if op == "mix":
        return _mix(cmd, timeout)
    if op == "tables":
        # Objects each live driver and worker owns or borrows, as they answer (INT-006);
        # the head's are its own bookkeeping. This command's own calls hold none after.
        import gc

        gc.collect()
        rows = refrpc.nodes(timeout=timeout)
        me = refrpc.api._node().peer_id
        return {r["id"]: r["objects"] for r in rows if r["alive"] and r["role"] != "head" and r["id"] != me
                and r["objects"] and any(r["objects"].values())} | _own_objects()
    if op == "debug_tables":
        node = refrpc.api._node()
        with node.lock:
            return {o: [e.state, e.local_refs, sorted(e.borrowers), getattr(e, "submitted_task_refs", None)] for o, e in node.core.owned.items()}
    if op == "sleep":
        time.sleep(float(cmd.get("s", 0)))
        return True
    raise ValueError(f"unknown op {op!r}")


def _own_objects() -> dict[str, Any]:
    node = refrpc.api._node()
    with node.lock:
        # Refs this command dropped a moment ago (nodes()'s calls to the workers) are
        # queued for release, not released yet: release them before counting.
        node._drain_released()
        owned = [o for o, e in node.core.owned.items() if e.state != "freed"]
        borrowed = list(node.core.borrowed)
    return {"this driver": {"owned": len(owned), "borrowed": len(borrowed)}} if owned or borrowed else {}


def _mix(cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Plain tasks, values made on one host and read on others, nested tasks: all
    submitted at once; each ends with its right value or a typed error."""
    import zlib

    hosts = set(cmd.get("hosts", ["h1", "h2", "h3"]))
    delay = float(cmd.get("delay", 0.1))
    items: list[tuple[str, Any, Any]] = []
    for _ in range(int(cmd.get("where", 4))):
        items.append(("where", where.remote(delay), lambda v: v in hosts))
    for i, size in enumerate(cmd.get("data", [])):
        expect = zlib.crc32(_bytes(size, i))
        items.append(("data", checksum.remote(make_bytes.remote(size, i)), lambda v, e=expect: v == e))
    for _ in range(int(cmd.get("nested", 1))):
        items.append(("nested", where_nested.remote(2, delay), lambda v: isinstance(v, list) and set(v) <= hosts))
    calls = int(cmd.get("actor_calls", 0))
    if calls:
        # An actor's calls from this caller run in order (ACT-003): each call sees the
        # ones before it (its answer is its place), or the actor died (a typed error).
        log = Log.remote()
        for i in range(calls):
            items.append(("actor", log.add.remote("driver", i), lambda v, i=i: v == i + 1))
        items.append(("actor", log.entries_of.remote(),
                      lambda v: [tuple(e) for e in v] == [("driver", i) for i in range(calls)]))
        del log
    end = time.monotonic() + timeout
    out, problems = [], []
    for kind, ref, right in items:
        try:
            value = refrpc.get(ref, timeout=max(0.1, end - time.monotonic()))
        except refrpc.GetTimeoutError as exc:
            out.append([kind, "timeout", str(exc)[:200]])
            problems.append(f"{kind}: no answer within {timeout:g} s (a hang): {exc}")
            continue
        except refrpc.TaskError as exc:
            cause = exc.cause
            out.append([kind, "error", f"TaskError({type(cause).__name__}): {str(exc)[:200]}"])
            if cause is not None and not isinstance(cause, refrpc.RefRPCError):
                problems.append(f"{kind}: the task failed with an untyped error: {type(cause).__name__}: {cause}")
            continue
        except refrpc.RefRPCError as exc:
            out.append([kind, "error", f"{type(exc).__name__}: {str(exc)[:200]}"])
            continue
        except Exception as exc:  # not a typed error: a problem
            out.append([kind, "untyped", f"{type(exc).__name__}: {exc}"])
            problems.append(f"{kind}: untyped error {type(exc).__name__}: {exc}")
            continue
        ok = right(value)
        out.append([kind, "ok" if ok else "WRONG", value if kind != "data" else ok])
        if not ok:
            problems.append(f"{kind}: wrong value {value!r}")
    items.clear()
    return {"items": out, "problems": problems}


def _actor_id(handle: Any) -> str:
    return str(getattr(handle, "_actor_id", getattr(handle, "actor_id", "")))


def _outcomes(refs: list[Any], timeout: float) -> dict[str, Any]:
    values, errors = [], []
    end = time.monotonic() + timeout
    for r in refs:
        try:
            values.append(refrpc.get(r, timeout=max(0.1, end - time.monotonic())))
        except refrpc.RefRPCError as exc:
            values.append(None)
            errors.append(_error(exc))
    return {"values": values, "errors": errors}


def agent_main(argv: list[str] | None = None) -> int:
    """``python -m refrpc.testing.hostjobs ADDRESS``: join, then answer commands."""
    args = sys.argv[1:] if argv is None else argv
    refrpc.init(address=args[0], connect_timeout=30)
    print(json.dumps({"ready": refrpc.api._node().peer_id}), flush=True)
    state: dict[str, Any] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        started = time.monotonic()
        try:
            answer = {"ok": True, "result": _op(cmd, state)}
        except BaseException as exc:  # every command gets an answer
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        answer["took"] = round(time.monotonic() - started, 3)
        print(json.dumps(answer), flush=True)
    state.clear()
    refrpc.shutdown()
    return 0


class Agent:
    """A driver process on a bed host (see :func:`agent_main`)."""

    def __init__(self, proc: subprocess.Popen[str], host: str) -> None:
        self.proc = proc
        self.host = host
        self.stderr: list[str] = []
        self._last = ""
        threading.Thread(target=self._drain, daemon=True).start()
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("{"):
            proc.wait(10)
            raise RuntimeError(f"driver on {host} did not start: {line}{''.join(self.stderr)}")
        self.peer = json.loads(line)["ready"]

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            del self.stderr[:-200]

    def __call__(self, op: str, *, bound: float = 120, **kw: Any) -> Any:
        """Run one command; its result, or RuntimeError with the agent's error. A
        command not answered within ``bound`` seconds is a hang: AssertionError."""
        self.send(op, **kw)
        answer = self.receive(bound)
        if not answer["ok"]:
            raise RuntimeError(f"driver on {self.host}: {answer['error']}")
        return answer["result"]

    def send(self, op: str, **kw: Any) -> None:
        """Send one command without waiting (see :meth:`receive`)."""
        assert self.proc.stdin is not None
        self._last = f"{op} {kw}"
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()

    def receive(self, bound: float = 120) -> dict[str, Any]:
        """The answer to the command sent last (``ok``, ``result`` or ``error``)."""
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(bound)
        if not box:
            raise AssertionError(f"driver on {self.host}: {self._last} not answered within {bound:g} s (a hang)\n"
                                 + "".join(self.stderr[-40:]))
        if not box[0]:
            raise RuntimeError(f"driver on {self.host} exited ({self.proc.poll()}):\n" + "".join(self.stderr[-40:]))
        return json.loads(box[0])

    def close(self, timeout: float = 20) -> int | None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class BedCluster:
    """A RefRPC cluster on a bed: one key file, a head, workers, driver agents."""

    def __init__(self, bed: HostBed, env: dict[str, str] | None = None) -> None:
        self.bed = bed
        self.extra_env = dict(env or {})
        self.key_file = os.path.join(bed.directory, "cluster.key")
        self.address = ""
        self.head: subprocess.Popen[str] | None = None
        self.joined: dict[str, subprocess.Popen[str]] = {}
        self.agents: list[Agent] = []
        self.logs: dict[str, list[str]] = {}

    def _env(self) -> dict[str, str]:
        return {"REFRPC_KEY_FILE": self.key_file, **self.extra_env}

    def _collect(self, name: str, proc: subprocess.Popen[str]) -> None:
        log = self.logs.setdefault(name, [])

        def run() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.append(line)

        threading.Thread(target=run, daemon=True).start()

    def start_head(self, host: str | int, workers: int = 1, resources: dict[str, float] | None = None,
                   port: int = 7001) -> str:
        h = self.bed.host(host)
        argv = [sys.executable, "-m", "refrpc.cli", "start", "--head", "--port", str(port), "--node-ip", h.address,
                "--num-workers", str(workers)] + (["--resources", json.dumps(resources)] if resources else [])
        self.head = self.bed.spawn(h.name, argv, self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        lines = []
        assert self.head.stdout is not None
        for line in self.head.stdout:
            lines.append(line)
            found = re.search(r"head listening at (\S+)", line)
            if found:
                self.address = found.group(1)
            if "use it from Python" in line:
                break
        if not self.address:
            raise RuntimeError("the head did not start:\n" + "".join(lines))
        self.logs["head"] = lines
        self._collect("head", self.head)
        return self.address

    def join(self, host: str | int, workers: int = 1, resources: dict[str, float] | None = None,
             rejoin_timeout: float | None = None) -> subprocess.Popen[str]:
        h = self.bed.host(host)
        argv = [sys.executable, "-m", "refrpc.cli", "start", "--address", self.address, "--num-workers", str(workers)]
        argv += ["--rejoin-timeout", str(rejoin_timeout)] if rejoin_timeout is not None else []
        argv += ["--resources", json.dumps(resources)] if resources else []
        proc = self.bed.spawn(h.name, argv, self._env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.joined[h.name] = proc
        self._collect(h.name, proc)
        return proc

    def workers(self) -> list[tuple[str, str]]:
        """(peer, host) of every live worker the head knows, asked from the head's host."""
        code = ("import json,refrpc\nfrom refrpc.runtime._membership import HEAD\n"
                f"refrpc.init(address={self.address!r}, connect_timeout=10)\n"
                "print(json.dumps([(m[0], m[3]) for m in refrpc.api._call_on(HEAD, "
                "'refrpc.runtime._membership:members', timeout=10)]))\nrefrpc.shutdown()\n")
        host = next(h.name for h in self.bed.hosts if h.address in self.address)
        done = self.bed.run(host, [sys.executable, "-c", code], timeout=60, env=self._env())
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return [tuple(x) for x in json.loads(done.stdout.strip().splitlines()[-1])]  # type: ignore[misc]

    def wait_workers(self, hosts: dict[str, int], timeout: float = 60) -> None:
        """Until the head knows exactly ``hosts`` (hostname -> live workers)."""
        end = time.monotonic() + timeout
        seen: dict[str, int] = {}
        while time.monotonic() < end:
            seen = {}
            for _peer, host in self.workers():
                seen[host] = seen.get(host, 0) + 1
            if seen == hosts:
                return
            time.sleep(0.3)
        raise AssertionError(f"the head knows workers {seen}, not {hosts}, after {timeout:g} s")

    def driver(self, host: str | int) -> Agent:
        proc = self.bed.spawn(host, [sys.executable, "-m", "refrpc.testing.hostjobs", self.address], self._env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        agent = Agent(proc, self.bed.host(host).name)
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for a in self.agents:
            a.close(5)
        for p in [*self.joined.values(), *([self.head] if self.head else [])]:
            if p.poll() is None:
                p.terminate()
        for p in [*self.joined.values(), *([self.head] if self.head else [])]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


if __name__ == "__main__":
    # Through the module's own name, so that its functions travel by name (every
    # host imports them) and not by value as a script's would.
    from refrpc.testing import hostjobs

    raise SystemExit(hostjobs.agent_main())
