"""The ``refrpc`` command line: start peers on several hosts, look at a running cluster.

    refrpc start --head [--port P] [--key-file F] [--num-workers N] [--node-ip IP] [--resources JSON] [--trace-dir DIR]
                 [--heartbeat-interval-ms MS] [--miss-limit N]
    refrpc start --address tcp://HEAD:P --key-file F [--num-workers N] [--node-ip IP] [--resources JSON] [--rejoin-timeout S] [--trace-dir DIR]
                 [--heartbeat-interval-ms MS] [--miss-limit N]
    refrpc status [--address tcp://HEAD:P --key-file F]
    refrpc memory [--address tcp://HEAD:P --key-file F]
    refrpc rotate-key --address tcp://HEAD:P --key-file F [--head-key-file F.head] (--new-key-file NEW [--grace S] | --end-grace)
    refrpc stop [--force] [--timeout S]

Every cluster started this way is authenticated (CURVE, SEC-002): the head
writes a new cluster key file (mode 0600) unless given one, and prints its path;
everyone who joins needs a copy (``--key-file`` or ``REFRPC_KEY_FILE``). The key
file names the head's public key; the head's secret key stays beside it on the
head's host (``KEY.head``, SEC-041). ``--insecure`` turns authentication off,
with a warning. ``rotate-key``, for the operator (who holds ``KEY.head``), writes
a new key file whose join credential replaces the old one in the running cluster
(the old one still joins for ``--grace`` seconds, SEC-025, CLU-052).

Each ``refrpc start`` records itself in a pid file (see :func:`run_dir`), with
the head's key file: ``refrpc stop`` stops them all, and ``status``/``memory``
find the local head and its key.

"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from . import api
from .core import events as ev
from .transport import KEY_FILE_ENV, ClusterKey, HeadKey, KeyFileError, OwnKey
from .transport._curve import default_key_path


def _wait_for_signal(finished: threading.Event | None = None) -> None:
    """Until SIGTERM or SIGINT (``refrpc stop``, Ctrl-C), or ``finished`` is set."""
    from .runtime._cluster import record_stop_signals

    signalled = record_stop_signals()
    while not signalled and not (finished is not None and finished.is_set()):
        time.sleep(0.1)


# ---------------------------------------------------------------- what `refrpc start` left running
def run_dir() -> Path:
    """Where each ``refrpc start`` process of this user on this host records itself
    (``$REFRPC_RUN_DIR``, else ``refrpc-UID`` in the temp directory)."""
    import tempfile

    return Path(os.environ.get("REFRPC_RUN_DIR") or Path(tempfile.gettempdir()) / f"refrpc-{os.getuid()}")


def _start_time(pid: int) -> int | None:
    """The kernel's start time of process ``pid`` (tells a recycled pid apart), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def _record(role: str, address: str, key_file: str = "") -> Path:
    """Write this process's pid file for ``refrpc stop`` and ``refrpc status`` (with
    the head's key file, so that ``status`` on this host needs no ``--key-file``)."""
    directory = run_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"start-{os.getpid()}.json"
    info = {"pid": os.getpid(), "start_time": _start_time(os.getpid()), "role": role, "address": address,
            "key_file": key_file}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)
    return path


def _recorded() -> list[tuple[Path, dict]]:
    """The ``refrpc start`` processes still running; stale pid files are removed."""
    found = []
    for path in sorted(run_dir().glob("start-*.json")):
        try:
            info = json.loads(path.read_text())
            alive = _start_time(int(info["pid"])) == info["start_time"]
        except (OSError, ValueError, KeyError, TypeError):
            alive = False
        if alive:
            found.append((path, info))
        else:
            path.unlink(missing_ok=True)
    return found


def _local_head() -> tuple[str, str]:
    """The address and key file of the head ``refrpc start --head`` runs on this host."""
    found = [(info["address"], info.get("key_file", "")) for _, info in _recorded() if info.get("role") == "head"]
    heads = [address for address, _ in found]
    if len(heads) == 1:
        return found[0]
    if not heads:
        raise api.RefRPCError(f"no head runs on this host (none recorded in {run_dir()}): give --address")
    raise api.RefRPCError("several heads run on this host, give --address: " + ", ".join(heads))


