"""The shared driver of the compiled backends, forward and adjoint.

The compiled backends differ only in their kernel modules: numba's
(:mod:`qsim_core.backends.numba`) and Cython's (:mod:`qsim_core.backends.cython`)
export the same functions (:data:`~qsim_core.backends.contract.KERNEL_FUNCTIONS`)
with the same arguments, so one driver, :class:`CompiledBackend`, serves both.
It compiles the circuit once per structure, packs the program's step arrays
for the kernels once (``pack_small``, ``pack_adjoint``), binds gate matrices
per chunk of the batch and makes one kernel call per chunk (the kernels fill
the rotation matrices themselves, bit for bit as the compiler's numba fill:
Cython's each parameter set's just before running it, numba's the chunk's
before its run); :func:`run_adjoint` does the same for the adjoint sweep and
applies the chain rule from gate-slot uses to the parameter vector.

Small calls (one circuit, a few parameter sets) are dominated by what happens
around the kernel, so each thread keeps its gate-matrix arrays and their packed
form per (program, dtype) between calls (:class:`_ThreadBound`), a batch of up
to :data:`BATCH_CHUNK` sets is one kernel call on them with no chunk
bookkeeping, and parsed observables keep their packed form
(:meth:`PauliStrings.packed`).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType

import numpy as np

from .. import memory
from ..compiler import Program
from ..derivatives import AdjointPlan, adjoint_plan
from ..observables import PauliStrings
from ..threads import THREADS_SLEEP
from .chain import apply_chain_rule
from .contract import TASK_EXPVAL, TASK_PROBS, TASK_SAMPLES, TASK_SHOT_EXPVAL, TASK_STATE, Job

#: parameter sets bound and run per kernel call (the adjoint's, and the forward's when matrices other than the
#: rotations are bound per set); bounds the bound-matrix memory
BATCH_CHUNK = 4096
#: a batch of small states (or a large state, shared by the threads) gets one thread per this much work, in
#: amplitude updates (parameter sets x 2**n x (program steps + 1)): waking a thread for a little work costs more
#: than it saves, and far more when another process holds the other core. With idle threads asleep (qsim_core's
#: default, see :data:`qsim_core.threads.THREADS_SLEEP`) a second thread pays only for some 300 seed circuits, with
#: spinning threads for about 16 (``bench/small_calls.py``; docs/benchmarks.md has the figures)
WORK_PER_THREAD = 800_000 if THREADS_SLEEP else 45_000
#: the work of one shot in the same units (its draw and its share of the alias table), set so that shots weigh
#: against the forward pass as they cost in ``bench/small_calls.py``
SHOT_WORK = 6
#: the same two weights for a call the Cython kernels run eight sets at a time (``lane_path``, complex128, at least
#: ``stable_rows`` sets): an amplitude update there costs about half the per-set path's, a shot about 3 of them.
#: With sleeping threads a second one then pays from about 500 seed circuits with 8 <Z>, 150-220 with 1,024 shots
#: (estimates, samples): it took 2.7x and 1.7x the one thread's time at 128 sets under the per-set weights. The
#: adjoint's sweep eight sets at a time weighs the same (its vjp about 3 forward passes): from about 190 sets
LANE_STEP_SHARE, LANE_SHOT_WORK = 0.5, 3
#: a kernel call keeps the GIL unless its work per thread reaches this (about 4 ms of seed circuits here, less than
#: a switch interval): a thread that releases the GIL takes it back only once a busy Python thread reaches its switch
#: interval (5 ms), which made a call of 32 seed circuits (50 us) 80x slower beside one (``bench/contention.py``),
#: while a kernel this short holds the GIL no longer than Python code may between two switches
GIL_RELEASE_WORK = 10_000_000
#: bytes of gate-matrix arrays one thread keeps between calls (see :class:`_ThreadBound`); the least recently used go
#: beyond it, and a program whose arrays alone exceed it binds into fresh ones
REUSE_MAX_BYTES = 64 << 20

#: stand-in for "no observables" (the tasks without them)
_NO_OBSERVABLES = PauliStrings((), *(np.zeros(0, np.int64),) * 3)
#: the adjoint kernel's "no initial states" and "no state gradients" placeholders per state dtype (never written)
_NO_INITIAL = {dtype: np.empty((0, 0), dtype) for dtype in (np.complex64, np.complex128)}
_NO_STATE_GRADIENT = {dtype: np.empty((0, 0, 0), dtype) for dtype in (np.complex64, np.complex128)}
#: the C name of each state dtype, as a Cython fused type's specialisations are keyed
_C_COMPLEX = {np.complex64: "float complex", np.complex128: "double complex"}


#: kernels by (kernel, state dtype), see _specialised; module-level so that backends stay picklable
_SPECIALISED: dict[tuple[Callable, type], Callable] = {}


def _specialised(kernel: Callable, dtype: type) -> Callable:
    """``kernel`` for states of ``dtype``. A Cython function over a fused type picks its specialisation from the
    arguments on every call; indexing it by the C type (its ``__signatures__``) does that once. Others as they are."""
    found = _SPECIALISED.get((kernel, dtype))
    if found is None:
        signatures = getattr(kernel, "__signatures__", None) or {}
        found = _SPECIALISED[kernel, dtype] = signatures.get(_C_COMPLEX[np.dtype(dtype).type], kernel)
    return found


def _work(batch: int, program: Program, passes: int = 1, shots: int = 0, lanes: bool = False) -> int:
    """The work of ``batch`` parameter sets of ``program`` in amplitude updates (``passes``: the work of a set in
    forward passes, the adjoint's is about 2 + its lanes; ``shots`` drawn per set; ``lanes``: run eight sets at a
    time, see :data:`LANE_STEP_SHARE`)."""
    steps = passes * (len(program.kind) + 1) << program.num_qubits
    if lanes:
        return batch * (int(LANE_STEP_SHARE * steps) + LANE_SHOT_WORK * shots)
    return batch * (steps + SHOT_WORK * shots)


def _useful_threads(threads: int, work: int) -> int:
    """Threads worth waking, up to ``threads``, for ``work`` (:func:`_work`)."""
    return max(1, min(threads, -(-work // WORK_PER_THREAD)))


def _releases_gil(work: int, threads: int) -> bool:
    """Whether a kernel call of ``work`` (:func:`_work`) on ``threads`` threads releases the GIL (see
    :data:`GIL_RELEASE_WORK`)."""
    return work >= GIL_RELEASE_WORK * threads


class _Bound:
    """A single-block program bound for repeated kernel calls on one thread: refillable gate-matrix arrays for up
    to ``capacity`` parameter sets of one dtype, and per kernel module the program packed with them
    (``pack_small``, once)."""

    def __init__(self, program: Program, capacity: int, dtype: type) -> None:
        self.program = program  # held so that id(program), the cache key, stays unique while this lives
        self.capacity = capacity
        self.matrices = program.matrix_buffers(capacity, dtype)
        self.nbytes = sum(matrices.out.nbytes for matrices in self.matrices)
        #: whether a fill without the rotations writes anything
        self.refilled = any(matrices.refilled for matrices in self.matrices)
        self._packed: dict[ModuleType, object] = {}

    def fill(self, params: np.ndarray, threads: int) -> None:
        """Write the gate matrices of ``params`` but the rotations' (which the kernels fill, each set's as it runs)
        into the first rows of this thread's arrays."""
        if self.refilled:  # the usual QML circuit has rotations and constants only: nothing to write
            for matrices in self.matrices:
                matrices.fill(params, threads, False)

    def pack(self, kernels: ModuleType) -> object:
        """The program packed with the whole arrays by ``kernels.pack_small``: its runs take any rows up to
        :attr:`capacity`."""
        found = self._packed.get(kernels)
        if found is None:
            u1, u2 = self.matrices
            found = self._packed[kernels] = kernels.pack_small(self.program.num_qubits, u1.out, u2.out, u1.rotations,
                                                               u2.rotations, self.refilled,
                                                               *self.program.small_arguments)
        return found


