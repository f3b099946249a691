"""The membership calls a head IUT runs for the conformance suite (CNF-051).

The suite reaches them only with ``python-pickle`` in use, so what matters here is
that the IUT reads those pickles as CLU-030's built-in types and nothing else: a
joiner must not make it import, call or build anything (SEC-006). The calls
themselves are checked on the wire by the suite's cases (security/SEC-042-*,
security/SEC-025-*, membership/CLU-067-*), with the fault switches that break them.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from refrpc.core.messages import Encoding, RefDescriptor, Value
from refrpc.iut._fixtures import FixtureExecutor
from refrpc.iut._main import _membership_asked
from refrpc.iut._membership import NotAMembershipValue, functions, load_pickled, pickled

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def _pickle(obj: object, protocol: int = 5) -> Value:
    return Value(Encoding.PICKLE, pickle.dumps(obj, protocol=protocol))


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def test_a_view_and_the_arguments_of_every_call_round_trip() -> None:
    view = {"version": 3, "members": [("w1", "tcp://10.0.0.1:7000", 1, "h1", {"gpu": 0.5})],
            "incarnations": {"w1": (1 << 64) - 1}, "dead": [("w0", 12, "left")], "keys": {"head": "k" * 40}}
    assert load_pickled(pickled(view)) == view
    register = ("w1", "tcp://10.0.0.1:7000", 1, "h1", 4242, {}, (1 << 64) - 1)
    assert load_pickled(_pickle(register)) == register
    assert load_pickled(_pickle((None, 0.0))) == (None, 0.0)
    shared = ["host"]
    assert load_pickled(_pickle([shared, shared])) == [["host"], ["host"]]  # memo opcodes (BINGET)
    loop: list[object] = []
    loop.append(loop)
    assert load_pickled(_pickle(loop))[0] is not None  # a self-referring list is looked at once


@pytest.mark.parametrize("evil", [
    _Boom(),                    # REDUCE of os.system: names a function
    os.getcwd,                  # a function by reference
    Exception("x"),             # a class
    {1, 2},                     # a set (EMPTY_SET): no CLU-030 type
    b"bytes",                   # bytes
    1 << 64,                    # beyond 64 bits
    "deep",                     # nested deeper than any membership value (replaced below)
])
def test_anything_else_is_refused_before_it_is_acted_on(evil: object) -> None:
    if evil == "deep":
        evil = []
        for _ in range(40):
            evil = [evil]
    with pytest.raises(NotAMembershipValue):
        load_pickled(_pickle(evil))


def test_refs_buffers_and_garbage_are_refused() -> None:
    ref = RefDescriptor("o.1", "w", 1, "tcp://127.0.0.1:1")
    for value in (Value(Encoding.PICKLE, pickle.dumps(1, protocol=5), (), (ref,)),
                  Value(Encoding.PICKLE, pickle.dumps(1, protocol=5), (b"x",)),
                  Value(Encoding.PICKLE, b"\x80\x05not a pickle"),
                  Value(Encoding.PICKLE, pickle.dumps(pickle.PickleBuffer(b"abc"), protocol=5,
                                                      buffer_callback=lambda b: False))):
        with pytest.raises(NotAMembershipValue):
            load_pickled(value)


def test_the_fixture_executor_reads_every_pickled_argument_so() -> None:
    # The only path from a task's argument to an unpickler in the IUT (FixtureExecutor._load).
    with pytest.raises(NotAMembershipValue):
        FixtureExecutor._load(None, "o.1", _pickle(_Boom()))  # type: ignore[arg-type]
    assert FixtureExecutor._load(None, "o.1", _pickle(("w", 1))) == ("w", 1)  # type: ignore[arg-type]


def test_exactly_the_head_s_membership_functions_are_named() -> None:
    assert set(functions()) == {f"refrpc.runtime._membership:{f}"
                                for f in ("register", "register_driver", "members", "drivers", "rotate")}


def test_membership_is_asked_explicitly_and_only_of_a_head(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFRPC_IUT_MEMBERSHIP", raising=False)
    assert not _membership_asked(True)  # SEC-004: off unless asked
    monkeypatch.setenv("REFRPC_IUT_MEMBERSHIP", "pickle")
    assert _membership_asked(True)
    with pytest.raises(ValueError, match="only the head"):
        _membership_asked(False)
    monkeypatch.setenv("REFRPC_IUT_MEMBERSHIP", "yes")
    with pytest.raises(ValueError, match="must be 'pickle'"):
        _membership_asked(True)


def test_an_iut_that_is_no_head_refuses_to_start_with_membership(tmp_path: Path) -> None:
    env = {**os.environ, "REFRPC_IUT_MEMBERSHIP": "pickle", "PYTHONPATH": str(REPO / "pyimpl" / "src")}
    done = subprocess.run([sys.executable, "-m", "refrpc.iut", "--endpoint", "tcp://127.0.0.1:0", "--peer-id", "iut-1"],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50)
    assert done.returncode == 2 and "only the head" in done.stderr


def test_the_membership_names_are_callable_only_on_a_pickle_session() -> None:
    # As on the reference head, which resolves them by name only for such a submitter (SEC-006).
    from types import SimpleNamespace

    remotes = {"joiner": SimpleNamespace(features=("core", "python-pickle")), "plain": SimpleNamespace(features=("core",))}
    fake = SimpleNamespace(node=SimpleNamespace(core=SimpleNamespace(remotes=remotes)))
    assert FixtureExecutor._speaks_pickle(fake, "joiner")  # type: ignore[arg-type]
    assert not FixtureExecutor._speaks_pickle(fake, "plain")  # type: ignore[arg-type]
    assert not FixtureExecutor._speaks_pickle(fake, "stranger")  # type: ignore[arg-type]


def test_a_joined_head_is_an_address_and_only_without_a_key_file(monkeypatch: pytest.MonkeyPatch) -> None:
    from refrpc.iut._main import _joined_head
    from refrpc.transport import ClusterKey

    monkeypatch.delenv("REFRPC_IUT_JOINED_HEAD", raising=False)
    assert _joined_head(None) == ""
    monkeypatch.setenv("REFRPC_IUT_JOINED_HEAD", "tcp://127.0.0.1:4000")
    assert _joined_head(None) == "tcp://127.0.0.1:4000"
    with pytest.raises(ValueError, match="without authentication"):
        _joined_head(ClusterKey.generate())
    monkeypatch.setenv("REFRPC_IUT_JOINED_HEAD", "127.0.0.1")
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        _joined_head(None)


def test_a_member_runs_learn_alone() -> None:
    assert set(functions("member")) == {"refrpc.runtime._membership:learn"}
