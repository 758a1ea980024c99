"""Peer simulators driven the way their users would drive them, on our circuits.

Each adapter takes a ``qsim_core`` circuit (read only through its operations:
``.name``, ``.qubits``, ``.params``, with :class:`~qsim_core.Param` objects
resolved against a parameter row), builds the peer's own circuit **once**,
and offers the three kinds of work the benchmarks time:

* :meth:`Peer.expectations` -- a batch of parameter sets -> <Z_q> for every qubit,
* :meth:`Peer.sample` -- a batch -> ``shots`` samples per circuit, in the peer's
  native result form (converting it would time our conversion, not the peer),
* :meth:`Peer.final_state` -- one parameter set -> the final state (large n).

Every rotation gate becomes one peer-side parameter whose value is
``scale * theta[index] + offset``, resolved with numpy for the whole batch.
For the benchmark circuits, where each gate has its own ``Param`` of scale 1,
this is the circuit a user of the peer would write.

Before timing anything, check the adapter against our reference with
:func:`check_expectations` / :func:`check_statevector`: a benchmark of a
different circuit is worthless, and each peer has its own sign and bit-order
conventions (see ``/work/shared/peers.md``).

Libraries are imported inside the adapters, so this module imports without
any peer installed; :func:`available` reports the missing ones.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from qsim_core import Circuit

ROTATIONS = ("rx", "ry", "rz")
SUPPORTED = (*ROTATIONS, "cnot")


class Peer:
    """One peer simulator prepared for one circuit, thread count and precision.

    Args:
        circuit: the ``qsim_core`` circuit to run (gates ``rx ry rz cnot``).
        threads: threads the peer may use (set through its own knob; for
            ``threads_at_import`` peers the caller must also have started the
            process with the thread variables set, see ``_runner.call_with_threads``).
        precision: ``"double"`` (complex128) or ``"single"`` (complex64).
        seed: seed for the peer's sampler.

    Raises:
        ImportError: the peer library is missing or broken.
        ValueError: unsupported precision, or a gate the adapter cannot translate.
    """

    name: ClassVar[str]
    #: Modules that must import for the adapter to work.
    modules: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[str, ...]] = ("double",)
    #: True when the thread count is fixed when the library loads (OpenMP env vars).
    threads_at_import: ClassVar[bool] = False

    def __init__(self, circuit: Circuit, threads: int, precision: str = "double", seed: int = 7) -> None:
        if precision not in self.precisions:
            raise ValueError(f"{self.name} has no {precision} precision (has: {', '.join(self.precisions)})")
        self.num_qubits = circuit.num_qubits
        self.precision = precision
        self.seed = seed
        #: How the last call was driven (API, batch path), for the record's note.
        self.note = ""
        self.ops = list(circuit)
        for op in self.ops:
            if op.name not in SUPPORTED:
                raise ValueError(f"the {self.name} adapter does not translate gate {op.name!r} ({op})")
        # Rotation k's angle = offset[k] + scale[k] * theta_ext[:, index[k]], for a whole batch at once;
        # a constant angle reads the zero column that angles() appends at position num_params.
        slots = [(circuit.num_params, 0.0, float(op.params[0])) if isinstance(op.params[0], (int, float))
                 else (op.params[0].index, op.params[0].scale, op.params[0].offset)
                 for op in self.ops if op.name in ROTATIONS]
        index, scale, offset = zip(*slots, strict=True) if slots else ((), (), ())
        self._index = np.array(index, dtype=np.intp)
        self._scale = np.array(scale, dtype=np.float64)
        self._offset = np.array(offset, dtype=np.float64)

    def angles(self, theta: np.ndarray) -> np.ndarray:
        """Rotation angles, shape ``(B, R)``, of the ``R`` rotation gates for ``theta`` ``(B, P)``."""
        theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
        extended = np.concatenate([theta, np.zeros((theta.shape[0], 1))], axis=1)
        return self._offset + self._scale * extended[:, self._index]

    def expectations(self, theta: np.ndarray) -> np.ndarray:
        """<Z_q> for q = 0..n-1, shape ``(B, n)``, for parameter rows ``theta`` ``(B, P)``."""
        raise NotImplementedError

    def sample(self, theta: np.ndarray, shots: int) -> Any:
        """``shots`` measurements of every qubit per row of ``theta``, in the peer's own result form."""
        raise NotImplementedError

    def final_state(self, theta_row: np.ndarray) -> Any:
        """The final state for one parameter set ``(P,)``, in the peer's own form and bit order."""
        raise NotImplementedError

    def statevector(self, theta_row: np.ndarray) -> np.ndarray:
        """The final state as a complex128 array in our bit order (qubit k = bit k), for checks."""
        raise NotImplementedError


