"""Pass 2 of :mod:`qsim_core.compiler.program`: Clifford folding, and the Pauli and Clifford helpers it uses."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from ..circuit import Operation, is_symbolic
from ..gates import PAULI
from .binding import AnyOp, ConstantOp, constant_matrix
from .blocking import alternating_order
from .fusion import is_identity, structure
from .program import TOL

#: widest region Clifford folding considers (it works on the region's dense 2^m x 2^m unitary)
_MAX_FOLD_QUBITS = 10
#: at most this many local-Clifford frames are tried per region, and compared once this many work
_MAX_FOLD_ATTEMPTS = 32
_MAX_FOLD_FORMS = 2


# ---------------------------------------------------------------- Pauli and Clifford helpers

_H = np.array([[1, 1], [1, -1]], np.complex128) / math.sqrt(2)
_S = np.diag([1, 1j])
#: C[P] maps Z to P by conjugation: C Z C^dagger = P
_TO_AXIS = {"Z": np.eye(2, dtype=np.complex128), "X": _H, "Y": _S @ _H}


def kron(factors: Iterator[np.ndarray]) -> np.ndarray:
    out = np.ones((1, 1), np.complex128)
    for factor in factors:
        out = np.kron(out, factor)
    return out


@functools.cache
def _pauli_strings(k: int) -> tuple[tuple[str, np.ndarray], ...]:
    """The 4**k Pauli strings on k qubits: (letters, first qubit first; matrix)."""
    letters = [""]
    for _ in range(k):
        letters = [s + a for s in letters for a in "IXYZ"]
    return tuple((s, kron(PAULI[a] for a in s)) for s in letters)


def pauli_map(matrix: np.ndarray) -> dict[str, str] | None:
    """How a 2x2 or 4x4 unitary maps Pauli strings by conjugation (``G P G^dagger = +-P'``, signs
    dropped), as letters to letters; None if it is not a Clifford gate."""
    return _pauli_map_cached(matrix.shape[0], np.ascontiguousarray(matrix, np.complex128).tobytes())


@functools.lru_cache(maxsize=4096)
def _pauli_map_cached(dim: int, data: bytes) -> dict[str, str] | None:
    matrix = np.frombuffer(data, np.complex128).reshape(dim, dim)
    strings = _pauli_strings(dim.bit_length() - 1)
    mapping = {}
    for letters, pauli in strings:
        image = matrix @ pauli @ matrix.conj().T
        mapped = next((other for other, candidate in strings
                       if np.allclose(np.abs(image), np.abs(candidate), rtol=0, atol=TOL)
                       and min(np.abs(image - candidate).max(), np.abs(image + candidate).max()) < TOL), None)
        if mapped is None:
            return None
        mapping[letters] = mapped
    return mapping


def _is_constant_clifford(op: AnyOp) -> bool:
    if any(is_symbolic(v) for v in op.params):
        return False
    return pauli_map(constant_matrix(op)) is not None


# ---------------------------------------------------------------- pass 2: Clifford folding

def _structured(op: AnyOp) -> bool:
    """A two-qubit gate other than CNOT and SWAP: what Clifford folding is for."""
    return len(op.qubits) == 2 and op.name not in ("cnot", "swap")


def fold_clifford_regions(ops: Sequence[AnyOp]) -> list[AnyOp]:
    """Pass 2: rewrite constant Clifford regions as one-qubit gates around a CNOT network.

    When no region is rewritten, the result is ``ops`` in its original order.
    """
    foldable = [_is_constant_clifford(op) for op in ops]
    if not any(f and _structured(op) for f, op in zip(foldable, ops, strict=True)):
        return list(ops)
    out: list[AnyOp] = []
    folded = False
    for flagged, items in alternating_order([op.qubits for op in ops], foldable):
        if not flagged:
            out.extend(ops[k] for k in items)
            continue
        for region in _connected(ops, items):
            region_ops = [ops[k] for k in region]
            replacement = _fold_region(region_ops) if any(_structured(op) for op in region_ops) else None
            out.extend(region_ops if replacement is None else replacement)
            folded |= replacement is not None
    return out if folded else list(ops)


def _connected(ops: Sequence[AnyOp], items: list[int]) -> list[list[int]]:
    """``items`` split into groups that share no qubit, each group in the given order."""
    parent: dict[int, int] = {}

    def find(q: int) -> int:
        while parent.setdefault(q, q) != q:
            q = parent[q]
        return q

    for k in items:
        first = find(ops[k].qubits[0])
        for q in ops[k].qubits[1:]:
            parent[find(q)] = first
    groups: dict[int, list[int]] = {}
    for k in items:
        groups.setdefault(find(ops[k].qubits[0]), []).append(k)
    return list(groups.values())


def _apply_local(states: np.ndarray, matrix: np.ndarray, positions: Sequence[int]) -> np.ndarray:
    """``matrix`` (one or two qubits, first position most significant) applied to every row of ``states[R, 2**m]``.

    Works on strided views split at the qubits' bits (no BLAS: these are many
    small products, which a threaded BLAS makes slow on a busy machine).
    """
    rows, size = states.shape
    hi, lo = max(positions), min(positions)
    if len(positions) == 1:
        view = states.reshape(rows, size >> (hi + 1), 2, 1 << hi)
        parts = [view[:, :, 0], view[:, :, 1]]
    else:
        view = states.reshape(rows, size >> (hi + 1), 2, 1 << (hi - lo - 1), 2, 1 << lo)
        first_high = positions[0] == hi  # the matrix index is 2 * bit(first) + bit(second)
        parts = [view[:, :, a, :, b] if first_high else view[:, :, b, :, a] for a in (0, 1) for b in (0, 1)]
    out = np.empty_like(view)
    targets = [out[:, :, 0], out[:, :, 1]] if len(positions) == 1 else [
        out[:, :, a, :, b] if first_high else out[:, :, b, :, a] for a in (0, 1) for b in (0, 1)]
    for r, target in enumerate(targets):
        target[...] = sum(matrix[r, c] * part for c, part in enumerate(parts) if matrix[r, c] != 0)
    return out.reshape(rows, size)


def _region_unitary(ops: Sequence[AnyOp], local: dict[int, int]) -> np.ndarray:
    """The dense unitary ``U[y, x]`` of constant ``ops``; bit j of x and y is qubit ``q`` with ``local[q] = j``."""
    states = np.eye(1 << len(local), dtype=np.complex128)  # row x: U e_x
    for op in ops:
        states = _apply_local(states, constant_matrix(op), [local[q] for q in op.qubits])
    return states.T


def _pauli_images(ops: Sequence[AnyOp], local: dict[int, int]) -> list[dict[str, str]]:
    """``U P_j U^dagger`` of constant Clifford ``ops`` for every local qubit j and P in X, Y, Z, as letters
    (local qubit 0 first), propagated gate by gate through each gate's :func:`pauli_map`."""
    maps = [(pauli_map(constant_matrix(op)), [local[q] for q in op.qubits]) for op in ops]
    images = []
    for j in range(len(local)):
        image = {}
        for axis in "ZXY":
            letters = ["I"] * len(local)
            letters[j] = axis
            for mapping, positions in maps:
                key = "".join(letters[p] for p in positions)
                if key.strip("I"):
                    for p, letter in zip(positions, mapping[key], strict=True):
                        letters[p] = letter
            image[axis] = "".join(letters)
        images.append(image)
    return images


