"""The user-facing simulator: validates input, picks a backend, shapes results.

Public (``__all__``): :class:`Simulator` (also ``qsim_core.Simulator``) and :data:`GRADIENT_METHODS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from . import memory
from .backends import Backend, Job, get_backend
from .circuit import Circuit, is_symbolic
from .compiler import DEFAULT_BLOCK_QUBITS, MAX_BLOCK_QUBITS
from .errors import CircuitError, ParameterError
from .gradients import Estimator, parameter_shift, spsa
from .measurement import Executor, expectations_from_counts
from .noise import (
    NoiseError,
    NoiseModel,
    adjoint_supports,
    noisy_adjoint,
    noisy_expectations,
    noisy_probabilities,
    noisy_samples,
    noisy_shot_expectations,
    resolve_noise,
)
from .observables import PauliStrings, parse_observables
from .threads import usable_cores

_PRECISIONS = {"double": np.complex128, "single": np.complex64}
#: what :meth:`Simulator.gradient` accepts as ``method``
GRADIENT_METHODS = ("adjoint", "parameter-shift", "spsa")
_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1
#: parameter matrices up to this many entries are screened for non-finite ones by a BLAS dot (see _all_finite),
#: well below the length at which BLAS libraries start threads for one (OpenBLAS: 10,000)
_SMALL_PARAMS = 4096


class Simulator:
    """Statevector and shot simulation of :class:`~qsim_core.Circuit` objects, batch first.

    Every method takes ``params`` as a 1-D vector (one parameter set; results
    have no batch axis) or a 2-D array ``[B, P]`` (B sets, run in one
    compiled call; results lead with B). ``P`` must equal
    ``circuit.num_params``; circuits without parameters need no ``params``.

    Args:
        backend: ``"numba"``, ``"cython"``, ``"reference"`` or ``"auto"``
            (the fastest available, see :func:`qsim_core.available_backends`),
            or an object that implements the backend contract
            (:class:`qsim_core.backends.Backend`), such as one that runs the
            batches elsewhere (``qstore.distributed.DaskSimulator``).
        precision: ``"double"`` (complex128) or ``"single"`` (complex64).
        seed: seed for every sampled result; the same seed gives the same
            samples call by call. None draws a fresh seed.
        threads: worker threads for the compiled kernels; None uses every core this
            process may run on (:func:`qsim_core.threads.usable_cores`). A batch of
            small states wakes only as many as its work pays for
            (``qsim_core.backends.driver.WORK_PER_THREAD``); results do not depend on it.
        block_qubits: for circuits wider than this, gates are fused into
            passes over at most this many qubits (cache blocking).
        noise: None, an IonQ model name (``"aria-1"``, ``"aria-2"``, ``"forte-1"``)
            or a :class:`~qsim_core.NoiseModel`: a depolarizing channel after every
            gate as written. Shots then come from trajectories, probabilities and
            shot-free expectations are exact (density matrices, up to 12 qubits),
            gradients default to parameter-shift, and :meth:`statevector` is
            refused. A model with both rates 0 runs the noiseless engine.

    Raises:
        BackendUnavailableError: the backend is unknown or not built here.
        ValueError: an unknown precision, a non-positive thread count or an unknown noise model.

    Examples:
        >>> import qsim_core as qc
        >>> c = qc.Circuit(2).h(0).cnot(0, 1)
        >>> qc.Simulator(backend="numba", seed=1).probabilities(c).round(3).tolist()
        [0.5, 0.0, 0.0, 0.5]
    """

    def __init__(self, backend: str | Backend = "auto", precision: str = "double", seed: int | None = None,
                 threads: int | None = None, block_qubits: int = DEFAULT_BLOCK_QUBITS,
                 noise: str | NoiseModel | None = None) -> None:
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be 'double' or 'single', got {precision!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        if not isinstance(block_qubits, int) or not 4 <= block_qubits <= MAX_BLOCK_QUBITS:
            raise ValueError(f"block_qubits must be an integer in 4..{MAX_BLOCK_QUBITS}, got {block_qubits!r}")
        self._backend = get_backend(backend) if isinstance(backend, str) else backend
        self.precision = precision
        self.dtype = _PRECISIONS[precision]
        self._itemsize = np.dtype(self.dtype).itemsize
        self.threads = threads or usable_cores()
        self.block_qubits = block_qubits
        self.noise = resolve_noise(noise)
        self._seed_key = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        self._draws = 0

    @property
    def backend(self) -> str:
        """Name of the backend in use."""
        return self._backend.name

    def statevector(self, circuit: Circuit, params: np.ndarray | Sequence[float] | None = None, *,
                    initial_state: np.ndarray | None = None) -> np.ndarray:
        """Final state(s): ``(2**n,)`` or ``(B, 2**n)``, complex128 or complex64 (not with noise: a mixed state)."""
        if self.noise is not None:
            raise NoiseError("a noisy state is mixed and has no statevector; use probabilities(), expectation() "
                             "or sample() with noise, or a Simulator without noise=")
        job, batched = self._job(circuit, params, initial_state)
        return self._shape(self._backend.statevector(job), batched)

    def probabilities(self, circuit: Circuit, params: np.ndarray | Sequence[float] | None = None, *,
                      initial_state: np.ndarray | None = None) -> np.ndarray:
        """Basis-state probabilities, float64 ``(2**n,)`` or ``(B, 2**n)``; index bit k is qubit k."""
        job, batched = self._job(circuit, params, initial_state)
        if self.noise is not None:
            return self._shape(noisy_probabilities(job, self.noise), batched)
        return self._shape(self._backend.probabilities(job), batched)

    def expectation(self, circuit: Circuit, observables: str | Sequence[str],
                    params: np.ndarray | Sequence[float] | None = None, shots: int | None = None, *,
                    initial_state: np.ndarray | None = None) -> np.ndarray:
        """Expectation values of Pauli strings: float64 ``(K,)`` or ``(B, K)``.

        Args:
            circuit: the circuit.
            observables: one Pauli string or a list (``"Z0"``, ``"X1 Y3"``, ``"Z0 Z7"``).
            params: parameter vector(s), see the class docstring.
            shots: None for exact values; N >= 1 for estimates from N shots per
                parameter set (Z strings share one Z-basis measurement; each
                string with X/Y is measured in its own basis with N shots).
            initial_state: start from this normalised state ``(2**n,)`` (shared) or
                these states ``(B, 2**n)`` instead of ``|0...0>`` (amplitude encoding);
                every method takes it. Up to ``block_qubits`` qubits.
        """
        strings = parse_observables(observables, circuit.num_qubits)
        job, batched = self._job(circuit, params, initial_state)
        return self._shape(self._expect(job, strings, shots), batched)

    def sample(self, circuit: Circuit, shots: int, params: np.ndarray | Sequence[float] | None = None, *,
               initial_state: np.ndarray | None = None) -> np.ndarray:
        """Measure all qubits ``shots`` times: int64 basis indices ``(shots,)`` or ``(B, shots)``."""
        shots = _check_shots(shots)
        job, batched = self._job(circuit, params, initial_state)
        if self.noise is not None:
            return self._shape(noisy_samples(self._backend, job, self.noise, shots, self._next_key()), batched)
        return self._shape(self._backend.sample(job, shots, self._next_key()), batched)

    def counts(self, circuit: Circuit, shots: int, params: np.ndarray | Sequence[float] | None = None, *,
               initial_state: np.ndarray | None = None) -> dict[int, int] | list[dict[int, int]]:
        """Measurement counts keyed by basis index (IonQ style); a list of dicts for a batch."""
        samples = self.sample(circuit, shots, params, initial_state=initial_state)

        def tally(row: np.ndarray) -> dict[int, int]:
            values, counts = np.unique(row, return_counts=True)
            return {int(v): int(c) for v, c in zip(values, counts, strict=False)}

        return [tally(row) for row in samples] if samples.ndim == 2 else tally(samples)

    def gradient(self, circuit: Circuit, observables: str | Sequence[str],
                 params: np.ndarray | Sequence[float] | None = None, *, method: str | None = None,
                 shots: int | None = None, executor: Executor | None = None, perturbation: float = 0.05,
                 samples: int = 1, initial_state: np.ndarray | None = None) -> np.ndarray:
        """Jacobian ``d<O_k>/d theta_p``: float64 ``(K, P)``, or ``(B, K, P)`` for a batch.

        See :meth:`value_and_gradient` for the arguments.
        """
        return self.value_and_gradient(circuit, observables, params, method=method, shots=shots, executor=executor,
                                       perturbation=perturbation, samples=samples, initial_state=initial_state)[1]

    def value_and_gradient(self, circuit: Circuit, observables: str | Sequence[str],
                           params: np.ndarray | Sequence[float] | None = None, *, method: str | None = None,
                           shots: int | None = None, executor: Executor | None = None, perturbation: float = 0.05,
                           samples: int = 1, initial_state: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
        """Expectations and their Jacobian from one batched evaluation.

        Args:
            circuit: as for :meth:`expectation`.
            observables: as for :meth:`expectation`.
            params: as for :meth:`expectation`.
            method: None picks ``"adjoint"`` for exact gradients (with noise too, when
                its rates are at most ``noise.adjoint.MAX_INVERTIBLE_RATE``), else
                ``"parameter-shift"``.
                ``"adjoint"``: exact, one forward pass and one backward
                sweep per parameter set inside the compiled backend (cost
                grows with the number of observables K, not of parameters);
                with noise, the same sweep over density matrices
                (:mod:`qsim_core.noise.adjoint`).
                ``"parameter-shift"``: the gate table's exact shift rules, all
                ``B * (1 + sum of 2R per parameter use)`` shifted circuits in
                one batched call; with ``shots`` each is a sampled estimate,
                which is what a QPU or cloud simulator can provide.
                ``"spsa"``: simultaneous perturbation, ``2 * samples`` circuits
                per parameter set, biased by O(perturbation^2).
            shots: None for exact expectations; N for N-shot estimates
                (parameter-shift and spsa only).
            executor: run parameter-shift/spsa circuits through this counts-only
                executor (see :mod:`qsim_core.measurement`) instead of this
                simulator; needs ``shots``.
            perturbation: SPSA step c, in the parameters' units.
            samples: SPSA perturbation draws averaged per parameter set.
            initial_state: see :meth:`expectation` (not with ``executor``).

        Returns:
            ``(values, jacobian)``: ``(K,)`` and ``(K, P)``, or ``(B, K)`` and ``(B, K, P)``.
        """
        strings = parse_observables(observables, circuit.num_qubits)
        job, batched = self._job(circuit, params, initial_state)
        weights = np.broadcast_to(np.eye(len(strings)), (job.batch, len(strings), len(strings)))
        values, jacobian, _ = self._differentiate(job, strings, weights, method, shots, executor, perturbation,
                                                  samples)
        return self._shape(values, batched), self._shape(jacobian, batched)

    def vjp(self, circuit: Circuit, observables: str | Sequence[str], params: np.ndarray | Sequence[float] | None,
            cotangent: np.ndarray | Sequence[float], *, method: str | None = None, shots: int | None = None,
            executor: Executor | None = None, perturbation: float = 0.05, samples: int = 1,
            initial_state: np.ndarray | None = None, state_gradient: bool = False
            ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Vector-Jacobian product ``sum_k cotangent[k] d<O_k>/d theta``: ``(P,)`` or ``(B, P)``.

        What backpropagation through a quantum layer needs: with
        ``method="adjoint"`` it costs one backward sweep whatever K is, about
        the price of two forward passes. ``cotangent`` is ``(K,)`` (shared by
        the batch) or ``(B, K)``. Other arguments as for :meth:`value_and_gradient`.

        With ``state_gradient=True`` (adjoint and ``initial_state`` only) it
        returns ``(gradient, state_gradient)``, the second complex ``(2**n,)`` or
        ``(B, 2**n)``: ``d f/d Re psi_0 + i d f/d Im psi_0`` for ``f = sum_k cotangent[k] <O_k>``.
        """
        method = method or self._default_method(shots, executor)
        if state_gradient and (initial_state is None or method != "adjoint" or self.noise is not None):
            raise ParameterError("state_gradient=True needs initial_state= and method='adjoint' without noise")
        strings = parse_observables(observables, circuit.num_qubits)
        job, batched = self._job(circuit, params, initial_state)
        weights = np.empty((job.batch, 1, len(strings)))  # one lane
        try:
            cotangent = np.asarray(cotangent, np.float64)
            weights[:, 0] = cotangent  # (K,) or (B, K), broadcast
        except (TypeError, ValueError):
            raise ParameterError(f"cotangent must have shape ({len(strings)},) or ({job.batch}, {len(strings)}), "
                                 f"got {np.shape(cotangent)}") from None
        if not _all_finite(cotangent) and not np.isfinite(cotangent).all():
            raise ParameterError("cotangent contains a non-finite value")
        _, gradient, states = self._differentiate(job, strings, weights, method, shots, executor, perturbation,
                                                  samples, values=False)
        if state_gradient:
            return self._shape(gradient[:, 0], batched), self._shape(states[:, 0], batched)
        return self._shape(gradient[:, 0], batched)

    def _differentiate(self, job: Job, strings: PauliStrings, weights: np.ndarray, method: str, shots: int | None,
                       executor: Executor | None, perturbation: float, samples: int, *, values: bool = True
                       ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """values[B, K], ``sum_k weights[b, l, k] d<O_k>/d theta``: [B, L, P], and (adjoint with initial
        states) the same with respect to the initial states, complex[B, L, 2**n]. With ``values=False`` the
        caller has no use for the values: the exact adjoint then skips them (and returns None for them)."""
        method = method or self._default_method(shots, executor)
        if method not in GRADIENT_METHODS:
            raise ParameterError(f"unknown gradient method {method!r}; choose one of {', '.join(GRADIENT_METHODS)}")
        if method == "adjoint":
            if shots is not None or executor is not None:
                raise ParameterError("method='adjoint' is exact and runs on this simulator; shots= and executor= "
                                     "apply to 'parameter-shift' and 'spsa'")
            if self.noise is not None:
                return noisy_adjoint(job, self.noise, strings, np.ascontiguousarray(weights))
            return self._backend.adjoint(job, strings, np.ascontiguousarray(weights), values)
        estimate = self._estimator(job, strings, shots, executor)
        if method == "parameter-shift":
            values, jacobian = parameter_shift(estimate, job.circuit, job.params)
        else:
            if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
                raise ParameterError(f"samples must be a positive integer, got {samples!r}")
            if not isinstance(perturbation, (int, float)) or not 0 < perturbation < np.inf:
                raise ParameterError(f"perturbation must be a positive number, got {perturbation!r}")
            rng = np.random.default_rng(self._next_key())
            values, jacobian = spsa(estimate, job.circuit, job.params, float(perturbation), int(samples), rng)
        return values, np.einsum("blk,bkp->blp", weights, jacobian), None

    def _default_method(self, shots: int | None, executor: Executor | None) -> str:
        """Adjoint for exact gradients (noisy ones too, unless a rate is too high to un-compute), else
        parameter-shift."""
        exact = shots is None and executor is None
        invertible = self.noise is None or adjoint_supports(self.noise)
        return "adjoint" if exact and invertible else "parameter-shift"

    def _estimator(self, job: Job, strings: PauliStrings, shots: int | None, executor: Executor | None) -> Estimator:
        """Expectations of ``strings`` for any circuit and parameter rows, as the method asks."""
        if executor is not None:
            if shots is None:
                raise ParameterError("an executor returns counts: pass shots= with executor=")
            if job.initial is not None:
                raise ParameterError("an executor runs circuits from |0...0>: initial_state= cannot go with executor=")
            shots = _check_shots(shots)
            return lambda circuit, rows: expectations_from_counts(executor, circuit, strings.labels, rows, shots)

        def estimate(circuit: Circuit, rows: np.ndarray) -> np.ndarray:
            # the rows come parameter set by parameter set (see gradients.py): each set's state, repeated
            initial = None if job.initial is None else np.repeat(job.initial, len(rows) // job.batch, axis=0)
            rows_job = Job(circuit, np.ascontiguousarray(rows), job.dtype, job.threads, job.block_qubits, initial)
            return self._expect(rows_job, strings, shots)

        return estimate

    def _expect(self, job: Job, strings: PauliStrings, shots: int | None) -> np.ndarray:
        """Exact (shots None) or estimated expectations of ``strings``, float64[B, K], with the noise if any."""
        if shots is None:
            if self.noise is not None:
                return noisy_expectations(job, self.noise, strings)
            return self._backend.expectation(job, strings)
        if self.noise is not None:
            return noisy_shot_expectations(self._backend, job, self.noise, strings, _check_shots(shots),
                                           self._next_key())
        return self._backend.shot_expectation(job, strings, _check_shots(shots), self._next_key())

    def _next_key(self) -> int:
        self._draws += 1
        return self._seed_key ^ ((self._draws * _MIX) & _MASK64)

    def _job(self, circuit: Circuit, params, initial_state=None) -> tuple[Job, bool]:
        if not isinstance(circuit, Circuit):
            raise CircuitError(f"expected a qsim_core.Circuit, got {type(circuit).__name__}")
        memory.check_qubits(circuit.num_qubits, self._itemsize)
        matrix, batched = _validate_params(circuit, params)
        initial = None
        if initial_state is not None:
            initial, states_batched = _validate_states(initial_state, circuit.num_qubits, self.dtype)
            if states_batched and not batched:
                matrix = np.repeat(matrix, len(initial), axis=0)
            elif not states_batched:
                initial = np.repeat(initial, len(matrix), axis=0)
            elif len(initial) != len(matrix):
                raise ParameterError(f"params has {len(matrix)} parameter sets but initial_state has {len(initial)}")
            batched = batched or states_batched
        return Job(circuit, matrix, self.dtype, self.threads, self.block_qubits, initial), batched

    @staticmethod
    def _shape(result: np.ndarray, batched: bool) -> np.ndarray:
        return result if batched else result[0]


def _validate_states(states, num_qubits: int, dtype: type) -> tuple[np.ndarray, bool]:
    """Initial states as dtype[B, 2**n] (B = 1 for one state) plus whether a batch was given."""
    try:
        array = np.asarray(states, dtype=np.complex128)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"initial_state must be numbers: {error}") from None
    size = 1 << num_qubits
    if array.ndim not in (1, 2) or array.shape[-1] != size:
        raise ParameterError(f"initial_state must be ({size},) or (B, {size}) for {num_qubits} qubits, "
                             f"got shape {array.shape}")
    batched = array.ndim == 2
    array = array.reshape(-1, size)
    if not np.isfinite(array).all():
        raise ParameterError("initial_state contains a non-finite amplitude")
    norms = np.linalg.norm(array, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > 1e-6)
    if bad.size:
        raise ParameterError(f"initial_state row {bad[0]} has norm {norms[bad[0]]:.6g}; states must be normalised")
    return np.ascontiguousarray(array.astype(dtype)), batched


def _check_shots(shots: object) -> int:
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1:
        raise ParameterError(f"shots must be a positive integer, got {shots!r}")
    return int(shots)


def _all_finite(matrix: np.ndarray) -> bool:
    """Whether every entry is finite, screened by one sum (of squares, for a small matrix): finite exactly when
    every entry is (a NaN propagates, +inf + -inf is NaN), unless finite entries overflow it, so False calls for
    the elementwise test, which names the culprit.

    A small matrix takes a BLAS dot, which sets no floating-point flags and costs a one-circuit call a third of
    what ``np.isfinite(matrix).all()`` would; a large one takes numpy's sum, since a long dot wakes BLAS's own
    threads, which then spin on the cores the kernels are about to use (a batch's kernel call then waits for them).
    """
    if matrix.size <= _SMALL_PARAMS:
        return math.isfinite(np.vdot(matrix, matrix))
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(matrix.sum()))