def _fastest(paths: dict[str, Callable[[], Any]]) -> str:
    """Name of the fastest of ``paths``, each timed once after a warm-up call."""
    best_name, best_time = "", float("inf")
    for name, path in paths.items():
        path()
        start = time.perf_counter()
        path()
        elapsed = time.perf_counter() - start
        if elapsed < best_time:
            best_name, best_time = name, elapsed
    return best_name


class Qulacs(Peer):
    """qulacs: a ``ParametricQuantumCircuit`` built once, ``set_parameter`` per circuit.

    qulacs' ``RX/RY/RZ(a)`` are ``exp(+i a P / 2)``, so angles are negated.
    Expectations through one ``Observable`` per Z; threads via OpenMP
    (``QULACS_NUM_THREADS``), fixed at import.
    """

    name = "qulacs"
    modules = ("qulacs",)
    threads_at_import = True

    def __init__(self, circuit: Circuit, threads: int, precision: str = "double", seed: int = 7) -> None:
        super().__init__(circuit, threads, precision, seed)
        import qulacs

        n = self.num_qubits
        self._circuit = qulacs.ParametricQuantumCircuit(n)
        add = {
            "rx": self._circuit.add_parametric_RX_gate,
            "ry": self._circuit.add_parametric_RY_gate,
            "rz": self._circuit.add_parametric_RZ_gate,
        }
        for op in self.ops:
            if op.name == "cnot":
                self._circuit.add_CNOT_gate(*op.qubits)
            else:
                add[op.name](op.qubits[0], 0.0)
        self._state = qulacs.QuantumState(n)
        self._observables = []
        for q in range(n):
            observable = qulacs.Observable(n)
            observable.add_operator(1.0, f"Z {q}")
            self._observables.append(observable)

    def _run(self, negated_angles: list[float]) -> None:
        for k, angle in enumerate(negated_angles):
            self._circuit.set_parameter(k, angle)
        self._state.set_zero_state()
        self._circuit.update_quantum_state(self._state)

    def expectations(self, theta: np.ndarray) -> np.ndarray:
        self.note = "set_parameter, Observable per Z"
        out = np.empty((len(np.atleast_2d(theta)), self.num_qubits))
        for b, row in enumerate((-self.angles(theta)).tolist()):
            self._run(row)
            out[b] = [obs.get_expectation_value(self._state) for obs in self._observables]
        return out

    def sample(self, theta: np.ndarray, shots: int) -> list[list[int]]:
        self.note = "set_parameter, QuantumState.sampling"
        results = []
        for b, row in enumerate((-self.angles(theta)).tolist()):
            self._run(row)
            results.append(self._state.sampling(shots, self.seed + b))
        return results

    def final_state(self, theta_row: np.ndarray) -> Any:
        self.note = "update_quantum_state"
        self._run((-self.angles(theta_row)[0]).tolist())
        return self._state

    def statevector(self, theta_row: np.ndarray) -> np.ndarray:
        return np.array(self.final_state(theta_row).get_vector(), dtype=np.complex128)