def _letter_choices(images: list[dict[str, str]], limit: int) -> list[tuple[str, str]]:
    """Local Clifford frames in which the region's unitary U is monomial, up to ``limit`` of them.

    A choice is ``(inputs, outputs)``: a letter ``p_j`` per input qubit and
    ``s_k`` per output qubit such that every image ``U p_j U^dagger`` has, on
    every qubit k, I or ``s_k``. With ``B_j`` mapping ``p_j`` to Z and ``A_k``
    mapping Z to ``s_k``, ``A^dagger U B^dagger`` then maps each Z_j to a
    Z string, so it is monomial. Each input first tries the letters whose
    image has the fewest X and Y, so that choices with ``s_k = Z`` (no
    one-qubit gate after the region) come first.
    """
    m = len(images)
    outputs: list[str | None] = [None] * m
    inputs = [""] * m
    found: list[tuple[str, str]] = []

    def search(j: int) -> None:
        if len(found) >= limit:
            return
        if j == m:
            found.append(("".join(inputs), "".join(s or "Z" for s in outputs)))
            return
        for axis in sorted("ZXY", key=lambda a: sum(letter in "XY" for letter in images[j][a])):
            assigned = []
            for k, letter in enumerate(images[j][axis]):
                if letter == "I" or outputs[k] == letter:
                    continue
                if outputs[k] is not None:
                    break
                outputs[k] = letter
                assigned.append(k)
            else:
                inputs[j] = axis
                search(j + 1)
            for k in assigned:
                outputs[k] = None

    search(0)
    return found


