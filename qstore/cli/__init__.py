"""The ``qstore`` command: ``reproduce``, ``train``, ``sweep``, ``compare`` and ``serve``.

One module per command, each holding only its arguments and its printing; the work is done by
library functions: :mod:`.train` (``reproduce``, ``train``: :mod:`qstore.ml`, :mod:`qstore.data`),
:mod:`.sweep` (:mod:`qstore.ml.sweep`), :mod:`.compare` (:mod:`qstore.execution.compare`) and
:mod:`.serve` (:mod:`qstore.ionq.server`).

Bad input (a missing folder, impossible split sizes, unknown options, a corrupt checkpoint, a
feature whose extra is not installed) ends with a one-line message and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._extras import MissingExtraError
from ..data import DataError
from ..ionq.client import IonQError
from ..ml import CheckpointError
from . import compare, sweep, train


def parser() -> argparse.ArgumentParser:
    """The ``qstore`` argument parser."""
    top = argparse.ArgumentParser(prog="qstore", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    train.add_parsers(commands)
    sweep.add_parser(commands)
    compare.add_parser(commands)
    commands.add_parser("serve", help="a local IonQ-compatible server (qstore serve --help)", add_help=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qstore`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from .serve import main as serve

        return serve(argv[1:])
    args = parser().parse_args(argv)
    try:
        if args.command == "compare":
            return compare.run(args)
        if args.command == "sweep":
            return sweep.run(args)
        train.run(args)
    except (DataError, CheckpointError, ValueError, OSError, IonQError, MissingExtraError) as error:
        print(f"qstore {args.command}: {error}", file=sys.stderr)
        return 2
    return 0
