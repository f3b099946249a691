"""What a case body works with: IUTs, wire peers, checks and expectations."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from refrpc.core.messages import RefDescriptor

from ._case import Check, CaseSpec
from ._config import IUTConfig
from ._control import ControlError, ControlTimeout, IUTExited, IUTProcess, ReadyInfo, Ref, from_json_value, to_json_value
from ._requirements import ABSOLUTE_LEVELS, Requirements
from ._trace import TraceRecord
from ._wire import Arrival, Clock, ExpectTimeout, Link, WireError, WirePeer


class CaseAbort(Exception):
    """The case cannot go on; its grade is decided by what was recorded so far."""


class CaseSkip(Exception):
    """The case cannot be run against this IUT (a limit it announced, say); graded UNSUPPORTED."""


class CaseTimeout(CaseAbort):
    """The case ran past its bound."""


class IUT:
    """One implementation under test in a case: its process and its control channel.

    The protocol identity (:attr:`peer_id`, :attr:`incarnation`, :attr:`address`)
    comes from its ``ready`` event.
    """

    def __init__(self, ctx: "CaseContext", process: IUTProcess, ready: ReadyInfo) -> None:
        self.ctx = ctx
        self.process = process
        self.ready = ready

    @property
    def peer_id(self) -> str:
        return self.ready.peer_id

    @property
    def incarnation(self) -> int:
        return self.ready.incarnation

    @property
    def address(self) -> str:
        return self.ready.address

    @property
    def features(self) -> tuple[str, ...]:
        return self.ready.features

    @property
    def inline_threshold(self) -> int:
        return self.ready.inline_threshold

    @property
    def alive(self) -> bool:
        return self.process.alive

    def control(self, op: str, *, timeout: float = 30.0, **args: Any) -> Any:
        """One control request (CNF-008); a failure to answer aborts the case.

        Raises:
            ControlError: The IUT answered ``ok: false`` (the case may expect that).
            CaseAbort: No answer (timeout, or the process ended).
        """
        try:
            return self.process.request(op, timeout=self.ctx.bound(timeout), **args)
        except ControlTimeout as exc:
            self.ctx.abort(str(exc))
        except IUTExited as exc:
            self.ctx.abort(str(exc))

    # Convenience wrappers for the operations of CNF-008.
    def add_peer(self, peer: WirePeer, slots: int = 0) -> None:
        self.control("add_peer", peer_id=peer.peer_id, address=peer.address, slots=slots)

    def put(self, value: Any) -> str:
        return str(self.control("put", value=to_json_value(value))["object_id"])

    def submit(
        self, function: str, args: Sequence[dict[str, Any]], executor: str, *, num_returns: int = 1, **options: Any
    ) -> dict[str, Any]:
        """``submit``; ``args`` are ``{"value": v}`` / ``{"ref": id}`` / ``{"shared": id}`` (values converted)."""
        wire_args = [{"value": to_json_value(a["value"])} if "value" in a else a for a in args]
        return dict(self.control("submit", function=function, args=wire_args, executor=executor, num_returns=num_returns, **options))

    def get(self, object_id: str, timeout_ms: int = 20_000) -> dict[str, Any]:
        """``get``: ``{"value": python value}`` or ``{"error": {"code", "message"}}``."""
        result = self.control("get", object_id=object_id, timeout_ms=timeout_ms, timeout=timeout_ms / 1000 + 10)
        if isinstance(result, dict) and "value" in result:
            return {"value": from_json_value(result["value"])}
        return dict(result)

    def drop(self, object_id: str) -> None:
        self.control("drop", object_id=object_id)

    def drop_held(self) -> int:
        return int(self.control("drop_held")["dropped"])

    def gc(self) -> None:
        self.control("gc")

    def quiesce(self, timeout_ms: int = 10_000) -> bool:
        return bool(self.control("quiesce", timeout_ms=timeout_ms, timeout=timeout_ms / 1000 + 10)["quiescent"])

    def cancel(self, task_id: str) -> None:
        self.control("cancel", task_id=task_id)

    def counts(self) -> dict[str, int]:
        """``counts``: the sizes of the IUT's task tables (CNF-022)."""
        return {k: int(v) for k, v in dict(self.control("counts")).items()}

    def table(self) -> list[dict[str, Any]]:
        return list(self.control("table")["entries"])

    def entry(self, object_id: str) -> dict[str, Any] | None:
        """The IUT's table entry for one object, or None."""
        return next((e for e in self.table() if e.get("objectId") == object_id), None)

    def crash(self) -> None:
        """``crash``: the IUT exits at once, without answering (CNF-008)."""
        self.process.expect_exit()
        try:
            self.process.request_async("crash")
        except IUTExited:
            pass


