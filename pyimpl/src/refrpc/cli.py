"""The ``refrpc`` command line: start peers on several hosts, look at a running cluster.

    refrpc start --head [--port P] [--key-file F] [--num-workers N] [--node-ip IP] [--trace-dir DIR]
    refrpc start --address tcp://HEAD:P --key-file F [--num-workers N] [--node-ip IP] [--trace-dir DIR]
    refrpc status --address tcp://HEAD:P --key-file F
    refrpc memory --address tcp://HEAD:P --key-file F

Every cluster started this way is authenticated (CURVE, SEC-002): the head
writes a new cluster key file (mode 0600) unless given one, and prints its path;
everyone who joins needs a copy (``--key-file`` or ``REFRPC_KEY_FILE``).
``--insecure`` turns authentication off, with a warning.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading

from . import api
from .core import events as ev
from .transport import KEY_FILE_ENV, ClusterKey, KeyFileError
from .transport._curve import default_key_path


def _wait_for_signal() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set():
        stop.wait(0.5)


def _start(args: argparse.Namespace) -> int:
    from .runtime import LocalCluster
    from .runtime._executor import working_node
    from .runtime._membership import HEAD

    n = args.num_workers or os.cpu_count() or 1
    prefix = f"{socket.gethostname()}-{os.getpid()}-w"
    key, key_path = _key(args)
    if args.head:
        node, executor = working_node(HEAD, f"tcp://{args.node_ip}:{args.port}", f"head{os.getpid()}", held=True,
                                      trace_dir=args.trace_dir, cluster_key=key)
        api._ctx.node, api._ctx.executor = node, executor  # membership tasks run here
        executor.open()
        cluster = LocalCluster.start(n, node.address, node.incarnation, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                     trace_dir=args.trace_dir, key_file=key_path, insecure=args.insecure)
        print(f"head listening at {node.address}", flush=True)
        if key is None:
            print("  authentication is OFF: anyone who can reach this port can run code here", flush=True)
            print(f"  join another host:   refrpc start --address {node.address} --insecure", flush=True)
            print(f"  use it from Python:  refrpc.init(address={node.address!r}, insecure=True)", flush=True)
        else:
            print(f"  cluster key file:    {key_path}  (copy it, mode 0600, to every host that joins)", flush=True)
            print(f"  join another host:   refrpc start --address {node.address} --key-file {key_path}", flush=True)
            print(f"  use it from Python:  refrpc.init(address={node.address!r}, key_file={key_path!r})", flush=True)
            print(f"  or set {KEY_FILE_ENV}={key_path} and leave key_file out", flush=True)
        try:
            _wait_for_signal()
        finally:
            executor.stop()
            node.stop()
            cluster.stop()
        return 0
    cluster = LocalCluster.start(n, args.address, 0, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                 trace_dir=args.trace_dir, key_file=key_path, insecure=args.insecure)
    print(f"started {n} workers joining {args.address}", flush=True)
    try:
        _wait_for_signal()
    finally:
        for p in cluster.processes.values():
            p.terminate()
        cluster.stop()
    return 0


def _key(args: argparse.Namespace) -> tuple[ClusterKey | None, str]:
    """The cluster key ``refrpc start`` uses, and its file (SEC-015).

    The head uses ``--key-file`` (made there if it does not exist) or
    ``REFRPC_KEY_FILE``, else makes a new key under ``~/.refrpc``; a joiner must
    be given one. With ``--insecure``: none, and a warning.
    """
    path = args.key_file or os.environ.get(KEY_FILE_ENV, "")
    if args.insecure:
        if path:
            raise api.RefRPCError("--insecure and a cluster key exclude each other")
        print("refrpc: WARNING: authentication is off (--insecure): anyone who can reach this "
              "cluster's ports can join it and run any code in it", file=sys.stderr, flush=True)
        return None, ""
    try:
        if args.head and (not path or not os.path.exists(path)):
            key = ClusterKey.generate()
            path = path or default_key_path(args.port)
            key.save(path)
            return key, os.path.abspath(path)
        if not path:
            raise api.RefRPCError(f"joining a cluster needs its key file: --key-file PATH or {KEY_FILE_ENV}=PATH "
                                  "(the path `refrpc start --head` printed)")
        return ClusterKey.load(path), os.path.abspath(path)
    except KeyFileError as exc:
        raise api.RefRPCError(str(exc)) from None


def _members(args: argparse.Namespace) -> list[tuple[str, str, int, str]]:
    from .runtime._membership import HEAD

    api.init(address=args.address, key_file=args.key_file, insecure=args.insecure)
    return api._call_on(HEAD, "refrpc.runtime._membership:members")


def _status(args: argparse.Namespace) -> int:
    try:
        members = _members(args)
        print(f"{'peer':<34} {'host':<16} {'tasks':>5} {'owned':>6} {'store':>12} {'sent':>12} {'received':>12}")
        for peer, _address, _slots, _host in members:
            try:
                s = api._call_on(peer, "refrpc.runtime._membership:node_stats", timeout=10)
            except api.RefRPCError as exc:
                print(f"{peer:<34} unreachable: {exc}")
                continue
            print(f"{peer:<34} {s['host']:<16} {s['running_tasks']:>5} {s['owned_objects']:>6} "
                  f"{s['store_bytes']:>12,} {s['bytes_sent']:>12,} {s['bytes_received']:>12,}")
        print(f"{len(members)} workers")
    finally:
        api.shutdown()
    return 0


def _memory(args: argparse.Namespace) -> int:
    """Every live object in the cluster, with why it is alive (INT-001)."""
    from .runtime._membership import HEAD

    try:
        _members(args)
        everyone = api._call_on(HEAD, "refrpc.runtime._membership:peers")
        node = api._node()
        targets = [(m[0], m[1]) for m in everyone if m[0] != node.peer_id]
        for peer, address in targets:
            node.handle_soon(lambda sid, p=peer, a=address: ev.Connect(sid, p, a)).result()
        print(api.memory([HEAD] + [t[0] for t in targets]))
    finally:
        api.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="refrpc", description="RefRPC: pass-by-reference RPC")
    sub = ap.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a head, or workers that join one")
    group = start.add_mutually_exclusive_group(required=True)
    group.add_argument("--head", action="store_true", help="start the head of a new cluster")
    group.add_argument("--address", help="the head to join, e.g. tcp://10.0.0.1:7001")
    start.add_argument("--port", type=int, default=0, help="the head's port (0: any free port)")
    start.add_argument("--num-workers", type=int, default=0, help="worker processes (default: one per core)")
    start.add_argument("--node-ip", default="127.0.0.1", help="this host's address as other hosts reach it")
    start.add_argument("--trace-dir", default=None,
                       help="record every process's trace in this directory (default: $REFRPC_TRACE_DIR, else none)")
    start.add_argument("--key-file", default=None,
                       help="the cluster key file (default: $REFRPC_KEY_FILE; the head makes a new one if missing)")
    start.add_argument("--insecure", action="store_true",
                       help="turn authentication off: anyone who can reach the ports can run code (not recommended)")
    for name, helptext in (("status", "peers, load, memory and traffic"), ("memory", "every live object and why it is alive")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--address", required=True, help="the cluster's head")
        p.add_argument("--key-file", default=None, help="the cluster key file (default: $REFRPC_KEY_FILE)")
        p.add_argument("--insecure", action="store_true", help="the cluster runs without authentication")
    args = ap.parse_args(argv)
    handlers = {"start": _start, "status": _status, "memory": _memory}
    try:
        return handlers[args.command](args)
    except api.RefRPCError as exc:
        print(f"refrpc: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
