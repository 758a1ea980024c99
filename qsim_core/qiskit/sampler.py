"""``SamplerV2``: Qiskit's sampler primitive (V2) on the engine.

Each pub ``(circuit, parameter_values, shots)`` runs as one batched engine
call: the circuit is translated once (:mod:`qsim_core.qiskit.translate`),
its terminal measurements say which qubit each classical bit reads, the
pub's ``BindingsArray`` is flattened to ``params[B, P]`` and the engine draws
``shots`` samples for every parameter set at once (one random stream per
parameter set). The result holds one ``BitArray`` per classical register,
named after it (``data.meas`` after ``measure_all()``), shaped like the
bindings; unmeasured bits read 0.

Public (``__all__``): :class:`SamplerV2`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
from qiskit.primitives import BaseSamplerV2, BitArray, DataBin, PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers import SamplerPub, SamplerPubLike

from ..simulator import Simulator
from .job import Engine, QsimPrimitiveJob, SeedLike
from .translate import translate


class SamplerV2(BaseSamplerV2):
    """Samples of circuits' classical registers, Qiskit's ``BaseSamplerV2`` contract.

    Args:
        default_shots: shots of pubs that name none (and of runs without ``shots=``).
        seed: an int makes every run reproducible (same input, same samples);
            a numpy Generator is drawn from once per run; None is fresh randomness.
        backend: the engine backend (``"auto"``, ``"cython"``, ``"numba"``, ``"reference"``).
        threads: engine threads; None uses every core.

    Example:
        >>> from qiskit import QuantumCircuit
        >>> bell = QuantumCircuit(2)
        >>> _ = bell.h(0), bell.cx(0, 1), bell.measure_all()
        >>> counts = SamplerV2(seed=1).run([bell], shots=100).result()[0].data.meas.get_counts()
        >>> sorted(counts)
        ['00', '11']
    """

    def __init__(self, *, default_shots: int = 1024, seed: SeedLike = None, backend: str = "auto",
                 threads: int | None = None) -> None:
        if isinstance(default_shots, bool) or not isinstance(default_shots, (int, np.integer)) or default_shots < 1:
            raise ValueError(f"default_shots must be a positive integer, got {default_shots!r}")
        self._default_shots = int(default_shots)
        self._engine = Engine(seed, backend, threads)

    @property
    def default_shots(self) -> int:
        """Shots of pubs that name none."""
        return self._default_shots

    @property
    def seed(self) -> SeedLike:
        """The seed given to the constructor."""
        return self._engine.seed

    def run(self, pubs: Iterable[SamplerPubLike], *, shots: int | None = None
            ) -> QsimPrimitiveJob[PrimitiveResult[SamplerPubResult]]:
        """Sample every pub; the returned job is already done.

        Raises:
            ValueError: a malformed pub or shot count (Qiskit's coercion).
        """
        if shots is None:
            shots = self._default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        if any(not pub.circuit.cregs for pub in coerced):
            warnings.warn("One of your circuits has no output classical registers and so the result will be "
                          "empty. Did you mean to add measurement instructions?", UserWarning, stacklevel=2)

        return self._engine.run(_run_pub, coerced)


def _run_pub(simulator: Simulator, pub: SamplerPub) -> SamplerPubResult:
    circuit = pub.circuit
    translation = translate(circuit, measurements=True)
    params = translation.bind(pub.parameter_values)
    samples = simulator.sample(translation.circuit, pub.shots, params)  # [B, shots] basis indices
    registers = {}
    for register in circuit.cregs:
        clbits = [circuit.find_bit(bit).index for bit in register]
        bits = translation.clbit_values(samples, clbits[::-1])  # most significant bit first, as BitArray packs
        padding = np.zeros(bits.shape[:-1] + (-len(clbits) % 8,), np.uint8)
        packed = np.packbits(np.concatenate([padding, bits], axis=-1), axis=-1)
        registers[register.name] = BitArray(packed.reshape(pub.shape + packed.shape[1:]), register.size)
    return SamplerPubResult(DataBin(**registers, shape=pub.shape),
                            metadata={"shots": pub.shots, "circuit_metadata": circuit.metadata})


__all__ = ["SamplerV2"]
