"""A cluster's key material: one secret, and the CURVE keys derived from it (SEC-015).

A cluster is authenticated with one 32-byte secret, kept in a *cluster key file*
that only members hold. Every key a peer uses is derived from it (SEC-016):

- the *server key pair*, which every peer's ROUTER uses as its CURVE server key;
- one *member key pair per PeerId*, which a peer's DEALERs use as their CURVE
  client key; the receiver binds a message's claimed sender to the key its
  connection authenticated with by deriving that PeerId's key (SEC-011).

An outsider without the secret cannot derive either, so it cannot complete a
CURVE handshake, and any key it makes up is bound to no PeerId. The derivation
is HMAC-SHA256 keyed with the secret over a label; the 32 bytes are a
Curve25519 secret key (libsodium clamps them), and the public key is the
X25519 base-point multiple (``crypto_scalarmult_base``).

Derived member keys serve peers that join no cluster with a head (two-peer
programs, a local cluster, the conformance suite's IUT). In a cluster with a
head (``refrpc start``) every member holds the secret and so could derive any
other member's key; there each process makes a key pair of its own instead
(:class:`OwnKey`), proves with a *join proof* that it holds the cluster's join
credential, and the head binds its PeerId to its public key and hands the
binding to every member in its views (SEC-022..SEC-026). There each process's
ROUTER also serves with its own key pair, so a client must know the server key of
the member it connects to (SEC-040): the views give the members', and the key file
names the head's (``head``), whose secret key stays on the head's host in the
*head key file* (:class:`HeadKey`). The join credential can be replaced in a
running cluster (:meth:`ClusterKey.rotate`), by the holder of the head key only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from collections import OrderedDict
from typing import Any

import zmq
from zmq.utils import z85

#: The environment variable naming a cluster key file (joiners, drivers, workers).
KEY_FILE_ENV = "REFRPC_KEY_FILE"
#: The key file's format marker and version (SEC-015).
FORMAT = "refrpc-cluster-key"
VERSION = 1
#: Labels of the derivations (SEC-016).
SERVER_LABEL = b"refrpc/0.1 server"
PEER_LABEL = b"refrpc/0.1 peer "
JOIN_LABEL = b"refrpc/0.2 join "
#: The ZeroMQ metadata property a DEALER of a cluster with a head carries its join proof in (SEC-022).
JOIN_PROPERTY = "X-RefRPC-Join"
#: The head key file's format marker (SEC-041).
HEAD_FORMAT = "refrpc-head-key"
#: The suffix that names a key file's head key file beside it (SEC-041).
HEAD_SUFFIX = ".head"
#: The environment variable a supervisor hands a worker's own key pair in ("PUBLIC SECRET", z85).
OWN_KEY_ENV = "REFRPC_OWN_KEY"
#: The ZAP domain every RefRPC ROUTER sets.
ZAP_DOMAIN = "refrpc"
#: PeerIds whose member key is kept computed (a lookup per received message).
_CACHED_PEERS = 4096


class KeyFileError(ValueError):
    """A cluster key file that is missing, unreadable, malformed or readable by others."""


def _derive(secret: bytes, label: bytes) -> tuple[bytes, bytes]:
    """(public, secret) CURVE keys, z85-encoded, derived from ``secret`` for ``label``."""
    raw = hmac.new(secret, label, hashlib.sha256).digest()
    secret_z85 = z85.encode(raw)
    return zmq.curve_public(secret_z85), secret_z85


class ClusterKey:
    """One cluster's secret, and the keys derived from it.

    Args:
        secret: The cluster secret, 32 bytes.

    Example:
        >>> key = ClusterKey.generate()
        >>> public, secret = key.member_keys("w1")
        >>> key.is_member_key("w1", public.decode()) and not key.is_member_key("w2", public.decode())
        True
    """

    def __init__(self, secret: bytes, join: bytes | None = None, head: bytes | None = None) -> None:
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise KeyFileError("a cluster secret is 32 bytes")
        if join is not None and (not isinstance(join, bytes) or len(join) != 32):
            raise KeyFileError("a join credential is 32 bytes")
        if head is not None and not is_public_key(head):
            raise KeyFileError("a head key is a CURVE public key in Z85 (40 characters)")
        self._secret = secret
        #: The head's own CURVE public key, z85 (SEC-041): the server key a joiner
        #: expects at the head's address; None in a file that names no head.
        self.head_public = head
        #: The join credential (SEC-022): the file's ``join``, else the secret itself.
        self._join = join if join is not None else secret
        #: Join credentials replaced by :meth:`rotate`, each with the monotonic time its
        #: grace period ends (a head accepts their proofs until then, SEC-025).
        self._previous: list[tuple[bytes, float]] = []
        #: The server key pair every ROUTER of the cluster uses (SEC-016).
        self.server_public, self.server_secret = _derive(secret, SERVER_LABEL)
        #: PeerId -> its member key pair, most recently used last.
        self._members: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()

    @classmethod
    def generate(cls) -> ClusterKey:
        """A new cluster key from the system's random source."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterKey:
        """Read a key file (SEC-015); it must be readable by its owner only.

        Raises:
            KeyFileError: The file is missing, unreadable, not a key file, or
                readable or writable by group or others.
        """
        try:
            st = os.stat(path)
            if st.st_mode & 0o077:
                raise KeyFileError(f"{os.fspath(path)} is readable by others (mode {st.st_mode & 0o777:o}); "
                                   f"make it 0600: chmod 600 {os.fspath(path)}")
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except KeyFileError:
            raise
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the cluster key file {os.fspath(path)}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise KeyFileError(f"{os.fspath(path)} is not a RefRPC cluster key file (version {VERSION})")
        secret = _hex32(data.get("secret"), "secret", path)
        join = _hex32(data["join"], "join", path) if "join" in data else None
        head = data.get("head")
        if head is not None and not (isinstance(head, str) and is_public_key(head.encode("ascii", "replace"))):
            raise KeyFileError(f"{os.fspath(path)}: 'head' must be a CURVE public key in Z85 (40 characters)")
        return cls(secret, join, None if head is None else head.encode("ascii"))

    def save(self, path: str | os.PathLike[str], *, replace: bool = False) -> None:
        """Write a new key file, mode 0600; an existing file is never overwritten,
        unless ``replace`` (then the new file takes its place whole, by a rename).

        Raises:
            FileExistsError: ``path`` exists (and not ``replace``).
        """
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, "secret": self._secret.hex()}
        if self._join != self._secret:
            data["join"] = self._join.hex()
        if self.head_public is not None:
            data["head"] = self.head_public.decode("ascii")
        _write_private(path, data, replace)

    def member_keys(self, peer_id: str) -> tuple[bytes, bytes]:
        """The (public, secret) CURVE client keys of ``peer_id``, z85-encoded (SEC-016)."""
        keys = self._members.get(peer_id)
        if keys is None:
            keys = self._members[peer_id] = _derive(self._secret, PEER_LABEL + peer_id.encode("utf-8"))
            if len(self._members) > _CACHED_PEERS:
                self._members.popitem(last=False)
        else:
            self._members.move_to_end(peer_id)
        return keys

    def is_member_key(self, peer_id: str, user_id: Any) -> bool:
        """Whether ``user_id`` (the ZAP User-Id: a z85 public key) is ``peer_id``'s key (SEC-011)."""
        if not isinstance(user_id, str) or not peer_id:
            return False
        return hmac.compare_digest(self.member_keys(peer_id)[0], user_id.encode("ascii", "replace"))

    # -- clusters with a head: own keys, join proofs, rotation (SEC-022..SEC-025) --
    def join_proof(self, peer_id: str, public: bytes | str) -> str:
        """The join proof of ``peer_id`` connecting with CURVE public key ``public``
        (z85): 64 hexadecimal digits of HMAC-SHA256 keyed with the join credential (SEC-022)."""
        return _proof(self._join, peer_id, public)

    def accepts_join(self, peer_id: str, public: Any, proof: Any, now: float) -> bool:
        """Whether ``proof`` is ``peer_id``'s join proof for ``public`` under the current
        join credential or one :meth:`rotate` replaced less than its grace ago (SEC-023, SEC-025)."""
        if not isinstance(proof, str) or not isinstance(public, str) or not peer_id:
            return False
        given = proof.split(",")[:8]  # a head announces one proof per credential it accepts
        return any(hmac.compare_digest(_proof(c, peer_id, public), p) for c in self.credentials(now) for p in given)

    def credentials(self, now: float) -> list[bytes]:
        """The join credentials accepted at ``now``: the current one first."""
        self._previous = [(c, end) for c, end in self._previous if end > now]
        return [self._join] + [c for c, _ in self._previous]

    def join_proofs(self, peer_id: str, public: bytes | str, now: float) -> str:
        """``peer_id``'s join proofs for ``public`` under every credential accepted at
        ``now``, comma-separated: what the head announces, so that a joiner holding the
        old key file or the new one during a grace period knows it (SEC-025)."""
        return ",".join(_proof(c, peer_id, public) for c in self.credentials(now))

    def with_new_join(self) -> ClusterKey:
        """A key with the same secret (so the same server key: running members keep
        their connections) and a new random join credential: what ``refrpc rotate-key``
        writes to the new key file (SEC-025)."""
        return ClusterKey(self._secret, secrets.token_bytes(32), self.head_public)

    def with_head(self, public: bytes) -> ClusterKey:
        """The same key naming ``public`` as the head's key (SEC-041)."""
        return ClusterKey(self._secret, None if self._join == self._secret else self._join, public)

    def join_hex(self) -> str:
        """The join credential as 64 hexadecimal digits (for :func:`rotate` on the head)."""
        return self._join.hex()

    def rotate(self, join: bytes | None, grace_s: float, now: float) -> None:
        """On the head: make ``join`` the join credential, and accept the one it replaces
        for ``grace_s`` more seconds; ``join`` None ends every grace period now (SEC-025)."""
        if join is None:
            self._previous = []
            return
        if len(join) != 32:
            raise ValueError("a join credential is 32 bytes")
        if join != self._join:
            self._previous = [(c, end) for c, end in self._previous if end > now]
            if grace_s > 0:
                self._previous.append((self._join, now + grace_s))
            self._join = join

    def __repr__(self) -> str:
        return f"<ClusterKey server {self.server_public.decode()}>"


