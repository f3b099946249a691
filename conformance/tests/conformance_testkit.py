"""Paths the suite's own tests share (a module name no other test directory uses)."""

from __future__ import annotations

from pathlib import Path

import refrpc

#: This directory: fake_iut.py lives here.
HERE = Path(__file__).resolve().parent
#: Where refrpc (the codec the fake IUT uses) is importable from, for the fake's process.
REFRPC_PATH = str(Path(refrpc.__file__).resolve().parents[1])
