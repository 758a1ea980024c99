"""The job handle the primitives return, and the engine behind a primitive.

The engine is synchronous and fast, so :class:`QsimPrimitiveJob` runs its
work when it is created (as Qiskit's ``BasicSimulator`` jobs do) and holds
the result; an error raised by the work is raised again by :meth:`result`,
as a Qiskit ``PrimitiveJob`` does.

Public (``__all__``): :class:`QsimPrimitiveJob`, :class:`Engine` (seed, backend and
threads of a primitive, and the simulator of one run), :data:`SeedLike`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from qiskit.primitives import BasePrimitiveJob, PrimitiveResult
from qiskit.providers import JobStatus

from ..simulator import Simulator

ResultT = TypeVar("ResultT")
PubT = TypeVar("PubT")
PubResultT = TypeVar("PubResultT")

SeedLike = int | np.random.Generator | None
"""A primitive's ``seed``: an int (every run reproducible), a numpy Generator (drawn from per run) or None."""


class QsimPrimitiveJob(BasePrimitiveJob[ResultT, JobStatus], Generic[ResultT]):
    """A finished primitive job: ``work()`` runs in the constructor.

    Args:
        work: computes the result (a ``PrimitiveResult``).
    """

    def __init__(self, work: Callable[[], ResultT]) -> None:
        super().__init__(str(uuid.uuid4()))
        self._error: Exception | None = None
        self._result: ResultT | None = None
        try:
            self._result = work()
        except Exception as error:  # re-raised by result(), as a PrimitiveJob does
            self._error = error

    def result(self) -> ResultT:
        """The primitive's result; raises the error the work raised, if any."""
        if self._error is not None:
            raise self._error
        return self._result

    def status(self) -> JobStatus:
        """``DONE``, or ``ERROR`` when the work failed."""
        return JobStatus.ERROR if self._error is not None else JobStatus.DONE

    def done(self) -> bool:
        """True when the work succeeded."""
        return self._error is None

    def running(self) -> bool:
        """Always False: the work ran when the job was made."""
        return False

    def cancelled(self) -> bool:
        """Always False: a finished job cannot be cancelled."""
        return False

    def in_final_state(self) -> bool:
        """Always True."""
        return True

    def cancel(self) -> bool:
        """Nothing to cancel; returns False."""
        return False


@dataclass(frozen=True)
class Engine:
    """The engine behind a primitive, checked when the primitive is made.

    Attributes:
        seed: an int makes every run with the same input give the same samples; a
            numpy Generator is drawn from once per run; None is fresh randomness.
        backend: the engine backend name (``"auto"``, ``"cython"``, ``"numba"``, ``"reference"``).
        threads: engine threads; None uses every core.

    Raises:
        ValueError: a seed that is not an int, a Generator or None; a bad thread count.
        BackendUnavailableError: the backend is unknown or not built here.
    """

    seed: SeedLike
    backend: str
    threads: int | None

    def __post_init__(self) -> None:
        seed = self.seed
        if seed is not None and not isinstance(seed, np.random.Generator) and (
                isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
        Simulator(backend=self.backend, threads=self.threads)

    def simulator(self) -> Simulator:
        """The simulator of one run; its pubs draw their sampling keys from it in order (one stream per set)."""
        seed = self.seed
        if isinstance(seed, np.random.Generator):
            seed = int(seed.integers(2**63))
        return Simulator(backend=self.backend, precision="double", seed=None if seed is None else int(seed),
                         threads=self.threads)

    def run(self, run_pub: Callable[[Simulator, PubT], PubResultT], pubs: Sequence[PubT]
            ) -> QsimPrimitiveJob[PrimitiveResult[PubResultT]]:
        """A job of ``run_pub(simulator, pub)`` for every pub, on one run's simulator."""
        def work() -> PrimitiveResult[PubResultT]:
            simulator = self.simulator()
            return PrimitiveResult([run_pub(simulator, pub) for pub in pubs], metadata={"version": 2})

        return QsimPrimitiveJob(work)


__all__ = ["Engine", "QsimPrimitiveJob", "SeedLike"]
