"""``python -m refrpc.iut``: one RefRPC peer for the conformance suite to test.

Assembles a runtime node (the sans-IO core, ZeroMQ, the fetch service) with the
fixture executor, an in-process object store, the fault switches asked for, and
the control channel on standard input and output.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from typing import Any

from ..core import Config
from ..runtime import Node, working_node
from ..store import MemoryStore, ObjectNotFound, SharedMemoryStore, parse_bytes
from ._faults import STARTUP, install, parse_faults
from ._fixtures import Catalog, FixtureExecutor

log = logging.getLogger("refrpc.iut")

#: Features the IUT offers (HS-004): every profile of the spec but ``python-pickle``;
#: it plays an implementation that exchanges portable values only.
FEATURES = ("core", "borrowing", "recovery", "actors", "lz4")


class IutStore(MemoryStore):
    """The IUT's store: in the process's own memory, so that a ``crash`` (or a kill)
    leaves nothing behind, and every copy another process wants travels over the
    wire (FET-*) instead of through shared memory."""

    def __init__(self, peer_id: str, namespace: str) -> None:
        super().__init__()
        #: What the node's death handling uses to clean up shared memory: nothing here.
        self.namespace = namespace
        self.writer = peer_id

    def attach(self, object_id: str, writer: str | None = None) -> Any:
        """The value of a copy in this store; no other writer's copies are reachable."""
        if writer not in (None, self.writer):
            raise ObjectNotFound(f"{object_id}: copies of {writer} are not mapped here")
        return self.get(object_id)

    def detach(self, object_id: str) -> bool:
        return False


class IutSpillingStore(SharedMemoryStore):
    """The IUT's store when the suite gives it a limit (``REFRPC_IUT_STORE_LIMIT``, bytes):
    shared memory limited to that many bytes, spilling to a directory of its own
    (OBJ-030, OBJ-031); as :class:`IutStore`, no other writer's copies are reachable.
    Closing it removes its segments, its spill files and the directory."""

    def __init__(self, peer_id: str, namespace: str, capacity: int) -> None:
        import tempfile

        self._spill_root = tempfile.mkdtemp(prefix="refrpc-iut-spill-")
        super().__init__(namespace, writer=peer_id, capacity=capacity, spill_directory=self._spill_root)
        print(f"iut: object store limited to {capacity} bytes, spilling to {self._spill_root}", file=sys.stderr, flush=True)

    def attach(self, object_id: str, writer: str | None = None) -> Any:
        if writer not in (None, self.writer):
            raise ObjectNotFound(f"{object_id}: copies of {writer} are not mapped here")
        return super().attach(object_id, writer)

    def close(self) -> None:
        if not self._closed:
            print(f"iut: object store counters at close: {self.counters}", file=sys.stderr, flush=True)
        super().close()
        import shutil

        shutil.rmtree(self._spill_root, ignore_errors=True)


def store_limit_from_env(env: Any = os.environ) -> int | None:
    """The store limit the suite asks for (``REFRPC_IUT_STORE_LIMIT``), or None."""
    text = env.get("REFRPC_IUT_STORE_LIMIT", "").strip()
    return parse_bytes(text, "REFRPC_IUT_STORE_LIMIT") if text else None


