"""Programs written the way Ray users write them run as written (real processes).

A script without an ``if __name__ == "__main__":`` guard, the same code fed to the
interpreter on stdin, functions and classes defined in it, a dataclass passed to
and returned from a task, a task that submits tasks defined in the script, an
actor class defined in the script, a lambda passed as an argument: a worker never
runs the user's script, and all of it travels by value (cloudpickle).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

PROGRAM = textwrap.dedent('''
    import dataclasses
    import refrpc

    @dataclasses.dataclass
    class Point:
        x: int
        y: int

    @refrpc.remote
    def norm1(p):
        return Point(abs(p.x), abs(p.y))

    @refrpc.remote
    def fib(n):
        if n < 2:
            return n
        return sum(refrpc.get([fib.remote(n - 1), fib.remote(n - 2)]))

    @refrpc.remote
    def apply(f, v):
        return f(v)

    @refrpc.remote
    class Counter:
        def __init__(self, start):
            self.n = start

        def incr(self):
            self.n += 1
            return self.n

    refrpc.init(2)
    print("point", refrpc.get(norm1.remote(Point(-3, 4))))
    print("fib", refrpc.get(fib.remote(6)))
    k = 10
    print("lambda", refrpc.get(apply.remote(lambda v: v * k, 4)))
    c = Counter.remote(5)
    print("actor", refrpc.get([c.incr.remote() for _ in range(3)]))
    refrpc.shutdown()
''')
EXPECTED = ["point Point(x=3, y=4)", "fib 8", "lambda 40", "actor [6, 7, 8]"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _check(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:4] == EXPECTED, proc.stdout + proc.stderr[-3000:]


def test_an_unguarded_script_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "user_program.py"
    script.write_text(PROGRAM)
    _check(subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=150, env=_env(),
                          cwd=tmp_path))


def test_the_same_program_runs_from_stdin(tmp_path: Path) -> None:
    # Like a REPL or a notebook cell: the code has no file at all.
    _check(subprocess.run([sys.executable, "-"], input=PROGRAM, capture_output=True, text=True, timeout=150,
                          env=_env(), cwd=tmp_path))


GUARDED = textwrap.dedent('''
    import refrpc

    class Rejected(Exception):
        # Its __init__ takes more than it passes on: pickle alone cannot rebuild it.
        def __init__(self, code, why):
            super().__init__(why)
            self.code = code

    @refrpc.remote
    def vet(code):
        raise Rejected(code, "not allowed")

    def make_actor_class():
        # An actor class made inside a function: its qualname has "<locals>".
        @refrpc.remote
        class Tally:
            def __init__(self, start, *, step=1):
                self.n, self.step = start, step

            def bump(self):
                self.n += self.step
                return self.n

        return Tally

    if __name__ == "__main__":
        @refrpc.remote
        def square(x):  # defined inside the guard: a worker has no way to import it
            return x * x

        @refrpc.remote
        def sum_of_squares(n):  # submits a task defined inside the guard too
            return sum(refrpc.get([square.remote(i) for i in range(n)]))

        refrpc.init(2)
        print("guard", refrpc.get(sum_of_squares.remote(4)))
        tally = make_actor_class().remote(10, step=5)
        print("local actor", refrpc.get([tally.bump.remote() for _ in range(2)]))
        try:
            refrpc.get(vet.options(name="vetting").remote(7))
        except Rejected as e:  # the task's own exception, rebuilt faithfully
            print("rejected", e.cause.code, e.cause.args, type(e.cause) is Rejected, str(e).startswith("task 'vetting': "))
        refrpc.shutdown()
''')


def test_functions_inside_the_main_guard_an_actor_class_made_in_a_function_and_a_named_task_run(tmp_path: Path) -> None:
    # ... and a task named with options(name=) whose exception's __init__ takes other
    # arguments than it keeps in args: caught as itself, its attributes intact.
    script = tmp_path / "guarded_program.py"
    script.write_text(GUARDED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=150, env=_env(),
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:3] == ["guard 14", "local actor [15, 20]", "rejected 7 ('not allowed',) True True"], \
        proc.stdout + proc.stderr[-3000:]
