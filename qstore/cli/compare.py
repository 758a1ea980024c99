"""``qstore compare``: the same circuits in process and remotely (:mod:`qstore.execution.compare`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from qsim_core.noise import IONQ_MODELS


class _RemovedApiKey(argparse.Action):
    """``--api-key``: refused with a pointer to its replacements (without repeating the value)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> NoReturn:
        parser.error("--api-key was removed: a key on the command line shows in ps and in shell history; "
                     "put it in a file (--api-key-file PATH) or in $IONQ_API_KEY")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``compare`` subcommand."""
    parser = commands.add_parser("compare", help="the same circuits in process and through an IonQ-compatible "
                                                 "server: latency, time breakdown, agreement")
    parser.add_argument("--target", default="local",
                        help="'local' (a server started here; extra server), a server URL, or 'ionq' (IonQ's cloud, "
                             "needs an API key) (default: %(default)s)")
    parser.add_argument("--api-key-file", metavar="PATH",
                        help="file holding the API key of a --target URL or 'ionq' (default: $IONQ_API_KEY)")
    parser.add_argument("--api-key", action=_RemovedApiKey, help=argparse.SUPPRESS)
    parser.add_argument("--profile", help="latency profile of the local server: ionq-cloud (default), none, or a "
                                          "profile JSON file")
    parser.add_argument("--circuits", type=int, default=20,
                        help="seed circuits with random inputs (default: %(default)s)")
    parser.add_argument("--shots", type=int, default=1024, help="default: %(default)s")
    parser.add_argument("--max-concurrent", type=int, default=10, help="jobs in flight (default: %(default)s)")
    parser.add_argument("--circuits-per-job", type=int, default=10, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one job may take (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", metavar="MODEL", choices=sorted(IONQ_MODELS),
                        help="simulate IonQ's noise model in both runs: " + ", ".join(IONQ_MODELS)
                             + " (default: none); the report adds the distance between the two noisy histograms")
    parser.add_argument("--output", default="qstore-compare", help="folder for compare.json and compare.png")


def run(args: argparse.Namespace) -> int:
    """Run the comparison, print the report, write JSON and a plot."""
    from ..execution.compare import compare, format_report, save
    from ..ionq.client import api_key_from_file

    api_key = api_key_from_file(args.api_key_file) if args.api_key_file is not None else None
    comparison = compare(args.target, api_key=api_key, profile=args.profile, circuits=args.circuits,
                         shots=args.shots, max_concurrent=args.max_concurrent,
                         circuits_per_job=args.circuits_per_job, seed=args.seed, timeout=args.timeout,
                         noise=args.noise)
    print(format_report(comparison))
    json_path, png_path = save(comparison, Path(args.output))
    print(f"wrote {json_path} and {png_path}")
    return 0