def _fold_region(ops: list[AnyOp]) -> list[AnyOp] | None:
    """``ops`` (a convex region of constant Cliffords) as one-qubit gates around CNOTs, or None.

    In local frames from :func:`_letter_choices`, ``M = A^dagger U B^dagger``
    is monomial: bit flips, phases, ``P_L |x> = |L x>`` for an invertible
    GF(2) matrix L (CNOTs by Gaussian elimination), phases (see
    :func:`_monomial_form`). U is then: one-qubit gates (``B``, the flips and
    phases), the CNOTs, one-qubit gates (phases, ``A``). Of the frames
    that work, the one with the fewest non-diagonal gates after the CNOTs
    wins (a diagonal gate at the end of a Z-basis program is dropped; ``B``
    merges into the gates before), then the fewest one-qubit gates. The
    result is checked against the region's unitary before it is used.
    """
    qubits = sorted({q for op in ops for q in op.qubits})
    if len(qubits) > _MAX_FOLD_QUBITS:
        return None
    local = {q: j for j, q in enumerate(qubits)}
    images = _pauli_images(ops, local)
    unitary = _region_unitary(ops, local)
    best: tuple[tuple[int, int], list[AnyOp]] | None = None
    found = 0
    for inputs, outputs in _letter_choices(images, _MAX_FOLD_ATTEMPTS):
        replacement = _monomial_form(unitary, inputs, outputs, qubits)
        if replacement is None:
            continue
        found += 1
        cnots = [k for k, op in enumerate(replacement) if not isinstance(op, ConstantOp)]
        after = replacement[cnots[-1] + 1:] if cnots else []
        cost = (sum(not structure(op)[0] for op in after), len(replacement) - len(cnots))
        if best is None or cost < best[0]:
            best = (cost, replacement)
        if cost[0] == 0 or found == _MAX_FOLD_FORMS:
            break
    if best is None or not np.allclose(_region_unitary(best[1], local), unitary, rtol=0, atol=TOL):
        return None
    return best[1]


