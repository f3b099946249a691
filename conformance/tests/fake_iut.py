"""A tiny scripted implementation under test, for testing the suite itself.

It speaks just enough of the protocol for the suite's own tests: the handshake,
sessions (sequence numbers, acks, duplicates), heartbeats, the ``echo``,
``make_bytes``, ``fail`` and ``sum_bytes`` (by value) fixtures with inline
results, and ``ProtocolError`` for unknown and malformed messages; and the
control operations ``info``, ``quiesce``, ``table``, ``drop_held``, ``crash`` and
``shutdown``. ``FAKE_IUT_BUGS`` (comma-separated) switches on deliberate bugs:

- ``minor-2``: Welcome carries protocol minor 2 (breaks HS-003);
- ``no-dedupe``: duplicates of delivered sequence numbers are delivered again (SES-002);
- ``stdout-noise``: writes a non-JSON line to stdout (CNF-005);
- ``crash-on-garbage``: exits on a frame that does not decode (GEN-004);
- ``no-ready``: never writes the ready event.

It is not an implementation of RefRPC and must not grow into one.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import sys
import threading
import time

import zmq

from refrpc.codec import DecodeError, UnknownMessage, decode, decode_portable, encode, encode_portable
from refrpc.core.messages import (
    Encoding,
    Envelope,
    ErrorCode,
    ErrorInfo,
    FetchRequest,
    Heartbeat,
    Hello,
    ProtocolError,
    ReturnKind,
    ReturnValue,
    SubmitTask,
    TaskReply,
    Value,
    Welcome,
)

BUGS = set(filter(None, os.environ.get("FAKE_IUT_BUGS", "").split(",")))
HEARTBEAT_S = int(os.environ.get("REFRPC_IUT_HEARTBEAT_MS", "250")) / 1000


class Session:
    def __init__(self, peer: "Fake", remote: str, incarnation: int, address: str) -> None:
        self.remote, self.incarnation = remote, incarnation
        self.out_seq = 0
        self.delivered = 0
        self.buffer: dict[int, Envelope] = {}
        self.last_sent = 0.0
        self.dealer = peer.ctx.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(address)
        self.peer = peer

    def send(self, body: object, sequenced: bool) -> None:
        seq = 0
        if sequenced:
            self.out_seq += 1
            seq = self.out_seq
        env = Envelope(self.peer.peer_id, self.peer.incarnation, self.remote, self.incarnation, seq, self.delivered, body)
        self.dealer.send_multipart(encode(env))
        self.last_sent = time.monotonic()


class Fake:
    def __init__(self, endpoint: str, peer_id: str) -> None:
        self.peer_id, self.endpoint = peer_id, endpoint
        self.incarnation = secrets.randbits(63) | 1
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(endpoint)
        self.sessions: dict[str, Session] = {}
        self.requests: queue.Queue[dict] = queue.Queue()

    def emit(self, obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def run(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        if "stdout-noise" in BUGS:
            print("hello from a chatty implementation", flush=True)
        if "no-ready" not in BUGS:
            self.emit({
                "event": "ready", "peer_id": self.peer_id, "incarnation": str(self.incarnation),
                "address": self.endpoint, "features": ["core"], "inline_threshold": 102400,
            })
        while True:
            if self.router.poll(20):
                frames = self.router.recv_multipart()
                self.on_frames(frames[1:])
            while not self.requests.empty():
                self.on_request(self.requests.get())
            now = time.monotonic()
            for s in self.sessions.values():
                if now - s.last_sent >= HEARTBEAT_S:
                    s.send(Heartbeat(), False)

    def read_stdin(self) -> None:
        for line in sys.stdin:
            if line.strip():
                self.requests.put(json.loads(line))
        os._exit(0)

    def on_request(self, req: dict) -> None:
        op, rid = req.get("op"), req.get("id")
        if op == "crash":
            os._exit(137)
        if op == "shutdown":
            self.emit({"id": rid, "ok": True, "result": None})
            os._exit(0)
        results = {
            "info": {"peer_id": self.peer_id, "incarnation": str(self.incarnation), "address": self.endpoint},
            "quiesce": {"quiescent": True},
            "table": {"entries": []},
            "drop_held": {"dropped": 0},
            "gc": None,
        }
        if op in results:
            self.emit({"id": rid, "ok": True, "result": results[op]})
        else:
            self.emit({"id": rid, "ok": False, "error": {"code": "unknown_op", "message": str(op)}})

    def on_frames(self, frames: list[bytes]) -> None:
        try:
            env = decode(frames)
        except DecodeError as err:
            if "crash-on-garbage" in BUGS and not err.sender:
                os._exit(3)
            s = self.sessions.get(err.sender)
            if s is not None and err.sender_incarnation == s.incarnation:
                code = ErrorCode.UNKNOWN_MESSAGE if isinstance(err, UnknownMessage) else ErrorCode.MALFORMED
                if err.seq == s.delivered + 1:
                    s.delivered = err.seq
                s.send(ProtocolError(ErrorInfo(code, str(err), err.requirement), err.seq), err.seq > 0)
            return
        body = env.body
        if isinstance(body, Hello):
            self.on_hello(env)
            return
        s = self.sessions.get(env.sender)
        if s is None or env.sender_incarnation != s.incarnation or env.seq == 0:
            return
        if env.seq <= s.delivered and "no-dedupe" not in BUGS:
            return
        if env.seq > s.delivered + 1:
            s.buffer[env.seq] = env
            return
        s.delivered = max(s.delivered, env.seq)
        self.deliver(s, env)
        while s.delivered + 1 in s.buffer:
            s.delivered += 1
            self.deliver(s, s.buffer.pop(s.delivered))
        s.send(Heartbeat(), False)

    def on_hello(self, env: Envelope) -> None:
        hello: Hello = env.body
        s = self.sessions.get(env.sender)
        if s is None or s.incarnation != env.sender_incarnation:
            s = Session(self, env.sender, env.sender_incarnation, hello.address)
        if hello.protocol_major != 0:
            s.send(ProtocolError(ErrorInfo(ErrorCode.PROTOCOL_VERSION, "major", "HS-002")), False)
            return
        self.sessions[env.sender] = s
        minor = 2 if "minor-2" in BUGS else min(1, hello.protocol_minor)
        features = tuple(f for f in hello.features if f == "core")
        s.send(Welcome(0, minor, self.endpoint, features, 64 << 20, int(HEARTBEAT_S * 1000)), False)

    def deliver(self, s: Session, env: Envelope) -> None:
        body = env.body
        if isinstance(body, SubmitTask):
            s.send(TaskReply(body.task_id, body.attempt, tuple(self.run_task(body))), True)
        elif isinstance(body, FetchRequest):
            pass

    def run_task(self, task: SubmitTask) -> list[ReturnValue]:
        rid = task.return_ids[0]
        try:
            args = [decode_portable(a.value.data) for a in task.args]
            if task.function == "echo":
                result = args[0]
            elif task.function == "make_bytes":
                result = bytes(i % 256 for i in range(args[0]))
            elif task.function == "sum_bytes":
                result = sum(args[0])
            elif task.function == "fail":
                raise RuntimeError(args[0])
            else:
                return [ReturnValue(r, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.UNKNOWN_FUNCTION, task.function))
                        for r in task.return_ids]
        except Exception as exc:
            return [ReturnValue(r, ReturnKind.ERROR, error=ErrorInfo(ErrorCode.TASK_FAILED, str(exc)))
                    for r in task.return_ids]
        return [ReturnValue(rid, ReturnKind.INLINE, value=Value(Encoding.PORTABLE, encode_portable(result)))]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--peer-id", required=True)
    a = p.parse_args()
    Fake(a.endpoint, a.peer_id).run()


if __name__ == "__main__":
    main()
