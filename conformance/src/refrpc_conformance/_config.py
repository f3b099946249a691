"""The implementation under test, as its TOML file describes it (conformance-hooks.md §3).

::

    name = "pyimpl"
    command = ["python", "-m", "refrpc.iut", "--endpoint", "{endpoint}", "--peer-id", "{peer_id}"]
    features = ["core", "borrowing", "recovery", "actors"]
    env = { PYTHONUNBUFFERED = "1" }
    startup_timeout_s = 30
    known_failing = ["handshake/HS-005-*"]
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

#: Features a session may negotiate (handshake.md §3); others are reported, not refused.
KNOWN_FEATURES = ("core", "borrowing", "recovery", "actors", "python-pickle", "lz4")


#: The limits a config may name (CNF-031), with the spec's defaults.
LIMITS = {"status_waits": 100_000, "fetches_per_fetcher": 4, "fetches": 64, "handshakes": 128,
          "actor_create_wait_ms": 10_000}


class ConfigError(ValueError):
    """The IUT file is missing a field or has one of the wrong type."""


@dataclass(frozen=True)
class IUTConfig:
    """How to start an implementation under test and what it claims."""

    #: Shown in reports.
    name: str
    #: argv, with ``{endpoint}`` and ``{peer_id}`` placeholders (CNF-011).
    command: tuple[str, ...]
    #: The profiles it claims (HS-004); cases needing others are UNSUPPORTED.
    features: tuple[str, ...]
    #: Added to the environment of every IUT process.
    env: dict[str, str] = field(default_factory=dict)
    #: How long to wait for the ``ready`` event (CNF-006).
    startup_timeout_s: float = 30.0
    #: Case ids or globs expected to fail (CNF-015).
    known_failing: tuple[str, ...] = ()
    #: It records its side of a run in the canonical trace format where REFRPC_TRACE_DIR
    #: says (CNF-023); the trace cases need it.
    records_traces: bool = False
    #: How the IUT authenticates its connections (SEC-002): ``"none"`` (the NULL
    #: mechanism), or ``"curve"``: CURVE with keys derived from a cluster key
    #: (SEC-015, SEC-016) that the suite makes for each case and hands the IUT as a
    #: key file, named by ``{key_file}`` in ``command`` and by ``REFRPC_KEY_FILE``.
    authentication: str = "none"
    #: With ``authentication = "curve"``: it can also run as a member of a cluster with
    #: a head (CNF-035): given its own key pair in ``REFRPC_IUT_OWN_KEY`` and a key file
    #: that names the head's key, it serves and connects with its own key (SEC-040) and
    #: knows the head by the key file (SEC-041). The head-cluster cases need it.
    head_member: bool = False
    #: With ``authentication = "curve"``: it can also run as the head of a cluster
    #: (CNF-047): given the head's key pair in ``REFRPC_IUT_HEAD_KEY`` and a key file
    #: that names its public key, it serves and connects with that pair (SEC-040) and
    #: binds joiners' PeerIds as SEC-023 says. The cases that play joiners need it.
    head: bool = False
    #: With ``head = true``: as the head, it also runs the head's membership calls
    #: (``register``, ``register_driver``, ``members``, ``drivers``, ``rotate``) for the
    #: suite's joiners when ``REFRPC_IUT_MEMBERSHIP=pickle`` is in its environment
    #: (CNF-051): it then offers ``python-pickle``, and their values are pickled
    #: (CLU-030). The cases about joining, registering and rotating need it.
    head_membership: bool = False
    #: It can run as a member of a cluster without authentication that joined through
    #: a head (CNF-052): started without a key file and with ``REFRPC_IUT_JOINED_HEAD``
    #: (that head's address), it offers ``python-pickle`` and runs ``learn``. The case
    #: about views from a false head (SEC-026) needs it.
    unauthenticated_member: bool = False
    #: Limits the IUT is started with, by name (CNF-031): ``status_waits`` (SEC-009's
    #: outstanding GetObjectStatus waits per remote peer), ``fetches_per_fetcher`` and
    #: ``fetches`` (FET-009), ``handshakes`` (SEC-021). A case that needs a limit the
    #: config does not name uses the spec's default, or is skipped when the default
    #: is too large to reach in a case.
    limits: dict[str, int] = field(default_factory=dict)
    #: The directory relative paths in ``command`` are resolved against.
    base_dir: Path = Path(".")

    def limit(self, name: str) -> int:
        """The limit the IUT is started with: as the config names it, else the spec's default."""
        return self.limits.get(name, LIMITS[name])

    def argv(self, endpoint: str, peer_id: str, key_file: str = "") -> list[str]:
        """The command with the placeholders filled in; ``python`` runs as this interpreter."""
        argv = [part.replace("{endpoint}", endpoint).replace("{peer_id}", peer_id).replace("{key_file}", key_file)
                for part in self.command]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        return argv


