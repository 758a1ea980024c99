"""The front doors against the frameworks' own engines, in one run: PennyLane, then Qiskit.

* PennyLane (``frameworks_pennylane.py``): 8 qubits, ``AngleEmbedding`` + 2
  ``StronglyEntanglingLayers``, a broadcast batch of 256, forward + autograd
  gradient of the weights: ``qsim_core.qubit`` (adjoint) vs ``lightning.qubit``
  (adjoint) and ``default.qubit`` (backprop). Goal: >= 20x lightning.qubit.
* Qiskit (``frameworks_qiskit.py``): the seed circuit as one EstimatorV2 pub
  of 1,000 parameter sets x 8 <Z>: ``qsim_core.qiskit.EstimatorV2`` vs
  ``qiskit_aer.primitives.EstimatorV2`` and Qiskit's ``StatevectorEstimator``.
  Goal: >= 20x Aer's EstimatorV2.

Each part prints its tables with our speed-ups and writes its JSON
(``bench/results/frameworks_pennylane.json``, ``frameworks_qiskit.json``, or
``--json PATH`` with ``-pennylane`` / ``-qiskit`` added to the stem).

Usage: ``python bench/frameworks.py [--quick] [--only pennylane|qiskit] [--json PATH]``
"""

from __future__ import annotations

import sys

import frameworks_pennylane
import frameworks_qiskit
from _runner import RESULTS_DIR, make_parser

PARTS = {"pennylane": frameworks_pennylane.main, "qiskit": frameworks_qiskit.main}


def main(argv: list[str] | None = None) -> int:
    """Run the parts; returns 1 if any part failed or missed its goal."""
    parser = make_parser("frameworks", __doc__.splitlines()[0], "smoke test: each part's --quick")
    parser.add_argument("--only", choices=sorted(PARTS), help="run one part")
    args = parser.parse_args(argv)
    status = 0
    for name, run in PARTS.items():
        if args.only not in (None, name):
            continue
        json = RESULTS_DIR / f"frameworks_{name}.json" if args.json == RESULTS_DIR / "frameworks.json" \
            else args.json.with_name(f"{args.json.stem}-{name}{args.json.suffix}")
        print(f"\n=== {name} ===")
        status |= run([*(["--quick"] if args.quick else []), "--json", str(json)])
    return status


if __name__ == "__main__":
    sys.exit(main())
