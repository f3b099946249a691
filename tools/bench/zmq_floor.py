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

Other benchmarks (tools/bench/run.py) reuse the pieces: :class:`Floor` starts the
server process and connects to it; its methods measure ``echo``/``pair``
latency, ``stream`` throughput, ``pipelined`` echo throughput (many requests in
flight) and a pass-by-value ``array_call`` (send an array, the server sums it).

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
        elif command == b"sum":  # pass by value: [sum, dtype, array bytes] -> its sum
            import numpy as np

            total = np.frombuffer(parts[3].buffer, dtype=parts[2].bytes.decode()).sum()
            router.send_multipart([parts[0], repr(float(total)).encode()])
        elif command == b"make":  # [make, nbytes] -> an array of float64 ones, by value
            import numpy as np

            made = np.ones(int(parts[2].bytes) // 8)
            router.send_multipart([parts[0], made], copy=False)
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


def pipelined(dealer: zmq.Socket, message: list[bytes], count: int, window: int = 256) -> dict[str, float]:
    """Echo throughput with up to ``window`` requests in flight (below every HWM)."""
    for _ in range(min(window, count)):  # warm up
        dealer.send_multipart(message)
    for _ in range(min(window, count)):
        dealer.recv_multipart()
    started = time.perf_counter()
    sent = received = 0
    while received < count:
        while sent < count and sent - received < window:
            dealer.send_multipart(message)
            sent += 1
        dealer.recv_multipart()
        received += 1
    elapsed = time.perf_counter() - started
    return {"n": count, "window": window, "seconds": elapsed, "msgs_per_s": count / elapsed}


class Floor:
    """The server process and this process's sockets, for one transport.

    Use as a context manager::

        with Floor("ipc") as f:
            f.echo(5000); f.pair(5000); f.stream(MiB, 1000); f.pipelined(2000)
    """

    def __init__(self, kind: str = "ipc", tmp: str | None = None) -> None:
        if kind not in ("tcp", "ipc"):
            raise ValueError(f"transport is tcp or ipc, not {kind!r}")
        self.kind = kind
        self._tmpdir = None
        if kind == "ipc" and tmp is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="zmqfloor")
            tmp = self._tmpdir.name
        self.tmp = tmp
        self.ctx: zmq.Context | None = None
        self.proc: Any = None
        self.dealer: Any = None
        self.router: Any = None
        self._paired = False

    def __enter__(self) -> Floor:
        if self.kind == "tcp":
            server_bind, client_bind = "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"
        else:
            server_bind, client_bind = f"ipc://{self.tmp}/server", f"ipc://{self.tmp}/client"
        spawn = mp.get_context("spawn")
        ready = spawn.Queue()
        self.proc = spawn.Process(target=server, args=(server_bind, ready), daemon=True)
        self.proc.start()
        self.ctx = zmq.Context()
        try:
            address = ready.get(timeout=20)
            self.dealer = self.ctx.socket(zmq.DEALER)
            self.dealer.setsockopt(zmq.LINGER, 0)
            self.dealer.connect(address)
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.bind(client_bind)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.dealer is not None and self.proc is not None and self.proc.is_alive():
                self.dealer.send_multipart([b"stop"])
        finally:
            for sock in (self.dealer, self.router):
                if sock is not None:
                    sock.close(0)
            self.dealer = self.router = None
            if self.ctx is not None:
                self.ctx.term()
                self.ctx = None
            if self.proc is not None:
                self.proc.join(timeout=10)
                if self.proc.is_alive():
                    self.proc.kill()
                    self.proc.join()
                self.proc = None
            if self._tmpdir is not None:
                self._tmpdir.cleanup()
                self._tmpdir = None

    def echo(self, rounds: int, size: int = 64) -> dict[str, float]:
        """Round trip DEALER -> ROUTER -> the same DEALER."""
        return latency(self.dealer.send_multipart, self.dealer.recv_multipart, [b"echo", b"x" * size], rounds)

    def pair(self, rounds: int, size: int = 64) -> dict[str, float]:
        """Round trip in RefRPC's pattern: out through one socket pair, back through another."""
        if not self._paired:
            self.dealer.send_multipart([b"connect", self.router.getsockopt(zmq.LAST_ENDPOINT)])
            assert self.dealer.recv() == b"connected"
            self._paired = True
        return latency(self.dealer.send_multipart, self.router.recv_multipart, [b"pair", b"x" * size], rounds)

    def stream(self, size: int, count: int) -> dict[str, float]:
        """One-way throughput of ``count`` messages of ``size`` bytes."""
        return stream(self.dealer, size, count)

    def pipelined(self, count: int, size: int = 64, window: int = 256) -> dict[str, float]:
        """Echo throughput with ``window`` requests in flight."""
        return pipelined(self.dealer, [b"echo", b"x" * size], count, window)

    def request(self, parts: list[Any], copy: bool = True) -> list[Any]:
        """Send one request (zero-copy when ``copy`` is false) and return the reply's frames."""
        self.dealer.send_multipart(parts, copy=copy)
        return self.dealer.recv_multipart(copy=copy)

    def array_sum(self, array: Any) -> float:
        """Pass by value: send ``array``'s bytes (zero-copy send), the server sums them."""
        reply = self.request([b"sum", str(array.dtype).encode(), array], copy=False)
        return float(reply[0].bytes)

    def make_array(self, nbytes: int) -> Any:
        """Pass by value: the server makes ``nbytes`` of float64 ones and sends them here."""
        import numpy as np

        (frame,) = self.request([b"make", str(nbytes).encode()], copy=False)
        return np.frombuffer(frame.buffer, dtype=np.float64)


def run_transport(kind: str, args: argparse.Namespace, tmp: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with Floor(kind, tmp) as f:
        results.append({"transport": kind, "test": "echo 64 B", **f.echo(args.rounds)})
        results.append({"transport": kind, "test": "pair 64 B", **f.pair(args.rounds)})
        for size, count in ((1 * MiB, args.count_1mib), (64 * MiB, args.count_64mib)):
            if count > 0:
                row = f.stream(size, count)
                results.append({"transport": kind, "test": f"stream {size // MiB} MiB", **row})
    return results


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
    }


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
        "machine": machine(),
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