def load_config(path: str | os.PathLike[str]) -> IUTConfig:
    """Read an IUT file.

    Raises:
        ConfigError: A required field is missing or has the wrong type.
        FileNotFoundError: No such file.
    """
    p = Path(path)
    with p.open("rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return config_from_dict(data, base_dir=p.resolve().parent, where=str(p))


def config_from_dict(data: dict[str, object], *, base_dir: Path = Path("."), where: str = "config") -> IUTConfig:
    """Build an :class:`IUTConfig` from parsed TOML (for tests and embedding)."""

    def need(key: str, kind: type, default: object = ...) -> object:
        if key not in data:
            if default is ...:
                raise ConfigError(f"{where}: missing `{key}`")
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise ConfigError(f"{where}: `{key}` must be {kind.__name__}, not {type(value).__name__}")
        return value

    command = need("command", list)
    if not command or not all(isinstance(c, str) for c in command):  # type: ignore[union-attr]
        raise ConfigError(f"{where}: `command` must be a non-empty list of strings")
    features = need("features", list, ["core"])
    if not all(isinstance(f, str) for f in features):  # type: ignore[union-attr]
        raise ConfigError(f"{where}: `features` must be a list of strings")
    if "core" not in features:  # type: ignore[operator]
        raise ConfigError(f"{where}: `features` must include core (HS-007)")
    env = need("env", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):  # type: ignore[union-attr]
        raise ConfigError(f"{where}: `env` must map strings to strings")
    known = need("known_failing", list, [])
    if not all(isinstance(k, str) for k in known):  # type: ignore[union-attr]
        raise ConfigError(f"{where}: `known_failing` must be a list of strings")
    limits = need("limits", dict, {})
    if not all(k in LIMITS and isinstance(v, int) and not isinstance(v, bool) and v > 0
               for k, v in limits.items()):  # type: ignore[union-attr]
        raise ConfigError(f"{where}: `limits` must map names among {', '.join(LIMITS)} to positive integers")
    return IUTConfig(
        name=str(need("name", str, "iut")),
        command=tuple(command),  # type: ignore[arg-type]
        features=tuple(features),  # type: ignore[arg-type]
        env=dict(env),  # type: ignore[arg-type]
        startup_timeout_s=float(need("startup_timeout_s", float, 30.0)),  # type: ignore[arg-type]
        known_failing=tuple(known),  # type: ignore[arg-type]
        records_traces=bool(need("records_traces", bool, False)),
        authentication=_authentication(str(need("authentication", str, "none")), where),
        head_member=bool(need("head_member", bool, False)),
        head=bool(need("head", bool, False)),
        head_membership=bool(need("head_membership", bool, False)),
        unauthenticated_member=bool(need("unauthenticated_member", bool, False)),
        limits=dict(limits),  # type: ignore[arg-type]
        base_dir=base_dir,
    )


def _authentication(value: str, where: str) -> str:
    if value not in ("none", "curve"):
        raise ConfigError(f"{where}: `authentication` must be \"none\" or \"curve\", not {value!r}")
    return value
