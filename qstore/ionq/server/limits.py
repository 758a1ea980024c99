"""What one job may ask of the local server, checked on the decoded body before any circuit is built.

The cost model behind the defaults was measured on the 2-core machine this
server is developed on (one simulation thread per worker, ``qsim_core``'s
compiled backend):

* simulating: about 1e9 gate-amplitude updates per second (a gate on an
  n-qubit state updates 2**n amplitudes);
* compiling a gate sequence not seen before: about 180 us per gate, as much
  as 2**17 updates; so every gate is charged at least 2**17 (the charge
  assumes every circuit is a new sequence, an upper bound);
* writing results: about 2 us per probability entry as JSON (about 32 bytes
  of it), a 20-qubit dense result in 2 s and 32 MiB;
* a noisy job (``noise.model`` on the simulator, or an emulated QPU) simulates the error-free
  circuit once and, at worst, once more per shot that has an error: its work
  is multiplied by :func:`noisy_runs` (``1 + min(shots, shots x P(an error))``,
  with ``P = 1 - (1 - 15 r2 / 16)**gates``, every gate counted as a two-qubit one).
  For example 100 gates of aria-1 at 1,024 shots: 733 runs.

:data:`DEFAULT_WORK` (6e10 updates) keeps a job to about a minute of one
worker; :data:`DEFAULT_RESULT_ENTRIES` (2**23, about 17 s and 270 MiB of
JSON) bounds what a job leaves in the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qsim_core.noise import IONQ_MODELS

from ..noise import emulated_qpu_model

#: gate-amplitude updates one job may cost (about a minute of one worker at 1e9 updates/s)
DEFAULT_WORK = 60 * 10**9
#: probability entries one job's results may hold (circuits x states each)
DEFAULT_RESULT_ENTRIES = 2**23
#: gates in one circuit
DEFAULT_GATES = 20_000
#: the least a gate is charged, in amplitude updates: what compiling it costs (see the module docstring)
COMPILE_CHARGE = 2**17
#: largest value of each integer parameter of ``GET /jobs/estimate``: far beyond any job, and the price stays finite
ESTIMATE_MAXIMA = {"1q_gates": 10**12, "2q_gates": 10**12, "shots": 10**12, "qubits": 10**4}
#: IonQ's documented metadata limits
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 10, 40, 40_000


class LimitError(ValueError):
    """A request over one of the server's limits; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class JobLimits:
    """The limits of one job (see the module docstring for how the defaults were chosen).

    Attributes:
        max_qubits: widest ``input.qubits``.
        max_shots: largest ``shots``.
        max_circuits: most circuits in a multi-circuit job.
        max_gates: most gates in one circuit.
        max_work: most gate-amplitude updates: the sum over circuits of gates x max(2**qubits x runs, 2**17),
            runs = 1 without noise, :func:`noisy_runs` with a noise model.
        max_result_entries: most probability entries in the results: circuits x 2**qubits (x min(2**qubits,
            shots) for sampled jobs).
    """

    max_qubits: int = 20
    max_shots: int = 1_000_000
    max_circuits: int = 1_000
    max_gates: int = DEFAULT_GATES
    max_work: int = DEFAULT_WORK
    max_result_entries: int = DEFAULT_RESULT_ENTRIES

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")

    def check(self, body: Any) -> None:
        """Refuse a decoded ``POST /jobs`` body over a limit (:class:`LimitError` naming it).

        Only the fields a limit reads are looked at, and only when they have
        the right type: anything malformed is left to the parser, which
        names it. Cheap: no circuit is read, only the lengths of gate lists.
        """
        if not isinstance(body, Mapping):
            return
        check_metadata(body.get("metadata"))
        block = body.get("input")
        if not isinstance(block, Mapping):
            return
        qubits = block.get("qubits")
        if not _is_int(qubits):
            return
        if qubits > self.max_qubits:
            raise LimitError(f"input.qubits = {qubits} exceeds this server's limit of {self.max_qubits} (max_qubits)")
        shots = _shots(body.get("shots"))
        if shots is not None and shots > self.max_shots:
            raise LimitError(f"shots = {shots} exceeds this server's limit of {self.max_shots} (max_shots)")
        if isinstance(block.get("circuits"), list):
            circuits = block["circuits"]
            if len(circuits) > self.max_circuits:
                raise LimitError(f"{len(circuits)} circuits exceed this server's limit of {self.max_circuits} "
                                 "(max_circuits)")
            gate_lists = [entry.get("circuit") if isinstance(entry, Mapping) else None for entry in circuits]
        else:
            gate_lists = [block.get("circuit")]
        lengths = [len(gates) for gates in gate_lists if isinstance(gates, list)]
        for k, length in enumerate(lengths):
            if length > self.max_gates:
                where = f"circuits[{k}]" if len(gate_lists) > 1 else "the circuit"
                raise LimitError(f"{where} has {length} gates; this server's limit is {self.max_gates} per circuit "
                                 "(max_gates)")
        rate = _two_qubit_error(body)
        work = sum(length * max(2**qubits * noisy_runs(length, shots or 1, rate), COMPILE_CHARGE)
                   for length in lengths)
        if work > self.max_work:
            noisy = f" x {noisy_runs(max(lengths), shots or 1, rate)} noisy runs" if rate else ""
            raise LimitError(f"the job costs {work:.3g} gate-amplitude updates (gates x 2**qubits{noisy}, at least "
                             f"{COMPILE_CHARGE} per gate); this server's limit is {self.max_work:.3g} (max_work)")
        states = 2**qubits
        if _sampled(body) and shots is not None:
            states = min(states, shots)
        entries = len(gate_lists) * states
        if entries > self.max_result_entries:
            raise LimitError(f"the results would hold {entries} probability entries ({len(gate_lists)} circuit(s) x "
                             f"{states}); this server's limit is {self.max_result_entries} (max_result_entries)")


