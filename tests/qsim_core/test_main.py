"""``python -m qsim_core`` (the README's main job) and the docstring examples."""

from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import qsim_core.circuit
import qsim_core.simulator
from qsim_core import seed_circuit
from qsim_core.__main__ import main


def test_main_job_runs_the_seed_workload(capsys):
    assert main(["--circuits", "64", "--shots", "128", "--batch", "32", "--backend", "numba"]) == 0
    out = capsys.readouterr().out
    assert "64 circuits x 128 shots in batches of 32" in out
    assert "faster here" in out


def test_main_job_rejects_bad_options():
    result = subprocess.run([sys.executable, "-m", "qsim_core", "--shots", "0"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "must be positive" in result.stderr
    assert "Traceback" not in result.stderr


def test_seed_circuit_has_the_reference_gate_counts():
    names = [op.name for op in seed_circuit()]
    assert (names.count("ry"), names.count("rz"), names.count("cnot")) == (8 + 16, 16, 56)
    assert seed_circuit().num_params == 40


@pytest.mark.parametrize("module", [qsim_core.circuit, qsim_core.simulator])
def test_docstring_examples(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