def _stop(args: argparse.Namespace) -> int:
    """Stop every ``refrpc start`` process of this user on this host, and so its workers."""
    found = _recorded()
    if not found:
        print("no refrpc processes to stop")
        _sweep()
        return 0
    for _, info in found:
        try:
            os.kill(info["pid"], signal.SIGKILL if args.force else signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + args.timeout
    left = list(found)
    while left and time.monotonic() < end:
        left = [(p, i) for p, i in left if _start_time(i["pid"]) == i["start_time"]]
        if left:
            time.sleep(0.05)
    for path, info in found:
        what = "head" if info["role"] == "head" else "workers"
        if (path, info) in left:
            os.kill(info["pid"], signal.SIGKILL)  # its workers follow it (their lifeline)
            print(f"killed {what} (pid {info['pid']}, {info['address']}): it did not stop within {args.timeout:g} s")
        else:
            print(f"stopped {what} (pid {info['pid']}, {info['address']})")
        path.unlink(missing_ok=True)
    _sweep()
    return 0


def _sweep() -> None:
    """Remove what killed clusters left in shared memory and spill directories (OBJ-035)."""
    from .store import sweep_orphans

    for namespace, count in sweep_orphans().items():
        print(f"refrpc: removed {count} files of namespace {namespace}: every process of it is gone",
              file=sys.stderr, flush=True)


def _resources(text: str) -> dict[str, float]:
    """``--resources``: a JSON object of name -> amount (argparse reports a bad one)."""
    try:
        value = json.loads(text)
        return dict(api._demand(0, value)[1])
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"--resources takes a JSON object such as '{{\"gpu\": 1}}': {exc}") from None


def _size(text: str) -> int:
    """``--object-store-memory``: bytes, or a size such as 2GB (argparse reports a bad one)."""
    from .store import parse_bytes

    try:
        return parse_bytes(text, "--object-store-memory")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    """``--object-store-high-water``: a fraction in (0, 1] (argparse reports a bad one)."""
    from .store import parse_high_water

    try:
        return parse_high_water(text, "--object-store-high-water")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _memory_settings(args: argparse.Namespace, n: int, namespace: str) -> dict:
    """The store limit and spill directory of this host's processes (refused here, at start)."""
    from .store import default_capacity, default_spill_directory, prepare_spill_directory

    try:
        spill = prepare_spill_directory(args.spill_dir or default_spill_directory(namespace))
    except ValueError as exc:
        raise api.RefRPCError(f"refrpc start: {exc}") from None
    return {"object_store_memory": args.object_store_memory or default_capacity(),  # the host's, shared (OBJ-065)
            "spill_dir": spill, "own_spill_dir": not args.spill_dir, "store_high_water": args.object_store_high_water}


