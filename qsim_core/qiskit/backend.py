"""``QsimBackend``: the engine as a Qiskit ``BackendV2``, used as ``AerSimulator`` is.

``transpile(circuit, backend)`` targets the engine's gate table: its
:class:`~qiskit.transpiler.Target` holds every gate of
:data:`qsim_core.gates.GATES` under its Qiskit name, plus ``measure``,
``delay`` and ``reset`` (run only before a qubit's first gate), on any
number of qubits with all-to-all connectivity.
``backend.run(circuits, shots=, seed_simulator=, memory=)`` returns a job
whose ``result()`` is a :class:`qiskit.result.Result` with counts (and
per-shot memory), keyed as Qiskit keys them. ``run`` also accepts circuits
that were not transpiled: they go through the same translation as the
primitives (:mod:`qsim_core.qiskit.translate`). Circuits must have all their
parameters bound.

Public (``__all__``): :class:`QsimBackend`, :class:`QsimJob`.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Sequence

import numpy as np
from qiskit import QuantumCircuit
from qiskit.providers import BackendV2, JobStatus, JobV1, Options
from qiskit.result import Result
from qiskit.transpiler import Target

from ..errors import ParameterError
from ..simulator import Simulator
from .job import Engine
from .translate import engine_target, translate


class QsimJob(JobV1):
    """A finished ``backend.run`` job (the engine is synchronous): ``result()`` returns at once."""

    _async = False

    def __init__(self, backend: QsimBackend, job_id: str, result: Result) -> None:
        super().__init__(backend, job_id)
        self._result = result

    def submit(self) -> None:
        """Nothing to do: the job ran when it was made."""

    def result(self, timeout: float | None = None) -> Result:
        """The :class:`~qiskit.result.Result` (``timeout`` is accepted and unused)."""
        return self._result

    def status(self) -> JobStatus:
        """Always ``DONE``."""
        return JobStatus.DONE


class QsimBackend(BackendV2):
    """The engine as a ``BackendV2``: ``transpile(circuit, backend)``, then ``backend.run(...)``.

    Args:
        backend: the engine backend (``"auto"``, ``"cython"``, ``"numba"``, ``"reference"``).
        threads: engine threads; None uses every core.
        **options: default run options: ``shots`` (1024), ``seed_simulator`` (None: fresh
            randomness; an int makes runs reproducible), ``memory`` (False: no per-shot list).

    Example:
        >>> from qiskit import QuantumCircuit, transpile
        >>> bell = QuantumCircuit(2)
        >>> _ = bell.h(0), bell.cx(0, 1), bell.measure_all()
        >>> backend = QsimBackend()
        >>> counts = backend.run(transpile(bell, backend), shots=100, seed_simulator=1).result().get_counts()
        >>> sorted(counts)
        ['00', '11']
    """

    def __init__(self, backend: str = "auto", threads: int | None = None, **options: object) -> None:
        super().__init__(name="qsim_core", description="qsim_core's batched statevector engine",
                         backend_version="1")
        Engine(None, backend, threads)  # checks the backend name and thread count
        self._engine = backend
        self._threads = threads
        self._target = engine_target()
        if options:
            self.set_options(**options)

    @property
    def target(self) -> Target:
        """The engine's gates (see :func:`qsim_core.qiskit.translate.engine_target`)."""
        return self._target

    @property
    def max_circuits(self) -> None:
        """No limit."""
        return None

    @classmethod
    def _default_options(cls) -> Options:
        return Options(shots=1024, memory=False, seed_simulator=None)

    def run(self, run_input: QuantumCircuit | Sequence[QuantumCircuit], **options: object) -> QsimJob:
        """Sample each circuit's measurements ``shots`` times.

        Args:
            run_input: one circuit or a list; parameters bound, measurements terminal.
            **options: ``shots``, ``seed_simulator``, ``memory`` for this run (others warn and are ignored).

        Raises:
            CircuitError: a circuit the engine cannot run (see :mod:`qsim_core.qiskit.translate`).
            ParameterError: a circuit with unbound parameters.
        """
        for key in options:
            if not hasattr(self.options, key):
                warnings.warn(f"Option {key} is not used by this backend", UserWarning, stacklevel=2)
        settings = {key: options.get(key, getattr(self.options, key)) for key in ("shots", "seed_simulator", "memory")}
        circuits = [run_input] if isinstance(run_input, QuantumCircuit) else list(run_input)
        start = time.perf_counter()
        simulator = Simulator(backend=self._engine, seed=settings["seed_simulator"], threads=self._threads)
        results = [self._run_circuit(simulator, circuit, settings) for circuit in circuits]
        return QsimJob(self, str(uuid.uuid4()), Result.from_dict({
            "backend_name": self.name, "backend_version": self.backend_version, "job_id": str(uuid.uuid4()),
            "results": results, "success": True, "status": "COMPLETED", "time_taken": time.perf_counter() - start,
        }))

    def _run_circuit(self, simulator: Simulator, circuit: QuantumCircuit, settings: dict) -> dict:
        if circuit.parameters:
            names = ", ".join(p.name for p in circuit.parameters)
            raise ParameterError(f"circuit {circuit.name!r} has unbound parameters ({names}); bind them with "
                                 "circuit.assign_parameters(...) or use qsim_core.qiskit.SamplerV2")
        start = time.perf_counter()
        translation = translate(circuit, measurements=True)
        samples = simulator.sample(translation.circuit, settings["shots"])
        bits = translation.clbit_values(samples, range(circuit.num_clbits))
        # classical memory as integers (clbit k is bit k); Python ints past 62 clbits
        dtype = np.int64 if circuit.num_clbits <= 62 else object
        weights = np.array([1 << k for k in range(circuit.num_clbits)], dtype)
        outcomes, inverse, counts = np.unique(bits.astype(weights.dtype) @ weights, return_inverse=True,
                                              return_counts=True)
        keys = [hex(int(v)) for v in outcomes]
        data: dict = {"counts": dict(zip(keys, counts.tolist(), strict=True))}
        if settings["memory"]:
            data["memory"] = [keys[k] for k in inverse.tolist()]
        header = {
            "name": circuit.name,
            "n_qubits": circuit.num_qubits,
            "qreg_sizes": [[r.name, r.size] for r in circuit.qregs],
            "creg_sizes": [[r.name, r.size] for r in circuit.cregs],
            "memory_slots": circuit.num_clbits,
            "global_phase": float(circuit.global_phase),
            "metadata": circuit.metadata or {},
        }
        return {"name": circuit.name, "shots": settings["shots"], "seed_simulator": settings["seed_simulator"],
                "data": data, "status": "DONE", "success": True, "header": header,
                "time_taken": time.perf_counter() - start}


__all__ = ["QsimBackend", "QsimJob"]