class CaseContext:
    """Everything a case body uses. One per case run.

    Args:
        spec: The case.
        config: The IUT file.
        requirements: The requirement index (for levels and quotes).
        run_dir: Where IUT logs go.
        extra_env: Environment for every IUT, on top of the config's and the case's.
    """

    def __init__(
        self,
        spec: CaseSpec,
        config: IUTConfig,
        requirements: Requirements,
        run_dir: Path,
        extra_env: dict[str, str] | None = None,
        claimed_features: Sequence[str] | None = None,
    ) -> None:
        self.spec = spec
        self.config = config
        #: The features the run treats as claimed (the config's, or ``--features``).
        self.claimed_features = tuple(config.features if claimed_features is None else claimed_features)
        self.requirements = requirements
        self.run_dir = run_dir
        self.extra_env = dict(extra_env or {})
        self.clock = Clock()
        self.deadline = time.monotonic() + spec.timeout
        self.trace: list[TraceRecord] = []
        self.checks: list[Check] = []
        self.notes: list[str] = []
        #: The cluster key of this case when the IUT authenticates (SEC-015), else None;
        #: every IUT gets it as a key file, and suite peers are members by default.
        self.cluster_key: Any = None
        if config.authentication == "curve":
            from refrpc.transport import ClusterKey

            self.cluster_key = ClusterKey.generate()
            key_dir = run_dir / "keys"
            key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            key_file = key_dir / f"{spec.id.replace('/', '__')}.{secrets.token_hex(4)}.key"
            self.cluster_key.save(key_file)
            self.extra_env["REFRPC_KEY_FILE"] = str(key_file)
        self.iuts: list[IUT] = []
        self.peers: list[WirePeer] = []
        self._processes: list[IUTProcess] = []
        self._iut_counter = 0

    # ------------------------------------------------------------ time
    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def bound(self, timeout: float) -> float:
        """``timeout`` cut to what is left of the case's bound.

        Raises:
            CaseTimeout: Nothing is left.
        """
        left = self.remaining()
        if left <= 0:
            raise CaseTimeout(f"the case did not end within its bound of {self.spec.timeout:g} s")
        return min(timeout, left)

    # ------------------------------------------------------------ actors
    def start_iut(self, *, env: dict[str, str] | None = None) -> IUT:
        """Start a fresh IUT and wait for its ``ready`` event (CNF-011, CNF-013)."""
        self._iut_counter += 1
        peer_id = f"iut-{self._iut_counter}"
        all_env = dict(self.spec.iut_env)
        all_env.update(self.extra_env)
        all_env.update(env or {})
        safe_id = self.spec.id.replace("/", "__")
        process = IUTProcess(
            self.config, peer_id, env=all_env, stderr_path=self.run_dir / "logs" / f"{safe_id}.{peer_id}.stderr.log"
        )
        self._processes.append(process)
        try:
            ready = process.launch(self.bound(self.config.startup_timeout_s))
        except OSError as exc:
            self.abort(f"cannot start the IUT ({' '.join(self.config.command)}): {exc}")
        except ControlTimeout as exc:
            self.abort(f"{exc}; stderr: {process.stderr_tail(1500)}")
        except IUTExited as exc:
            self.abort(str(exc))
        for failed in process.failed_starts:
            self.note(f"{peer_id} exited before `ready` and was started again on another port: {failed}")
        self.check(
            "CNF-011", ready.peer_id == peer_id, f"ready.peer_id = {peer_id!r}", repr(ready.peer_id),
            note="the IUT uses the PeerId the suite gave it",
        )
        self.check(
            "CNF-011", ready.address == process.endpoint, f"ready.address = {process.endpoint!r}", repr(ready.address),
            note="the IUT binds the endpoint the suite gave it",
        )
        missing = [f for f in self.claimed_features if f not in ready.features]
        self.check(
            "CNF-021", not missing, f"every claimed feature in ready.features {list(ready.features)}",
            f"claimed but not offered: {missing}", note="the config's claimed features are offered by the IUT",
        )
        if missing:
            self.abort(f"the IUT does not offer the claimed feature(s) {', '.join(missing)} (CNF-021)")
        iut = IUT(self, process, ready)
        self.iuts.append(iut)
        return iut

    def wire_peer(self, name: str = "suite", *, restart_of: WirePeer | None = None, **options: Any) -> WirePeer:
        """A new suite peer (its own ROUTER and incarnation), recording into this case's trace.

        Args:
            name: The PeerId, made unique within the case.
            restart_of: Give the new peer that peer's PeerId: a new incarnation of
                the same peer, as after a restart (HS-006).
            options: For :class:`WirePeer` (``features``, ``heartbeat_ms``, ...);
                ``cluster_key`` defaults to the case's (a member; None: the NULL
                mechanism), ``key_name`` to the PeerId (whose member key it uses).
        """
        options.setdefault("cluster_key", self.cluster_key)
        if restart_of is not None:
            peer_id = restart_of.peer_id
        else:
            peer_id = f"{name}-{len(self.peers) + 1}" if any(p.peer_id.startswith(name) for p in self.peers) else name
        peer = WirePeer(peer_id, secrets.randbits(63) | 1, trace=self.trace, clock=self.clock, **options)
        self.peers.append(peer)
        return peer

    def session(self, peer: WirePeer, iut: IUT, **hello_fields: Any) -> Link:
        """Connect ``peer`` to ``iut`` and complete the handshake; a refusal aborts the case."""
        link = peer.connect(iut.peer_id, iut.address, iut.incarnation)
        try:
            link.handshake(self.bound(15.0), give_up=self.iut_died, **hello_fields)
        except WireError as exc:
            self.fail("HS-002", "Welcome answering a valid Hello", str(exc))
        except ExpectTimeout as exc:
            self.fail("HS-002", "Welcome answering a valid Hello", str(exc))
        return link

    def new_id(self, peer: WirePeer) -> str:
        """A fresh id allocated by ``peer`` (ID-003)."""
        return peer.ids.new()

    def descriptor(self, peer: WirePeer, object_id: str, *, size_hint: int = -1, forward_id: str = "") -> RefDescriptor:
        """A descriptor of an object ``peer`` owns (REF-001, REF-003)."""
        return RefDescriptor(
            object_id=object_id, owner=peer.peer_id, owner_incarnation=peer.incarnation,
            owner_address=peer.address, size_hint=size_hint, forward_id=forward_id,
        )

    def iut_died(self) -> str | None:
        """Why waiting is pointless: an IUT the case did not end has exited."""
        for process in self._processes:
            if not process.exit_expected and process.returncode is not None:
                return f"{process.peer_id} exited with status {process.returncode}"
        return None

    # ------------------------------------------------------------ verdicts
    def check(
        self,
        requirement: str,
        condition: bool,
        expected: Any,
        actual: Any,
        *,
        level: str | None = None,
        note: str = "",
    ) -> bool:
        """Record one check of a requirement.

        Args:
            requirement: Its id.
            condition: Whether it held.
            expected: What the spec wants (shown on failure).
            actual: What happened.
            level: Overrides the index's level, for a paragraph that mixes
                MUST and SHOULD.
            note: Which part of the case, for people.

        Returns:
            ``condition``.
        """
        lvl = level or (self.requirements.level(requirement) if requirement else "MUST")
        self.checks.append(Check(requirement, lvl, bool(condition), _text(expected), _text(actual), note))
        return bool(condition)

    def require(self, requirement: str, condition: bool, expected: Any, actual: Any, **kw: Any) -> None:
        """:meth:`check`, and stop the case if it failed."""
        if not self.check(requirement, condition, expected, actual, **kw):
            raise CaseAbort(f"{requirement}: expected {_text(expected)}, got {_text(actual)}")

    def fail(self, requirement: str, expected: Any, actual: Any, *, note: str = "") -> NoReturn:
        """Record a failed check and stop the case."""
        self.check(requirement, False, expected, actual, note=note)
        raise CaseAbort(f"{requirement}: expected {_text(expected)}, got {_text(actual)}")

    def skip(self, why: str) -> NoReturn:
        """Stop the case without a verdict: it is graded UNSUPPORTED, with ``why`` as a note."""
        raise CaseSkip(why)

    def abort(self, why: str) -> NoReturn:
        """Stop the case for a reason that is not one requirement (the IUT is gone, ...)."""
        raise CaseAbort(why)

    def note(self, text: str) -> None:
        """An observation with no verdict (shown in the report)."""
        self.notes.append(text)

    def expect(
        self,
        peer: WirePeer,
        types: type | tuple[type, ...],
        where: Callable[[Any], bool] | None = None,
        *,
        requirement: str,
        what: str,
        timeout: float = 10.0,
        remote: str | None = None,
    ) -> Arrival:
        """Wait for a message; if none comes, the requirement fails and the case stops.

        Interleaved messages that do not match (Heartbeats, acks, other
        replies) are skipped and stay available to later expectations.
        """
        try:
            return peer.expect(types, where, remote=remote, timeout=self.bound(timeout), what=what, give_up=self.iut_died)
        except ExpectTimeout as exc:
            self.fail(requirement, what, str(exc))

    def wait_until(self, peer: WirePeer, condition: Callable[[], bool], *, requirement: str, what: str, timeout: float = 10.0) -> None:
        """Wait for a condition on a peer's state; failing it fails the requirement."""
        bound = self.bound(timeout)
        try:
            peer.wait_until(condition, bound, what=what, give_up=self.iut_died)
        except ExpectTimeout:
            self.fail(requirement, what, self.iut_died() or f"not within {bound:g} s")

    def poll_until(self, condition: Callable[[], bool], *, requirement: str, what: str, timeout: float = 10.0, interval: float = 0.05) -> None:
        """Wait for a condition that no peer's lock guards (a control-channel answer, a process exit)."""
        bound = self.bound(timeout)
        deadline = time.monotonic() + bound
        while not condition():
            if time.monotonic() >= deadline:
                self.fail(requirement, what, f"not within {bound:g} s")
            time.sleep(interval)

    # ------------------------------------------------------------ teardown
    def _check_still_talking(self) -> None:
        """Each IUT must still send on a live session at the end (heartbeats, LIV-001):
        an implementation whose protocol side died but whose control channel still
        answers is not "up"."""
        for iut in self.iuts:
            if iut.process.exit_expected or not iut.process.alive:
                continue
            links = [
                p.links[iut.peer_id] for p in self.peers
                if not p.closed and not p.went_silent and iut.peer_id in p.links
                and p.links[iut.peer_id].live and not p.links[iut.peer_id].said_goodbye
                and p.links[iut.peer_id].remote_incarnation == iut.incarnation
            ]
            if not links:
                continue
            link = links[0]
            before = link.arrivals
            try:
                link.peer.wait_until(lambda: link.arrivals > before, 5.0, what="a message")
                talking = True
            except ExpectTimeout:
                talking = False
            except WireError:
                continue
            self.check(
                "LIV-001", talking, f"{iut.peer_id} still sending on its session with {link.peer.peer_id} at the end of the case",
                "a message within 5 s" if talking else "nothing for 5 s: its protocol side stopped",
                note="the IUT must not stop or hang because of what the case sent",
            )

    def finish(self) -> list[dict[str, Any]]:
        """Check that every IUT is still up (unless the case ended it), stop everything.

        Returns:
            Per IUT: its PeerId, exit status, control transcript, events, log tail.
        """
        for iut in self.iuts:
            if iut.process.exit_expected:
                continue
            up = iut.process.alive
            answered = False
            if up:
                try:
                    iut.process.request("info", timeout=10.0)
                    answered = True
                except (ControlError, ControlTimeout, IUTExited):
                    answered = False
            self.check(
                "", up and answered, f"{iut.peer_id} still running and answering `info` after the case",
                "running and answering" if up and answered else (
                    "running but not answering `info`" if up else f"exited with status {iut.process.returncode}"
                ),
                level="MUST", note="the IUT must not crash or hang because of what the case sent",
            )
        if not any(not c.passed and c.level in ABSOLUTE_LEVELS for c in self.checks):
            self._check_still_talking()  # a failed case needs no further evidence
        for process in self._processes:
            for violation in process.violations:
                req = violation.split(":", 1)[0]
                self.check(req, False, "control channel used as conformance-hooks.md section 2 says", violation, level="MUST")
        for peer in self.peers:
            peer.close()
        out = []
        for process in self._processes:
            process.stop()
            out.append({
                "peer_id": process.peer_id,
                "endpoint": process.endpoint,
                "returncode": process.returncode,
                "ready": process.ready.raw if process.ready else None,
                "events": process.events[-50:],
                "control": [
                    {"request": _clip(req), "response": _clip(resp)} for req, resp in process.transcript[-100:]
                ],
                "stderr_tail": process.stderr_tail(),
            })
        return out


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 2000 else text[:1997] + "..."


def _clip(msg: Any) -> Any:
    if msg is None:
        return None
    text = repr(msg)
    return msg if len(text) <= 600 else text[:597] + "..."


__all__ = ["CaseAbort", "CaseContext", "CaseSkip", "CaseTimeout", "IUT", "Ref"]

