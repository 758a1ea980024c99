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

import qsim_core as qc
from qsim_core.compiler import compile_circuit, rotations

CALL = textwrap.dedent("""
    import numpy as np
    from qsim_core.compiler import rotations
    kernel = getattr(rotations, "fill_rotations_{variant}")
    out, pauli = np.empty((3, 1, 2, 2), np.complex128), np.eye(2, dtype=np.complex128)
    kernel(np.ones((3, 1)), np.zeros((1, 1), np.int64), np.ones((1, 1)), np.zeros(1), pauli, out)
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
    # one thread: the serial build (numba's default would be every core, whatever the Simulator's threads)
    assert used == ([] if threads == 1 or numba.config.NUMBA_NUM_THREADS < 2 else [2, 2])
    monkeypatch.undo()
    serial = program.bind(params, np.complex128, 1)
    np.testing.assert_array_equal(u1, serial[0])
    np.testing.assert_array_equal(u2, serial[1])


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_both_builds_release_the_gil(variant):
    # a binding thread must not stop the process's other Python threads (a Dask worker's comms, a server loop)
    assert getattr(rotations, f"fill_rotations_{variant}").targetoptions["nogil"] is True
