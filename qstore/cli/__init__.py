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
from ..ml import CheckpointError
from . import compare, sweep, train

#: errors that are the user's to fix (bad input, a missing extra, a file or a service that failed): one line and
#: exit status 2
USER_ERRORS = (DataError, CheckpointError, ValueError, OSError, MissingExtraError)


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
    except Exception as error:
        if not _users_to_fix(error):
            raise
        print(f"qstore {args.command}: {error}", file=sys.stderr)
        return 2
    return 0


def _users_to_fix(error: Exception) -> bool:
    """Whether ``error`` is one of :data:`USER_ERRORS` or the IonQ client's. The client (and ``requests``, some
    70 ms of start-up) is imported only by the commands that talk to IonQ, so only they can raise its errors."""
    client = sys.modules.get("qstore.ionq.client")
    return isinstance(error, USER_ERRORS) or (client is not None and isinstance(error, client.IonQError))
