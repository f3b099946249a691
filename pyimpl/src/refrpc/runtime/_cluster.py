"""Starting a local cluster (one worker process per core) and the worker's main."""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import zmq

from ..core import events as ev
from ..store import cleanup_namespace, cleanup_spill
from ..transport import KEY_FILE_ENV, OWN_KEY_ENV, KeyFileError, OwnKey, key_from_env
from ._executor import working_node
from ._node import Node


log = logging.getLogger("refrpc.cluster")
#: A worker that exits sooner than this after its start exited "quickly"...
QUICK_EXIT_S = 10.0
#: ...and after this many quick exits in a row it is not started again.
MAX_QUICK_EXITS = 5
#: A worker's exit status when the cluster declared it dead (LIV-005, CLU-014)...
FENCED_EXIT = 75
#: ...when it lost its head without a Goodbye (a crash, or a partition: CLU-016)...
HEAD_LOST_EXIT = 76
#: ...and when it could not register with its head (CLU-016).
UNREACHABLE_EXIT = 77
#: How long the workers of ``refrpc start --address`` try to join their head again
#: after losing it, before they give up (CLU-016).
REJOIN_S = 60.0


@dataclass(frozen=True)
class Restart:
    """One worker process the supervisor replaced: who died, how, and what replaced it."""

    name: str
    pid: int
    incarnation: int
    returncode: int | None
    new_pid: int
    new_incarnation: int


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class LocalCluster:
    """Worker processes started by ``refrpc.init()`` on this host."""

    namespace: str
    directory: str
    workers: dict[str, str] = field(default_factory=dict)  # name -> address
    #: name -> the named resources that worker offers (its share of the host's).
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: Each worker's traffic counters, read when the cluster stops.
    stats: dict[str, dict] = field(default_factory=dict)
    #: The incarnation each worker process runs as (chosen here, ID-002): the
    #: supervisor can then declare that incarnation dead even if it never said Hello.
    incarnations: dict[str, int] = field(default_factory=dict)
    #: Each worker's command line, less its incarnation (a restart reuses it).
    _argv: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _env: dict[str, str] | None = field(default=None, repr=False)
    #: Worker name -> its own CURVE key pair, kept across its restarts (CLU-050).
    _own_keys: dict[str, tuple[bytes, bytes]] = field(default_factory=dict, repr=False)
    #: (read end, write end) of the pipe workers watch: EOF means this process is gone.
    _lifeline: tuple[int, int] | None = field(default=None, repr=False)
    #: Each restart of a worker by the supervisor (see watch), oldest first.
    restarts: list[Restart] = field(default_factory=list)
    #: Set when the supervisor has no worker left to run (see watch).
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: When each worker's current process started (monotonic), and its quick exits in a row.
    _started_at: dict[str, float] = field(default_factory=dict, repr=False)
    _quick_exits: dict[str, int] = field(default_factory=dict, repr=False)
    #: Whether the supervisor starts a worker that died again (see watch). Set it to
    #: False to watch a cluster shrink (tests of what a program sees when a worker
    #: stays dead do); a worker that dies meanwhile is then not started again.
    restart: bool = False
    #: The supervisor's node (None: no node; see watch).
    _node: Node | None = field(default=None, repr=False)
    #: Workers to start again at a given time; workers given up; processes whose exit was handled.
    _due: dict[str, float] = field(default_factory=dict, repr=False)
    _gone: set[str] = field(default_factory=set, repr=False)
    _handled: set[int] = field(default_factory=set, repr=False)
    _exit_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: How long workers that lost their head try to join it again (see _rejoining).
    rejoin_s: float = REJOIN_S
    #: When each worker first failed to reach its head, in a row (see _rejoining).
    _unreachable_since: dict[str, float] = field(default_factory=dict, repr=False)
    #: Where the workers' stores spill (OBJ-031), and whether the cluster made that
    #: directory (then it is removed at stop; else only this cluster's files in it).
    spill_directory: str = ""
    own_spill_directory: bool = False

    @staticmethod
    def new_namespace() -> str:
        """A shared-memory namespace no other cluster on this host uses."""
        return f"rr{os.getpid()}x{secrets.token_hex(4)}"

    @classmethod
    def start(cls, num_workers: int, head_address: str, head_incarnation: int, *, head_name: str = "driver",
              node_ip: str = "", name_prefix: str = "w", inline_threshold: int = 100 * 1024,
              namespace: str = "", settings: dict[str, int] | None = None,
              trace_dir: str | None = None, key_file: str = "", insecure: bool = False,
              resources: dict[str, float] | None = None, object_store_memory: int | None = None,
              spill_dir: str = "", own_spill_dir: bool = False,
              store_high_water: float | None = None) -> LocalCluster:
        """Start the workers. With ``node_ip`` they listen on tcp (reachable from other
        hosts) and register with the head; otherwise on ipc:// sockets in a temp dir.
        With ``trace_dir`` each worker records its trace there (TRC-011 names the
        files); without, workers follow ``REFRPC_TRACE_DIR`` as every process does.
        With ``key_file`` every worker authenticates with that cluster key (CURVE,
        SEC-002); workers listening on tcp need one unless ``insecure``.

        Each worker runs in a session of its own, so a Ctrl-C at the terminal (or a
        notebook's interrupt), which signals the starting process's whole process
        group, reaches the program and not its workers. A worker leaves when its
        head does (heartbeats, LIV-003) and at once when the process that started it
        is gone, also after ``kill -9``: it watches the read end of a pipe whose only
        writer is this process (its lifeline).

        ``resources`` (name -> amount) are what this host offers besides its CPUs;
        they are shared among the workers (``_membership.spread``), each worker
        offering its share (TASK-030).

        ``object_store_memory`` is the limit of this host's stores together, bytes
        (OBJ-030, OBJ-065; None: no limit), ``store_high_water`` the fraction of it past
        which they spill in the background (OBJ-066; None: the default) and
        ``spill_dir`` where the stores spill ("": nowhere, OBJ-031); the
        cluster removes its spill files when it stops, and the directory too if
        ``own_spill_dir``."""
        from ._membership import spread

        namespace = namespace or cls.new_namespace()
        directory = tempfile.mkdtemp(prefix="refrpc-")
        cluster = cls(namespace, directory, spill_directory=spill_dir, own_spill_directory=own_spill_dir)
        names = [f"{name_prefix}{i}" for i in range(1, num_workers + 1)]
        if node_ip:
            cluster.workers = {n: f"tcp://{node_ip}:0" for n in names}
        else:
            cluster.workers = {n: f"ipc://{directory}/{n}.sock" for n in names}
        peers = "" if node_ip else ",".join(f"{n}={a}" for n, a in cluster.workers.items())
        cluster.resources = spread(resources, names)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        if key_file:
            env[KEY_FILE_ENV] = os.path.abspath(key_file)
        else:  # the workers authenticate exactly as the caller said
            env.pop(KEY_FILE_ENV, None)
        cluster._env = env
        cluster._lifeline = os.pipe()  # both ends close-on-exec; only the read end is passed on
        for name, address in cluster.workers.items():
            cluster._argv[name] = [
                sys.executable, "-m", "refrpc.runtime.worker",
                "--peer", name, "--bind", address, "--namespace", namespace,
                "--head", head_address, "--head-incarnation", str(head_incarnation),
                "--peers", peers,
                "--stats", os.path.join(directory, f"stats-{name}.json"),
                "--head-name", head_name, "--inline-threshold", str(inline_threshold),
                "--settings", json.dumps(settings or {}),
                "--resources", json.dumps(cluster.resources),
            ] + (["--object-store-memory", str(object_store_memory)] if object_store_memory else []) + (
                ["--object-store-high-water", repr(store_high_water)] if store_high_water is not None else []) + (
                ["--spill-dir", spill_dir] if spill_dir else []) + (["--own-spill-dir"] if own_spill_dir else []) + (["--register"] if node_ip else []) + (["--insecure"] if insecure else []) + (["--trace-dir", os.fspath(trace_dir)] if trace_dir is not None else [])
            cluster._spawn(name)
        atexit.register(cluster.stop)
        return cluster

    def _spawn(self, name: str) -> subprocess.Popen:
        """Start worker ``name`` as a new incarnation (ID-002), chosen here. A worker that
        registers with a head gets the key pair this cluster made for its name, the same
        in every incarnation, so that a restarted worker is still the member it was
        (CLU-050); the environment, not the command line, carries it."""
        incarnation = secrets.randbits(63) | 1
        argv = [*self._argv[name], "--incarnation", str(incarnation)]
        fds: tuple[int, ...] = ()
        if self._lifeline is not None:
            argv += ["--lifeline", str(self._lifeline[0])]
            fds = (self._lifeline[0],)
        env = self._env
        if "--register" in argv and self._env and self._env.get(KEY_FILE_ENV):
            if name not in self._own_keys:
                self._own_keys[name] = zmq.curve_keypair()
            public, secret = self._own_keys[name]
            env = {**self._env, OWN_KEY_ENV: f"{public.decode()} {secret.decode()}"}
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, pass_fds=fds, start_new_session=True)
        self.incarnations[name] = incarnation
        self.processes[name] = proc
        self._started_at[name] = time.monotonic()
        return proc

    def sessions(self) -> list[Callable[[str], ev.Stimulus]]:
        """Stimuli that open a session with each worker, naming its incarnation."""
        return [lambda sid, n=n, a=a: ev.Connect(sid, n, a, self.incarnations.get(n, 0))
                for n, a in self.workers.items() if not a.endswith(":0")]  # tcp ports are known later

    def watch(self, node: Node | None, interval: float = 0.1, *, restart: bool = True) -> None:
        """Supervise the workers: report each one that exits to ``node`` at once
        (LIV-014), instead of leaving it to heartbeat silence (1.5 s by default), and
        start it again as a new incarnation (ID-002), unless ``restart`` is False.

        ``node`` (the driver of ``refrpc.init()``, or the head of ``refrpc start
        --head``) opens a session with every worker first, with the incarnation it
        runs as: a worker that dies before its Hello arrived is then still declared
        dead by its incarnation, and the other peers are told (LIV-004), instead of
        each waiting out its own handshake with it (LIV-015). The new incarnation
        keeps the worker's name and address and says Hello to its head itself (a
        worker that registers does so again), so work is placed on it once it is
        up. Without ``node`` (``refrpc start --address``: the head is elsewhere), a
        worker that exits with status 0 has left because its head is gone, and is
        not started again; :attr:`finished` is set once no worker is left.

        Each restart is logged on the ``refrpc.cluster`` logger (a warning). A worker
        that dies within :data:`QUICK_EXIT_S` of its start is started again after a
        delay that doubles each time, and not at all after :data:`MAX_QUICK_EXITS`
        such deaths in a row (it cannot start, and the log says why it stopped)."""
        if node is not None:
            node.handle_soon(*self.sessions()).result()
        self._node, self.restart = node, restart

        def run() -> None:
            while not self._stopping.is_set() and not self._node_leaving():
                for name, proc in list(self.processes.items()):
                    if proc.poll() is not None:
                        self._exited(name, proc)
                now = time.monotonic()
                for name, when in list(self._due.items()):
                    if when <= now:
                        del self._due[name]
                        self._restart(name, node)
                if self._gone and len(self._gone) == len(self.processes):
                    self.finished.set()
                    return
                self._stopping.wait(interval)

        threading.Thread(target=run, name="refrpc-supervisor", daemon=True).start()

    def _node_leaving(self) -> bool:
        node = self._node
        return node is not None and (node.stopped.is_set() or node.core.stopped)

    def _exited(self, name: str, proc: subprocess.Popen, killed: bool = False) -> None:
        """Worker ``name``'s process ``proc`` has exited: report it and start it again
        (or schedule that, or give it up). Once per process, whoever sees it first:
        the supervisor's thread, or :meth:`kill_worker` (``killed``: on purpose, so
        not a sign that the worker cannot start)."""
        with self._exit_lock:
            if proc.pid in self._handled or self.processes.get(name) is not proc:
                return
            self._handled.add(proc.pid)
        node = self._node
        incarnation = self.incarnations.get(name, 0)
        restart = self.restart and (node is not None or proc.returncode != 0)
        if node is None and restart:
            restart = self._rejoining(name, proc.returncode)
        wait = self._next_start(name, time.monotonic(), restart)
        if killed and wait is not None:
            self._quick_exits[name] = 0
            wait = 0.0
        if node is not None:
            if wait == 0.0 and not self._node_leaving():
                # Replaced by a new incarnation, and the death reported with it in one
                # stimulus (PeerFailed.successor), under the node's lock: what the death
                # leaves without an executor goes to the new one, and a task the
                # program submits meanwhile never finds the worker gone.
                node.call(lambda: self._restart(name, node, (proc.returncode, incarnation)))
                return
            node.call(lambda: self._report(node, name, proc.returncode, incarnation))
        if self._stopping.is_set() or self._node_leaving():
            return
        if wait is None:
            self._gone.add(name)
            log.warning("worker %s (pid %d, incarnation %x) %s; not started again%s", name, proc.pid,
                        incarnation, _exit_text(proc.returncode),
                        "" if proc.returncode == 0 or not self.restart else
                        f" (it died within {QUICK_EXIT_S:g} s of its start {MAX_QUICK_EXITS} times in a row)")
        else:
            self._due[name] = time.monotonic() + wait

    def _rejoining(self, name: str, code: int | None) -> bool:
        """Whether a worker of ``refrpc start --address`` that exited with ``code``
        tries again to join its head: one that could not reach it does so until
        :attr:`rejoin_s` have passed since its first such exit in a row (CLU-016)."""
        now = time.monotonic()
        if code != UNREACHABLE_EXIT:
            self._unreachable_since.pop(name, None)
            return True
        since = self._unreachable_since.setdefault(name, now)
        if now - since < self.rejoin_s:
            return True
        log.warning("worker %s could not join its head for %.0f s: not started again", name, now - since)
        return False

    def _next_start(self, name: str, now: float, restart: bool) -> float | None:
        """Seconds until worker ``name``, which just exited, is started again; None: never."""
        if not restart:
            return None
        quick = now - self._started_at.get(name, 0.0) < QUICK_EXIT_S
        self._quick_exits[name] = self._quick_exits.get(name, 0) + 1 if quick else 0
        if self._quick_exits[name] >= MAX_QUICK_EXITS:
            return None
        # A worker may be killed twice in a row (by cancel(force=True), say); from the
        # second quick death on, it waits: it may be failing to start.
        return 0.0 if self._quick_exits[name] <= 1 else min(5.0, 0.1 * 2 ** self._quick_exits[name])

    def _restart(self, name: str, node: Node | None = None, death: tuple[int | None, int] | None = None) -> None:
        """Start worker ``name`` again. With ``node``, open a session with the new
        incarnation at once (a worker listening on a known address): it is then a
        place to run tasks already, and what is sent there waits for its handshake
        (LIV-015), so a cluster whose every worker died queues work instead of
        failing it while they restart. ``death`` (exit status, incarnation): the
        death to report to ``node`` first, in the same stimulus."""
        with self._lock:
            if self._stopping.is_set():
                return
            old = self.processes[name]
            before = self.incarnations.get(name, 0)
            address = self.workers.get(name, "")
            if address.startswith("ipc://"):
                try:  # the new process binds the same path; never let a stale file stand in for it
                    os.unlink(address.removeprefix("ipc://"))
                except OSError:
                    pass
            new = self._spawn(name)
            self.restarts.append(Restart(name, old.pid, before, old.returncode, new.pid, self.incarnations[name]))
        log.warning("worker %s (pid %d, incarnation %x) %s; restarted it as pid %d, incarnation %x",
                    name, old.pid, before, _exit_text(old.returncode), new.pid, self.incarnations[name])
        if node is None:
            return
        successor = 0 if address.endswith(":0") else self.incarnations[name]  # a tcp worker's port comes later
        if death is not None:
            node.call(lambda: self._report(node, name, death[0], death[1], successor, address))
        elif successor:
            node.handle_soon(lambda sid: ev.Connect(sid, name, address, successor))

    def kill_worker(self, name: str, incarnation: int, why: str) -> bool:
        """``kill -9`` worker ``name`` if it still runs as ``incarnation`` (0: whichever);
        the supervisor then starts it again. Returns whether a process was killed."""
        with self._lock:
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None or incarnation not in (0, self.incarnations.get(name)):
                return False
            log.warning("killing worker %s (pid %d, incarnation %x): %s", name, proc.pid, self.incarnations[name], why)
            proc.kill()
        proc.wait()
        self._exited(name, proc, killed=True)  # now, not at the supervisor's next look
        return True

    def _report(self, node: Node, name: str, code: int | None, incarnation: int | None = None,
                successor: int = 0, successor_address: str = "") -> None:
        """Tell ``node`` that worker ``name`` (as ``incarnation``, by default the one
        this cluster last started) exited with ``code`` (LIV-014), and, with
        ``successor``, which incarnation now runs in its place."""
        r = node.core.remotes.get(name)
        if incarnation is None:
            incarnation = self.incarnations.get(name, 0)
        reason = f"process exited with {code}"
        if r is not None and r.incarnation not in (0, incarnation):
            # The session is with another incarnation: fence the one that died.
            node.handle(ev.PeerFailed(node.sid(), name, incarnation, reason, successor, successor_address))
        elif r is None or r.state != "dead":
            # Also a worker this node has not heard from yet: it ran as the incarnation
            # this cluster gave it (0, "whichever it was", if unknown), so no task waits
            # for a dead process's handshake timeout (LIV-015).
            incarnation = (r.incarnation if r is not None else 0) or incarnation
            node.handle(ev.PeerFailed(node.sid(), name, incarnation, reason, successor, successor_address))
        elif successor:  # declared dead already (heartbeats): only the new one to meet
            node.handle(ev.Connect(node.sid(), name, successor_address, successor))

    def stop(self, timeout: float = 5.0, grace: float = 0.5) -> None:
        """Wait for the workers to leave (they follow the driver's Goodbye), then make sure.

        A worker whose session with the driver was still being opened (one starting
        up, say, just restarted) gets no Goodbye and would wait out its handshake
        timeout (LIV-015): after ``grace`` seconds this process closes its end of the
        workers' lifeline, and each straggler leaves cleanly as soon as it reads the
        EOF; those still running after ``timeout`` are asked with SIGTERM (a clean
        exit), and killed if they have not left after another ``timeout``.
        """
        with self._lock:
            self._stopping.set()  # the supervisor starts nothing more
        end = time.monotonic() + grace
        for p in self.processes.values():
            try:
                p.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        lifeline, self._lifeline = self._lifeline, None
        if lifeline is not None:
            for fd in lifeline:
                os.close(fd)
        end = time.monotonic() + timeout
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
        if self.spill_directory:
            cleanup_spill(self.namespace, self.spill_directory)  # OBJ-035
            if self.own_spill_directory:
                shutil.rmtree(self.spill_directory, ignore_errors=True)
        shutil.rmtree(self.directory, ignore_errors=True)


