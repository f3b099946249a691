"""A multi-host test bed on one Linux machine: each "host" is a set of namespaces.

:class:`HostBed` makes N hosts, each with

- its own network stack (a network namespace) with one interface, ``eth0``,
  addressed ``10.231.0.K/24`` (K = 1..N), plugged into a bridge that lives in a
  namespace of its own (the bed's switch), so nothing is added to the machine's
  own network and two beds never see each other;
- its own mount namespace with a private ``/dev/shm`` (a tmpfs), so same-host
  zero-copy really is per host, and its own hostname (UTS namespace, ``hK``);
- its own temporary directory (``TMPDIR``), so ``refrpc start``'s pid files
  and sockets stay on their host.

Links can be shaped (``tc tbf``: bandwidth) and cut and healed: symmetric or one
way (``blackhole`` routes, packets vanish as on a broken network), or a whole
host taken off the network (its link set down) or lost for good (every process
of it killed, its link down), and made lossy (:meth:`HostBed.degrade`: nftables
drops a share of the packets each way, chosen at random), or slow
(:meth:`HostBed.delay`: each packet held back for a fixed time each way).
``tc netem`` is not used (it is missing on many kernels, this project's CI
included): latency comes from netfilter's userspace queue instead, a packet
holder run in each affected host (:mod:`refrpc.testing._delay`).

Every name carries this process's id, so parallel beds never clash. A bed
removes everything it made (processes, namespaces with their interfaces and
mounts, its directory) when closed, at interpreter exit, on SIGTERM/SIGHUP,
and a new bed first sweeps away the beds of processes that died without
cleaning up (``kill -9``). It needs root and ``ip``, ``tc``, ``unshare`` and
``nsenter``: :func:`unavailable` says why it cannot run here, for tests to skip.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

#: Every bed's namespaces are named ``rrbed-PID-K-...``.
PREFIX = "rrbed"
#: The bed's private subnet (each bed has its own switch, so beds may share it).
SUBNET = "10.231.0"
_COUNTER = itertools.count(1)
_LIVE: set["HostBed"] = set()
_LIVE_LOCK = threading.Lock()
_HOOKS = [False]


class BedError(RuntimeError):
    """A command that builds or changes the bed failed (the message has its output)."""


def unavailable() -> str:
    """Why a bed cannot run on this machine ("" if it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the multi-host test bed needs root (network and mount namespaces)"
    for tool in ("ip", "tc", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"the multi-host test bed needs `{tool}` (iproute2 / util-linux), not found"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    try:
        _sh(["ip", "netns", "add", probe])
    except BedError as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def loss_unavailable() -> str:
    """Why :meth:`HostBed.degrade` cannot run here ("" if it can): it needs ``nft``."""
    why = unavailable()
    if why:
        return why
    if shutil.which("nft") is None:
        return "lossy links on the test bed need `nft` (Debian package nftables), not found"
    return ""


def delay_unavailable() -> str:
    """Why :meth:`HostBed.delay` cannot run here ("" if it can): it needs ``iptables``
    (its ``NFQUEUE`` target sends packets to the holder)."""
    why = unavailable()
    if why:
        return why
    if shutil.which("iptables") is None:
        return "slow links on the test bed need `iptables` (Debian package iptables), not found"
    return ""


def _sh(argv: Sequence[str], check: bool = True, timeout: float = 30) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise BedError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _sh(["ip", "netns", "list"], check=False).splitlines() if line.strip()]


def _kill_namespace(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in network namespace ``ns`` and wait until none is left."""
    end = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in _sh(["ip", "netns", "pids", ns], check=False).split() if p.isdigit()]
        pids = [p for p in pids if p != os.getpid()]
        if not pids or time.monotonic() > end:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def sweep_stale() -> list[str]:
    """Remove the namespaces (and their processes) and directories of beds whose
    process is gone; returns the namespaces removed."""
    removed = []
    for ns in _namespaces():
        found = re.fullmatch(rf"{PREFIX}-(\d+)-\d+-\w+", ns)
        if found and not _alive(int(found.group(1))):
            _kill_namespace(ns)
            _sh(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    base = _bed_root()
    for entry in os.listdir(base):
        found = re.fullmatch(rf"{PREFIX}-(\d+)-\d+", entry)
        if found and not _alive(int(found.group(1))):
            shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
    return removed


def _bed_root() -> str:
    """Where bed directories live."""
    return tempfile.gettempdir()


def _install_hooks() -> None:
    """Close every live bed at exit and on SIGTERM/SIGHUP (then die of the signal)."""
    if _HOOKS[0]:
        return
    _HOOKS[0] = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)

        def on_signal(num: int, frame: Any, previous: Any = previous) -> None:
            close_all()
            if callable(previous):
                previous(num, frame)
            else:
                signal.signal(num, signal.SIG_DFL)
                os.kill(os.getpid(), num)

        signal.signal(signum, on_signal)


def close_all() -> None:
    """Close every bed this process still has open."""
    with _LIVE_LOCK:
        beds = list(_LIVE)
    for bed in beds:
        bed.close()


@dataclass
class Host:
    """One host of a bed: ``name`` (its hostname, ``hK``), its namespace and address."""

    name: str
    index: int
    netns: str
    address: str
    port: str  # the switch's end of this host's link
    directory: str
    anchor: subprocess.Popen | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    lost: bool = False
    #: The packet holder of a host that delays some of what reaches it (HostBed.delay).
    holder: subprocess.Popen | None = None
    #: The sources whose packets this host's holder gets ("*" for every source).
    queued: tuple[str, ...] = ()


class HostBed:
    """N hosts as namespaces on one bridge (see the module's doc). A context manager.

    ``hosts`` (1..250) hosts named ``h1``..``hN``; ``shm_size`` bounds each host's
    ``/dev/shm``. Methods take a host as its name (``"h2"``) or index (2).
    """

    def __init__(self, hosts: int = 2, *, shm_size: str = "512m") -> None:
        if not 1 <= hosts <= 250:
            raise ValueError(f"a bed has 1 to 250 hosts, not {hosts}")
        why = unavailable()
        if why:
            raise BedError(why)
        _install_hooks()
        sweep_stale()
        self.name = f"{PREFIX}-{os.getpid()}-{next(_COUNTER)}"
        self.directory = os.path.join(_bed_root(), self.name)
        self.switch = f"{self.name}-sw"
        self.shm_size = shm_size
        self.hosts = [Host(f"h{k}", k, f"{self.name}-h{k}", f"{SUBNET}.{k}", f"p{k}",
                           os.path.join(self.directory, f"h{k}")) for k in range(1, hosts + 1)]
        self._cuts: set[tuple[str, str]] = set()
        self._loss: dict[str, float] = {}
        self._delay: dict[str, float] = {}
        #: Processes of lost hosts (kept to check that none outlives the bed).
        self.retired: list[subprocess.Popen] = []
        self._closed = False
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> HostBed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ build
    def _build(self) -> None:
        os.makedirs(self.directory, mode=0o700)
        _sh(["ip", "netns", "add", self.switch])
        _sh(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
        _sh(["ip", "-n", self.switch, "link", "set", "br0", "up"])
        for h in self.hosts:
            os.makedirs(h.directory, mode=0o700)
            _sh(["ip", "netns", "add", h.netns])
            _sh(["ip", "-n", self.switch, "link", "add", h.port, "type", "veth", "peer", "name", "eth0",
                 "netns", h.netns])
            _sh(["ip", "-n", self.switch, "link", "set", h.port, "master", "br0", "up"])
            _sh(["ip", "-n", h.netns, "addr", "add", f"{h.address}/24", "dev", "eth0"])
            _sh(["ip", "-n", h.netns, "link", "set", "eth0", "up"])
            _sh(["ip", "-n", h.netns, "link", "set", "lo", "up"])
            self._start_anchor(h)

    def _start_anchor(self, h: Host) -> None:
        """The process that holds host ``h``'s mount and UTS namespaces (its private
        /dev/shm and hostname); every process of the host enters them (see spawn)."""
        h.anchor = subprocess.Popen(
            ["ip", "netns", "exec", h.netns, "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", f'mount -t tmpfs -o size={self.shm_size},mode=1777 tmpfs /dev/shm && '
                         f'hostname {h.name} && echo ready && exec sleep infinity'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        line = h.anchor.stdout.readline() if h.anchor.stdout else ""
        if line.strip() != "ready":
            raise BedError(f"host {h.name} did not start: {line}{h.anchor.stdout.read() if h.anchor.stdout else ''}")

    def host(self, which: str | int | Host) -> Host:
        if isinstance(which, Host):
            return which
        name = f"h{which}" if isinstance(which, int) else which
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {which!r} in this bed ({', '.join(h.name for h in self.hosts)})")

    def address(self, which: str | int) -> str:
        """The host's address on the bed's network."""
        return self.host(which).address

    # ------------------------------------------------------------------ processes
    def env(self, which: str | int, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment a process on host ``which`` gets (its own TMPDIR and run dir)."""
        h = self.host(which)
        env = dict(os.environ)
        env["TMPDIR"] = h.directory
        env["REFRPC_RUN_DIR"] = os.path.join(h.directory, "run")
        env.update(extra or {})
        return env

    def _enter(self, h: Host) -> list[str]:
        assert h.anchor is not None
        return ["nsenter", "--target", str(h.anchor.pid), "--net", "--mount", "--uts", f"--wd={os.getcwd()}", "--"]

    def spawn(self, which: str | int, argv: Sequence[str], env: dict[str, str] | None = None,
              **popen: Any) -> subprocess.Popen:
        """Start ``argv`` on host ``which`` (its network, mounts and hostname); the
        bed kills it, and everything it started, when it closes."""
        h = self.host(which)
        if h.lost:
            raise BedError(f"host {h.name} is lost")
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._enter(h) + list(argv), env=self.env(h.name, env), **popen)
        h.processes.append(proc)
        return proc

    def run(self, which: str | int, argv: Sequence[str], timeout: float = 60, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``which`` to its end (output captured as text)."""
        proc = self.spawn(which, argv, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise BedError(f"{' '.join(argv)} on {which} ran past {timeout:g} s:\n{out}\n{err}") from None
        done = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and proc.returncode != 0:
            raise BedError(f"{' '.join(argv)} on {which} failed ({proc.returncode}):\n{out}\n{err}")
        return done

    def pids(self, which: str | int) -> list[int]:
        """Every process on host ``which`` (in its network namespace), its anchor included."""
        h = self.host(which)
        return [int(p) for p in _sh(["ip", "netns", "pids", h.netns], check=False).split() if p.isdigit()]

    def shm(self, which: str | int) -> list[str]:
        """The entries in host ``which``'s private /dev/shm."""
        h = self.host(which)
        if h.anchor is None or h.anchor.poll() is not None:
            return []
        return sorted(os.listdir(f"/proc/{h.anchor.pid}/root/dev/shm"))

    # ------------------------------------------------------------------ the network
    def shape(self, which: str | int, rate: str = "1gbit", burst: str = "256kb", latency: str = "50ms") -> None:
        """Limit host ``which``'s link to ``rate`` each way (tc tbf); again to change it."""
        h = self.host(which)
        for ns, dev in ((h.netns, "eth0"), (self.switch, h.port)):
            _sh(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", burst,
                 "latency", latency])

    def unshape(self, which: str | int) -> None:
        h = self.host(which)
        for ns, dev in ((h.netns, "eth0"), (self.switch, h.port)):
            _sh(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)

    def degrade(self, which: str | int, loss: float) -> None:
        """Lose each packet on host ``which``'s link with probability ``loss`` (0 to
        1), each way, as a bad cable or a congested radio link does; 0 restores the
        link. Done with nftables (``nft``, :func:`loss_unavailable`): every host drops
        that share of what reaches it from the lossy host, and the lossy host that
        share of everything that reaches it, so TCP sees real losses and resends."""
        if not 0 <= loss <= 1:
            raise ValueError(f"loss is a probability in [0, 1], not {loss!r}")
        self._set_link(self._loss, which, loss, loss_unavailable, self._apply_loss)

    def dropped(self, which: str | int) -> int:
        """Packets host ``which`` has dropped so far for lossy links (:meth:`degrade`)."""
        h = self.host(which)
        done = subprocess.run(["ip", "netns", "exec", h.netns, "nft", "list", "table", "inet", "rrbed_loss"],
                              capture_output=True, text=True, timeout=30)
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", done.stdout))

    def _apply_loss(self, h: Host) -> None:
        """Write host ``h``'s drop rules for the lossy links of the bed (nft, one table)."""
        rules = []
        for other, p in sorted(self._loss.items()):
            cut = max(1, round(p * 10_000))
            match = "" if other == h.name else f"ip saddr {self.host(other).address} "
            rules.append(f'    iifname "eth0" {match}numgen random mod 10000 < {cut} counter drop')
        script = "table inet rrbed_loss\ndelete table inet rrbed_loss\n"  # (created first: delete never fails)
        if rules:
            script += "table inet rrbed_loss {\n  chain input {\n    type filter hook input priority 0;\n" \
                      + "\n".join(rules) + "\n  }\n}\n"
        done = subprocess.run(["ip", "netns", "exec", h.netns, "nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=30)
        if done.returncode != 0:
            raise BedError(f"nft on {h.name}: {done.stderr.strip()}")

    def delay(self, which: str | int, seconds: float) -> None:
        """Hold every packet on host ``which``'s link back for ``seconds`` (0 to 10)
        each way, as a long cable or a slow path does; 0 restores the link. A packet
        between two slow hosts is held for the sum of their delays (two links in a
        row). Each host holds what reaches it: a slow host holds everything that
        reaches it on ``eth0``, the others what comes from slow hosts, so links
        between hosts that are not slow are untouched (:func:`delay_unavailable`)."""
        if not 0 <= seconds <= 10:
            raise ValueError(f"a delay is 0 to 10 seconds, not {seconds!r}")
        self._set_link(self._delay, which, float(seconds), delay_unavailable, self._apply_delay)

    def _set_link(self, table: dict[str, float], which: str | int, amount: float, why_not: Any,
                  apply: Any) -> None:
        """Record host ``which``'s link figure in ``table`` (0 removes it) and rewrite
        every live host's rules with ``apply``; ``why_not()`` says why it cannot run."""
        why = why_not()
        if why:
            raise BedError(why)
        name = self.host(which).name
        if amount:
            table[name] = amount
        else:
            table.pop(name, None)
        for h in self.hosts:
            if not h.lost:
                apply(h)

    def delayed(self, which: str | int) -> int:
        """Packets host ``which``'s holder has held back and let through so far."""
        try:
            with open(self._count_file(self.host(which))) as f:
                return int(f.read() or 0)
        except (OSError, ValueError):
            return 0

    def _count_file(self, h: Host) -> str:
        return os.path.join(h.directory, "delayed-packets")

    def _apply_delay(self, h: Host) -> None:
        """Give host ``h``'s holder its table, and send it the packets the table covers:
        start the holder when the host first needs one, stop it when it needs none."""
        own = self._delay.get(h.name, 0.0)
        table = {self.host(o).address: own + d for o, d in self._delay.items() if o != h.name}
        queued: tuple[str, ...] = ("*",) if own else tuple(sorted(table))
        if own:
            table["*"] = own
        for source in set(h.queued) - set(queued):  # first, so nothing is queued to a holder that stops
            _sh(["ip", "netns", "exec", h.netns, "iptables", "-D", "INPUT", *self._match(source)], check=False)
        if not queued:
            if h.holder is not None:
                self._stop_holder(h)
            h.queued = ()
            return
        if h.holder is None or h.holder.poll() is not None:
            self._start_holder(h)
        assert h.holder is not None and h.holder.stdin is not None and h.holder.stdout is not None
        h.holder.stdin.write(json.dumps(table) + "\n")
        h.holder.stdin.flush()
        if h.holder.stdout.readline().strip() != "ok":
            raise BedError(f"the packet holder of {h.name} did not take its table")
        for source in set(queued) - set(h.queued):
            _sh(["ip", "netns", "exec", h.netns, "iptables", "-A", "INPUT", *self._match(source)])
        h.queued = queued

    @staticmethod
    def _match(source: str) -> list[str]:
        where = [] if source == "*" else ["-s", source]
        return ["-i", "eth0", *where, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]

    def _start_holder(self, h: Host) -> None:
        h.holder = subprocess.Popen(
            ["ip", "netns", "exec", h.netns, sys.executable, "-m", "refrpc.testing._delay",
             "--count", self._count_file(h)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env(h.name))
        assert h.holder.stdout is not None
        line = h.holder.stdout.readline()
        if line.strip() != "ready":
            err = h.holder.stderr.read() if h.holder.stderr else ""
            h.holder.kill()
            h.holder.wait()
            h.holder = None
            raise BedError(f"the packet holder of {h.name} did not start: {line}{err}")

    def _stop_holder(self, h: Host) -> None:
        """Close the holder's input: it lets what it still holds through and exits."""
        holder, h.holder = h.holder, None
        if holder is None:
            return
        try:
            holder.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.communicate()

    def cut(self, a: str | int, b: str | int, *, both: bool = True) -> None:
        """Packets from host ``a`` to host ``b`` vanish (and from ``b`` to ``a`` unless
        ``both`` is False: a one-way cut)."""
        pairs = [(self.host(a), self.host(b))] + ([(self.host(b), self.host(a))] if both else [])
        for src, dst in pairs:
            if (src.name, dst.name) not in self._cuts:
                _sh(["ip", "-n", src.netns, "route", "add", "blackhole", f"{dst.address}/32"])
                self._cuts.add((src.name, dst.name))

    def heal(self, a: str | int | None = None, b: str | int | None = None) -> None:
        """Undo the cuts between ``a`` and ``b`` (both ways), or every cut."""
        names = None if a is None else {self.host(a).name, self.host(b).name if b is not None else ""}
        for src, dst in sorted(self._cuts):
            if names is None or (src in names and (b is None or dst in names)):
                _sh(["ip", "-n", self.host(src).netns, "route", "del", "blackhole", f"{self.host(dst).address}/32"],
                    check=False)
                self._cuts.discard((src, dst))

    def partition(self, *groups: Sequence[str | int]) -> None:
        """Cut every host of each group off from every host of the other groups."""
        for i, g in enumerate(groups):
            for other in groups[i + 1:]:
                for a in g:
                    for b in other:
                        self.cut(a, b)

    def isolate(self, which: str | int) -> None:
        """Take host ``which`` off the network (its link down); :meth:`rejoin` undoes it."""
        _sh(["ip", "-n", self.switch, "link", "set", self.host(which).port, "down"])

    def rejoin(self, which: str | int) -> None:
        _sh(["ip", "-n", self.switch, "link", "set", self.host(which).port, "up"])

    def lose(self, which: str | int) -> None:
        """Host ``which`` is lost for good: off the network, every process of it killed."""
        h = self.host(which)
        self.isolate(h.name)
        h.lost = True
        _kill_namespace(h.netns)
        for p in h.processes + ([h.anchor] if h.anchor else []):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.retired.extend(h.processes + ([h.anchor] if h.anchor else []) + ([h.holder] if h.holder else []))
        h.holder, h.queued = None, ()

    def revive(self, which: str | int) -> None:
        """A lost host comes back as a new machine at the same address: on the network
        again, with an empty /dev/shm and no process."""
        h = self.host(which)
        if not h.lost:
            return
        self._start_anchor(h)
        h.processes = []
        h.lost = False
        if shutil.which("iptables"):  # the old machine's rules (only the bed adds any)
            _sh(["ip", "netns", "exec", h.netns, "iptables", "-F", "INPUT"], check=False)
        if self._delay:
            self._apply_delay(h)
        self.rejoin(h.name)

    def can_reach(self, a: str | int, b: str | int, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from host ``a`` to ``b``:``port`` opens (for tests of the bed)."""
        code = (f"import socket,sys\ns=socket.socket();s.settimeout({timeout})\n"
                f"try:\n s.connect(({self.address(b)!r},{port}));print('yes')\n"
                "except OSError as e:\n print('no', e)\n")
        return self.run(a, [sys.executable, "-c", code], timeout=timeout + 10).stdout.startswith("yes")

    # ------------------------------------------------------------------ cleanup
    def leftovers(self) -> list[str]:
        """What of this bed still exists (namespaces, processes, its directory): [] once closed."""
        found = [f"namespace {ns}" for ns in _namespaces() if ns == self.switch or ns.startswith(self.name + "-")]
        found += [f"process {p.pid}" for p in self._processes() if p.poll() is None]
        if os.path.exists(self.directory):
            found.append(f"directory {self.directory}")
        return found

    def _processes(self) -> list[subprocess.Popen]:
        return self.retired + [p for h in self.hosts
                               for p in h.processes + [q for q in (h.anchor, h.holder) if q is not None]]

    def close(self) -> None:
        """Kill every process of the bed and remove its namespaces and directory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for h in self.hosts:
            if h.netns in _namespaces():
                _kill_namespace(h.netns)
        for p in self._processes():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        for ns in [h.netns for h in self.hosts] + [self.switch]:
            _sh(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE.discard(self)
