"""CPU dispatch of the Cython kernels: every level this CPU runs agrees with the reference; the choice of level."""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core import backends, compiler
from qsim_core.backends import isa
from qsim_core.backends.driver import CompiledBackend
from tests.conftest import TOLERANCE, random_params, seed_circuit
from tests.qsim_core.backends.test_cross_backend import REFERENCE, check_against_reference
from tests.strategies import circuits, permutation_runs, rotation_layers

PACKAGE = "qsim_core.backends.cython"
BUILT = isa.built_levels(PACKAGE)
RUNNABLE = isa.runnable_levels(isa.cpu_flags())

# /proc/cpuinfo flag lines of real CPUs (trimmed of flags no level reads)
IVY_BRIDGE = ("fpu sse sse2 ssse3 cx16 sse4_1 sse4_2 popcnt lahf_lm pni xsave avx f16c rdrand "
              "aes pclmulqdq").split()  # AVX but no AVX2 / FMA / BMI: baseline only
HASWELL = IVY_BRIDGE + "fma movbe avx2 bmi1 bmi2 abm erms invpcid".split()
SKYLAKE_X = HASWELL + "avx512f avx512dq avx512cd avx512bw avx512vl adx".split()
ZEN4_NO_MOVBE = [flag for flag in SKYLAKE_X if flag != "movbe"]  # a hypervisor hiding one v3 flag


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    ([], "x86_64", ["baseline"]),
    (IVY_BRIDGE, "x86_64", ["baseline"]),
    (HASWELL, "x86_64", ["x86-64-v3", "baseline"]),
    (SKYLAKE_X, "x86_64", ["x86-64-v4", "x86-64-v3", "baseline"]),
    (SKYLAKE_X, "AMD64", ["x86-64-v4", "x86-64-v3", "baseline"]),
    (ZEN4_NO_MOVBE, "x86_64", ["baseline"]),
    (SKYLAKE_X, "aarch64", ["baseline"]),
])
def test_runnable_levels_from_cpu_flags(flags, machine, expected):
    assert isa.runnable_levels(flags, machine) == expected


def test_candidates_are_built_and_runnable_best_first():
    every = list(isa.LEVELS)
    assert isa.candidates(SKYLAKE_X, every, machine="x86_64") == every
    assert isa.candidates(SKYLAKE_X, ["x86-64-v3", "baseline"], machine="x86_64") == ["x86-64-v3", "baseline"]
    assert isa.candidates(HASWELL, every, machine="x86_64") == ["x86-64-v3", "baseline"]
    assert isa.candidates(HASWELL, ["baseline"], machine="x86_64") == ["baseline"]
    assert isa.candidates(HASWELL, [], machine="x86_64") == []


def test_a_forced_level_is_the_only_candidate_or_a_clear_error():
    every = list(isa.LEVELS)
    assert isa.candidates(SKYLAKE_X, every, "baseline", machine="x86_64") == ["baseline"]
    assert isa.candidates(HASWELL, every, "x86-64-v3", machine="x86_64") == ["x86-64-v3"]
    with pytest.raises(ImportError, match=r"QSIM_CYTHON_ISA=x86-64-v4 .*cannot execute .*avx512bw"):
        isa.candidates(HASWELL, every, "x86-64-v4", machine="x86_64")
    with pytest.raises(ImportError, match=r"cannot execute \(this is not an x86-64 machine"):
        isa.candidates(SKYLAKE_X, every, "x86-64-v3", machine="aarch64")
    with pytest.raises(ImportError, match=r"cannot execute \(its feature flags cannot be read"):
        isa.candidates([], every, "x86-64-v3", machine="x86_64")
    with pytest.raises(ImportError, match=r"does not exist here \(built: baseline\)"):
        isa.candidates(SKYLAKE_X, ["baseline"], "x86-64-v3", machine="x86_64")
    with pytest.raises(ValueError, match=r"'avx2' is not an instruction-set level; choose one of x86-64-v4"):
        isa.candidates(SKYLAKE_X, every, "avx2", machine="x86_64")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: test\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\n"
                       "flags\t\t: fpu\n")
    assert isa.cpu_flags(str(cpuinfo)) == {"fpu", "avx2", "fma"}
    assert isa.cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.fixture
def reimport(monkeypatch):
    """Import the Cython backend package afresh (the original is restored after the test)."""
    def run():
        monkeypatch.delitem(sys.modules, PACKAGE, raising=False)
        monkeypatch.delattr(backends, "cython", raising=False)
        return importlib.import_module(PACKAGE)

    backends.get_backend.cache_clear()
    yield run
    backends.get_backend.cache_clear()


def test_the_best_runnable_level_loads():
    if not BUILT:
        pytest.skip("the Cython extension is not built here")
    from qsim_core.backends import cython

    assert cython.ISA == (os.environ.get(isa.ENV_VAR) or [level for level in RUNNABLE if level in BUILT][0])
    assert cython.kernels.__name__ == f"{PACKAGE}.{isa.LEVELS[cython.ISA].module}"
    info = qc.build_info()
    assert info["cython"]["isa"] == cython.ISA and info["cython"]["built"] == BUILT
    assert info["cpu_levels"] == RUNNABLE
    assert info["numba"]["target_cpu"]


@pytest.mark.parametrize("level", RUNNABLE)
def test_the_environment_variable_forces_a_level(reimport, monkeypatch, level):
    if level not in BUILT:
        pytest.skip(f"{level} is not built here")
    monkeypatch.setenv(isa.ENV_VAR, level)
    package = reimport()
    assert package.ISA == level and package.kernels.__name__ == f"{PACKAGE}.{isa.LEVELS[level].module}"
    assert qc.build_info()["cython"]["isa"] == level


