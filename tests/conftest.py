"""Shared test helpers: where ../shared lives, and skipping (never under CI) when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def shared_dir() -> Path:
    env = os.environ.get("STETHOSCOPE_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"../shared is required under CI but missing at {path}")
        pytest.skip(f"shared data folder not found at {path} (set STETHOSCOPE_SHARED)")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
