"""``qstore sweep CONFIG``: grid or random search over training settings on Dask (:mod:`qstore.ml.sweep`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``sweep`` subcommand."""
    parser = commands.add_parser("sweep", help="grid or random search over training settings on a Dask cluster")
    parser.add_argument("config", help="a JSON or TOML sweep config (format: python -m pydoc qstore.ml.sweep)")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler (default: a local cluster)")
    parser.add_argument("--workers", type=int, help="worker processes of the local cluster (default: one per core)")
    parser.add_argument("--output", default="qstore-sweep", help="folder for runs/*.h5, summary.json, sweep.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Validate the config, run it, print the table; exit status 1 if runs failed."""
    from ..ml.sweep import format_table, load_config, run_sweep  # imports Dask only for this command

    config = load_config(args.config)
    result = run_sweep(config, args.output, scheduler=args.scheduler, workers=args.workers, progress=not args.quiet)
    print(f"sweep: {len(result.rows)} runs ({result.ran} trained now, {result.skipped} finished before)")
    print(format_table(result))
    output = Path(args.output)
    print(f"results: {output / 'runs'}/<run>.h5; summary: {output / 'summary.json'}; plot: {output / 'sweep.png'}")
    if result.failures:
        print(f"qstore sweep: {len(result.failures)} run(s) failed (run the sweep again to retry them); first: "
              f"{result.failures[0]}", file=sys.stderr)
        return 1
    return 0