def record_stop_signals() -> list[int]:
    """Make SIGTERM and SIGINT append to the returned list, which the caller's waiting
    loop looks at. The handler takes no lock: one that did (``Event.set``) could be
    interrupted by the next signal while holding it, and the nested handler would
    wait for it for ever (two quick SIGTERMs hung a head that way)."""
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: signalled.append(signum))
    return signalled


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
    ap.add_argument("--object-store-memory", type=int, default=None, help="this host's store limit in bytes")
    ap.add_argument("--object-store-high-water", type=float, default=None,
                    help="the fraction of the limit past which the stores spill in the background")
    ap.add_argument("--spill-dir", default=None, help="where this worker's store spills past its limit")
    ap.add_argument("--own-spill-dir", action="store_true", help="the spill directory is the cluster's own (removed with it)")
    ap.add_argument("--settings", default="{}", help="protocol settings (Config fields) as JSON")
    ap.add_argument("--resources", default="{}", help="peer -> the named resources it offers, as JSON")
    ap.add_argument("--trace-dir", default=None, help="record this worker's trace here (default: $REFRPC_TRACE_DIR)")
    ap.add_argument("--insecure", action="store_true", help="listen on tcp without authentication (SEC-002)")
    ap.add_argument("--lifeline", type=int, default=-1,
                    help="a pipe's read end: leave when it reads EOF (the starting process is gone)")
    args = ap.parse_args(argv)
    from ._node import limit_arenas

    limit_arenas()  # before any thread of this process starts
    try:
        cluster_key = key_from_env()  # REFRPC_KEY_FILE: authenticate every connection
    except KeyFileError as exc:
        ap.error(str(exc))
    if cluster_key is None and args.bind.startswith("tcp://") and not args.insecure:
        ap.error(f"a worker listening on tcp needs the cluster key: set {KEY_FILE_ENV} (or pass --insecure)")
    if cluster_key is not None and args.register and cluster_key.head_public is None:
        ap.error(f"{os.environ.get(KEY_FILE_ENV)} names no head key: joining needs the key file "
                 "`refrpc start --head` wrote (SEC-041)")
    done = threading.Event()
    fenced = threading.Event()
    starter_gone = threading.Event()
    if args.lifeline >= 0:
        _watch_lifeline(args.lifeline, done, starter_gone)

    head_lost = threading.Event()

    def on_other(ins: ev.Instruction) -> None:
        if isinstance(ins, ev.PeerDeclaredDead) and ins.peer == args.head_name:
            # The head is gone: a local cluster's workers go with it. A worker of a
            # multi-host cluster that lost its head without a Goodbye (a crash, or a
            # partition) leaves too, as a new incarnation may join it again (CLU-016).
            if args.register and ins.source != "goodbye":
                head_lost.set()
            done.set()
        elif isinstance(ins, ev.FailStop):
            fenced.set()  # declared dead by the cluster (LIV-005): a new incarnation must replace this one
            done.set()

    from ._node import default_config

    settings = json.loads(args.settings)
    if args.register:  # a multi-host cluster: its head's death is for each member to detect (LIV-030)
        settings["unannounced"] = (args.head_name,)
    node, executor = working_node(args.peer, args.bind, args.namespace, default_config(inline_threshold=args.inline_threshold, **settings), on_other,
        held=True, incarnation=args.incarnation or None, trace_dir=args.trace_dir, cluster_key=cluster_key,
        own_key=OwnKey.from_env(cluster_key, args.peer) if cluster_key is not None and args.register else None,
        insecure=args.insecure, object_store_memory=args.object_store_memory,
        spill_dir=args.spill_dir, **({} if args.object_store_high_water is None else
                                     {"store_high_water": args.object_store_high_water}))  # no task runs before this process is ready (see Executor)
    from ._refs import call_on, context

    context.node, context.executor = node, executor
    context.head = args.head_name
    if args.register:
        node.head_address = args.head  # views come only from there (SEC-026)
    peers = [p.split("=", 1) for p in args.peers.split(",") if p]
    offered = json.loads(args.resources)
    executor.offer(1, offered.get(args.peer, {}))  # what it registers, and admits its tasks by (TASK-050)
    from ._membership import _adds

    here = socket.gethostname()  # the sibling workers share this host's slots (TASK-040)
    rows = [(n, a, 1, here, offered.get(n, {})) for n, a in peers if n != args.peer]
    node.handle_soon(*_adds(rows + [(args.peer, node.address, 0, here, {})])).result()  # its own host too (TASK-041)
    # Open the session with the head now, so that its death is noticed (REF-006).
    node.handle_soon(lambda sid: ev.Connect(sid, args.head_name, args.head, args.head_incarnation)).result()
    unreachable = False
    if args.register:
        try:
            _register(node, args.head_name, args.peer, offered.get(args.peer, {}))
        except Exception as exc:
            if not done.is_set() or head_lost.is_set():
                # The head did not answer: leave, and let the supervisor decide (CLU-016).
                print(f"refrpc: worker {args.peer} could not register with its head at {args.head}: {exc}",
                      file=sys.stderr, flush=True)
                unreachable = True
                done.set()
            # Else the head left while this worker registered: leave with it (status 0).
    executor.open()
    signalled = record_stop_signals()  # SIGINT only if sent to this process: it has its own session
    while not done.is_set() and not node.stopped.is_set() and not signalled:
        done.wait(0.2)
    # Leaving already: a SIGTERM from the cluster's stop() must not kill the process
    # half way (Python restores the default action for its own handlers while it
    # finalizes, but keeps SIG_IGN).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    executor.stop()
    node.stop(timeout=2.0)
    if starter_gone.is_set() and args.spill_dir:
        # The process that started this worker is gone (maybe killed): what its store
        # spilled is nobody's now (OBJ-035), and the cluster's own spill directory goes
        # with the last worker to leave it (rmdir fails while others still use it).
        from ..store import cleanup_writer

        cleanup_writer(args.namespace, args.head_name, spill_directory=args.spill_dir)
        if args.own_spill_dir:
            try:
                os.rmdir(args.spill_dir)
            except OSError:
                pass
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(node.stats, f)
    # Status 0: this worker left with its head (or was asked to); FENCED_EXIT: the
    # cluster declared it dead (a partition outlasted the detection timeout), and
    # the supervisor starts a new incarnation that registers again (CLU-014).
    if fenced.is_set():
        return FENCED_EXIT
    if unreachable:
        return UNREACHABLE_EXIT
    return HEAD_LOST_EXIT if head_lost.is_set() else 0



def _register(node: Node, head: str, peer: str, resources: dict[str, float]) -> None:
    """Join a multi-host cluster: register with ``head`` and apply the view it
    returns (every member becomes a place to run tasks, CLU-005); later changes
    come pushed by the head (CLU-010). Open a session with every driver, so that
    a driver that used an earlier incarnation of this worker learns of this one
    (HS-006)."""

    from ._membership import apply_view
    from ._refs import call_on

    view = call_on(node, head, "refrpc.runtime._membership:register", peer, node.address, 1, socket.gethostname(),
                   os.getpid(), resources, node.incarnation, timeout=60)
    apply_view(node, view)
    drivers = call_on(node, head, "refrpc.runtime._membership:drivers", timeout=60)
    if drivers:
        node.handle_soon(*[lambda sid, p=p, a=a: ev.Connect(sid, p, a) for p, a in drivers]).result()


def _watch_lifeline(fd: int, done: threading.Event, gone: threading.Event) -> None:
    """Set ``gone`` and ``done`` when the pipe ``fd`` reads EOF: every writer, the
    process that started this worker, is gone (it exited, or was killed)."""

    def run() -> None:
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        gone.set()
        done.set()

    threading.Thread(target=run, name="refrpc-lifeline", daemon=True).start()