def _monomial_form(unitary: np.ndarray, inputs: str, outputs: str, qubits: list[int]) -> list[AnyOp] | None:
    """The folded operations for one choice of local frames, or None.

    ``M = A^dagger U B^dagger`` must be monomial with an affine permutation,
    ``M |x> = phi(x') |L x'>`` for ``x' = x ^ c``, and Clifford phases
    ``phi(x') = g i^(beta . x') i^(a . L x')``: bit flips ``X^c`` and phases
    ``i^beta_j`` join the one-qubit gates before the CNOTs, phases ``i^a_k``
    those after them. The output phases carry the CZ-like cross terms of
    ``phi`` (``a . L x'`` sums parities); they are only used where needed,
    so that a region at the end of a Z-basis program leaves no gate after
    its CNOTs that is not diagonal.
    """
    m = len(qubits)
    size = 1 << m
    index = np.arange(size)
    # M = (x)A_k^dagger U (x)B_j^dagger, B_j^dagger = C[p_j] and A_k = C[s_k]: a right factor acts on
    # every row of U (as its transpose), a left factor on every column
    product = unitary
    for j, axis in enumerate(inputs):
        product = _apply_local(product, _TO_AXIS[axis].T, [j])
    product = product.T
    for k, axis in enumerate(outputs):
        product = _apply_local(product, _TO_AXIS[axis].conj().T, [k])
    monomial = product.T  # M[y, x]
    image = np.argmax(np.abs(monomial), axis=0)  # y = pi(x)
    values = monomial[image, index]
    if not np.allclose(np.abs(values), 1, rtol=0, atol=TOL) or len(set(image.tolist())) != size:
        return None
    flips = int(np.flatnonzero(image == 0)[0])  # c, with L c = pi(0)
    columns = [int(image[(1 << k) ^ flips]) for k in range(m)]  # L e_k = pi(e_k ^ c)
    linear = np.zeros(size, np.int64)  # L x'
    for k in range(m):
        linear ^= ((index >> k) & 1) * columns[k]
    if not (linear[index ^ flips] == image).all():
        return None
    phase = values[index ^ flips]  # phi(x')
    ratio = phase / phase[0]
    quarter = np.round(np.angle(ratio) / (np.pi / 2)).astype(np.int64) % 4  # phi = g i^Q
    if not np.allclose(ratio, 1j**quarter, rtol=0, atol=TOL):
        return None
    # Q's cross terms Q(e_i + e_j) - Q(e_i) - Q(e_j) (0 or 2 mod 4) must come from the output parities:
    # a . L x' contributes 2 * parity(a & L_i & L_j) to pair (i, j)
    candidates = np.arange(size)
    fits = np.ones(size, bool)
    for i in range(m):
        for j in range(i + 1, m):
            cross = (quarter[(1 << i) | (1 << j)] - quarter[1 << i] - quarter[1 << j]) % 4
            if cross % 2:
                return None
            fits &= (np.bitwise_count(candidates & columns[i] & columns[j]) & 1) == cross // 2
    if not fits.any():
        return None
    outputs_phase = int(min(candidates[fits], key=lambda a: (bin(int(a)).count("1"), a)))
    rest = (quarter - np.bitwise_count(linear & outputs_phase).astype(np.int64)) % 4
    inputs_phase = [int(rest[1 << j]) for j in range(m)]
    if not (sum(((index >> j) & 1) * inputs_phase[j] for j in range(m)) % 4 == rest).all():
        return None
    flip = np.array([[0, 1], [1, 0]], np.complex128)
    before = [(qubits[j], np.diag([1, 1j**inputs_phase[j]]) @ (flip if (flips >> j) & 1 else PAULI["I"])
               @ _TO_AXIS[axis].conj().T) for j, axis in enumerate(inputs)]
    after = [(qubits[k], _TO_AXIS[axis] @ np.diag([1, 1j**((outputs_phase >> k) & 1)]))
             for k, axis in enumerate(outputs)]
    before = [(q, b) for q, b in before if not is_identity(b)]
    after = [(q, a) for q, a in after if not is_identity(a)]
    if abs(phase[0] - 1) > TOL:  # the global phase g joins a one-qubit gate, a new one if there is none
        side = after if after or not before else before
        q, matrix = side[0] if side else (qubits[0], PAULI["I"])
        side[:1] = [(q, phase[0] * matrix)]
    out: list[AnyOp] = [ConstantOp((q,), b) for q, b in before]
    out += [Operation("cnot", (qubits[c], qubits[t]), ()) for c, t in _cnot_network(columns)]
    out += [ConstantOp((q,), a) for q, a in after]
    return out


def _cnot_network(columns: list[int]) -> list[tuple[int, int]]:
    """CNOTs ``(control, target)``, in time order, whose product maps x to L x.

    ``columns[k]`` is column k of the invertible GF(2) matrix L as a bit mask.
    Gaussian elimination by row additions ``row_t += row_c`` (each one a
    CNOT(c, t) multiplied on the left) reduces L to the identity; L is then
    their product in reverse, so the last addition is applied first.
    """
    m = len(columns)
    rows = [sum(((columns[k] >> r) & 1) << k for k in range(m)) for r in range(m)]
    additions = []
    for col in range(m):
        if not (rows[col] >> col) & 1:
            pivot = next(r for r in range(col + 1, m) if (rows[r] >> col) & 1)
            rows[col] ^= rows[pivot]
            additions.append((pivot, col))
        for r in range(m):
            if r != col and (rows[r] >> col) & 1:
                rows[r] ^= rows[col]
                additions.append((col, r))
    return additions[::-1]
