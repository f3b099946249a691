"""The ``refrpc`` command line: start peers on several hosts, look at a running cluster.

    refrpc start --head [--port P] [--num-workers N] [--node-ip IP] [--trace-dir DIR]
    refrpc start --address tcp://HEAD:P [--num-workers N] [--node-ip IP] [--trace-dir DIR]
    refrpc status --address tcp://HEAD:P
    refrpc memory --address tcp://HEAD:P
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
    if args.head:
        node, executor = working_node(HEAD, f"tcp://{args.node_ip}:{args.port}", f"head{os.getpid()}", held=True,
                                      trace_dir=args.trace_dir)
        api._ctx.node, api._ctx.executor = node, executor  # membership tasks run here
        api._ctx.head = HEAD  # and actor names are kept here
        executor.open()
        cluster = LocalCluster.start(n, node.address, node.incarnation, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                     trace_dir=args.trace_dir)
        print(f"head listening at {node.address}", flush=True)
        print(f"  join another host:   refrpc start --address {node.address}", flush=True)
        print(f"  use it from Python:  refrpc.init(address={node.address!r})", flush=True)
        try:
            _wait_for_signal()
        finally:
            executor.stop()
            node.stop()
            cluster.stop()
        return 0
    cluster = LocalCluster.start(n, args.address, 0, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                 trace_dir=args.trace_dir)
    print(f"started {n} workers joining {args.address}", flush=True)
    try:
        _wait_for_signal()
    finally:
        for p in cluster.processes.values():
            p.terminate()
        cluster.stop()
    return 0


def _members(address: str) -> list[tuple[str, str, int, str]]:
    from .runtime._membership import HEAD

    api.init(address=address)
    return api._call_on(HEAD, "refrpc.runtime._membership:members")


def _status(args: argparse.Namespace) -> int:
    try:
        members = _members(args.address)
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
        _members(args.address)
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
    for name, helptext in (("status", "peers, load, memory and traffic"), ("memory", "every live object and why it is alive")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--address", required=True, help="the cluster's head")
    args = ap.parse_args(argv)
    handlers = {"start": _start, "status": _status, "memory": _memory}
    try:
        return handlers[args.command](args)
    except api.RefRPCError as exc:
        print(f"refrpc: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
