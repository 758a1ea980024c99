"""Backend registry: names to backend objects, and which ones work here.

Public: :func:`get_backend`, :func:`available_backends` and the contract
(:class:`Job`, :class:`Backend`, see :mod:`qsim_core.backends.contract`).
Each compiled backend is the shared driver (:mod:`.driver`) over one kernel
module (:mod:`.numba`, :mod:`.cython`); :mod:`.reference` is the numpy oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from ..errors import BackendUnavailableError
from .contract import Backend, Job
from .driver import CompiledBackend


def _numba() -> Backend:
    from .numba import adjoint, kernels

    return CompiledBackend("numba", kernels, adjoint)


def _cython() -> Backend:
    try:
        from .cython import kernels
    except ImportError as error:
        raise BackendUnavailableError(
            "the cython backend is not built on this installation (its compiled extension "
            f"qsim_core.backends.cython._kernels could not be imported: {error}); reinstall with "
            "`pip install .` on a machine with a C compiler, or use backend='numba'"
        ) from error
    return CompiledBackend("cython", kernels, kernels)


def _reference() -> Backend:
    from .reference import ReferenceBackend

    return ReferenceBackend()


_FACTORIES: dict[str, Callable[[], Backend]] = {"numba": _numba, "cython": _cython, "reference": _reference}

#: order in which "auto" picks a backend
PREFERENCE = ("cython", "numba", "reference")


@cache
def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``"numba"``, ``"cython"``, ``"reference"`` or ``"auto"``).

    Raises:
        BackendUnavailableError: unknown name, or the backend cannot load here
            (the message says why and what to do).
    """
    if name == "auto":
        for candidate in PREFERENCE:
            try:
                return get_backend(candidate)
            except BackendUnavailableError:
                continue
    if name not in _FACTORIES:
        raise BackendUnavailableError(f"unknown backend {name!r}; choose one of {', '.join(_FACTORIES)} or 'auto'")
    try:
        return _FACTORIES[name]()
    except ImportError as error:
        raise BackendUnavailableError(f"backend {name!r} cannot be imported: {error}") from error


def available_backends() -> list[str]:
    """Names of the backends that load on this machine, fastest first."""
    names = []
    for name in PREFERENCE:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


__all__ = ["PREFERENCE", "Backend", "Job", "available_backends", "get_backend"]
