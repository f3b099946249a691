"""Starting a local cluster (one worker process per core) and the worker's main."""

from __future__ import annotations

import argparse
import json
import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..core import events as ev
from ..store import cleanup_namespace
from ..transport import KEY_FILE_ENV, KeyFileError, key_from_env
from ._executor import working_node
from ._node import Node


@dataclass
class LocalCluster:
    """Worker processes started by ``refrpc.init()`` on this host."""

    namespace: str
    directory: str
    workers: dict[str, str] = field(default_factory=dict)  # name -> address
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: Each worker's traffic counters, read when the cluster stops.
    stats: dict[str, dict] = field(default_factory=dict)
    #: The incarnation each worker process runs as (chosen here, ID-002): the
    #: supervisor can then declare that incarnation dead even if it never said Hello.
    incarnations: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def new_namespace() -> str:
        """A shared-memory namespace no other cluster on this host uses."""
        return f"rr{os.getpid()}x{secrets.token_hex(4)}"

    @classmethod
    def start(cls, num_workers: int, head_address: str, head_incarnation: int, *, head_name: str = "driver",
              node_ip: str = "", name_prefix: str = "w", inline_threshold: int = 100 * 1024,
              namespace: str = "", settings: dict[str, int] | None = None,
              trace_dir: str | None = None, key_file: str = "", insecure: bool = False) -> LocalCluster:
        """Start the workers. With ``node_ip`` they listen on tcp (reachable from other
        hosts) and register with the head; otherwise on ipc:// sockets in a temp dir.
        With ``trace_dir`` each worker records its trace there (TRC-011 names the
        files); without, workers follow ``REFRPC_TRACE_DIR`` as every process does.
        With ``key_file`` every worker authenticates with that cluster key (CURVE,
        SEC-002); workers listening on tcp need one unless ``insecure``."""
        namespace = namespace or cls.new_namespace()
        directory = tempfile.mkdtemp(prefix="refrpc-")
        cluster = cls(namespace, directory)
        names = [f"{name_prefix}{i}" for i in range(1, num_workers + 1)]
        if node_ip:
            cluster.workers = {n: f"tcp://{node_ip}:0" for n in names}
        else:
            cluster.workers = {n: f"ipc://{directory}/{n}.sock" for n in names}
        peers = "" if node_ip else ",".join(f"{n}={a}" for n, a in cluster.workers.items())
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        if key_file:
            env[KEY_FILE_ENV] = os.path.abspath(key_file)
        else:  # the workers authenticate exactly as the caller said
            env.pop(KEY_FILE_ENV, None)
        for name, address in cluster.workers.items():
            cluster.incarnations[name] = secrets.randbits(63) | 1
            cmd = [
                sys.executable, "-m", "refrpc.runtime.worker",
                "--peer", name, "--bind", address, "--namespace", namespace, "--incarnation", str(cluster.incarnations[name]),
                "--head", head_address, "--head-incarnation", str(head_incarnation),
                "--peers", peers,
                "--stats", os.path.join(directory, f"stats-{name}.json"),
                "--head-name", head_name, "--inline-threshold", str(inline_threshold),
                "--settings", json.dumps(settings or {}),
            ] + (["--register"] if node_ip else []) + (["--insecure"] if insecure else []) + (["--trace-dir", os.fspath(trace_dir)] if trace_dir is not None else [])
            cluster.processes[name] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        atexit.register(cluster.stop)
        return cluster

    def sessions(self) -> list[Callable[[str], ev.Stimulus]]:
        """Stimuli that open a session with each worker, naming its incarnation."""
        return [lambda sid, n=n, a=a: ev.Connect(sid, n, a, self.incarnations.get(n, 0))
                for n, a in self.workers.items() if not a.endswith(":0")]  # tcp ports are known later

    def watch(self, node: Node, interval: float = 0.1) -> None:
        """Report each worker process that exits to ``node`` at once (LIV-014),
        instead of leaving it to heartbeat silence (1.5 s by default).

        ``node`` opens a session with every worker first, with the incarnation it
        runs as: a worker that dies before its Hello arrived is then still declared
        dead by its incarnation, and the other peers are told (LIV-004), instead of
        each waiting out its own handshake with it (LIV-015)."""
        node.handle_soon(*self.sessions()).result()

        def run() -> None:
            reported: set[str] = set()
            while not node.stopped.is_set() and len(reported) < len(self.processes):
                for name, proc in self.processes.items():
                    if name not in reported and proc.poll() is not None:
                        reported.add(name)
                        node.call(lambda n=name, code=proc.returncode: self._report(node, n, code))
                node.stopped.wait(interval)

        threading.Thread(target=run, name="refrpc-supervisor", daemon=True).start()

    def _report(self, node: Node, name: str, code: int | None) -> None:
        r = node.core.remotes.get(name)
        if r is None or r.state != "dead":
            # Also a worker this node has not heard from yet: it ran as the incarnation
            # this cluster gave it (0, "whichever it was", if unknown), so no task waits
            # for a dead process's handshake timeout (LIV-015).
            incarnation = (r.incarnation if r is not None else 0) or self.incarnations.get(name, 0)
            node.handle(ev.PeerFailed(node.sid(), name, incarnation, f"process exited with {code}"))

    def stop(self, timeout: float = 5.0, grace: float = 0.5) -> None:
        """Wait for the workers to leave (they follow the driver's Goodbye), then make sure.

        A worker whose session with the driver was still being opened gets no Goodbye
        and would wait out its handshake timeout (LIV-015): after ``grace`` seconds
        the stragglers are asked to leave with SIGTERM (a clean exit), and killed if
        they have not after ``timeout``.
        """
        end = time.monotonic() + grace
        for p in self.processes.values():
            try:
                p.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in self.processes.values():
            if p.poll() is None:
                try:
                    p.terminate()
                except ProcessLookupError:
                    pass
        for p in self.processes.values():
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        for name in self.processes:
            try:
                with open(os.path.join(self.directory, f"stats-{name}.json")) as f:
                    self.stats[name] = json.load(f)
            except (OSError, ValueError):
                pass
        cleanup_namespace(self.namespace)  # nothing may outlive the cluster
        shutil.rmtree(self.directory, ignore_errors=True)


