"""A notebook, run the way Jupyter runs it: a real IPython kernel process, cells
sent one at a time, and an interrupt (Jupyter's "interrupt the kernel": SIGINT to
the kernel's process group) while a cell waits in ``get``.

The kernel runs from a kernel spec written into a temporary directory, with this
interpreter and this checkout's ``refrpc`` on its path, so the test needs no
kernel installed on the machine (a fresh clone with ``make test`` runs it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from refrpc.testing import main_thread_asleep

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.timeout(240)
TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
NOTEBOOK = TESTS.parents[1] / "docs" / "examples" / "notebook.ipynb"
KERNEL = "refrpc-test-python"


@pytest.fixture
def kernel_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec of this interpreter, found through ``JUPYTER_PATH`` only."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "refrpc test",
        "language": "python",
        "env": {"PYTHONPATH": f"{SRC}:{TESTS}"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return KERNEL


def _client(nb: Any, workdir: Path, timeout: int = 120) -> Any:
    return nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=timeout, resources={"metadata": {"path": str(workdir)}})


def _text(cell: Any) -> str:
    """What a cell showed: its streams and the plain text of its results."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append(out["data"].get("text/plain", ""))
        elif out["output_type"] == "error":
            parts.append(f"{out['ename']}: {out['evalue']}")
    return "".join(parts).strip()


def test_the_documented_notebook_runs_and_shows_what_it_says(kernel_spec: str, tmp_path: Path) -> None:
    # docs/examples/notebook.ipynb: init, a function, a dataclass and an actor class
    # defined in cells, tasks, wait, get, cleanup. Its stored outputs are what a
    # fresh run shows.
    stored = nbformat.read(NOTEBOOK, as_version=4)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    _client(nb, tmp_path).execute()  # raises CellExecutionError if a cell fails
    got = [_text(c) for c in nb.cells if c.cell_type == "code"]
    want = [_text(c) for c in stored.cells if c.cell_type == "code"]
    assert got == want
    assert "[0, 1, 4, 9, 16]" in got
    assert "Point(x=1.5, y=2.0)" in got  # a dataclass defined in a cell, there and back
    assert "[11, 13, 16]" in got  # an actor class defined in a cell, keyword arguments
    assert "{'CPU': 2.0}" in got  # refrpc.cluster_resources(), as Ray shows it


INTERRUPT_CELLS = [
    """import os, refrpc, remote_fixtures as rf
refrpc.init(2)
procs = refrpc.api._ctx.cluster.processes
before = sorted(p.pid for p in procs.values())
print(os.getpid())""",
    """@refrpc.remote
def slow():
    import time
    time.sleep(60)

print("waiting", flush=True)
refrpc.get(slow.remote())""",
    """print(refrpc.get([rf.add.remote(i, 1) for i in range(4)], timeout=30),
      sorted(p.pid for p in procs.values()) == before)""",
    "refrpc.shutdown()",
]


def test_interrupting_the_kernel_during_a_long_get_leaves_the_cluster_working(kernel_spec: str, tmp_path: Path) -> None:
    # Kernel > Interrupt while a cell waits 60 s in get: the cell ends with
    # KeyboardInterrupt at once, and the next cell runs tasks on the same workers
    # (Jupyter signals the kernel's whole process group; the workers used to die).
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in INTERRUPT_CELLS])
    nb.cells[1].metadata["tags"] = ["raises-exception"]  # the interrupted cell may fail
    client = _client(nb, tmp_path)

    async def run() -> None:
        async with client.async_setup_kernel():
            await client.async_execute_cell(nb.cells[0], 0)
            kernel_pid = int(_text(nb.cells[0]))
            waiting = asyncio.ensure_future(client.async_execute_cell(nb.cells[1], 1))
            end = time.monotonic() + 60
            while not (_text(nb.cells[1]).startswith("waiting") and main_thread_asleep(kernel_pid)):
                assert time.monotonic() < end and not waiting.done(), _text(nb.cells[1])
                await asyncio.sleep(0.05)
            started = time.monotonic()
            await client.km.interrupt_kernel()
            await waiting
            assert time.monotonic() - started < 20  # not after the 60 s task
            await client.async_execute_cell(nb.cells[2], 2)
            await client.async_execute_cell(nb.cells[3], 3)

    asyncio.run(run())
    assert "KeyboardInterrupt" in _text(nb.cells[1])
    assert _text(nb.cells[2]) == "[1, 2, 3, 4] True"  # the same worker processes, still serving