class Aer(Peer):
    """Qiskit Aer: transpile once, then EstimatorV2 / SamplerV2 with binding arrays.

    Truncation is off (``enable_truncation=False``): otherwise Aer drops qubits
    outside an observable's light cone and times a smaller circuit. Threads
    via ``max_parallel_threads`` (and parallel experiments, so a batch of
    bindings can use them); Aer's gate fusion stays at its default (on).
    """

    name = "aer"
    modules = ("qiskit", "qiskit_aer")
    precisions = ("double", "single")

    def __init__(self, circuit: Circuit, threads: int, precision: str = "double", seed: int = 7) -> None:
        super().__init__(circuit, threads, precision, seed)
        from qiskit import QuantumCircuit, transpile
        from qiskit.circuit import ParameterVector
        from qiskit_aer import AerSimulator
        from qiskit_aer.primitives import EstimatorV2, SamplerV2

        n = self.num_qubits
        vector = ParameterVector("a", len(self._index))
        logical = QuantumCircuit(n)
        k = 0
        for op in self.ops:
            if op.name == "cnot":
                logical.cx(*op.qubits)
            else:
                getattr(logical, op.name)(vector[k], op.qubits[0])
                k += 1
        options = {
            "method": "statevector",
            "precision": precision,
            "max_parallel_threads": threads,
            "max_parallel_experiments": threads,
            "enable_truncation": False,
        }
        self._backend = AerSimulator(**options)
        # transpile costs ~100 ms per circuit: once here, never in a timed loop.
        self._template = transpile(logical, self._backend)
        measured = logical.copy()
        measured.measure_all()
        self._measured = transpile(measured, self._backend)
        with_state = logical.copy()
        with_state.save_statevector()
        self._with_state = transpile(with_state, self._backend)
        # Binding columns in each template's parameter order (ParameterVector elements know their index).
        self._columns = {
            id(c): np.array([p.index for p in c.parameters], dtype=np.intp)
            for c in (self._template, self._measured, self._with_state)
        }
        # Qiskit Pauli labels are little endian too: the rightmost letter is qubit 0.
        self._observables = ["I" * (n - 1 - q) + "Z" + "I" * q for q in range(n)]
        self._estimator = EstimatorV2(options={"backend_options": options})
        self._sampler = SamplerV2(seed=seed, options={"backend_options": options})

    def _values(self, template: Any, theta: np.ndarray) -> np.ndarray:
        return self.angles(theta)[:, self._columns[id(template)]]

    def expectations(self, theta: np.ndarray) -> np.ndarray:
        self.note = "EstimatorV2, one pub, binding array"
        values = self._values(self._template, theta)[:, None, :]  # (B, 1, R): broadcasts against (n,)
        result = self._estimator.run([(self._template, self._observables, values)]).result()
        return np.asarray(result[0].data.evs)

    def sample(self, theta: np.ndarray, shots: int) -> Any:
        self.note = "SamplerV2, one pub, binding array"
        values = self._values(self._measured, theta)
        result = self._sampler.run([(self._measured, values)], shots=shots).result()
        return result[0].data.meas

    def final_state(self, theta_row: np.ndarray) -> Any:
        self.note = "AerSimulator.run, save_statevector"
        values = self._values(self._with_state, theta_row)[0]
        binds = {p: [v] for p, v in zip(self._with_state.parameters, values.tolist(), strict=True)}
        return self._backend.run(self._with_state, parameter_binds=[binds]).result().get_statevector()

    def statevector(self, theta_row: np.ndarray) -> np.ndarray:
        return np.asarray(self.final_state(theta_row), dtype=np.complex128)