def worker_main(argv: list[str] | None = None) -> int:
    """``python -m refrpc.runtime.worker``: one worker peer of a local cluster."""
    ap = argparse.ArgumentParser(prog="refrpc-worker")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--head", required=True)
    ap.add_argument("--head-incarnation", type=int, required=True)
    ap.add_argument("--incarnation", type=int, default=0, help="this process's incarnation (random if 0)")
    ap.add_argument("--peers", default="")
    ap.add_argument("--stats", default="", help="write traffic counters here on exit")
    ap.add_argument("--head-name", default="driver", help="the peer whose death ends this worker")
    ap.add_argument("--register", action="store_true", help="register with the head (multi-host clusters)")
    ap.add_argument("--inline-threshold", type=int, default=100 * 1024)
    ap.add_argument("--settings", default="{}", help="protocol settings (Config fields) as JSON")
    ap.add_argument("--trace-dir", default=None, help="record this worker's trace here (default: $REFRPC_TRACE_DIR)")
    ap.add_argument("--insecure", action="store_true", help="listen on tcp without authentication (SEC-002)")
    args = ap.parse_args(argv)
    try:
        cluster_key = key_from_env()  # REFRPC_KEY_FILE: authenticate every connection
    except KeyFileError as exc:
        ap.error(str(exc))
    if cluster_key is None and args.bind.startswith("tcp://") and not args.insecure:
        ap.error(f"a worker listening on tcp needs the cluster key: set {KEY_FILE_ENV} (or pass --insecure)")
    done = threading.Event()

    def on_other(ins: ev.Instruction) -> None:
        if isinstance(ins, ev.PeerDeclaredDead) and ins.peer == args.head_name:
            done.set()  # the head is gone: a local cluster's workers go with it
        elif isinstance(ins, ev.FailStop):
            done.set()

    from ._node import default_config

    node, executor = working_node(args.peer, args.bind, args.namespace, default_config(inline_threshold=args.inline_threshold, **json.loads(args.settings)), on_other,
        held=True, incarnation=args.incarnation or None, trace_dir=args.trace_dir, cluster_key=cluster_key)  # no task runs before this process is ready (see Executor)
    from ._refs import call_on, context

    context.node, context.executor = node, executor
    peers = [p.split("=", 1) for p in args.peers.split(",") if p]
    adds = [lambda sid, n=n, a=a: ev.AddPeer(sid, n, a, 1) for n, a in peers if n != args.peer]
    node.handle_soon(*adds).result()
    # Open the session with the head now, so that its death is noticed (REF-006).
    node.handle_soon(lambda sid: ev.Connect(sid, args.head_name, args.head, args.head_incarnation)).result()
    if args.register:
        import socket

        members = call_on(node, args.head_name, "refrpc.runtime._membership:register", args.peer, node.address, 1, socket.gethostname(), timeout=60)
        others = [lambda sid, p=p, a=a, s=s: ev.AddPeer(sid, p, a, s) for p, a, s, _ in members if p != args.peer]
        if others:
            node.handle_soon(*others).result()
    executor.open()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.is_set() and not node.stopped.is_set():
        done.wait(0.2)
    # Leaving already: a SIGTERM from the cluster's stop() must not kill the process
    # half way (Python restores the default action for its own handlers while it
    # finalizes, but keeps SIG_IGN).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    executor.stop()
    node.stop(timeout=2.0)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(node.stats, f)
    return 0