class _ThreadBound(threading.local):
    """Each thread's :class:`_Bound` programs by (program id, dtype), least recently used first.

    The gate matrices go to the kernels only, never to a caller, so a thread's next call may overwrite them.
    Allocating them per call costs more than filling them for small batches, and for large ones page faults
    wherever freed large blocks go straight back to the OS (Dask's workers set ``MALLOC_TRIM_THRESHOLD_``),
    10-30 % of a seed batch.
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple, _Bound] = OrderedDict()
        self.nbytes = 0

    def get(self, program: Program, rows: int, dtype: type) -> _Bound:
        """The arrays for ``program`` with room for ``rows`` sets: kept ones, or new ones sized to the next
        power of two (at most :data:`BATCH_CHUNK`), kept within :data:`REUSE_MAX_BYTES`."""
        key = (id(program), dtype)
        entries = self.entries
        bound = entries.get(key)
        if bound is not None and bound.capacity >= rows:
            entries.move_to_end(key)  # the usual call: the last program again
            return bound
        if bound is not None:
            self.nbytes -= entries.pop(key).nbytes
        bound = _Bound(program, min(BATCH_CHUNK, 1 << (rows - 1).bit_length()), dtype)
        if bound.nbytes <= REUSE_MAX_BYTES:
            while entries and self.nbytes + bound.nbytes > REUSE_MAX_BYTES:
                self.nbytes -= entries.popitem(last=False)[1].nbytes
            entries[key] = bound
            self.nbytes += bound.nbytes
        return bound


_BOUND = _ThreadBound()


class CompiledBackend:
    """Drives a kernel module: compile once, bind per chunk of the batch, one kernel call per chunk."""

    def __init__(self, name: str, kernels: ModuleType, adjoint_kernels: ModuleType) -> None:
        self.name = name
        self.kernels = kernels
        self.adjoint_kernels = adjoint_kernels
        # the cython kernels run a complex128 call of LANE_CALL_SETS sets or more eight sets at a time
        self.stable_rows: int = getattr(kernels, "LANE_CALL_SETS", 1)

    def statevector(self, job: Job) -> np.ndarray:
        """See :class:`Backend`."""
        what = f"{job.batch} state(s) of {job.circuit.num_qubits} qubits"
        out = self._allocate((job.batch, job.size), job.dtype, what)
        return self._run(job, TASK_STATE, out, zbasis=False)

    def probabilities(self, job: Job) -> np.ndarray:
        """See :class:`Backend`. One large state's probabilities reuse the state's memory."""
        program = job.program(zbasis=True)
        if job.batch == 1 and not program.single_block:
            psi = self._evolve_large(job, program, 0)
            return self.kernels.probabilities_in_place(psi)[np.newaxis]
        out = self._allocate((job.batch, job.size), np.float64, f"{job.batch} probability vector(s)")
        return self._run(job, TASK_PROBS, out, zbasis=True)

    def expectation(self, job: Job, observables: PauliStrings) -> np.ndarray:
        """See :class:`Backend`."""
        out = np.zeros((job.batch, len(observables)))
        return self._run(job, TASK_EXPVAL, out, zbasis=observables.z_only, observables=observables)

    def sample(self, job: Job, shots: int, key: int, offset: int = 0) -> np.ndarray:
        """See :class:`Backend`."""
        out = self._allocate((job.batch, shots), np.int64, f"{job.batch} x {shots} samples")
        return self._run(job, TASK_SAMPLES, out, zbasis=True, shots=shots, key=key, offset=offset)

    def shot_expectation(self, job: Job, observables: PauliStrings, shots: int, key: int,
                         offset: int = 0) -> np.ndarray:
        """See :class:`Backend`."""
        out = np.zeros((job.batch, len(observables)))
        return self._run(job, TASK_SHOT_EXPVAL, out, zbasis=observables.z_only, observables=observables,
                         shots=shots, key=key, offset=offset)

    def adjoint(self, job: Job, observables: PauliStrings, weights: np.ndarray, values: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
        """See :class:`Backend`; the work is done by :func:`run_adjoint`."""
        return run_adjoint(self.kernels, self.adjoint_kernels, job, observables, weights, values)

    @staticmethod
    def _allocate(shape: tuple[int, int], dtype: type, what: str) -> np.ndarray:
        memory.require(shape[0] * shape[1] * np.dtype(dtype).itemsize, what)
        return np.empty(shape, dtype)

    def _run(self, job: Job, task: int, result: np.ndarray, *, zbasis: bool, observables: PauliStrings | None = None,
             shots: int = 0, key: int = 0, offset: int = 0) -> np.ndarray:
        """Run ``task`` into ``result`` (the task's output array, batch first, which is returned); sampling row ``b``
        draws from the stream of global row ``offset + b``."""
        program = job.program(zbasis)
        if observables is None:
            observables = _NO_OBSERVABLES
        if not program.single_block:
            self._run_large(job, program, task, result, observables, shots, key, offset)
            return result
        kernels = self.kernels
        batch = job.batch
        initial = job.initial
        bound = _BOUND.get(program, min(batch, BATCH_CHUNK), job.dtype)
        packed = bound.pack(kernels)
        lanes = getattr(packed, "lane_path", False) and initial is None and batch >= self.stable_rows
        work = _work(batch, program, shots=shots, lanes=lanes)
        threads = _useful_threads(job.threads, work)
        kernels.set_threads(threads)
        packed_observables = observables.packed(kernels.pack_observables)
        if batch <= BATCH_CHUNK or not bound.refilled:
            # one call: a chunk (the usual case) on the arrays themselves, unsliced, or any batch of a program whose
            # sets differ only in their rotations, which the kernels fill; the GIL is released once, not per chunk
            # (taking it back waits for any busy Python thread's switch interval: 5 ms per chunk of ~5 ms)
            bound.fill(job.params, threads)
            kernels.run_packed(packed, job.params, task, result, packed_observables, shots, key, offset, initial,
                               _releases_gil(work, threads))
            return result
        release = _releases_gil(work * BATCH_CHUNK // batch, threads)
        starts = [*range(0, batch, BATCH_CHUNK), batch]
        starts[-2] = min(starts[-2], batch - self.stable_rows)  # no chunk of fewer rows than stable_rows
        for start, stop in itertools.pairwise(starts):
            rows = slice(start, stop)
            params = job.params[rows]
            bound.fill(params, threads)
            kernels.run_packed(packed, params, task, result[rows], packed_observables, shots, key, offset + start,
                               None if initial is None else initial[rows], release)
        return result

    def _evolve_large(self, job: Job, program: Program, row: int, psi: np.ndarray | None = None) -> np.ndarray:
        """Final state of parameter set ``row``, in ``psi`` or in a new array (memory checked first)."""
        if psi is None:
            what = f"a {program.num_qubits}-qubit {np.dtype(job.dtype).name} state"
            memory.require(job.size * np.dtype(job.dtype).itemsize, what)
            psi = np.empty(job.size, job.dtype)
        k = self.kernels
        # a large state is shared by the threads, whatever the batch size; its passes and readout (the caller's)
        # are a parallel region each, so a state too small to pay for waking sleeping threads keeps to one
        k.set_threads(_useful_threads(job.threads, _work(1, program)))
        u1, u2 = program.bind(job.params[row:row + 1], job.dtype, job.threads)
        k.evolve_large(psi, u1[0], u2[0], program.num_qubits, program.init_u1, program.block_start,
                       program.block_qubit_start, program.block_qubits, program.kind, program.q0, program.q1,
                       program.arg, program.run_start, program.run_gate, program.perm_start,
                       program.perm_table, program.perm_control_start, program.perm_control_qubit,
                       program.perm_control_mask, k.max_threads())
        return psi

    def _run_large(self, job: Job, program: Program, task: int, result: np.ndarray, observables: PauliStrings,
                   shots: int, key: int, offset: int) -> None:
        """One parameter set at a time; the kernels parallelise over the state; row ``b`` samples as ``offset + b``."""
        k = self.kernels
        xmask, zmask, ny = observables.xmask, observables.zmask, observables.ny
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


class _AdjointProgram:
    """A circuit's adjoint plan with what every call needs from it, worked out once.

    Attributes:
        plan: the :class:`AdjointPlan` (its program is one block over all qubits).
        uses: U1 + U2, the gradient columns before the chain rule.
        use_counts: (U1, U2).
        rotations_only: every use is a rotation, whose derivative the kernels form from the bound
            gate: the derivative matrices ``du1``/``du2`` are then never read.
    """

    def __init__(self, plan: AdjointPlan) -> None:
        self.plan = plan
        self.use_counts = (int(plan.u1_use_start[-1]), int(plan.u2_use_start[-1]))
        self.uses = plan.jacobian.shape[0]
        self.rotations_only = all(use.rotation for use in plan.u1_uses + plan.u2_uses)
        self._packed: dict[ModuleType, object] = {}

    def packed(self, adjoint_kernels: ModuleType) -> object:
        """The plan's step arrays packed by ``adjoint_kernels.pack_adjoint`` (once per module)."""
        found = self._packed.get(adjoint_kernels)
        if found is None:
            plan, program = self.plan, self.plan.program
            found = self._packed[adjoint_kernels] = adjoint_kernels.pack_adjoint(
                plan.slope1, plan.rotation1, plan.slope2, plan.rotation2, program.num_qubits, program.init_u1,
                program.kind, program.q0, program.q1, program.arg, program.run_start, program.run_gate,
                program.perm_start, plan.inverse_table, program.perm_table, plan.u1_use_start, plan.u2_use_start)
        return found

    def __getstate__(self) -> dict:
        # cached on the circuit, which may be pickled (a Dask task): the packed forms are this process's objects
        return {**self.__dict__, "_packed": {}}

    def derivatives(self, params: np.ndarray, dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """``du1[B, U1, 2, 2]``, ``du2[B, U2, 4, 4]`` for ``params`` (with no rows when only rotations: the
        kernels form their derivatives from the bound gates)."""
        if not self.rotations_only:
            return self.plan.derivatives(params, dtype)
        return np.empty((0, self.use_counts[0], 2, 2), dtype), np.empty((0, self.use_counts[1], 4, 4), dtype)


def _adjoint_program(job: Job, zbasis: bool) -> _AdjointProgram:
    """The job circuit's :class:`_AdjointProgram` (cached on the circuit)."""
    width = max(job.block_qubits, job.circuit.num_qubits)
    key = ("adjoint", zbasis, width, job.initial is None)
    found = job.circuit.memo.get(key)
    if found is None:
        found = job.circuit.memo[key] = _AdjointProgram(adjoint_plan(job.program(zbasis, width)))
    return found


def plan_for(job: Job, zbasis: bool) -> AdjointPlan:
    """The job circuit's adjoint plan (cached on the circuit): one block over all qubits."""
    return _adjoint_program(job, zbasis).plan


def _rows(array: np.ndarray, rows: slice | None) -> np.ndarray:
    """``array[rows]``, or the array itself for None."""
    return array if rows is None else array[rows]


def run_adjoint(kernels: ModuleType, adjoint_kernels: ModuleType, job: Job, observables: PauliStrings,
                weights: np.ndarray, values: bool = True) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Expectations and weighted adjoint gradients.

    Args:
        kernels: the backend's kernel module (for ``set_threads`` and ``pack_observables``).
        adjoint_kernels: the module with ``pack_adjoint`` and ``adjoint_packed``.
        job: circuit and float64[B, P] parameters.
        observables: the K Pauli strings.
        weights: float64[B, L, K]; lane l differentiates ``sum_k weights[b, l, k] <O_k>``.
        values: whether to compute the expectations (else the kernels skip them and None is returned).

    Returns:
        ``(values, gradient, state_gradient)``: float64[B, K] (or None), float64[B, L, P], and for jobs
        with initial states ``d f / d Re psi_0 + i d f / d Im psi_0`` as complex[B, L, 2**n] (else None).
    """
    adjoint = _adjoint_program(job, observables.z_only)
    program = adjoint.plan.program
    weights = np.ascontiguousarray(weights)
    lanes = weights.shape[1]
    dtype = np.dtype(job.dtype).type
    bound = _BOUND.get(program, min(job.batch, BATCH_CHUNK), dtype)
    # sets that differ only in their rotations (which the kernels fill), with no derivative matrices to bind: the
    # whole batch is one call, which releases the GIL at most once; otherwise one call per chunk
    chunk = job.batch if adjoint.rotations_only and not bound.refilled else BATCH_CHUNK
    gates = bound.pack(kernels)
    packed = adjoint.packed(adjoint_kernels)
    packed_observables = observables.packed(kernels.pack_observables)
    with_states = job.initial is not None
    # whether the kernels differentiate eight sets at a time (Cython's _adjoint_lanes.pxi), in their own words
    lane_path = getattr(adjoint_kernels, "adjoint_lane_path", None)
    eight = lane_path is not None and lane_path(packed, gates, packed_observables, min(job.batch, chunk),
                                                with_states)
    work = _work(min(job.batch, chunk), program, passes=2 + lanes, lanes=eight)  # per kernel call
    threads = _useful_threads(job.threads, work)
    release = _releases_gil(work, threads)
    # per thread: psi, the permutation scratch and one state per lane (the state gradients are outputs), or eight
    # sets at a time a lambda and a diagonal per lane for eight states, and the forward's buffers (about 12 states
    # per lane and 40 more); and the per-use gradients of a call
    states = 12 * lanes + 40 if eight else lanes + 2
    memory.require(threads * states * job.size * np.dtype(dtype).itemsize
                   + min(job.batch, chunk) * lanes * adjoint.uses * 8,
                   f"adjoint differentiation of a {program.num_qubits}-qubit circuit with {lanes} lane(s)")
    kernels.set_threads(threads)
    # no rows: the kernels compute no expectations
    expectations = np.empty((job.batch if values else 0, len(observables)))
    gradient = np.empty((job.batch, lanes, program.num_params))
    state_gradient = np.empty((job.batch, lanes, job.size), dtype) if with_states else _NO_STATE_GRADIENT[dtype]
    initial = job.initial if with_states else _NO_INITIAL[dtype]
    adjoint_packed = _specialised(adjoint_kernels.adjoint_packed, dtype)
    # one buffer for every chunk's per-use gradients: a fresh one per chunk would be fresh pages to fault in
    # where large allocations are not reused (Dask's workers set MALLOC_TRIM_THRESHOLD_, which makes glibc map
    # every one anew)
    uses_buffer = np.empty((min(job.batch, chunk), lanes, adjoint.uses))
    chunked = job.batch > chunk  # one call (the usual case) runs on the arrays themselves, unsliced
    for start in range(0, job.batch, chunk):
        rows = slice(start, start + chunk) if chunked else None
        params = _rows(job.params, rows)
        bound.fill(params, threads)
        du1, du2 = adjoint.derivatives(params, dtype)
        per_use = uses_buffer[:params.shape[0]]
        adjoint_packed(packed, gates, params, du1, du2, packed_observables, _rows(weights, rows),
                       _rows(expectations, rows), per_use, _rows(initial, rows), _rows(state_gradient, rows), release)
        plan = adjoint.plan
        apply_chain_rule(per_use, plan.chain_start, plan.chain_param, plan.chain_scale, _rows(gradient, rows))
    # the kernels leave U^dagger lambda; the derivative with respect to (Re, Im) of psi_0 is twice it
    return expectations if values else None, gradient, 2 * state_gradient if with_states else None
