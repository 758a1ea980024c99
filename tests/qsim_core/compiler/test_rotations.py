"""The rotation-filling kernel: on the threads asked for, and each build with a numba cache of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import qsim_core as qc
from qsim_core.compiler import compile_circuit, rotations

CALL = textwrap.dedent("""
    import numpy as np
    from qsim_core.compiler import rotations
    kernel = getattr(rotations, "fill_rotations_{variant}")
    out, pauli = np.empty((3, 1, 2, 2), np.complex128), np.eye(2, dtype=np.complex128)[np.newaxis]
    kernel(np.ones((3, 1)), np.zeros((1, 1), np.int64), np.ones((1, 1)), np.zeros(1), pauli, np.zeros(1, np.int64), out)
    print(sum(kernel.stats.cache_hits.values()))
""")


def cache_hits(variant: str, cache: Path) -> int:
    """Cache hits of one build's first call in a fresh interpreter whose numba cache is ``cache``."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", CALL.format(variant=variant)], capture_output=True, text=True,
                            check=True, cwd=root, env={**os.environ, "NUMBA_CACHE_DIR": str(cache)}, timeout=600)
    return int(result.stdout.split()[-1])


def test_the_parallel_build_does_not_load_the_serial_builds_machine_code(tmp_path):
    # numba files cached code by function name and bytecode, not options: one function built twice collided,
    # and whichever build ran first was loaded by the other in later processes (13 % slower seed batches)
    assert cache_hits("serial", tmp_path) == 0
    assert cache_hits("parallel", tmp_path) == 0  # compiled anew, not the serial build from the cache
    assert cache_hits("parallel", tmp_path) == 1  # and cached under its own name


@pytest.mark.parametrize("threads", [1, 2])
def test_a_batch_is_filled_on_the_threads_asked_for(monkeypatch, threads):
    used: list[int] = []
    parallel = rotations.fill_rotations_parallel

    def spy(*args) -> None:
        used.append(numba.get_num_threads())
        parallel(*args)

    monkeypatch.setattr(rotations, "fill_rotations_parallel", spy)
    program = compile_circuit(qc.Circuit(2).ry(0, qc.Param(0)).rz(1, qc.Param(1)).cnot(0, 1), zbasis=False)
    params = np.random.default_rng(0).uniform(-np.pi, np.pi, (4 * rotations.PARALLEL_MIN_BATCH, 2))
    u1, u2 = program.bind(params, np.complex128, threads)
    # one thread: the serial build (numba's default would be every core, whatever the Simulator's threads);
    # RY and RZ are filled in one call
    assert used == ([] if threads == 1 or numba.config.NUMBA_NUM_THREADS < 2 else [2])
    monkeypatch.undo()
    serial = program.bind(params, np.complex128, 1)
    np.testing.assert_array_equal(u1, serial[0])
    np.testing.assert_array_equal(u2, serial[1])


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_both_builds_release_the_gil(variant):
    # a binding thread must not stop the process's other Python threads (a Dask worker's comms, a server loop)
    assert getattr(rotations, f"fill_rotations_{variant}").targetoptions["nogil"] is True


def within_ulps(got: np.ndarray, want: np.ndarray, ulps: int) -> bool:
    """Every entry of ``got`` within ``ulps`` units in the last place of libm's ``want``, or within 1e-24 of it
    (near a zero of sin or cos, where the three-part reduction's absolute error, not the result, sets the
    bound)."""
    return bool(np.all(np.abs(got - want) <= np.maximum(ulps * np.spacing(np.abs(want)), 1e-24)))


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cosines, sines = np.empty_like(x), np.empty_like(x)
    rotations._sincos_compiled(x, cosines, sines)
    return cosines, sines


@given(st.lists(st.floats(-2 * rotations.SINCOS_LIMIT, 2 * rotations.SINCOS_LIMIT), min_size=1, max_size=50))
def test_the_vectorised_sine_and_cosine_are_within_two_ulp_of_libm(angles):
    x = np.array(angles)
    cosines, sines = sincos(x)
    assert within_ulps(cosines, np.cos(x), 2) and within_ulps(sines, np.sin(x), 2)


def test_sine_and_cosine_at_quadrant_edges_and_beyond_the_reduction():
    # multiples of pi/4 (quadrant boundaries and the polynomials' ends), signed zeros, the smallest
    # subnormal, and angles past SINCOS_LIMIT, which libm takes over
    k = np.arange(-4000, 4001)
    x = np.concatenate([k * np.pi / 4, np.nextafter(k * np.pi / 4, np.inf), [0.0, -0.0, 5e-324, -5e-324],
                        [rotations.SINCOS_LIMIT, -rotations.SINCOS_LIMIT, 1.5e6, 1e12, -3e15, 1e300]])
    cosines, sines = sincos(x)
    assert within_ulps(cosines, np.cos(x), 2) and within_ulps(sines, np.sin(x), 2)
    assert np.array_equal(cosines[-4:], np.cos(x[-4:])) and np.array_equal(sines[-4:], np.sin(x[-4:]))


@pytest.mark.parametrize("generator", ["Y", "Z", "XX", "YZ"])
@pytest.mark.parametrize("dtype", [np.complex128, np.complex64])
def test_filled_rotations_are_exp_of_the_generator(generator, dtype):
    # every row and term layout: two terms summed, an unused term, an offset; 150 rows span three blocks
    paulis = {"X": np.array([[0, 1], [1, 0]]), "Y": np.array([[0, -1j], [1j, 0]]), "Z": np.diag([1, -1])}
    pauli = np.ones((1, 1), np.complex128)
    for letter in generator:
        pauli = np.kron(pauli, paulis[letter])
    rng = np.random.default_rng(len(generator))
    params = rng.uniform(-10, 10, (150, 3))
    index, scale, offset = np.array([[0, 2], [1, 0], [2, 1]]), np.array([[1.0, -0.5], [2.0, 0.0], [1.0, 1.0]]), \
        np.array([0.3, 0.0, -1.0])
    out = np.zeros((150, 5, len(pauli), len(pauli)), dtype)
    slot = np.array([4, 0, 2])  # written where the slots say, the other matrices left as they were
    rotations.fill_rotations(params, index, scale, offset, np.stack([pauli] * 3), slot, out, threads=2)
    angles = offset + params[:, index[:, 0]] * scale[:, 0] + params[:, index[:, 1]] * scale[:, 1]  # the kernel's order
    want = np.zeros_like(out)
    want[:, slot] = (np.cos(angles / 2)[..., None, None] * np.eye(len(pauli))
                     - 1j * np.sin(angles / 2)[..., None, None] * pauli)
    np.testing.assert_allclose(out, want, rtol=0, atol=4e-16 if dtype == np.complex128 else 1e-7)
