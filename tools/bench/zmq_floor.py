#!/usr/bin/env python3
"""The ZeroMQ floor: what raw pyzmq does on this machine, with no RefRPC in the way.

Later benchmarks compare the runtime against these numbers. Two processes talk
over ``tcp://127.0.0.1`` and over ``ipc://`` (a temporary directory):

* ``echo``: round-trip latency, DEALER -> ROUTER -> the same DEALER (the
  classic request/reply floor), 64-byte messages.
* ``pair``: round-trip latency in RefRPC's own socket pattern
  (spec/transport-zeromq.md, ZMQ-003): the client's DEALER to the server's
  ROUTER, and the answer through the server's DEALER to the client's ROUTER.
* ``stream``: one-way throughput of 1 MiB and 64 MiB messages, sent zero-copy
  (``copy=False``) from one reused buffer, received zero-copy, timed from the
  first send until the receiver confirms it has read them all.

Usage::

    python tools/bench/zmq_floor.py [--json out.json] [--rounds N] [--transports tcp,ipc]

Runs in well under 30 s with the defaults.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import zmq

MiB = 1024 * 1024


def server(bind: str, ready: Any) -> None:
    """The other process: echoes, answers through its DEALER, counts streams."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, 10_000)
    router.bind(bind)
    ready.put(router.getsockopt(zmq.LAST_ENDPOINT).decode())
    dealer = None
    count = nbytes = 0
    while True:
        parts = router.recv_multipart(copy=False)
        command = parts[1].bytes
        if command == b"data":
            count += 1
            nbytes += len(parts[2])
        elif command == b"echo":
            router.send_multipart(parts)
        elif command == b"pair":
            assert dealer is not None
            dealer.send_multipart(parts[1:])
        elif command == b"sync":  # all data before it was read: report and reset
            router.send_multipart([parts[0], f"{count} {nbytes}".encode()])
            count = nbytes = 0
        elif command == b"connect":  # where to answer "pair" messages
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(parts[2].bytes.decode())
            router.send_multipart([parts[0], b"connected"])
        elif command == b"stop":
            break
    router.close(0)
    if dealer is not None:
        dealer.close(0)
    ctx.term()


def latency(send: Any, recv: Any, message: list[bytes], rounds: int) -> dict[str, float]:
    for _ in range(max(rounds // 10, 50)):  # warm up: connections, caches, allocator
        send(message)
        recv()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        t0 = clock()
        send(message)
        recv()
        samples.append(clock() - t0)
    samples.sort()
    return {
        "n": rounds,
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1e3,
        "mean_us": statistics.fmean(samples) / 1e3,
        "msgs_per_s": 1e9 / statistics.fmean(samples),
    }


def stream(dealer: zmq.Socket, size: int, count: int) -> dict[str, float]:
    payload = bytearray(os.urandom(64)) * (size // 64)  # reused: never changed while sent
    dealer.send_multipart([b"data", payload], copy=False)  # warm up the connection
    dealer.send_multipart([b"sync"])
    dealer.recv()
    started = time.perf_counter()
    for _ in range(count):
        dealer.send_multipart([b"data", payload], copy=False)
    dealer.send_multipart([b"sync"])
    got, nbytes = map(int, dealer.recv().split())
    elapsed = time.perf_counter() - started
    assert got == count and nbytes == count * size, (got, nbytes)
    return {
        "n": count,
        "size_bytes": size,
        "seconds": elapsed,
        "mib_per_s": count * size / MiB / elapsed,
        "msgs_per_s": count / elapsed,
    }


def run_transport(kind: str, args: argparse.Namespace, tmp: str) -> list[dict[str, Any]]:
    if kind == "tcp":
        server_bind, client_bind = "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"
    else:
        server_bind, client_bind = f"ipc://{tmp}/server", f"ipc://{tmp}/client"
    spawn = mp.get_context("spawn")
    ready = spawn.Queue()
    proc = spawn.Process(target=server, args=(server_bind, ready), daemon=True)
    proc.start()
    ctx = zmq.Context()
    results: list[dict[str, Any]] = []
    try:
        address = ready.get(timeout=20)
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(address)
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(client_bind)
        small = [b"echo", b"x" * 64]

        row = latency(dealer.send_multipart, dealer.recv_multipart, small, args.rounds)
        results.append({"transport": kind, "test": "echo 64 B", **row})

        dealer.send_multipart([b"connect", router.getsockopt(zmq.LAST_ENDPOINT)])
        assert dealer.recv() == b"connected"
        row = latency(dealer.send_multipart, router.recv_multipart, [b"pair", b"x" * 64], args.rounds)
        results.append({"transport": kind, "test": "pair 64 B", **row})

        for size, count in ((1 * MiB, args.count_1mib), (64 * MiB, args.count_64mib)):
            if count > 0:
                row = stream(dealer, size, count)
                results.append({"transport": kind, "test": f"stream {size // MiB} MiB", **row})
        dealer.send_multipart([b"stop"])
        dealer.close(0)
        router.close(0)
    finally:
        ctx.term()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'transport':<9} {'test':<12} {'n':>6} {'p50 us':>8} {'p99 us':>8} {'mean us':>8} {'MiB/s':>9} {'msg/s':>9}")
    for r in results:
        cell = lambda key, fmt: format(r[key], fmt) if key in r else "-"  # noqa: E731
        print(
            f"{r['transport']:<9} {r['test']:<12} {r['n']:>6} {cell('p50_us', '8.1f'):>8} "
            f"{cell('p99_us', '8.1f'):>8} {cell('mean_us', '8.1f'):>8} {cell('mib_per_s', '9.0f'):>9} "
            f"{r['msgs_per_s']:>9.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--rounds", type=int, default=5000, help="round trips per latency test")
    parser.add_argument("--count-1mib", type=int, default=1000, help="1 MiB messages per stream test")
    parser.add_argument("--count-64mib", type=int, default=24, help="64 MiB messages per stream test")
    parser.add_argument("--transports", default="tcp,ipc", help="comma-separated: tcp, ipc")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="zmqfloor") as tmp:
        for kind in args.transports.split(","):
            results.extend(run_transport(kind.strip(), args, tmp))
    print_table(results)
    report = {
        "benchmark": "zmq_floor",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
        },
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "wall_seconds": time.perf_counter() - started,
        "results": results,
    }
    print(f"total {report['wall_seconds']:.1f} s on {os.cpu_count()} CPUs")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