def _start(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .runtime import LocalCluster, _membership
    from .runtime._executor import working_node
    from .runtime._node import limit_arenas

    limit_arenas()  # a long-lived head: before any thread of it starts
    from .runtime._membership import HEAD, address_towards

    if not args.node_ip:
        args.node_ip = "127.0.0.1" if args.head else address_towards(args.address)
    try:  # LIV-013: how long silence lasts before a peer is declared dead (every process of this host)
        settings = api._check_settings(heartbeat_interval_ms=args.heartbeat_interval_ms, miss_limit=args.miss_limit)
    except ValueError as exc:
        raise api.RefRPCError(str(exc)) from None
    n = args.num_workers or os.cpu_count() or 1
    prefix = f"{socket.gethostname()}-{os.getpid()}-w"
    key, key_path, head_key = _key(args)
    if key is not None and not args.head:
        api._check_head_key(args.address, key, key_path, 2.0)  # SEC-041: the wrong head key fails here, at once
    _sweep()
    namespace = LocalCluster.new_namespace()
    memory = _memory_settings(args, n, namespace)
    if args.head:
        from .runtime._node import default_config

        node, executor = working_node(HEAD, f"tcp://{args.node_ip}:{args.port}", f"head{os.getpid()}",
                                      default_config(**settings),
                                      _membership.noticed, held=True, trace_dir=args.trace_dir, cluster_key=key,
                                      own_key=None if key is None else OwnKey(key, HEAD, (head_key.public, head_key.secret)),
                                      admits_joiners=True,
                                      insecure=args.insecure, object_store_memory=memory["object_store_memory"],
                                      spill_dir=memory["spill_dir"],
                                      **({} if args.object_store_high_water is None else
                                         {"store_high_water": args.object_store_high_water}))
        _membership.PUSHER.start(node)  # pushes each change of the registry (CLU-010)
        api._ctx.node, api._ctx.executor = node, executor  # membership tasks run here
        api._ctx.head = HEAD  # and actor names are kept here
        executor.open()
        cluster = LocalCluster.start(n, node.address, node.incarnation, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                     trace_dir=args.trace_dir, key_file=key_path, insecure=args.insecure, settings=settings,
                                     resources=args.resources, namespace=namespace, **memory)
        cluster.watch(node)  # restarts a worker that dies (and says so on stderr)
        record = _record("head", node.address, key_path)
        print(f"head listening at {node.address}", flush=True)
        if key is None:
            print("  authentication is OFF: anyone who can reach this port can run code here", flush=True)
            print(f"  join another host:   refrpc start --address {node.address} --insecure", flush=True)
            print(f"  use it from Python:  refrpc.init(address={node.address!r}, insecure=True)", flush=True)
        else:
            print(f"  cluster key file:    {key_path}  (copy it, mode 0600, to every host that joins)", flush=True)
            print(f"  head public key:     {key.head_public.decode()}  (named in the key file; joiners check it, "
                  f"its secret key stays here in {HeadKey.path_for(key_path)})", flush=True)
            print(f"  join another host:   refrpc start --address {node.address} --key-file {key_path}", flush=True)
            print(f"  use it from Python:  refrpc.init(address={node.address!r}, key_file={key_path!r})", flush=True)
            print(f"  or set {KEY_FILE_ENV}={key_path} and leave key_file out", flush=True)
        try:
            _wait_for_signal()
        finally:
            record.unlink(missing_ok=True)
            executor.stop()
            node.stop()
            cluster.stop()
        return 0
    cluster = LocalCluster.start(n, args.address, 0, head_name=HEAD, node_ip=args.node_ip, name_prefix=prefix,
                                 trace_dir=args.trace_dir, key_file=key_path, insecure=args.insecure, settings=settings,
                                 resources=args.resources, namespace=namespace, **memory)
    cluster.rejoin_s = args.rejoin_timeout
    cluster.watch(None)  # restarts a worker that dies; they all leave when the head does (CLU-016)
    record = _record("workers", args.address)
    print(f"started {n} workers joining {args.address}", flush=True)
    try:
        _wait_for_signal(cluster.finished)
        if cluster.finished.is_set():
            print(f"refrpc: the workers left: the head at {args.address} is gone", file=sys.stderr, flush=True)
    finally:
        record.unlink(missing_ok=True)
        cluster.stop()
    return 0


def _key(args: argparse.Namespace) -> tuple[ClusterKey | None, str, HeadKey | None]:
    """The cluster key ``refrpc start`` uses, its file (SEC-015), and on the head its
    own key pair (SEC-041).

    The head uses ``--key-file`` (made there if it does not exist) or
    ``REFRPC_KEY_FILE``, else makes a new key under ``~/.refrpc``; its own key pair
    is in the head key file beside it (``KEY.head``), made with the key file, and
    the key file names its public key. A joiner must be given a key file that
    names the head's key. With ``--insecure``: none, and a warning.
    """
    path = args.key_file or os.environ.get(KEY_FILE_ENV, "")
    if args.insecure:
        if path:
            raise api.RefRPCError("--insecure and a cluster key exclude each other")
        print("refrpc: WARNING: authentication is off (--insecure): anyone who can reach this "
              "cluster's ports can join it and run any code in it", file=sys.stderr, flush=True)
        return None, "", None
    try:
        if args.head and (not path or not os.path.exists(path)):
            path = os.path.abspath(path or default_key_path(args.port))
            head = HeadKey.generate()
            head.save(HeadKey.path_for(path))  # first: a key file never names a head key nobody holds
            key = ClusterKey.generate().with_head(head.public)
            key.save(path)
            return key, path, head
        if not path:
            raise api.RefRPCError(f"joining a cluster needs its key file: --key-file PATH or {KEY_FILE_ENV}=PATH "
                                  "(the path `refrpc start --head` printed)")
        key, path = ClusterKey.load(path), os.path.abspath(path)
        if not args.head:
            if key.head_public is None:
                raise api.RefRPCError(f"{path} names no head key: joining needs the key file "
                                      "`refrpc start --head` wrote (it names the head's public key)")
            return key, path, None
        return _head_key(key, path)
    except KeyFileError as exc:
        raise api.RefRPCError(str(exc)) from None


def _head_key(key: ClusterKey, path: str) -> tuple[ClusterKey, str, HeadKey]:
    """On the head: its own key pair for the key file at ``path``. A key file that names
    no head key (made by hand, or by an earlier version) gets one: the head key file
    is made beside it and the key file rewritten to name it (SEC-041)."""
    head_path = HeadKey.path_for(path)
    if key.head_public is None:
        head = HeadKey.generate()
        try:
            head.save(head_path)
        except FileExistsError:
            raise api.RefRPCError(f"{head_path} exists, but {path} names no head key: remove one of them") from None
        key = key.with_head(head.public)
        key.save(path, replace=True)
        print(f"refrpc: {path} now names this head's public key; copy it again to every host that joins",
              file=sys.stderr, flush=True)
        return key, path, head
    if not os.path.exists(head_path):
        raise api.RefRPCError(f"{path} names the head key {key.head_public.decode()}, whose secret key is not on "
                              f"this host ({head_path}): start the head where that key file was made, "
                              "or give --key-file a path that does not exist yet for a new cluster")
    head = HeadKey.load(head_path)
    if head.public != key.head_public:
        raise api.RefRPCError(f"{head_path} holds the head key {head.public.decode()}, but {path} names "
                              f"{key.head_public.decode()}: they are not of one cluster")
    return key, path, head


def _join_cluster(args: argparse.Namespace) -> None:
    """Join the cluster at ``--address`` as a driver, with its key (SEC-015)."""
    api.init(address=args.address, key_file=args.key_file, insecure=args.insecure)


def _members(args: argparse.Namespace) -> list[tuple[str, str, int, str, dict[str, float]]]:
    from .runtime._membership import HEAD

    _join_cluster(args)
    return api._call_on(HEAD, "refrpc.runtime._membership:members")


def _counts(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "?"
    return ", ".join(f"{state} {n}" for state, n in counts.items()) or "-"


def _unfinished(counts: dict[str, int] | None) -> dict[str, int] | None:
    """What a process executes, less the calls it has answered (``replied``: kept only
    until the submitter acknowledges the reply, RPC-002; status calls end so)."""
    return None if counts is None else {state: n for state, n in counts.items() if state != "replied"}


def _taken_of(row: dict, names: list[str]) -> str:
    """A worker's resources as ``taken/offered`` each (``?`` taken: it did not say)."""
    taken = row.get("taken")
    return " ".join(f"{name} {'?' if taken is None else format(taken.get(name, 0.0), 'g')}/{row['resources'][name]:g}"
                    for name in names if name in row["resources"])


def _status(args: argparse.Namespace) -> int:
    """Every driver, worker and actor of the cluster, with tasks, CPU slots and named
    resources, taken and offered (INT-006)."""
    try:
        _join_cluster(args)
        me = api._node().peer_id
        rows = [r for r in api.nodes() if r["id"] != me]  # not this command's own driver
        names = sorted({n for r in rows if r["role"] == "worker" for n in r["resources"]}, key=lambda n: (n != "CPU", n))
        print(f"{'peer':<34} {'role':<7} {'host':<16} {'pid':>7} {'taken/offered':<20} {'running':<16} "
              f"{'submitted tasks':<28} actors")
        for r in rows:
            held = _taken_of(r, names) if r["role"] == "worker" else "-"
            live = [a for a in r["actors"] or [] if a["state"] != "dead"]
            actors = "?" if r["actors"] is None else str(len(live))
            state = "" if r["alive"] else " (dead)"
            print(f"{r['id'] + state:<34} {r['role']:<7} {r['host'] or '-':<16} {r['pid'] or '-':>7} {held:<20} "
                  f"{_counts(_unfinished(r['executing'])):<16} {_counts(r['tasks']):<28} {actors}")
        for r in rows:
            for a in r["actors"] or []:
                print(f"  actor {a['id']} on {r['id']} (owner {a['owner']}): {a['state']}")
        workers = [r for r in rows if r["role"] == "worker" and r["alive"]]
        drivers = [r for r in rows if r["role"] == "driver" and r["alive"]]
        total = sum(r["resources"].get("CPU", 0) for r in workers)
        running = sum((r["executing"] or {}).get("running", 0) for r in workers)
        queued = sum((r["tasks"] or {}).get("queued", 0) for r in rows)
        actors = sum(1 for r in rows if r["alive"] for a in r["actors"] or [] if a["state"] != "dead")
        print(f"{len(workers)} workers, {total:g} CPU slots, {running} tasks running, {queued} queued; "
              f"{len(drivers)} drivers; {actors} actors")
        total_row = {"resources": {n: sum(r["resources"].get(n, 0.0) for r in workers) for n in names},
                     "taken": None if any(r["taken"] is None for r in workers) else
                     {n: sum(r["taken"].get(n, 0.0) for r in workers) for n in names}}
        print(f"resources taken/offered: {_taken_of(total_row, names) or '-'}")
        from .runtime import _status as status_view

        print()  # each process's object store: limit, used, pinned, secondary, spilled (OBJ-030)
        print("\n".join(status_view.store_table(status_view.stores(api._node(), [r["id"] for r in rows if r["alive"]], 5.0))))
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


def _head_key_path(address: str, key_path: str) -> str:
    """Where the head's own key is: beside ``key_path``, else beside the key file of
    the head at ``address`` if ``refrpc start --head`` runs it on this host."""
    from .runtime._membership import same_address

    candidates = [HeadKey.path_for(key_path)] + [
        HeadKey.path_for(info["key_file"]) for _, info in _recorded()
        if info.get("role") == "head" and info.get("key_file") and same_address(info.get("address", ""), address)]
    return next((c for c in candidates if os.path.exists(c)), candidates[0])


def _rotate_key(args: argparse.Namespace) -> int:
    """Replace the running cluster's join credential (SEC-025, CLU-052): write a new key
    file with a new one, and make the head accept only it once ``--grace`` has passed;
    or, with ``--end-grace``, end every grace period now."""
    from .runtime._membership import HEAD

    if not args.end_grace and not args.new_key_file:
        raise api.RefRPCError("rotate-key needs --new-key-file NEW (or --end-grace)")
    if args.grace < 0:
        raise api.RefRPCError("--grace must be 0 or more seconds")
    path = args.key_file or os.environ.get(KEY_FILE_ENV, "")
    if not path:
        raise api.RefRPCError(f"rotate-key needs the cluster's current key file: --key-file PATH or {KEY_FILE_ENV}=PATH")
    head_path = args.head_key_file or _head_key_path(args.address, path)
    try:
        current = ClusterKey.load(path)
        if not os.path.exists(head_path):
            raise api.RefRPCError(f"rotating the join credential is for the operator, who holds the head's own key: "
                                  f"{head_path} is not here (run rotate-key on the head's host, or give "
                                  "--head-key-file)")
        head = HeadKey.load(head_path)
    except KeyFileError as exc:
        raise api.RefRPCError(str(exc)) from None
    if head.public != current.head_public:
        raise api.RefRPCError(f"{head_path} is not the key of the head that {path} names")
    new = None
    if not args.end_grace:
        new = current.with_new_join()
        try:
            new.save(args.new_key_file)
        except OSError as exc:  # FileExistsError too: a key file is never overwritten
            raise api.RefRPCError(f"cannot write {args.new_key_file}: {exc}") from None
    try:
        # As the operator: with the head's own key pair, which the head recognises (CLU-052).
        api._join(args.address, None, 5.0, None, current, key_path=path, own_pair=(head.public, head.secret),
                  register=False)
        try:
            api._call_on(HEAD, "refrpc.runtime._membership:rotate", None if new is None else new.join_hex(), args.grace)
        except Exception as exc:  # the head refused (TASK_FAILED) or did not answer
            raise api.RefRPCError(f"the head did not rotate the join credential: {exc}") from None
    except BaseException:
        if new is not None:  # the head never took it: leave no key file that joins nothing
            Path(args.new_key_file).unlink(missing_ok=True)
        raise
    finally:
        api.shutdown()
    if new is None:
        print("the head now accepts only its current join credential", flush=True)
    else:
        print(f"new key file: {os.path.abspath(args.new_key_file)} (mode 0600); the old one still joins for "
              f"{args.grace:g} s.\n  Copy the new file over the old one on every host (processes read it when they "
              f"start); members already running need nothing.", flush=True)
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
    start.add_argument("--node-ip", default=None,
                       help="this host's address as other hosts reach it (default: a head listens on 127.0.0.1; "
                            "a joining host uses its address on the route to the head)")
    start.add_argument("--resources", type=_resources, default={},
                       help='what this host offers besides CPUs, as JSON, e.g. \'{"gpu": 1}\' (shared among its workers)')
    start.add_argument("--heartbeat-interval-ms", type=int, default=None,
                       help="heartbeat interval of this host's processes (default 250; LIV-001)")
    start.add_argument("--miss-limit", type=int, default=None,
                       help="silent intervals before a peer is declared dead (default 6: 1.5 s; LIV-003)")
    start.add_argument("--rejoin-timeout", type=float, default=60.0,
                       help="with --address: how long workers that lost the head (a crash, a partition) keep "
                            "trying to join it again before they give up, in seconds (default 60)")
    start.add_argument("--object-store-memory", type=_size, default=None,
                       help="the limit of this host's object stores together, bytes or e.g. 2GB "
                            "(default: 30%% of RAM)")
    start.add_argument("--object-store-high-water", type=_fraction, default=None,
                       help="the fraction of the limit past which the stores spill in the background "
                            "(default 0.8; 1: only when a value does not fit)")
    start.add_argument("--spill-dir", default=None,
                       help="where stores spill values past their limit (default: a directory under the temp dir)")
    start.add_argument("--trace-dir", default=None,
                       help="record every process's trace in this directory (default: $REFRPC_TRACE_DIR, else none)")
    start.add_argument("--key-file", default=None,
                       help="the cluster key file (default: $REFRPC_KEY_FILE; the head makes a new one if missing)")
    start.add_argument("--insecure", action="store_true",
                       help="turn authentication off: anyone who can reach the ports can run code (not recommended)")
    for name, helptext in (("status", "drivers, workers, actors, tasks, CPU slots and named resources"),
                           ("memory", "every live object and why it is alive")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--address", default=None, help="the cluster's head (default: the head started on this host)")
        p.add_argument("--key-file", default=None,
                       help="the cluster key file (default: $REFRPC_KEY_FILE, or the local head's)")
        p.add_argument("--insecure", action="store_true", help="the cluster runs without authentication")
    rot = sub.add_parser("rotate-key", help="replace the running cluster's join credential (a new key file)")
    rot.add_argument("--address", required=True, help="the cluster's head")
    rot.add_argument("--key-file", default=None, help="the current key file (default: $REFRPC_KEY_FILE)")
    rot.add_argument("--head-key-file", default=None,
                     help="the head's own key, which only the operator holds (default: the key file's path + .head, "
                          "else the one beside the key file of the head started on this host)")
    rot.add_argument("--new-key-file", default=None, help="where to write the new key file (must not exist)")
    rot.add_argument("--grace", type=float, default=600.0,
                     help="seconds the old key file still lets processes join (default 600)")
    rot.add_argument("--end-grace", action="store_true",
                     help="end the grace period now: only the current key file joins")
    stop = sub.add_parser("stop", help="stop the heads and workers `refrpc start` started on this host")
    stop.add_argument("--force", action="store_true", help="kill them at once (SIGKILL) instead of asking (SIGTERM)")
    stop.add_argument("--timeout", type=float, default=15.0, help="seconds to wait before killing one that has not stopped")
    args = ap.parse_args(argv)
    if getattr(args, "address", None) is None and args.command in ("status", "memory"):
        try:
            args.address, key_file = _local_head()
            if args.key_file is None and not args.insecure and key_file and not os.environ.get(KEY_FILE_ENV):
                args.key_file = key_file
        except api.RefRPCError as exc:
            print(f"refrpc: {exc}", file=sys.stderr)
            return 1
    elif args.command in ("status", "memory") and args.key_file is None and not args.insecure \
            and not os.environ.get(KEY_FILE_ENV):
        # A head started on this host: its key file is recorded with it.
        known = {info["address"]: info.get("key_file", "") for _, info in _recorded() if info.get("role") == "head"}
        args.key_file = known.get(args.address) or None
    handlers = {"start": _start, "status": _status, "memory": _memory, "stop": _stop, "rotate-key": _rotate_key}
    try:
        return handlers[args.command](args)
    except api.RefRPCError as exc:
        print(f"refrpc: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
