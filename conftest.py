"""Shared pytest set-up: every test (and doctest) starts seeded and restores the default dtype.

Under pytest-xdist (`pytest -n N`) every worker runs one torch thread: N workers with one OpenMP
thread per core each would stall one another at every parallel region.
"""

import os
import random

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded_and_dtype_restored():
    """Seed all RNGs and restore torch's default dtype after the test."""
    dtype = torch.get_default_dtype()
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use numpy's global RNG
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture
def float64():
    """Run the test with float64 as torch's default dtype (restored afterwards)."""
    torch.set_default_dtype(torch.float64)
    return torch.float64
