"""Shared fixtures: the tiny fake IUT (fake_iut.py) described as an IUT config."""

from __future__ import annotations

from typing import Callable

import pytest

from conformance_testkit import HERE, REFRPC_PATH
from refrpc_conformance import IUTConfig
from refrpc_conformance._config import config_from_dict


@pytest.fixture
def fake_config() -> Callable[..., IUTConfig]:
    """An IUT config that starts fake_iut.py with the given deliberate bugs."""

    def make(bugs: str = "", **extra: object) -> IUTConfig:
        data: dict[str, object] = {
            "name": "fake" + (f"[{bugs}]" if bugs else ""),
            "command": ["python", "fake_iut.py", "--endpoint", "{endpoint}", "--peer-id", "{peer_id}"],
            "features": ["core"],
            "env": {"FAKE_IUT_BUGS": bugs, "PYTHONPATH": REFRPC_PATH},
            "startup_timeout_s": 30,
        }
        data.update(extra)
        return config_from_dict(data, base_dir=HERE)

    return make