def noisy_runs(gates: int, shots: int, error: float) -> int:
    """Simulations a noisy circuit may cost: the error-free one, plus one per shot with an error (an upper bound:
    shots with the same errors share a simulation, errors before Clifford gates need none).

    A circuit of ``gates`` gates, each followed by an error with probability at most ``error``, has an error
    in ``1 - (1 - error)**gates`` of its shots; ``error`` 0 (no noise) costs one run.
    """
    if error <= 0:
        return 1
    return 1 + min(shots, math.ceil(shots * -math.expm1(gates * math.log1p(-error))))


def check_metadata(metadata: Any) -> None:
    """IonQ's metadata limits: at most 10 keys, keys up to 40 characters, values up to 40,000 (as JSON text if
    not a string). A non-object is left to the parser."""
    if not isinstance(metadata, Mapping):
        return
    if len(metadata) > METADATA_KEYS:
        raise LimitError(f"metadata has {len(metadata)} keys; the limit is {METADATA_KEYS}")
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            raise LimitError(f"metadata key {key[:METADATA_KEY_CHARS]!r}... has {len(key)} characters; "
                             f"the limit is {METADATA_KEY_CHARS}")
        size = len(value) if isinstance(value, str) else len(json.dumps(value))
        if size > METADATA_VALUE_CHARS:
            raise LimitError(f"metadata[{key!r}] has {size} characters; the limit is {METADATA_VALUE_CHARS}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shots(value: Any) -> int | None:
    """``shots`` if it is an integer or a decimal string (as the parser reads it), else None."""
    if isinstance(value, str) and value.isascii() and value.strip().isdecimal():
        digits = value.strip().lstrip("0")
        return int(digits or "0") if len(digits) <= 18 else 10**18  # longer: over any limit, never converted
    return value if _is_int(value) else None


def _two_qubit_error(body: Mapping[str, Any]) -> float:
    """The largest per-gate error probability of the job's noise model (its two-qubit one), 0 without noise.

    A known model on the simulator counts, and an emulated QPU's own model; anything else is left to the parser.
    """
    noise = body.get("noise")
    model = noise.get("model") if isinstance(noise, Mapping) else None
    backend = body.get("backend", body.get("target", "simulator"))
    if isinstance(backend, str) and backend.startswith("qpu"):
        emulated = emulated_qpu_model(backend)
        model = None if emulated is None else emulated.name
    elif backend != "simulator":
        return 0.0
    if not isinstance(model, str) or model not in IONQ_MODELS:
        return 0.0
    return 15 / 16 * IONQ_MODELS[model][1]


def _sampled(body: Mapping[str, Any]) -> bool:
    """Whether the job's results are ``shots`` samples (an emulated QPU or noise model), as the runner decides."""
    backend = body.get("backend", body.get("target", "simulator"))
    noise = body.get("noise")
    model = noise.get("model", "ideal") if isinstance(noise, Mapping) else "ideal"
    return (isinstance(backend, str) and backend.startswith("qpu")) or model != "ideal"


__all__ = ["COMPILE_CHARGE", "DEFAULT_GATES", "DEFAULT_RESULT_ENTRIES", "DEFAULT_WORK", "ESTIMATE_MAXIMA", "JobLimits",
           "LimitError", "check_metadata", "noisy_runs"]
