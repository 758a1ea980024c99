"""The backend contract: what the Simulator hands a backend and what it gets back.

A backend runs a :class:`Job` (one circuit, a batch of parameter vectors
``params[B, P]``) and returns batch-first arrays (:class:`Backend`). The task
codes tell a compiled kernel which result to produce; the Cython extension
compiles the same numbers in, and its loader checks them at import.

This module is public: code that runs the engine elsewhere (``qstore.distributed``
ships jobs to Dask workers) builds :class:`Job` objects and calls backends
from :func:`qsim_core.backends.get_backend` through this contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..circuit import Circuit
from ..compiler import DEFAULT_BLOCK_QUBITS, Program, compile_circuit
from ..errors import CircuitTooLargeError
from ..observables import PauliStrings

#: what the compiled backends' kernel modules export, with the same arguments in numba
#: (:mod:`qsim_core.backends.numba`: ``pack_adjoint`` and ``adjoint_packed`` in its adjoint module, the rest in
#: its kernels) and Cython (one extension); the driver calls nothing else, but reads where a module has them what
#: only the Cython kernels have: ``LANE_CALL_SETS`` and ``adjoint_lane_path`` (their eight-set paths). The
#: ``pack_*`` functions check and convert what stays the same from call to call (a program's step arrays,
#: observables) once, into an object only the same module's kernels take
KERNEL_FUNCTIONS = ("adjoint_packed", "evolve_large", "expectations_large", "max_threads", "pack_adjoint",
                    "pack_observables", "pack_small", "probabilities_in_place", "run_packed", "samples_large",
                    "set_threads", "shot_estimates_into", "stream_state")
#: what a kernel call computes (``run_packed``'s ``task``)
TASK_STATE, TASK_PROBS, TASK_EXPVAL, TASK_SAMPLES, TASK_SHOT_EXPVAL = 0, 1, 2, 3, 4


@dataclass
class Job:
    """One circuit with a batch of parameter vectors, validated by the Simulator; read-only (not frozen: a
    frozen dataclass takes ~0.5 us longer to make, a tenth of a one-circuit call).

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
    #: the fewest rows a job needs for each row's results to be the same bits whatever job it is in (where it
    #: stands, which rows share it); jobs of fewer rows agree with them to rounding. 1 where they always are.
    stable_rows: int

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

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray, values: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """Exact expectations float64[B, K] and gradients float64[B, L, P] of ``f_l = sum_k weights[b, l, k] <O_k>``.

        With ``values=False`` (a vector-Jacobian product, which returns no expectations) the first result is None
        and a backend need not compute the expectations.

        The third result, for jobs with initial states, is ``d f_l / d Re psi_0 + i d f_l / d Im psi_0``,
        complex[B, L, 2**n]; None otherwise.
        """


__all__ = ["KERNEL_FUNCTIONS", "TASK_EXPVAL", "TASK_PROBS", "TASK_SAMPLES", "TASK_SHOT_EXPVAL", "TASK_STATE", "Backend",
           "Job"]
