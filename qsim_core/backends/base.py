"""The backend contract and the shared driver of the compiled backends.

A backend runs a :class:`Job` (one circuit, a batch of parameter vectors
``params[B, P]``) and returns batch-first arrays. The compiled backends differ
only in their kernel module: numba's and Cython's export the same functions
(``run_small``, ``evolve_large``, ``expectations_large``,
``probabilities_in_place``, ``samples_large``, ``shot_estimates_into``,
``stream_state``, ``set_threads``, ``max_threads``) with the same arguments,
so one driver, :class:`CompiledBackend`, serves both. Adjoint differentiation
needs one more function, ``adjoint_small``, from the backend's adjoint kernel
module: :mod:`~qsim_core.backends.numba_adjoint` for numba, the Cython
extension itself for Cython (driven by :mod:`~qsim_core.backends.adjoint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

import numpy as np

from .. import memory
from ..circuit import Circuit
from ..errors import CircuitTooLargeError
from ..observables import PauliStrings
from ..program import DEFAULT_BLOCK_QUBITS, Program, compile_circuit

TASK_STATE, TASK_PROBS, TASK_EXPVAL, TASK_SAMPLES, TASK_SHOT_EXPVAL = 0, 1, 2, 3, 4

#: parameter sets bound and run per kernel call; bounds the bound-matrix memory
BATCH_CHUNK = 4096
#: a single-block batch gets one thread per this many parameter sets: waking a
#: second thread for a few microseconds of work costs more than it saves, and
#: far more when another process holds the other core
SETS_PER_THREAD = 16


@dataclass(frozen=True)
class Job:
    """One circuit with a batch of parameter vectors, validated by the Simulator.

    Attributes:
        circuit: the circuit.
        params: float64[B, P], finite, P == circuit.num_params.
        dtype: complex64 or complex128, the state's precision.
        threads: threads the kernels may use.
        block_qubits: fusion width for circuits larger than it (see program).
        initial: dtype[B, 2**n] normalised initial states, or None for ``|0...0>``.
    """

    circuit: Circuit
    params: np.ndarray
    dtype: type
    threads: int
    block_qubits: int = DEFAULT_BLOCK_QUBITS
    initial: np.ndarray | None = None

    def program(self, zbasis: bool, block_qubits: int | None = None) -> Program:
        """The circuit compiled for this job (product-state initialisation only when starting from zero)."""
        width = self.block_qubits if block_qubits is None else block_qubits
        program = compile_circuit(self.circuit, zbasis=zbasis, block_qubits=width, from_zero=self.initial is None)
        if self.initial is not None and not program.single_block:
            raise CircuitTooLargeError(
                f"initial states are supported for circuits of up to block_qubits={width} qubits; this one has "
                f"{self.circuit.num_qubits} (raise block_qubits, at most 24)"
            )
        return program

    @property
    def batch(self) -> int:
        """Number of parameter sets B."""
        return self.params.shape[0]

    @property
    def size(self) -> int:
        """Number of amplitudes 2**n."""
        return 1 << self.circuit.num_qubits


class Backend(Protocol):
    """What the Simulator asks of a backend; every result is batch-first."""

    name: str

    def statevector(self, job: Job) -> np.ndarray:
        """Final states, dtype[B, 2**n]."""

    def probabilities(self, job: Job) -> np.ndarray:
        """Basis-state probabilities, float64[B, 2**n]."""

    def expectation(self, job: Job, observables: PauliStrings) -> np.ndarray:
        """Exact expectations, float64[B, K]."""

    def sample(self, job: Job, shots: int, key: int, offset: int = 0) -> np.ndarray:
        """Basis indices drawn from each state, int64[B, shots]; ``key`` seeds the draws.

        Row ``b`` draws what row ``offset + b`` of a larger batch draws under the same key, so a
        batch cut into jobs (each with its first row's index as ``offset``) samples exactly like
        the whole batch.
        """

    def shot_expectation(self, job: Job, observables: PauliStrings, shots: int, key: int,
                         offset: int = 0) -> np.ndarray:
        """Expectations estimated from ``shots`` measurements, float64[B, K]; ``offset`` as for :meth:`sample`."""

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Exact expectations float64[B, K] and gradients float64[B, L, P] of ``f_l = sum_k weights[b, l, k] <O_k>``.

        The third result, for jobs with initial states, is ``d f_l / d Re psi_0 + i d f_l / d Im psi_0``,
        complex[B, L, 2**n]; None otherwise.
        """


class CompiledBackend:
    """Drives a kernel module: compile once, bind per chunk of the batch, one kernel call per chunk."""

    def __init__(self, name: str, kernels: ModuleType, adjoint_kernels: ModuleType) -> None:
        self.name = name
        self.kernels = kernels
        self.adjoint_kernels = adjoint_kernels

    def statevector(self, job: Job) -> np.ndarray:
        """See :class:`Backend`."""
        what = f"{job.batch} state(s) of {job.circuit.num_qubits} qubits"
        out = self._allocate((job.batch, job.size), job.dtype, what)
        return self._run(job, TASK_STATE, zbasis=False, psi_out=out)

    def probabilities(self, job: Job) -> np.ndarray:
        """See :class:`Backend`. One large state's probabilities reuse the state's memory."""
        program = job.program(zbasis=True)
        if job.batch == 1 and not program.single_block:
            psi = self._evolve_large(job, program, 0)
            return self.kernels.probabilities_in_place(psi)[np.newaxis]
        out = self._allocate((job.batch, job.size), np.float64, f"{job.batch} probability vector(s)")
        return self._run(job, TASK_PROBS, zbasis=True, probs_out=out)

    def expectation(self, job: Job, observables: PauliStrings) -> np.ndarray:
        """See :class:`Backend`."""
        out = np.zeros((job.batch, len(observables)))
        return self._run(job, TASK_EXPVAL, zbasis=observables.z_only, values_out=out, observables=observables)

    def sample(self, job: Job, shots: int, key: int, offset: int = 0) -> np.ndarray:
        """See :class:`Backend`."""
        out = self._allocate((job.batch, shots), np.int64, f"{job.batch} x {shots} samples")
        return self._run(job, TASK_SAMPLES, zbasis=True, samples_out=out, shots=shots, key=key, offset=offset)

    def shot_expectation(self, job: Job, observables: PauliStrings, shots: int, key: int,
                         offset: int = 0) -> np.ndarray:
        """See :class:`Backend`."""
        out = np.zeros((job.batch, len(observables)))
        return self._run(job, TASK_SHOT_EXPVAL, zbasis=observables.z_only, values_out=out,
                         observables=observables, shots=shots, key=key, offset=offset)

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """See :class:`Backend`; the driver is :func:`qsim_core.backends.adjoint.run_adjoint`."""
        from .adjoint import run_adjoint

        return run_adjoint(self.kernels, self.adjoint_kernels, job, observables, weights)

    @staticmethod
    def _allocate(shape: tuple[int, int], dtype: type, what: str) -> np.ndarray:
        memory.require(shape[0] * shape[1] * np.dtype(dtype).itemsize, what)
        return np.empty(shape, dtype)

    def _run(self, job: Job, task: int, *, zbasis: bool, psi_out=None, probs_out=None, values_out=None,
             samples_out=None, observables: PauliStrings | None = None, shots: int = 0, key: int = 0,
             offset: int = 0) -> np.ndarray:
        """Run ``task`` into the given output; sampling row ``b`` draws from the stream of global row ``offset + b``."""
        program = job.program(zbasis)
        threads = job.threads if not program.single_block else min(job.threads, -(-job.batch // SETS_PER_THREAD))
        self.kernels.set_threads(threads)
        empty_obs = np.zeros(0, np.int64)
        xmask, zmask, ny = (observables.xmask, observables.zmask, observables.ny) if observables else (empty_obs,) * 3
        result = next(a for a in (psi_out, probs_out, values_out, samples_out) if a is not None)
        if not program.single_block:
            self._run_large(job, program, task, result, xmask, zmask, ny, shots, key, offset)
            return result
        psi_out = psi_out if psi_out is not None else np.empty((0, 0), job.dtype)
        probs_out = probs_out if probs_out is not None else np.empty((0, 0))
        values_out = values_out if values_out is not None else np.empty((0, 0))
        samples_out = samples_out if samples_out is not None else np.empty((0, 0), np.int64)
        initial = job.initial if job.initial is not None else np.empty((0, 0), job.dtype)
        for start in range(0, job.batch, BATCH_CHUNK):
            rows = slice(start, start + BATCH_CHUNK)
            u1, u2 = program.bind(job.params[rows], job.dtype, threads)
            self.kernels.run_small(
                task, psi_out[rows] if task == TASK_STATE else psi_out,
                probs_out[rows] if task == TASK_PROBS else probs_out,
                values_out[rows] if task in (TASK_EXPVAL, TASK_SHOT_EXPVAL) else values_out,
                samples_out[rows] if task == TASK_SAMPLES else samples_out,
                program.num_qubits, u1, u2, program.init_u1, program.kind, program.q0, program.q1, program.arg,
                program.run_start, program.run_gate, program.perm_start, program.perm_table,
                xmask, zmask, ny, shots, np.uint64(key), offset + start, initial[rows],
            )
        return result

    def _evolve_large(self, job: Job, program: Program, row: int, psi: np.ndarray | None = None) -> np.ndarray:
        """Final state of parameter set ``row``, in ``psi`` or in a new array (memory checked first)."""
        if psi is None:
            what = f"a {program.num_qubits}-qubit {np.dtype(job.dtype).name} state"
            memory.require(job.size * np.dtype(job.dtype).itemsize, what)
            psi = np.empty(job.size, job.dtype)
        k = self.kernels
        k.set_threads(job.threads)  # a large state uses every thread, whatever the batch size
        u1, u2 = program.bind(job.params[row:row + 1], job.dtype, job.threads)
        k.evolve_large(psi, u1[0], u2[0], program.num_qubits, program.init_u1, program.block_start,
                       program.block_qubit_start, program.block_qubits, program.kind, program.q0, program.q1,
                       program.arg, program.run_start, program.run_gate, program.perm_start,
                       program.perm_table, k.max_threads())
        return psi

    def _run_large(self, job: Job, program: Program, task: int, result: np.ndarray, xmask, zmask, ny,
                   shots: int, key: int, offset: int) -> None:
        """One parameter set at a time; the kernels parallelise over the state; row ``b`` samples as ``offset + b``."""
        k = self.kernels
        for b in range(job.batch):
            psi = self._evolve_large(job, program, b, result[b] if task == TASK_STATE else None)
            if task == TASK_PROBS:
                result[b] = k.probabilities_in_place(psi)
            elif task == TASK_EXPVAL:
                k.expectations_large(psi, xmask, zmask, ny, result[b])
            elif task in (TASK_SAMPLES, TASK_SHOT_EXPVAL):
                # np.uint64 keeps one compiled signature: a bare Python int would be typed
                # int64 or uint64 depending on its value
                rng = np.uint64(k.stream_state(np.uint64(key), offset + b))
                drawn = result[b] if task == TASK_SAMPLES else np.empty(shots, np.int64)
                rng = np.uint64(k.samples_large(psi, rng, drawn))
                if task == TASK_SHOT_EXPVAL:
                    exact = np.zeros(len(xmask))
                    if xmask.any():
                        k.expectations_large(psi, xmask, zmask, ny, exact)
                    k.shot_estimates_into(drawn, xmask, zmask, exact, rng, result[b])
            del psi
