"""Fixtures for the journal tests: warm numba kernels once per process (children started by
the crash tests then load them from numba's on-disk cache) and a seeded command load."""

from __future__ import annotations

import numpy as np
import pytest
from journal_support import CONFIG, SPECS, load

from engine.engine import Engine


@pytest.fixture(scope="session", autouse=True)
def warm_kernels() -> None:
    engine = Engine(SPECS, CONFIG)
    engine.apply(load(300, seed=1))
    engine.state_hash()


@pytest.fixture(scope="session")
def commands() -> np.ndarray:
    """About 6,000 core-mix commands (1,502 prefill + 4,500 stream). Shared: do not modify.
    (Not flagged read-only: numba compiles a second specialisation of every kernel for
    read-only arrays, about a minute on a cold cache.)"""
    return load(4_500)