def config_from_env(env: Any = os.environ) -> Config:
    """The spec's timing defaults, or the suite's (CNF-012); the suite's maxSessions (CNF-054)."""
    changes: dict[str, int] = {}
    for var, field, least, rule in (("REFRPC_IUT_HEARTBEAT_MS", "heartbeat_interval_ms", 1, "LIV-013"),
                                    ("REFRPC_IUT_MISS_LIMIT", "miss_limit", 2, "LIV-013"),
                                    ("REFRPC_IUT_MAX_SESSIONS", "max_sessions", 2, "CNF-054")):
        text = env.get(var, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{var} must be an integer, not {text!r}") from None
        if value < least:
            raise ValueError(f"{var} must be at least {least} ({rule}), not {value}")
        changes[field] = value
    return Config(features=FEATURES, **changes)


class Iut:
    """One implementation-under-test process: node, fixture executor, catalog.

    Args:
        peer_id: The PeerId the suite chose (CNF-011).
        endpoint: Where to bind the ROUTER socket (ZMQ-001).
        config: Protocol settings.
        on_other: Gets every instruction that is neither executor work nor the
            node's own (PeerDeclaredDead, FailStop...), on the loop thread.
        cluster_key: Authenticate every connection with this cluster key
            (CURVE, SEC-002, SEC-011); None: the NULL mechanism.
        own_key: This peer's own :class:`~refrpc.transport.OwnKey`: it is a member of a
            cluster with a head (CNF-035, SEC-022, SEC-040, SEC-041); None: derived keys.
        derived_server_key: The ``derived-server-key`` fault switch: with ``own_key``,
            serve with and expect SEC-016's server key all the same (breaks SEC-040).
        head: With ``own_key`` (the head key pair the key file names): run as the head
            of the cluster, binding joiners' PeerIds by their join proofs (CNF-047, SEC-023).
        membership: As the head, also run the head's membership functions for the
            suite's joiners, their values pickled (CNF-051, CLU-030); ``config`` must
            then offer ``python-pickle``.
        joined_head: Without ``cluster_key``: play a member that joined a cluster
            without authentication through the head at this address, taking views
            (``learn``) only from there (CNF-052, SEC-026); ``config`` must then offer
            ``python-pickle``.
    """

    def __init__(self, peer_id: str, endpoint: str, config: Config, on_other: Any = None, cluster_key: Any = None,
                 own_key: Any = None, derived_server_key: bool = False, head: bool = False,
                 membership: bool = False, joined_head: str = "") -> None:
        namespace = f"iut{os.getpid()}x{secrets.token_hex(4)}"

        limit = store_limit_from_env()

        def make_executor(node: Node) -> FixtureExecutor:  # on the loop thread, before any work
            own: Any = IutStore(peer_id, namespace) if limit is None else IutSpillingStore(peer_id, namespace, limit)
            shm, node.store = node.store, own
            shm.close()
            self.catalog = Catalog(node, membership="head" if membership else "member" if joined_head else "")
            return FixtureExecutor(node, self.catalog)

        options: dict[str, Any] = {}
        if membership:
            from ..runtime import _membership

            def on_instruction(ins: Any, then: Any = on_other) -> None:
                _membership.noticed(ins)  # a member's death leaves the registry (CLU-008)
                if then is not None:
                    then(ins)

            on_other = on_instruction
        if own_key is not None and derived_server_key:
            from ..transport import ZmqTransport

            # Derived server key on the ROUTER and in every DEALER; its own client key and proof.
            wire = ZmqTransport(endpoint, max_frame_bytes=config.max_frame_bytes, cluster_key=cluster_key, peer_id=peer_id)
            wire._client_keys = (own_key.public, own_key.secret)
            wire.join_proof = own_key.proof
            wire.expect = lambda address, key: None  # type: ignore[method-assign]
            options["transport"] = wire
        self.node, self.executor = working_node(peer_id, endpoint, namespace, config, on_other,
                                                make_executor=make_executor, cluster_key=cluster_key,
                                                own_key=own_key, insecure=True,  # its features are what its config says
                                                admits_joiners=head and own_key is not None,
                                                **options)
        #: How the control channel names an error code for ``get`` (CNF-018): the registry
        #: name; the ``schema-error-names`` fault switch changes it.
        self.error_code_name: Any = lambda code: code.name
        #: How the control channel answers a request naming a ref it does not hold
        #: (CNF-024: ``bad_request``); the ``unheld-ref-unknown-object`` fault switch changes it.
        self.unheld_ref_code = "bad_request"
        from ..runtime._refs import context

        context.node, context.executor = self.node, self.executor
        if membership:
            from ..runtime import _membership

            _membership.PUSHER.start(self.node)  # pushes each change of the registry (CLU-010)
        self.node.head_address = joined_head  # views come only from there (SEC-026)

    def info(self) -> dict[str, Any]:
        """The ``ready`` event's fields (CNF-006)."""
        return {
            "peer_id": self.node.peer_id,
            "incarnation": str(self.node.incarnation),
            "address": self.node.address,
            "features": list(self.node.config.features),
            "inline_threshold": self.node.config.inline_threshold,
        }


#: The environment variable the suite hands a head-cluster member its own key pair in (CNF-035).
OWN_KEY_ENV = "REFRPC_IUT_OWN_KEY"


#: The environment variable the suite hands the head's key pair in, making the IUT the head (CNF-047).
HEAD_KEY_ENV = "REFRPC_IUT_HEAD_KEY"


def _own_key(cluster_key: Any, peer_id: str, env_name: str = OWN_KEY_ENV) -> Any:
    """The own key pair the suite handed this IUT ("PUBLIC SECRET", z85) in ``env_name``:
    in ``REFRPC_IUT_OWN_KEY`` it makes the IUT a member of a cluster with a head
    (CNF-035), in ``REFRPC_IUT_HEAD_KEY`` that cluster's head (CNF-047); None when it
    handed none."""
    text = os.environ.get(env_name, "")
    if not text or cluster_key is None:
        return None
    from ..transport import OwnKey

    public, _, secret = text.partition(" ")
    import zmq

    try:
        ok = len(secret) == 40 and zmq.curve_public(secret.encode()) == public.encode()
    except (zmq.ZMQError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{env_name} must be a CURVE key pair, \"PUBLIC SECRET\" in Z85")
    if cluster_key.head_public is None:
        raise ValueError(f"{env_name} is set, but the key file names no head key (SEC-041)")
    if env_name == HEAD_KEY_ENV and cluster_key.head_public != public.encode():
        raise ValueError(f"{HEAD_KEY_ENV} is not the head key pair the key file names (SEC-041)")
    return OwnKey(cluster_key, peer_id, (public.encode(), secret.encode()))


def _membership_asked(head: bool) -> bool:
    """Whether the suite asked this IUT to run the head's membership calls (CNF-051):
    ``REFRPC_IUT_MEMBERSHIP=pickle``, which only a head may be asked."""
    from ._membership import MEMBERSHIP_ENV, MEMBERSHIP_PICKLE

    text = os.environ.get(MEMBERSHIP_ENV, "").strip()
    if not text:
        return False
    if text != MEMBERSHIP_PICKLE:
        raise ValueError(f"{MEMBERSHIP_ENV} must be {MEMBERSHIP_PICKLE!r}, not {text!r}")
    if not head:
        raise ValueError(f"{MEMBERSHIP_ENV} is set, but only the head ({HEAD_KEY_ENV}) serves the membership calls")
    return True


def _joined_head(cluster_key: Any) -> str:
    """The address of the head the suite says this IUT joined through, in a cluster
    without authentication (CNF-052: ``REFRPC_IUT_JOINED_HEAD``), or ""."""
    from ._membership import JOINED_HEAD_ENV

    text = os.environ.get(JOINED_HEAD_ENV, "").strip()
    if not text:
        return ""
    if cluster_key is not None:
        raise ValueError(f"{JOINED_HEAD_ENV} is set, but a key file is too: it names a head of a cluster "
                         "without authentication")
    host, _, port = text.removeprefix("tcp://").rpartition(":")
    if not text.startswith("tcp://") or not host or not port.isdigit():
        raise ValueError(f"{JOINED_HEAD_ENV} must be an address tcp://HOST:PORT, not {text!r}")
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the IUT until the control channel says ``shutdown`` or ``crash``, or closes."""
    # Standard output is the control channel's alone (CNF-005): anything else that
    # writes to file descriptor 1 (a library, a stray print) lands on stderr.
    channel_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s iut %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog="python -m refrpc.iut", description="A RefRPC peer under test (spec/conformance-hooks.md).")
    ap.add_argument("--endpoint", default=os.environ.get("REFRPC_IUT_ENDPOINT", ""), help="tcp://127.0.0.1:PORT to bind")
    ap.add_argument("--peer-id", default=os.environ.get("REFRPC_IUT_PEER_ID", ""), help="the PeerId to use")
    ap.add_argument("--key-file", default=os.environ.get("REFRPC_KEY_FILE", ""),
                    help="authenticate with this cluster key file (CURVE, SEC-015); default $REFRPC_KEY_FILE")
    ap.add_argument("--max-status-waits", type=int, default=0, metavar="N",
                    help="GetObjectStatus waits one remote peer may have outstanding (SEC-009; default the spec's 100,000)")
    ap.add_argument("--actor-create-wait-ms", type=int, default=0, metavar="MS",
                    help="how long a call for an actor not created yet is held (ACT-023; default the spec's 10,000)")
    ap.add_argument("--fault", action="append", default=[], metavar="NAME", help="break one requirement (see refrpc.iut.FAULTS)")
    args = ap.parse_args(argv)
    if not args.endpoint or not args.peer_id:
        ap.error("--endpoint and --peer-id are required (or REFRPC_IUT_ENDPOINT and REFRPC_IUT_PEER_ID)")
    try:
        faults = parse_faults(args.fault + [os.environ.get("REFRPC_IUT_FAULTS", "")])
        config = config_from_env()
        if args.max_status_waits < 0:
            raise ValueError(f"--max-status-waits must be positive, not {args.max_status_waits}")
        if args.max_status_waits:
            config.max_status_waits = args.max_status_waits
        if args.actor_create_wait_ms and args.actor_create_wait_ms < 1000:
            raise ValueError(f"--actor-create-wait-ms must be at least 1000 (ACT-023), not {args.actor_create_wait_ms}")
        if args.actor_create_wait_ms:
            config.actor_create_wait_ms = args.actor_create_wait_ms
        from ..transport import ClusterKey

        cluster_key = ClusterKey.load(args.key_file) if args.key_file else None
        for name in faults:
            cluster_key = STARTUP.get(name, {}).get("cluster_key", cluster_key)
        own_key = _own_key(cluster_key, args.peer_id)
        head_key = _own_key(cluster_key, args.peer_id, HEAD_KEY_ENV)
        if own_key is not None and head_key is not None:
            raise ValueError(f"{OWN_KEY_ENV} and {HEAD_KEY_ENV} are both set: the IUT is a member or the head, not both")
        membership = _membership_asked(head_key is not None)
        joined_head = _joined_head(cluster_key)
        if membership or joined_head:  # SEC-004: offered only because the suite asked
            config.features = (*config.features, "python-pickle")
        if joined_head or (own_key is not None and head_key is None):
            # A member judges its head by its own session only: no notice about it, and no
            # owner's ConfirmBorrow, fences it (CLU-034, LIV-030, BOR-011).
            config.unannounced = ("head",)
    except ValueError as exc:  # a KeyFileError too
        ap.error(str(exc))
    from ._control import Control

    control = Control(os.fdopen(channel_fd, "w", encoding="utf-8", newline="\n"))
    try:
        iut = Iut(args.peer_id, args.endpoint, config, on_other=control.on_instruction, cluster_key=cluster_key,
                  own_key=own_key or head_key, derived_server_key="derived-server-key" in faults,
                  head=head_key is not None, membership=membership, joined_head=joined_head)
    except Exception as exc:  # a bad endpoint, a port in use, a bad peer id
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 1
    install(iut, faults)
    for name in faults:
        log.warning("fault switch on: %s", name)
    return control.run(iut, faults, sys.stdin.buffer)
