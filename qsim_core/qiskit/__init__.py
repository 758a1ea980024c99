"""Qiskit on the engine: the V2 primitives and a ``BackendV2`` (needs the ``[qiskit]`` extra).

Qiskit users keep their circuits, observables and code::

    from qsim_core.qiskit import EstimatorV2, SamplerV2, QsimBackend

    estimator = EstimatorV2()                       # like StatevectorEstimator / Aer's EstimatorV2
    evs = estimator.run([(circuit, observables, parameter_values)]).result()[0].data.evs
    counts = QsimBackend().run(transpile(measured, backend), shots=1000).result().get_counts()

Each pub, with its whole array of parameter values, is one batched engine
call. Modules: :mod:`~qsim_core.qiskit.translate` (QuantumCircuit -> engine
circuit, cached), :mod:`~qsim_core.qiskit.estimator`,
:mod:`~qsim_core.qiskit.sampler`, :mod:`~qsim_core.qiskit.backend`,
:mod:`~qsim_core.qiskit.job` (the primitives' job handle).

Public (``__all__``): :class:`EstimatorV2`, :class:`SamplerV2`, :class:`QsimBackend`.
"""

try:
    import qiskit  # noqa: F401 - fail here, with the extra to install, rather than deep inside
except ImportError as error:  # pragma: no cover - the test environment has Qiskit
    raise ImportError("qsim_core.qiskit needs Qiskit: pip install 'qsim-core[qiskit]'") from error

from .backend import QsimBackend
from .estimator import EstimatorV2
from .sampler import SamplerV2

__all__ = ["EstimatorV2", "QsimBackend", "SamplerV2"]
