"""refrpc.core stays sans-IO and deterministic (DESIGN 4, STYLE habit 3)."""

from __future__ import annotations

import ast
from pathlib import Path

import refrpc.core

CORE = Path(refrpc.core.__file__).parent
#: No sockets, threads, clocks, global randomness, processes or Cap'n Proto in the core.
FORBIDDEN = {"zmq", "capnp", "asyncio", "threading", "time", "os", "socket", "random", "subprocess", "multiprocessing", "datetime", "select", "selectors", "uuid"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_no_io_clock_or_randomness() -> None:
    offenders = {p.name: sorted(_imports(p) & FORBIDDEN) for p in sorted(CORE.glob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"sans-IO core imports I/O or nondeterminism: {offenders}"


def test_core_modules_are_all_checked() -> None:
    # The scan above must actually see the modules that hold the protocol logic.
    names = {p.name for p in CORE.glob("*.py")}
    assert {"peer.py", "_session.py", "_objects.py", "_tasks.py", "_execution.py", "tables.py"} <= names


def test_same_stimuli_give_the_same_instructions() -> None:
    # Determinism: two peers fed the same stimuli produce identical output.
    from refrpc.core import Peer
    from refrpc.core import events as ev
    from refrpc.core.messages import Encoding, Value

    outs = []
    for _ in range(2):
        p = Peer("a", 7, "tcp://127.0.0.1:1")
        p.handle(ev.AddPeer("s1", "b", "tcp://127.0.0.1:2"), ev.AddPeer("s2", "c", "tcp://127.0.0.1:3"))
        p.handle(ev.Put("s3", "a.7.1", Value(Encoding.RAW, b"x")))
        outs.append(p.handle(
            ev.Submit("s4", "a.7.2", "f", (ev.ArgSpec(object_id="a.7.1"),), ("a.7.2.r0",)),
            ev.Tick("s5", 1000),
        ))
    assert outs[0] == outs[1] and outs[0]


def test_tables_only_lead_to_known_states() -> None:
    from refrpc.core import tables

    terminal = {"deleted", "dropped", "forgotten"}
    for name, table in tables.ALL_TABLES.items():
        for state, row in table.items():
            for event, (nxt, req) in row.items():
                assert nxt in table or nxt in terminal, f"{name}: {state} --{event}--> unknown {nxt}"
                assert req, f"{name}: {state} --{event}--> cites no requirement"
