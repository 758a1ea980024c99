"""Compile a :class:`~qsim_core.Circuit` into a :class:`Program` of flat arrays.

The compiled form is what every compiled backend executes; it is independent
of the backend. Compilation runs these passes, in order (the module of
:mod:`qsim_core.compiler` that holds each is named in brackets):

1. **Frame normalisation** (native gates; :mod:`.frames`). A phase parameter
   of GPi, GPi2 or MS is a Z frame: ``G(c + L) = RZ(2 pi L) G(c) RZ(-2 pi L)``
   on its qubit. Where the constant part ``G(c)`` is a Clifford gate, the
   parameter-dependent part ``L`` is moved out into explicit RZ rotations,
   which cancel between gates that share a frame. This undoes IonQ's
   *virtual Z*: a native circuit compiled from RY/RZ/CNOT gets back its RZ
   rotations and constant MS and GPi2 gates. The circuit is compiled with
   and without this pass, and the program with fewer steps is kept (an
   explicit RZ costs a step where it lands between two two-qubit gates).
2. **Clifford folding** (:mod:`.clifford`). Every maximal region of constant
   Clifford gates that contains a structured two-qubit gate (MS, XX, YY, ZZ;
   not only CNOT/SWAP) is rewritten, when possible, as one-qubit gates, a
   CNOT network, one-qubit gates: ``U = A D P_L D' X^c B`` with ``A``, ``B``
   one-qubit Cliffords, ``D``, ``D'`` one-qubit phases, ``X^c`` bit flips
   and ``P_L`` a linear basis permutation. A native CNOT cascade (28 MS
   gates in each layer of the native seed circuit) becomes the same
   permutation as its QIS form.
3. **Tail pass** (:mod:`.fusion`; only for Z-basis outputs: probabilities,
   samples, Z-string expectations; also run before pass 2). Diagonal gates
   that are followed on all their qubits only by diagonal or monomial gates
   (CNOT, SWAP, X, ...) cannot change any basis-state probability, so they
   are dropped.
4. **Single-qubit fusion** (:mod:`.fusion`): every maximal run of 1-qubit
   gates on one qubit (uninterrupted by a multi-qubit gate on that qubit)
   becomes one ``U1`` step whose 2x2 matrix is the product of the run,
   formed per parameter set at bind time. Each run is first put in a
   canonical form (also before pass 2, so that a folded region takes in the
   runs' Clifford constants): its constant gates are multiplied into one
   compile-time matrix, moved (when they are Cliffords) in front of the
   parametrised RX/RY/RZ rotations, which change axis accordingly, and
   adjacent rotations about one axis are merged (``GPi2(0) RZ(t) GPi2(1/2)``
   becomes ``RY(t)``; ``RY(a) RY(b)`` becomes ``RY(a + b)``). In Z-basis
   programs a run's free phases (global, and a diagonal factor where only
   monomial gates follow) are chosen to make its matrix real where possible,
   for the kernels' real fast path.
5. **Two-qubit kinds** (:mod:`.fusion`): a two-qubit gate's step kind
   follows from its matrix's sparsity pattern: ``U2D`` when it is diagonal
   (ZZ, native ZZ), ``U2X`` when it only couples ``|00>`` with ``|11>`` and
   ``|01>`` with ``|10>`` (MS, XX, YY: two 2x2 mixes per amplitude quartet),
   ``U2`` otherwise; CNOT and SWAP have their own.
6. **Product initialisation** (:mod:`.blocking`): a ``U1`` that is the first
   step on its qubit acts on ``|0>``, so the state after all of them is a
   product state; the kernels write it directly (one pass) instead of
   applying the gates.
7. **Blocking** (:mod:`.blocking`): steps are grouped into blocks acting on
   at most ``block_qubits`` qubits. For ``num_qubits <= block_qubits`` there
   is one block and kernels work on the state in place; for larger circuits
   each block is one pass over the state: a cache-sized slice is gathered,
   all the block's steps are applied to it, and it is scattered back. In
   such multi-block programs (never in one-block programs, which the adjoint
   sweep runs on) each ``U1`` run with a real head and a diagonal tail
   (``RZ RY``) is split in two, and the diagonal tails move later, past steps
   on other qubits, to stand together before the next multi-qubit step
   (:mod:`.diagonals`): the heads take the kernels' real path and the
   kernels apply a stretch of diagonal ``U1`` steps as one phase pass. A
   CNOT whose target fits in a block but whose control does not joins the
   block with an external control: constant within each gathered slice, it
   makes the CNOT a flip of the slice's indices or nothing (a CNOT chain
   across the register needs no pass of its own).
8. **Permutation runs** (:mod:`.blocking`, merged into steps by
   :mod:`.compile`): within a block, a run of CNOT/SWAP steps becomes one
   ``PERM`` step, a basis permutation applied with a single gather (the seed
   circuit's 28-CNOT cascade costs one pass over the state, not 28); a run
   with external controls is always one, however short.

Every pass is exact up to rounding (a gate within 1e-12 of a Clifford counts
as one); Z-basis programs also drop what cannot change a probability (global
phases, diagonal factors followed only by monomial gates).

:meth:`Program.bind` turns a batch of parameter vectors into the per-step
matrices (``params[B, P]`` to ``u1[B, S1, 2, 2]`` and ``u2[B, S2, 4, 4]``;
:mod:`.binding`); rebinding never recompiles. :func:`~qsim_core.compiler.compile_circuit`
(:mod:`.compile`) runs the passes in this order; compiled programs are cached
per circuit structure.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .binding import AnyOp, GateGroup, GateMatrices, fill

#: step kinds understood by the kernels (U2X: pair-mixing 4x4, U2D: diagonal 4x4; both read ``u2[arg]``)
U1, U2, CNOT, SWAP, PERM, U2X, U2D = 0, 1, 2, 3, 4, 5, 6

#: tolerance of the compile-time matrix identities (Clifford, monomial, identity tests): a gate this
#: close to a Clifford is treated as one, so it bounds the error a rewrite may add (double precision
#: results are checked to 1e-10)
TOL = 1e-12

DEFAULT_BLOCK_QUBITS = 14
#: the widest cache block a Simulator accepts (``block_qubits``), which also bounds its initial states
MAX_BLOCK_QUBITS = 24


@dataclass(frozen=True)
class Step:
    kind: int
    qubits: tuple[int, ...]
    ops: tuple[AnyOp, ...]  # gates applied in order (U1 runs have several)


@dataclass(frozen=True)
class Program:
    """A compiled circuit: flat arrays the kernels execute.

    Attributes:
        num_qubits: register size n; the state has 2**n amplitudes.
        num_params: length P of each parameter vector.
        zbasis: compiled for Z-basis outputs only (tail pass applied).
        init_u1: int32[n]; index into ``u1`` of the matrix whose first column
            is qubit q's initial single-qubit state, or -1 for ``|0>``.
        block_start: int64[nb + 1]; steps of block i are
            ``block_start[i]:block_start[i+1]``.
        block_qubit_start: int64[nb + 1]; block i's qubits (ascending) are
            ``block_qubits[block_qubit_start[i]:block_qubit_start[i+1]]``.
        block_qubits: int32[...]; global qubit indices of every block.
        kind: int8[S]; U1, U2, U2X, U2D, CNOT, SWAP or PERM per step.
        q0, q1: int32[S]; the step's qubits as *local* indices within its
            block (position in the block's ascending qubit list). For 2-qubit
            steps q0 is the matrix's most significant qubit (CNOT: control).
        arg: int32[S]; index into ``u1`` / ``u2`` / the permutation tables
            (U2, U2X and U2D all index ``u2``: a kernel may treat the
            structured kinds as a generic 4x4).
        perm_start: int64[np + 1]; permutation table t is
            ``perm_table[perm_start[t]:perm_start[t+1]]``: ``new[i] = old[table[i]]``
            over local indices.
        perm_table: int64[...]. Each table is linear over GF(2) (a run of
            CNOT and SWAP gates): ``table[i ^ k] == table[i] ^ table[k]``, which
            the Cython kernels rely on to read four amplitudes per entry.
        perm_control_start: int64[np + 1]; table t's external controls (CNOT
            controls outside its block, multi-block programs only) are entries
            ``perm_control_start[t]:perm_control_start[t+1]`` of:
        perm_control_qubit: int32[...]; a global qubit outside the block, and
        perm_control_mask: int64[...]; where that qubit is 1 in the gathered
            slice's fixed bits, the table reads ``new[i] = old[table[i] ^ mask]``
            (the masks of all such controls XORed).
        run_start: int64[S1 + 1]; fused single-qubit run r multiplies the gate
            matrices ``u1[run_gate[run_start[r]:run_start[r+1]]]`` in order
            (the kernels form the product, first gate rightmost).
        run_gate: int32[...]; indices into the ``u1`` gate matrices.
        u1_groups, u2_groups: how :meth:`bind` fills the gate matrices: one
            :class:`GateGroup` per gate name, a contiguous slice each; the
            compiler's own constant matrices (folded Cliffords, merged
            constant gates) are the last u1 group, named ``"constant"``,
            with no parameter slots.
    """

    num_qubits: int
    num_params: int
    zbasis: bool
    init_u1: np.ndarray
    block_start: np.ndarray
    block_qubit_start: np.ndarray
    block_qubits: np.ndarray
    kind: np.ndarray
    q0: np.ndarray
    q1: np.ndarray
    arg: np.ndarray
    perm_start: np.ndarray
    perm_table: np.ndarray
    perm_control_start: np.ndarray
    perm_control_qubit: np.ndarray
    perm_control_mask: np.ndarray
    run_start: np.ndarray
    run_gate: np.ndarray
    u1_groups: tuple[GateGroup, ...]
    u2_groups: tuple[GateGroup, ...]

    @property
    def single_block(self) -> bool:
        """True when the program is one block over all qubits (kernels work in place)."""
        return self._single_block

    @cached_property
    def _single_block(self) -> bool:
        return len(self.block_start) == 2 and len(self.block_qubits) == self.num_qubits

    @property
    def small_arguments(self) -> tuple[np.ndarray, ...]:
        """The step arrays in the order a single-block kernel (``run_small``) takes them:
        ``(init_u1, kind, q0, q1, arg, run_start, run_gate, perm_start, perm_table)``."""
        return (self.init_u1, self.kind, self.q0, self.q1, self.arg, self.run_start, self.run_gate,
                self.perm_start, self.perm_table)

    @property
    def num_steps(self) -> int:
        """Number of kernel steps (after fusion and permutation merging)."""
        return len(self.kind)

    def bind(self, params: np.ndarray, dtype: np.dtype, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Gate matrices for a batch of parameter vectors.

        Args:
            params: float64[B, P], already validated.
            dtype: complex64 or complex128, the state's dtype.
            threads: most threads to fill them on.

        Returns:
            ``(u1, u2)``: ``u1[B, G1, 2, 2]`` single-qubit gate matrices (fused
            by the kernels through ``run_start``/``run_gate``) and
            ``u2[B, G2, 4, 4]`` two-qubit matrices (first qubit most significant).
        """
        return fill(self.u1_groups, params, 2, dtype, threads), fill(self.u2_groups, params, 4, dtype, threads)

    def matrix_buffers(self, batch: int, dtype: np.dtype) -> tuple[GateMatrices, GateMatrices]:
        """Refillable ``u1`` and ``u2`` arrays for ``batch`` parameter sets: what :meth:`bind` returns, without
        allocating or rewriting the constant matrices on every call (one owner thread each, see
        :class:`~qsim_core.compiler.binding.GateMatrices`)."""
        return GateMatrices(self.u1_groups, batch, 2, dtype), GateMatrices(self.u2_groups, batch, 4, dtype)