def is_public_key(text: Any) -> bool:
    """Whether ``text`` (bytes) is a CURVE public key in Z85: 40 characters, 32 bytes."""
    if not isinstance(text, bytes) or len(text) != 40:
        return False
    try:
        return len(z85.decode(text)) == 32
    except (ValueError, KeyError, TypeError):
        return False


def _write_private(path: str | os.PathLike[str], data: dict[str, Any], replace: bool) -> None:
    """Write ``data`` as JSON to a new file only its owner can read (0600)."""
    target = os.fspath(path)
    tmp = f"{target}.{secrets.token_hex(4)}.tmp" if replace else target
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.write("\n")
        if replace:
            os.replace(tmp, target)
    except BaseException:
        if replace:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


class HeadKey:
    """The head's own CURVE key pair, kept on its host in the *head key file* beside
    the cluster key file (``KEY.head``, mode 0600; SEC-041). The key file names its
    public key, so that joiners know the server key the head serves with (SEC-040);
    whoever holds the pair is the operator, the only one who may rotate (CLU-052).

    Example:
        >>> head = HeadKey.generate()
        >>> zmq.curve_public(head.secret) == head.public
        True
    """

    def __init__(self, public: bytes, secret: bytes) -> None:
        if zmq.curve_public(secret) != public:
            raise KeyFileError("a head key's public key is not its secret key's")
        #: (public, secret), z85.
        self.public, self.secret = public, secret

    @classmethod
    def generate(cls) -> HeadKey:
        """A new pair from the system's random source."""
        return cls(*zmq.curve_keypair())

    @staticmethod
    def path_for(key_path: str | os.PathLike[str]) -> str:
        """Where the head key file of the key file at ``key_path`` is: beside it."""
        return os.fspath(key_path) + HEAD_SUFFIX

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HeadKey:
        """Read a head key file; like a key file, it must be readable by its owner only.

        Raises:
            KeyFileError: Missing, unreadable, malformed, or readable by others.
        """
        try:
            st = os.stat(path)
            if st.st_mode & 0o077:
                raise KeyFileError(f"{os.fspath(path)} is readable by others (mode {st.st_mode & 0o777:o}); "
                                   f"make it 0600: chmod 600 {os.fspath(path)}")
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except KeyFileError:
            raise
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read the head key file {os.fspath(path)}: {exc}") from None
        public, secret = (data.get("public"), data.get("secret")) if isinstance(data, dict) else (None, None)
        if (not isinstance(data, dict) or data.get("format") != HEAD_FORMAT or data.get("version") != VERSION
                or not isinstance(public, str) or not isinstance(secret, str) or len(secret) != 40):
            raise KeyFileError(f"{os.fspath(path)} is not a RefRPC head key file (version {VERSION})")
        try:
            return cls(public.encode("ascii"), secret.encode("ascii"))
        except (zmq.ZMQError, ValueError, UnicodeError) as exc:
            raise KeyFileError(f"{os.fspath(path)}: not a CURVE key pair ({exc})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a new head key file, mode 0600; an existing one is never overwritten."""
        _write_private(path, {"format": HEAD_FORMAT, "version": VERSION, "public": self.public.decode(),
                              "secret": self.secret.decode()}, False)

    def __repr__(self) -> str:
        return f"<HeadKey {self.public.decode()}>"


def _hex32(text: Any, name: str, path: str | os.PathLike[str]) -> bytes:
    """The 32 bytes a key file's member ``name`` gives as 64 hexadecimal digits (SEC-015)."""
    try:
        raw = bytes.fromhex(text) if isinstance(text, str) and len(text) == 64 else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyFileError(f"{os.fspath(path)}: '{name}' must be 64 hexadecimal digits")
    return raw


def _proof(credential: bytes, peer_id: str, public: bytes | str) -> str:
    text = public.decode("ascii") if isinstance(public, bytes) else public
    message = JOIN_LABEL + peer_id.encode("utf-8") + b" " + text.encode("ascii", "replace")
    return hmac.new(credential, message, hashlib.sha256).hexdigest()


class OwnKey:
    """A process's own CURVE key pair, made at its start (SEC-022): its DEALERs present
    it, and nobody else can derive it. ``cluster_key`` proves, with the join proof,
    that the process may join.

    Example:
        >>> key = ClusterKey.generate()
        >>> own = OwnKey(key, "w1")
        >>> key.accepts_join("w1", own.public.decode(), own.proof, now=0.0)
        True
        >>> key.accepts_join("w2", own.public.decode(), own.proof, now=0.0)
        False
    """

    def __init__(self, cluster_key: ClusterKey, peer_id: str, pair: tuple[bytes, bytes] | None = None) -> None:
        #: The cluster key (the server key, the join credential).
        self.cluster_key = cluster_key
        #: (public, secret), z85.
        self.public, self.secret = pair if pair is not None else zmq.curve_keypair()
        #: The join proof for ``peer_id`` with this key (SEC-022).
        self.proof = cluster_key.join_proof(peer_id, self.public)

    @classmethod
    def from_env(cls, cluster_key: ClusterKey, peer_id: str) -> OwnKey:
        """The key pair a supervisor handed this process in ``REFRPC_OWN_KEY`` (a restarted
        worker keeps its key, CLU-050), else a new one."""
        text = os.environ.pop(OWN_KEY_ENV, "")  # read once: the processes it starts are not it
        public, _, secret = text.partition(" ")
        if len(public) == 40 and len(secret) == 40:
            try:
                if zmq.curve_public(secret.encode()) == public.encode():
                    return cls(cluster_key, peer_id, (public.encode(), secret.encode()))
            except (zmq.ZMQError, ValueError):
                pass
        return cls(cluster_key, peer_id)

    def __repr__(self) -> str:
        return f"<OwnKey {self.public.decode()}>"


def key_from_env() -> ClusterKey | None:
    """The cluster key named by ``REFRPC_KEY_FILE``, or None if it is not set."""
    path = os.environ.get(KEY_FILE_ENV, "")
    return ClusterKey.load(path) if path else None


def default_key_path(port: int) -> str:
    """Where ``refrpc start --head`` writes a new key when not told: under ``~/.refrpc``."""
    directory = os.path.join(os.path.expanduser("~"), ".refrpc")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    return os.path.join(directory, f"cluster-{port}-{secrets.token_hex(3)}.key")
