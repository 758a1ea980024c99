"""The PennyLane device ``qsim_core.qubit``: PennyLane's device API on the engine.

Written on :class:`pennylane.devices.Device` the way ``lightning.qubit`` is:
capabilities in a TOML file (``qsim_qubit.toml``), PennyLane's preprocessing
transforms to bring tapes to the engine's gate set, ``execute`` for results
and the engine's adjoint sweep for ``compute_derivatives``/``compute_vjp``.
What differs: a broadcast tape is *not* split into one tape per row; its
``B`` rows run as one batched engine call (forward and adjoint), and tapes of
one structure share one compiled program (:mod:`qsim_core.pennylane.translate`).

Public (``__all__``): :class:`QsimQubit`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pennylane as qml
from pennylane.devices import Device, ExecutionConfig
from pennylane.devices.modifiers import simulator_tracking, single_tape_support
from pennylane.devices.preprocess import (
    decompose,
    device_resolve_dynamic_wires,
    no_sampling,
    validate_adjoint_trainable_params,
    validate_device_wires,
    validate_measurements,
    validate_observables,
)
from pennylane.exceptions import DeviceError
from pennylane.measurements import ExpectationMP
from pennylane.operation import Operator
from pennylane.tape import QuantumScript
from pennylane.transforms import broadcast_expand, defer_measurements

from ..compiler import DEFAULT_BLOCK_QUBITS, MAX_BLOCK_QUBITS
from ..simulator import Simulator
from . import derivatives
from .measure import measure_tape
from .translate import supports_operation

_GRADIENT_METHODS = ("adjoint", "device", "best")


def _adjoint_operation(op: Operator) -> bool:
    """Operations the engine's adjoint sweep differentiates (all of its gates; a state preparation only
    when it is not trainable, otherwise PennyLane decomposes it into gates)."""
    if isinstance(op, qml.operation.StatePrepBase):
        return not any(qml.math.requires_grad(d) for d in op.data)
    return supports_operation(op)


def _is_expectation(mp) -> bool:
    return isinstance(mp, ExpectationMP)


def _trainable_broadcast(tape: QuantumScript) -> bool:
    """True when a trainable parameter carries the broadcast axis (a device Jacobian cannot hold it)."""
    if tape.batch_size is None:
        return False
    return any(qml.math.requires_grad(value) and qml.math.ndim(value) > ndim
               for op in tape.operations for value, ndim in zip(op.data, op.ndim_params, strict=False))


def _decomposition(op: Operator) -> list[Operator]:
    """PennyLane's decomposition of ``op``; an operation known only by its matrix becomes a QubitUnitary,
    which PennyLane decomposes in turn."""
    if not op.has_decomposition and op.has_matrix:
        return [qml.QubitUnitary(op.matrix(), wires=op.wires)]
    return op.decomposition()


@qml.transform
def _expand_trainable_broadcast(tape: QuantumScript):
    """Split a broadcast tape into its rows only when a trainable parameter is broadcast."""
    if _trainable_broadcast(tape):
        return broadcast_expand(tape)
    return (tape,), lambda results: results[0]


@simulator_tracking
@single_tape_support
class QsimQubit(Device):
    """PennyLane device ``qsim_core.qubit`` running on the qsim_core engine.

    Args:
        wires: number of wires or their labels (None: the wires each circuit uses).
        shots: default shots (PennyLane deprecates device shots; prefer ``qml.set_shots``).
        seed: seed of every sampled result (engine and PennyLane-side sampling);
            the same seed gives the same samples. None draws fresh entropy.
        backend: engine backend, ``"auto"``, ``"cython"``, ``"numba"`` or ``"reference"``.
        precision: ``"double"`` (complex128) or ``"single"`` (complex64) statevector.
        threads: engine worker threads (None: all cores).

    Raises:
        ValueError: an unknown precision, a bad thread count or seed.
        BackendUnavailableError: an unknown or unbuilt backend.

    Example:
        >>> import pennylane as qml
        >>> dev = qml.device("qsim_core.qubit", wires=2)
        >>> @qml.qnode(dev)
        ... def bell():
        ...     qml.Hadamard(0)
        ...     qml.CNOT([0, 1])
        ...     return qml.probs()
        >>> bell().round(3).tolist()
        [0.5, 0.0, 0.0, 0.5]
    """

    config_filepath = Path(__file__).parent / "qsim_qubit.toml"
    _device_options = ("backend", "precision", "threads")

    def __init__(self, wires: int | Iterable[Hashable] | None = None, shots: int | Sequence[int] | None = None,
                 *, seed: int | None = None, backend: str = "auto",
                 precision: str = "double", threads: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        super().__init__(wires=wires, shots=shots)
        # independent streams for the engine's samplers and PennyLane's (see qsim_core.pennylane.measure)
        self._seeds = np.random.SeedSequence(seed)
        self._rng = np.random.default_rng(self._seeds.spawn(1)[0])
        self._simulators: dict[int, Simulator] = {}
        self._simulator = self._engine(DEFAULT_BLOCK_QUBITS, backend=backend, precision=precision, threads=threads)
        self._backend = self._simulator.backend
        self._precision = precision
        self._threads = threads
        if wires is None or isinstance(wires, int):
            self._wire_map = None
        else:
            self._wire_map = {w: i for i, w in enumerate(self.wires)}

    @property
    def name(self) -> str:
        """The device's short name."""
        return "qsim_core.qubit"

    def _engine(self, block_qubits: int, **options) -> Simulator:
        """The engine simulator of this block width (created once, seeded from the device's seed)."""
        if block_qubits not in self._simulators:
            options = options or {"backend": self._backend, "precision": self._precision, "threads": self._threads}
            seed = int(self._seeds.spawn(1)[0].generate_state(1, np.uint64)[0])
            self._simulators[block_qubits] = Simulator(**options, seed=seed, block_qubits=block_qubits)
        return self._simulators[block_qubits]

    def _simulator_for(self, tape: QuantumScript, num_wires: int) -> Simulator:
        """The default simulator, or for a tape that starts from a state wider than its block width (the
        engine's limit for initial states) one whose block spans the register."""
        if (DEFAULT_BLOCK_QUBITS < num_wires <= MAX_BLOCK_QUBITS and tape.operations
                and isinstance(tape.operations[0], qml.operation.StatePrepBase)):
            return self._engine(num_wires)
        return self._simulator

    def setup_execution_config(self, config: ExecutionConfig | None = None,
                               circuit: QuantumScript | None = None) -> ExecutionConfig:
        """Fill in the gradient method (``best`` is the engine's adjoint) and the mid-circuit measurement method."""
        config = config or ExecutionConfig()
        for option in config.device_options:
            if option not in self._device_options:
                raise DeviceError(f"device option {option} not present on {self}")
        updated = {}
        if config.gradient_method == "best":
            updated["gradient_method"] = "adjoint"
        method = updated.get("gradient_method", config.gradient_method)
        device_gradient = method in _GRADIENT_METHODS
        if config.use_device_gradient is None:
            updated["use_device_gradient"] = device_gradient
        if config.use_device_jacobian_product is None:
            updated["use_device_jacobian_product"] = device_gradient
        if config.grad_on_execution is None and device_gradient:
            updated["grad_on_execution"] = True
        mcm_method = config.mcm_config.mcm_method
        if mcm_method not in (None, "deferred"):
            raise DeviceError(f"mcm_method={mcm_method!r} is not supported by qsim_core.qubit; use 'deferred'")
        updated["mcm_config"] = replace(config.mcm_config, mcm_method="deferred")
        options = {option: getattr(self, f"_{option}") for option in self._device_options}
        return replace(config, **updated, device_options={**options, **config.device_options})

    def preprocess_transforms(self, execution_config: ExecutionConfig | None = None) -> qml.CompilePipeline:
        """PennyLane's transforms that bring any tape to what :meth:`execute` runs.

        Mid-circuit measurements are deferred; measurements and observables are
        validated against the capabilities; everything outside the engine's gate
        set is decomposed (a leading ``StatePrep``/``BasisState`` becomes the
        engine's initial state, on registers up to the engine's block width);
        with ``diff_method="adjoint"`` only analytic expectation values are
        accepted, as on ``lightning.qubit``.
        """
        config = execution_config or ExecutionConfig()
        gates = self.capabilities.gate_set()
        pipeline = qml.CompilePipeline()
        pipeline.add_transform(validate_measurements, name=self.name)
        pipeline.add_transform(validate_observables, self.capabilities.supports_observable, name=self.name)
        pipeline.add_transform(defer_measurements, allow_postselect=False)
        # the engine takes initial states up to MAX_BLOCK_QUBITS wide; wider registers decompose them
        initial_state = self.wires is None or len(self.wires) <= MAX_BLOCK_QUBITS
        pipeline.add_transform(decompose, stopping_condition=supports_operation, skip_initial_state_prep=initial_state,
                               decomposer=_decomposition, name=self.name, device_wires=self.wires, target_gates=gates)
        pipeline.add_transform(device_resolve_dynamic_wires, wires=self.wires, allow_resets=False)
        pipeline.add_transform(validate_device_wires, self.wires, name=self.name)
        if config.gradient_method in ("adjoint", "device"):
            name = f"adjoint + {self.name}"
            pipeline.add_transform(no_sampling, name=name)
            pipeline.add_transform(decompose, stopping_condition=_adjoint_operation, skip_initial_state_prep=False,
                                   decomposer=_decomposition, name=name, device_wires=self.wires, target_gates=gates)
            pipeline.add_transform(validate_measurements, analytic_measurements=_is_expectation, name=name)
            pipeline.add_transform(validate_adjoint_trainable_params)
            pipeline.add_transform(_expand_trainable_broadcast)
        return pipeline

    def _prepared(self, circuit: QuantumScript) -> tuple[QuantumScript, int, Simulator]:
        """The circuit on wires 0..n-1 (in the device's wire order), n, and the simulator to run it on."""
        if self.wires is None:
            circuit, num_wires = circuit.map_to_standard_wires(), circuit.num_wires
        else:
            if self._wire_map is not None:
                [circuit], _ = qml.map_wires(circuit, self._wire_map)
            num_wires = len(self.wires)
        return circuit, num_wires, self._simulator_for(circuit, num_wires)

    def execute(self, circuits: Sequence[QuantumScript], execution_config: ExecutionConfig | None = None):
        """Results of each circuit, in PennyLane's shapes (broadcast rows run as one engine call)."""
        results = []
        for circuit in circuits:
            results.append(measure_tape(*self._prepared(circuit), self._rng))
        return tuple(results)

    def supports_derivatives(self, execution_config: ExecutionConfig | None = None,
                             circuit: QuantumScript | None = None) -> bool:
        """Adjoint (``"adjoint"``, ``"device"``, ``"best"``) derivatives of analytic expectation values."""
        if execution_config is None:
            return circuit is None or not circuit.shots
        if execution_config.gradient_method not in _GRADIENT_METHODS:
            return False
        if circuit is None:
            return True
        try:
            self.preprocess_transforms(replace(execution_config, gradient_method="adjoint"))((circuit,))
        except (DeviceError, qml.exceptions.DecompositionUndefinedError):
            return False
        return True

    def supports_vjp(self, execution_config: ExecutionConfig | None = None,
                     circuit: QuantumScript | None = None) -> bool:
        """The same as :meth:`supports_derivatives`: the vjp is one engine adjoint sweep."""
        return self.supports_derivatives(execution_config, circuit)

    def compute_derivatives(self, circuits: Sequence[QuantumScript],
                            execution_config: ExecutionConfig | None = None) -> tuple:
        """Jacobians of expectation values by the engine's adjoint sweep, broadcast rows batched."""
        return tuple(derivatives.jacobian(*self._prepared(circuit)) for circuit in circuits)

    def execute_and_compute_derivatives(self, circuits: Sequence[QuantumScript],
                                        execution_config: ExecutionConfig | None = None) -> tuple:
        """Results and Jacobians from one engine call per circuit."""
        pairs = [derivatives.value_and_jacobian(*self._prepared(circuit)) for circuit in circuits]
        return tuple(value for value, _ in pairs), tuple(jac for _, jac in pairs)

    def compute_vjp(self, circuits: Sequence[QuantumScript], cotangents: Sequence,
                    execution_config: ExecutionConfig | None = None) -> tuple:
        """Vector-Jacobian products, one engine adjoint sweep per circuit."""
        out = []
        for circuit, dy in zip(circuits, cotangents, strict=True):
            out.append(derivatives.vjp(*self._prepared(circuit), dy))
        return tuple(out)

    def execute_and_compute_vjp(self, circuits: Sequence[QuantumScript], cotangents: Sequence,
                                execution_config: ExecutionConfig | None = None) -> tuple:
        """Results and vector-Jacobian products."""
        return self.execute(circuits, execution_config), self.compute_vjp(circuits, cotangents, execution_config)


__all__ = ["QsimQubit"]
