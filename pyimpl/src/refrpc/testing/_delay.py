"""Latency for the multi-host test bed, without ``tc netem``: a delaying packet queue.

Many kernels (this project's CI included) are built without ``netem`` or any other
qdisc that holds packets back, but with netfilter's userspace queue. A host's
inbound packets are sent to queue 0 of its network namespace (an ``iptables``
``NFQUEUE`` rule, with ``--queue-bypass`` so that packets pass untouched when no
program listens), and this program, run inside that namespace, holds each packet
for the delay its source is given, then lets it through (``NF_ACCEPT``). It speaks
the kernel's nfnetlink_queue protocol over a netlink socket directly: only the
first 20 bytes of each packet (the IPv4 header, for the source address) are
copied to it.

Run as ``python -m refrpc.testing._delay``; it reads delay tables from stdin, one
JSON object per line, ``{"10.231.0.2": 0.005, "*": 0.001}`` (seconds per source
address; ``"*"`` for any other source), each replacing the last, and exits when
stdin closes. It prints ``ready`` once bound, and keeps the count of packets it
delayed in the file named by ``--count`` (rewritten at most every 50 ms).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_GSO = 4
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
#: The bytes of each packet copied to this program: an IPv4 header.
COPY_BYTES = 20
#: How many packets the kernel holds for this queue before it drops new ones.
QUEUE_MAXLEN = 65536


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _message(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    found = {}
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        found[kind & 0x7FFF] = data[offset + 4 : offset + size]
        offset += size + (-size % 4)
    return found


class Delayer:
    """Holds queue ``queue``'s packets for their source's delay (see the module doc)."""

    def __init__(self, queue: int = 0) -> None:
        self.queue = queue
        self.delays: dict[str, float] = {}
        self.delayed = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self._configure(_attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND, socket.htons(socket.AF_INET))))
        self._configure(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", COPY_BYTES, NFQNL_COPY_PACKET))
                        + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN))
                        + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_GSO))
                        + _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_GSO)))
        self.sock.setblocking(False)
        self._held: list[tuple[float, int]] = []

    def _configure(self, attrs: bytes) -> None:
        """Send one config message and wait for the kernel's acknowledgement."""
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq=1))
        reply = self.sock.recv(65536)
        _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, 16)
            if error:
                raise OSError(-error, f"nfnetlink_queue config refused: {os.strerror(-error)}")

    def _delay_of(self, payload: bytes | None) -> float:
        source = socket.inet_ntoa(payload[12:16]) if payload is not None and len(payload) >= 16 else ""
        return self.delays.get(source, self.delays.get("*", 0.0))

    def _receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            offset = 0
            while offset + 16 <= len(data):
                size, kind = struct.unpack_from("=IH", data, offset)
                if size < 16:
                    return
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    attrs = _attrs(data[: offset + size], offset + 20)
                    header = attrs.get(NFQA_PACKET_HDR)
                    if header is not None:
                        (packet_id,) = struct.unpack_from("!I", header)
                        heapq.heappush(self._held, (now + self._delay_of(attrs.get(NFQA_PAYLOAD)), packet_id))
                offset += size + (-size % 4)

    def _release(self, now: float) -> None:
        while self._held and self._held[0][0] <= now:
            _, packet_id = heapq.heappop(self._held)
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
            self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue, verdict))
            self.delayed += 1

    def serve(self, stop: threading.Event, count_path: str | None = None) -> None:
        """Hold and release packets until ``stop`` is set."""
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        written, last = -1, 0.0
        while not stop.is_set():
            now = time.monotonic()
            timeout = 0.05 if not self._held else max(0.0, min(0.05, self._held[0][0] - now))
            if selector.select(timeout):
                self._receive(time.monotonic())
            now = time.monotonic()
            self._release(now)
            if count_path and written != self.delayed and now - last >= 0.05:
                with open(count_path + ".tmp", "w") as f:
                    f.write(str(self.delayed))
                os.replace(count_path + ".tmp", count_path)
                written, last = self.delayed, now
        for _, packet_id in self._held:  # nothing is lost when the delay is lifted
            self.sock.send(_message(NFQNL_MSG_VERDICT, self.queue,
                                    _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refrpc.testing._delay", description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--count", help="a file that keeps the number of packets delayed")
    args = parser.parse_args(argv)
    delayer = Delayer(args.queue)
    stop = threading.Event()
    server = threading.Thread(target=delayer.serve, args=(stop, args.count), daemon=True)
    server.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip():
            table = json.loads(line)
            delayer.delays = {str(k): float(v) for k, v in table.items()}
            print("ok", flush=True)
    stop.set()
    server.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
