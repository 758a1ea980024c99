"""Dry-run cost estimates of IonQ jobs from a pricing table (``qstore/ionq/pricing.json``).

The table follows IonQ's published gate-shot pricing: per circuit ("program
execution"), ``minimum + per_1q_gate_shot * N1q * shots + per_2q_gate_shot *
N2q * shots`` in the table's currency, with the larger minimum when error
mitigation (debiasing) is on. The published formula *adds* the minimum, which
also makes it the safe reading for a budget guard (it never underestimates
the alternative "at least the minimum" reading). Gates are counted as
submitted, before IonQ's compiler, which is what the formula bills.
Debiasing counts as on for QPUs unless the job turns it off
(``settings.error_mitigation.debiasing: false``; v0.3: top-level
``error_mitigation.debias``), IonQ's default for QPU jobs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .parse import gate_counts, parse_job_body

DEFAULT_PRICING = Path(__file__).with_name("pricing.json")


class CostError(ValueError):
    """No price is known for the job's backend."""


@dataclass(frozen=True)
class Price:
    """Prices of one backend, in the table's currency.

    Attributes:
        per_1q_gate_shot, per_2q_gate_shot: price of one gate applied in one shot.
        minimum: charged per circuit without error mitigation.
        minimum_error_mitigation: charged per circuit with error mitigation.
    """

    per_1q_gate_shot: float
    per_2q_gate_shot: float
    minimum: float
    minimum_error_mitigation: float

    def cost(self, circuits: int, shots: int, one_qubit_gates: int, two_qubit_gates: int,
             error_mitigation: bool) -> float:
        """Price of ``circuits`` circuits with these gate totals (over all circuits), ``shots`` each."""
        minimum = self.minimum_error_mitigation if error_mitigation else self.minimum
        return circuits * minimum + shots * (self.per_1q_gate_shot * one_qubit_gates
                                             + self.per_2q_gate_shot * two_qubit_gates)


@dataclass(frozen=True)
class PricingTable:
    """Prices per backend name, loaded from a JSON file (see ``pricing.json`` for the format)."""

    currency: str
    source: str
    backends: dict[str, Price]

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_PRICING) -> PricingTable:
        """Read a pricing table (default: the one shipped with qstore)."""
        data = json.loads(Path(path).read_text())
        return cls(data["currency"], data.get("source", ""),
                   {name: Price(**price) for name, price in data["backends"].items()})

    def price(self, backend: str) -> Price:
        """The backend's prices. Raises :class:`CostError` for a backend not in the table."""
        try:
            return self.backends[backend]
        except KeyError:
            raise CostError(f"no price for backend {backend!r}; priced: {', '.join(self.backends)}") from None


@dataclass(frozen=True)
class CostEstimate:
    """What a job would cost.

    Attributes:
        backend: the job's backend.
        circuits: circuits in the job.
        shots: shots per circuit.
        one_qubit_gates, two_qubit_gates: gates over all circuits, as submitted.
        error_mitigation: whether the larger per-circuit minimum applies.
        cost: the estimate, in ``currency``.
        currency: e.g. ``"USD"``.
    """

    backend: str
    circuits: int
    shots: int
    one_qubit_gates: int
    two_qubit_gates: int
    error_mitigation: bool
    cost: float
    currency: str


def _debiasing(body: Mapping[str, Any], backend: str) -> bool:
    """The job's error-mitigation setting, or IonQ's default (on for QPUs)."""
    settings = body.get("settings") or {}
    for mitigation in (settings.get("error_mitigation"), body.get("error_mitigation")):  # v0.4, v0.3 placement
        if isinstance(mitigation, Mapping):
            for key in ("debiasing", "debias"):  # v0.4, v0.3 spelling
                if isinstance(mitigation.get(key), bool):
                    return mitigation[key]
    return backend.startswith("qpu")


def estimate_cost(body: Mapping[str, Any], pricing: PricingTable | None = None) -> CostEstimate:
    """The cost of a ``POST /jobs`` body (either API version), without submitting it.

    Raises:
        IonQFormatError: the body is not a valid job.
        CostError: the backend has no price in the table.
    """
    pricing = pricing or PricingTable.load()
    job = parse_job_body(dict(body))
    price = pricing.price(job.backend)
    one, two = gate_counts(circuit for _, circuit in job.circuits)
    mitigation = _debiasing(body, job.backend)
    cost = price.cost(len(job.circuits), job.shots, one, two, mitigation)
    return CostEstimate(job.backend, len(job.circuits), job.shots, one, two, mitigation, cost, pricing.currency)
