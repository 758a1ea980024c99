"""Shared fixtures: which backends and precisions the suite runs against.

``QSIM_BACKEND=numba`` (or ``cython``) pins the compiled backend under test;
by default every compiled backend that loads here is tested, and
``QSIM_REQUIRE_BACKENDS=cython,numba`` makes the run fail unless those load. The reference
backend is the oracle and is always used for comparison.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import qsim_core as qc
from qsim_core import seed_circuit

# the suite never reads or writes the user's prepared-data cache (qstore.data.cache): one scratch folder per run
_CACHE_DIR = tempfile.mkdtemp(prefix="qstore-test-cache-")
os.environ["QSTORE_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

settings.register_profile(
    "qsim", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("qsim")

_REQUIRED = [name for name in os.environ.get("QSIM_REQUIRE_BACKENDS", "").split(",") if name]
_MISSING = sorted(set(_REQUIRED) - set(qc.available_backends()))
if _MISSING:  # CI sets this so that a failed build cannot pass as "skipped"
    raise pytest.UsageError(f"QSIM_REQUIRE_BACKENDS names backends that do not load here: {_MISSING}")

COMPILED = [name for name in qc.available_backends() if name != "reference"]
if os.environ.get("QSIM_BACKEND"):
    COMPILED = [os.environ["QSIM_BACKEND"]]

__all__ = ["COMPILED", "TOLERANCE", "random_params", "seed_circuit"]

#: tolerance of a compiled backend against the reference, per precision
TOLERANCE = {"double": 1e-10, "single": 1e-5}


@pytest.fixture(params=COMPILED, scope="session")
def backend(request) -> str:
    """Name of a compiled backend under test."""
    return request.param


@pytest.fixture(params=["double", "single"], scope="session")
def precision(request) -> str:
    """State precision under test."""
    return request.param


def random_params(circuit: qc.Circuit, batch: int | None = None, seed: int = 0) -> np.ndarray:
    """Uniform angles in [-pi, pi) of shape (P,) or (batch, P)."""
    shape = (circuit.num_params,) if batch is None else (batch, circuit.num_params)
    return np.random.default_rng(seed).uniform(-np.pi, np.pi, size=shape)
