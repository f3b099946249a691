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
"""

from __future__ import annotations

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

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes) or len(secret) != 32:
            raise KeyFileError("a cluster secret is 32 bytes")
        self._secret = secret
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
        text = data.get("secret")
        try:
            secret = bytes.fromhex(text) if isinstance(text, str) and len(text) == 64 else b""
        except ValueError:
            secret = b""
        if len(secret) != 32:
            raise KeyFileError(f"{os.fspath(path)}: 'secret' must be 64 hexadecimal digits")
        return cls(secret)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a new key file, mode 0600; an existing file is never overwritten.

        Raises:
            FileExistsError: ``path`` exists.
        """
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "version": VERSION, "secret": self._secret.hex()}, f)
            f.write("\n")

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

    def __repr__(self) -> str:
        return f"<ClusterKey server {self.server_public.decode()}>"


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