def test_forcing_a_level_this_cpu_cannot_run_fails_clearly(reimport, monkeypatch):
    beyond = [level for level in isa.LEVELS if level not in RUNNABLE]
    if not beyond:
        pytest.skip("this CPU runs every level")
    monkeypatch.setenv(isa.ENV_VAR, beyond[0])
    with pytest.raises(ImportError, match=f"{isa.ENV_VAR}={beyond[0]} forces a build this CPU cannot execute"):
        reimport()
    with pytest.raises(qc.BackendUnavailableError, match="cannot execute"):
        qc.Simulator(backend="cython")
    assert qc.build_info()["cython"]["error"].startswith(f"{isa.ENV_VAR}={beyond[0]}")


def test_a_level_that_fails_to_import_falls_back_to_the_next(reimport, monkeypatch):
    order = isa.candidates(isa.cpu_flags(), BUILT)
    if len(order) < 2:
        pytest.skip("fewer than two levels are built and runnable here")
    monkeypatch.setitem(sys.modules, f"{PACKAGE}.{isa.LEVELS[order[0]].module}", None)
    assert reimport().ISA == order[1]


def test_no_importable_level_makes_the_backend_unavailable(reimport, monkeypatch):
    for level in isa.LEVELS.values():
        monkeypatch.setitem(sys.modules, f"{PACKAGE}.{level.module}", None)
    with pytest.raises(ImportError, match="no build of qsim_core.backends.cython's kernels imports here"):
        reimport()
    with pytest.raises(qc.BackendUnavailableError, match=r"cython backend is not built.*pip install \."):
        qc.Simulator(backend="cython")
    assert "cython" not in qc.available_backends()


def test_a_stale_build_fails_at_import(reimport, monkeypatch):
    if not BUILT:
        pytest.skip("the Cython extension is not built here")
    monkeypatch.setattr(compiler, "U2D", compiler.U2D + 100)
    with pytest.raises(ImportError, match="was built from a different source"):
        reimport()


def level_backend(level: str) -> CompiledBackend:
    """The Cython backend over the module of ``level`` (skips when it is not built or this CPU cannot run it)."""
    if level not in BUILT:
        pytest.skip(f"{level} is not built here")
    if level not in RUNNABLE:
        pytest.skip(f"this CPU cannot execute {level}")
    module = importlib.import_module(f"{PACKAGE}.{isa.LEVELS[level].module}")
    return CompiledBackend(f"cython {level}", module, module)


# rotation layers: runs of RY on distinct qubits, which the v4 build applies up to three in one sweep (whole states,
# L1 tiles and gathered blocks alike); permutation runs: each level gathers four amplitudes per table read
@pytest.mark.parametrize("level", list(isa.LEVELS))
@settings(max_examples=24)
@given(circuit=st.one_of(circuits(), rotation_layers(), permutation_runs()))
def test_every_level_matches_the_reference_on_random_circuits(level, precision, circuit):
    check_against_reference(circuit, level_backend(level), precision)


@pytest.mark.parametrize("level", list(isa.LEVELS))
@settings(max_examples=8)
@given(circuit=st.one_of(circuits(min_qubits=7, max_qubits=9, max_ops=30), rotation_layers(min_qubits=7, max_qubits=9),
                        permutation_runs(min_qubits=7, max_qubits=9)))
def test_every_level_matches_the_reference_through_gathered_blocks(level, circuit):
    check_against_reference(circuit, level_backend(level), "double", batch=2, block_qubits=5)


@pytest.mark.parametrize("level", list(isa.LEVELS))
def test_every_level_matches_the_reference_on_the_seed_circuit(level, precision):
    backend = level_backend(level)
    check_against_reference(seed_circuit(), backend, precision, batch=20)
    circuit, params = seed_circuit(), random_params(seed_circuit(), batch=4)
    labels = [f"Z{q}" for q in range(8)]
    np.testing.assert_allclose(qc.Simulator(backend=backend, precision=precision).gradient(circuit, labels, params),
                               REFERENCE.gradient(circuit, labels, params), atol=TOLERANCE[precision] * 100)


@pytest.mark.skipif("numba" not in qc.available_backends(), reason="numba is not installed")
@pytest.mark.parametrize("level", list(isa.LEVELS))
@pytest.mark.parametrize("num_qubits", [1, 3, 8, 12])
def test_every_level_draws_numbas_samples(level, num_qubits):
    # A real initial state under an empty circuit: every level forms the same probabilities to the bit (a square
    # plus zero, fused or not), so every level must draw the very shots numba draws, with its own split of the
    # columns and draw loop (AVX-512 eight at a time, or one by one); shot estimates too.
    rng = np.random.default_rng(num_qubits)
    psi = rng.standard_normal(1 << num_qubits) * (rng.random(1 << num_qubits) < 0.8)
    psi[0] = 1.0  # never all zero
    psi /= np.linalg.norm(psi)
    c = qc.Circuit(num_qubits)
    ours, numba = (qc.Simulator(backend=backend, seed=7) for backend in (level_backend(level), "numba"))
    for shots in (1, 9, 1000):
        np.testing.assert_array_equal(ours.sample(c, shots, initial_state=psi),
                                      numba.sample(c, shots, initial_state=psi), err_msg=f"{shots} shots")
    labels = ["Z0", "I", "X0"] + ([f"Z0 Z{num_qubits - 1}"] if num_qubits > 1 else [])
    np.testing.assert_array_equal(ours.expectation(c, labels, shots=500, initial_state=psi),
                                  numba.expectation(c, labels, shots=500, initial_state=psi))
