"""The rotation-filling kernel: its parallel and serial builds each keep their own numba cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CALL = textwrap.dedent("""
    import numpy as np
    from qsim_core import bind_kernels
    kernel = getattr(bind_kernels, "fill_rotations_{variant}")
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
