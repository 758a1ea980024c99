"""``qstore serve``: a local IonQ-compatible server (:mod:`qstore.ionq.server`) in the foreground."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._extras import MissingExtraError


def main(argv: Sequence[str] | None = None) -> int:
    """``qstore serve``'s command line: ``--host --port --api-keys-file --db --profile`` (and limits).

    Returns the exit status once the server stops: 0, or 2 for bad input (one line on stderr).
    """
    try:
        from ..ionq.server import API_KEYS_ENV, serve
    except MissingExtraError as error:
        print(f"qstore serve: error: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="qstore serve", description="Run a local IonQ-compatible API server.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one and prints it (default)")
    parser.add_argument("--api-keys-file", help=f"file with one API key per line (also read: ${API_KEYS_ENV})")
    parser.add_argument("--db", default="qstore-ionq.sqlite", help="SQLite job store (default qstore-ionq.sqlite)")
    parser.add_argument("--profile", default="none",
                        help="injected latency: 'none', 'ionq-cloud', or a profile JSON file (default none)")
    parser.add_argument("--workers", type=int, default=2, help="jobs simulated at once (default 2)")
    parser.add_argument("--max-qubits", type=int, default=20, help="widest circuit accepted (default 20)")
    parser.add_argument("--max-shots", type=int, default=1_000_000, help="most shots accepted (default 1000000)")
    parser.add_argument("--max-body-bytes", type=int, default=10 * 2**20, help="largest request body (default 10 MiB)")
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port, args.api_keys_file, args.db, args.profile, workers=args.workers,
              max_qubits=args.max_qubits, max_shots=args.max_shots, max_body_bytes=args.max_body_bytes)
    except (ValueError, OSError) as error:
        parser.exit(2, f"qstore serve: error: {error}\n")
    return 0