def _validate_params(circuit: Circuit, params) -> tuple[np.ndarray, bool]:
    """Params as float64[B, P] plus whether the caller passed a batch."""
    expected = circuit.num_params
    if params is None:
        if expected:
            raise ParameterError(f"circuit has {expected} parameter(s) (Param indices 0..{expected - 1}); pass params")
        return np.zeros((1, 0)), False
    try:
        matrix = np.asarray(params, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ParameterError(f"params must be numbers (a 1-D vector or a 2-D batch): {error}") from None
    if matrix.ndim not in (1, 2):
        raise ParameterError(f"params must be 1-D (P,) or 2-D (B, P); got shape {matrix.shape}")
    batched = matrix.ndim == 2
    if not batched:
        matrix = matrix[np.newaxis]
    if not matrix.flags.c_contiguous:  # a contiguous float64 array (the usual input) is used as is, uncopied
        matrix = np.ascontiguousarray(matrix)
    if matrix.shape[1] != expected:
        raise ParameterError(
            f"circuit has {expected} parameter(s) but params has {matrix.shape[1]} per set "
            f"(shape {np.shape(params)})"
        )
    if not _all_finite(matrix) and not (finite := np.isfinite(matrix)).all():
        row, col = map(int, np.argwhere(~finite)[0])
        users = [str(op) for op in circuit
                 if any(is_symbolic(p) and any(k == col for k, _ in p.terms) for p in op.params)]
        where = f" used by {users[0]}" if users else ""
        at = f"params[{row}, {col}]" if batched else f"params[{col}]"
        raise ParameterError(f"{at} is {matrix[row, col]} (not finite); parameter {col}{where}")
    return matrix, batched


__all__ = ["GRADIENT_METHODS", "Simulator"]
