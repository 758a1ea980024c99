"""Injected latency for the local server: a job's time split into IonQ-like phases.

A profile (JSON, ``qstore/ionq/server/profiles/<name>.json`` or any path) gives the
distribution of a job's end-to-end time and the share of each phase::

    {"total_seconds": {"distribution": "uniform", "low": 2.7, "high": 4.2},
     "shares": {"network": 0.55, "queue": 0.20, "serialization": 0.15, "simulation": 0.10}}

The server spends each phase where it belongs: half the network share on the
``POST /jobs`` answer and half on the results answer, serialization before
a job becomes ``ready``, queue before it may start, and simulation as the
minimum time between ``started`` and ``completed``. Each phase draws its share
of an independent total, so a job's total is a convex combination of draws:
it stays inside ``[low, high]`` and has the profile's mean.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PHASES = ("network", "queue", "serialization", "simulation")
PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class LatencyProfile:
    """Uniform end-to-end job time split into phases.

    Attributes:
        low, high: bounds of a job's total injected time, seconds (0 <= low <= high).
        shares: fraction of the total per phase of :data:`PHASES`, summing to 1.
    """

    low: float
    high: float
    shares: dict[str, float]

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high:
            raise ValueError(f"latency bounds need 0 <= low <= high, got {self.low}, {self.high}")
        if set(self.shares) != set(PHASES) or any(v < 0 for v in self.shares.values()):
            raise ValueError(f"latency shares need non-negative values for exactly {PHASES}, got {self.shares}")
        if abs(sum(self.shares.values()) - 1) > 1e-9:
            raise ValueError(f"latency shares must sum to 1, got {sum(self.shares.values())}")

    @classmethod
    def load(cls, profile: str | os.PathLike) -> LatencyProfile:
        """A profile by name (``"none"``, ``"ionq-cloud"``: files in :data:`PROFILE_DIR`) or JSON file path."""
        path = PROFILE_DIR / f"{profile}.json"
        if not path.is_file():
            path = Path(profile)
        if not path.is_file():
            known = sorted(p.stem for p in PROFILE_DIR.glob("*.json"))
            raise ValueError(f"unknown latency profile {str(profile)!r}: not one of {known} nor a JSON file")
        data = json.loads(path.read_text())
        total = data["total_seconds"]
        if total.get("distribution", "uniform") != "uniform":
            raise ValueError(f"{path}: only the 'uniform' total distribution is supported")
        return cls(float(total["low"]), float(total["high"]), {k: float(v) for k, v in data["shares"].items()})

    def draw(self, phase: str, rng: np.random.Generator, fraction: float = 1.0) -> float:
        """Seconds to spend on ``fraction`` of ``phase`` for one job (0 for a zero profile)."""
        if self.high == 0:
            return 0.0
        return fraction * self.shares[phase] * float(rng.uniform(self.low, self.high))
