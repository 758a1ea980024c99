"""qsim_core: a batched statevector and shot-sampling quantum circuit simulator.

Public API::

    import qsim_core as qc
    c = qc.Circuit(2).h(0).cnot(0, 1)
    sim = qc.Simulator(backend="numba", precision="double", seed=7)
    sim.probabilities(c)               # (4,) float64; qubit k is bit k of the index

See :class:`Circuit` (one builder method per gate of :data:`GATES`),
:class:`Param`, :class:`ParamSum`, :class:`Simulator`, :class:`NoiseModel` (IonQ's noise
models, ``Simulator(noise=...)``), :func:`to_native`,
:func:`seed_circuit` (the reference run's circuit), :func:`available_backends` and
:func:`build_info` (which compiled code runs here).
"""

from . import threads  # noqa: F401  (first: sets OpenMP's wait policy before a runtime loads)
from .backends import available_backends
from .buildinfo import build_info
from .circuit import Circuit, Operation, Param, ParamSum
from .errors import (
    BackendUnavailableError,
    CircuitError,
    CircuitTooLargeError,
    ObservableError,
    ParameterError,
    QsimError,
)
from .gates import GATES, Gate
from .native import to_native
from .noise import NoiseError, NoiseModel
from .seed import seed_circuit
from .simulator import Simulator

__all__ = [
    "GATES",
    "BackendUnavailableError",
    "Circuit",
    "CircuitError",
    "CircuitTooLargeError",
    "Gate",
    "NoiseError",
    "NoiseModel",
    "ObservableError",
    "Operation",
    "Param",
    "ParamSum",
    "ParameterError",
    "QsimError",
    "Simulator",
    "available_backends",
    "build_info",
    "seed_circuit",
    "to_native",
]