class Lightning(Peer):
    """PennyLane Lightning (``lightning.qubit``): one QNode, loop or broadcast.

    The batch runs either as one broadcast call (parameters with a batch
    dimension) or as a loop of single calls; the first batch call times both
    and keeps the faster (at 8 qubits QNode overhead dominates, and
    broadcasting is often the slower one). Threads via OpenMP, fixed at import.
    PennyLane's wire 0 is the most significant bit of its state vector.
    """

    name = "lightning"
    modules = ("pennylane", "pennylane_lightning")
    precisions = ("double", "single")
    threads_at_import = True

    def __init__(self, circuit: Circuit, threads: int, precision: str = "double", seed: int = 7) -> None:
        super().__init__(circuit, threads, precision, seed)
        import pennylane as qml

        n = self.num_qubits
        dtype = np.complex128 if precision == "double" else np.complex64
        device = qml.device("lightning.qubit", wires=n, c_dtype=dtype, seed=seed)
        gates = {"rx": qml.RX, "ry": qml.RY, "rz": qml.RZ}
        ops = self.ops

        def body(angles: np.ndarray) -> None:
            # angles[..., k]: a scalar for one circuit, a (B,) vector when broadcasting.
            k = 0
            for op in ops:
                if op.name == "cnot":
                    qml.CNOT(wires=list(op.qubits))
                else:
                    gates[op.name](angles[..., k], wires=op.qubits[0])
                    k += 1

        def expvals(angles: np.ndarray) -> list:
            body(angles)
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]

        def samples(angles: np.ndarray) -> Any:
            body(angles)
            return qml.sample(wires=range(n))

        def state(angles: np.ndarray) -> Any:
            body(angles)
            return qml.state()

        self._qml = qml
        self._expvals = qml.QNode(expvals, device, diff_method=None)
        self._samples = qml.QNode(samples, device, diff_method=None)
        self._state = qml.QNode(state, device, diff_method=None)
        self._modes: dict[str, str] = {}

    def _batch(self, kind: str, qnode: Any, angles: np.ndarray) -> list:
        """Results per row of ``angles``, by the faster of loop and broadcast (chosen on first use)."""
        paths = {
            "loop": lambda a: [qnode(row) for row in a],
            "broadcast": lambda a: list(zip(*qnode(a), strict=True)) if kind == "expval" else list(qnode(a)),
        }
        if len(angles) == 1:  # a single circuit: nothing to broadcast
            self.note = "QNode, one call"
            return [qnode(angles[0])]
        if kind not in self._modes:
            probe = angles[: min(len(angles), 32)]
            self._modes[kind] = _fastest({m: functools.partial(f, probe) for m, f in paths.items()})
        self.note = f"QNode, {self._modes[kind]} (the faster)"
        return paths[self._modes[kind]](angles)

    def expectations(self, theta: np.ndarray) -> np.ndarray:
        return np.array(self._batch("expval", self._expvals, self.angles(theta)), dtype=np.float64)

    def sample(self, theta: np.ndarray, shots: int) -> Any:
        qnode = self._qml.set_shots(self._samples, shots=shots)
        return self._batch("sample", qnode, self.angles(theta))

    def final_state(self, theta_row: np.ndarray) -> Any:
        self.note = "QNode, qml.state()"
        return self._state(self.angles(theta_row)[0])

    def statevector(self, theta_row: np.ndarray) -> np.ndarray:
        n = self.num_qubits
        big_endian = np.asarray(self.final_state(theta_row), dtype=np.complex128)
        # Reversing the tensor axes turns wire 0 = most significant into qubit 0 = least.
        return big_endian.reshape((2,) * n).transpose(range(n - 1, -1, -1)).reshape(-1)


