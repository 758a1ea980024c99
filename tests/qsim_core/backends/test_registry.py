"""Backend selection and the 'compiled part missing' path."""

from __future__ import annotations

import sys

import pytest

import qsim_core as qc
from qsim_core import backends
from qsim_core.backends import isa


def test_available_backends_lists_working_ones_fastest_first():
    names = qc.available_backends()
    assert "reference" in names and "numba" in names
    assert names == [n for n in backends.PREFERENCE if n in names]
    for name in names:
        assert qc.Simulator(backend=name).backend == name


def test_auto_picks_the_first_available():
    assert qc.Simulator().backend == qc.available_backends()[0]


def test_missing_cython_extension_gives_a_clear_message(monkeypatch):
    backends.get_backend.cache_clear()
    for level in isa.LEVELS.values():  # every instruction-set build of the extension
        monkeypatch.setitem(sys.modules, f"qsim_core.backends.cython.{level.module}", None)
    monkeypatch.delitem(sys.modules, "qsim_core.backends.cython", raising=False)
    monkeypatch.delattr(backends, "cython", raising=False)
    try:
        with pytest.raises(qc.BackendUnavailableError, match=r"cython backend is not built.*pip install \."):
            qc.Simulator(backend="cython")
        assert "cython" not in qc.available_backends()
    finally:
        backends.get_backend.cache_clear()


def test_the_compiled_backends_provide_the_kernel_contract():
    from qsim_core.backends.contract import KERNEL_FUNCTIONS

    for name in qc.available_backends():
        backend = backends.get_backend(name)
        if name == "reference":
            continue
        provided = {f for module in (backend.kernels, backend.adjoint_kernels) for f in dir(module)}
        assert set(KERNEL_FUNCTIONS) <= provided, (name, set(KERNEL_FUNCTIONS) - provided)
        assert all(callable(getattr(backend.kernels, f, None) or getattr(backend.adjoint_kernels, f))
                   for f in KERNEL_FUNCTIONS)


def test_the_numba_kernels_release_the_gil():
    # as the Cython kernels do: the local server's worker threads and a Dask worker's comms run beside them
    backend = backends.get_backend("numba")
    compiled = [getattr(backend.kernels, f, None) or getattr(backend.adjoint_kernels, f)
                for f in ("adjoint_small", "evolve_large", "expectations_large", "probabilities_in_place",
                          "run_small", "samples_large", "shot_estimates_into")]
    assert all(kernel.targetoptions["nogil"] for kernel in compiled)