class QSimCirq(Peer):
    """qsimcirq: a symbolic cirq circuit, swept with ``QSimSimulator`` (complex64 only).

    Expectations through ``simulate_expectation_values_sweep`` (evaluated in
    qsim's C++), shots through ``run_sweep`` with a terminal measurement.
    Threads via ``QSimOptions(cpu_threads=)``; gate fusion at its default.
    """

    name = "qsimcirq"
    modules = ("qsimcirq", "cirq", "sympy")
    precisions = ("single",)

    def __init__(self, circuit: Circuit, threads: int, precision: str = "single", seed: int = 7) -> None:
        super().__init__(circuit, threads, precision, seed)
        import cirq
        import qsimcirq
        import sympy

        self._cirq = cirq
        qubits = cirq.LineQubit.range(self.num_qubits)
        self._names = [f"a{k}" for k in range(len(self._index))]
        gates = {"rx": cirq.rx, "ry": cirq.ry, "rz": cirq.rz}  # cirq's rotations are exp(-i a P / 2)
        operations, k = [], 0
        for op in self.ops:
            if op.name == "cnot":
                operations.append(cirq.CNOT(qubits[op.qubits[0]], qubits[op.qubits[1]]))
            else:
                operations.append(gates[op.name](sympy.Symbol(self._names[k])).on(qubits[op.qubits[0]]))
                k += 1
        self._qubits = qubits
        self._circuit = cirq.Circuit(operations)
        self._measured = self._circuit + cirq.measure(*qubits, key="m")
        self._observables = [cirq.Z(q) for q in qubits]
        self._simulator = qsimcirq.QSimSimulator(qsimcirq.QSimOptions(cpu_threads=threads), seed=seed)

    def _sweep(self, theta: np.ndarray) -> Any:
        return self._cirq.ListSweep([dict(zip(self._names, row, strict=True)) for row in self.angles(theta).tolist()])

    def expectations(self, theta: np.ndarray) -> np.ndarray:
        self.note = "simulate_expectation_values_sweep"
        values = self._simulator.simulate_expectation_values_sweep(
            self._circuit, self._observables, params=self._sweep(theta)
        )
        return np.real(np.array(values))

    def sample(self, theta: np.ndarray, shots: int) -> Any:
        self.note = "run_sweep, terminal measurement"
        return self._simulator.run_sweep(self._measured, params=self._sweep(theta), repetitions=shots)

    def final_state(self, theta_row: np.ndarray, qubit_order: Any = None) -> Any:
        self.note = "simulate()"
        values = self.angles(theta_row)[0].tolist()
        resolver = self._cirq.ParamResolver(dict(zip(self._names, values, strict=True)))
        order = self._cirq.QubitOrder.DEFAULT if qubit_order is None else qubit_order
        return self._simulator.simulate(self._circuit, resolver, qubit_order=order).final_state_vector

    def statevector(self, theta_row: np.ndarray) -> np.ndarray:
        # cirq is big endian: put qubit n-1 first so qubit k lands on bit k.
        return np.asarray(self.final_state(theta_row, self._qubits[::-1]), dtype=np.complex128)


#: Adapters by name, in the order tables list them.
PEERS: dict[str, type[Peer]] = {cls.name: cls for cls in (Qulacs, Aer, Lightning, QSimCirq)}


def available(names: tuple[str, ...] | None = None) -> list[str]:
    """Names of the peers whose libraries are installed; prints a note for each missing one."""
    found = []
    for name in names or tuple(PEERS):
        missing = [m for m in PEERS[name].modules if importlib.util.find_spec(m) is None]
        if missing:
            print(f"note: peer {name} skipped: {', '.join(missing)} not installed")
        else:
            found.append(name)
    return found


def make(name: str, circuit: Circuit, threads: int, precision: str = "double", seed: int = 7) -> Peer | None:
    """The adapter ``name`` for ``circuit``, or ``None`` (with a printed note) if it cannot load."""
    try:
        return PEERS[name](circuit, threads, precision, seed)
    except ImportError as error:
        print(f"note: peer {name} skipped: {error}")
        return None


def check_expectations(peer: Peer, theta_row: np.ndarray, reference: np.ndarray, tol: float = 1e-5) -> bool:
    """Whether ``peer``'s <Z_q> for ``theta_row`` match ``reference`` within ``tol``; prints why not."""
    got = peer.expectations(np.asarray(theta_row)[None, :])[0]
    error = float(np.max(np.abs(got - np.asarray(reference))))
    if not error <= tol:
        print(
            f"ERROR: {peer.name} ({peer.precision}) <Z> differ from the qsim_core reference by {error:.2e} "
            f"(tolerance {tol:g}): it is not simulating the same circuit; its timings are dropped.\n"
            f"  peer:      {np.round(got, 6).tolist()}\n  reference: {np.round(reference, 6).tolist()}"
        )
        return False
    return True


def check_statevector(peer: Peer, theta_row: np.ndarray, reference: np.ndarray, tol: float = 1e-5) -> bool:
    """Whether ``peer``'s final state (in our bit order) matches ``reference`` within ``tol``; prints why not."""
    error = float(np.max(np.abs(peer.statevector(theta_row) - np.asarray(reference))))
    if not error <= tol:
        print(
            f"ERROR: {peer.name} ({peer.precision}) state differs from the qsim_core reference by {error:.2e} "
            f"(tolerance {tol:g}): wrong circuit or bit order; its timings are dropped."
        )
        return False
    return True
