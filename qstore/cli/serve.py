"""``qstore serve``: a local IonQ-compatible server (:mod:`qstore.ionq.server`) in the foreground."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from .._extras import MissingExtraError

#: seconds per unit of a ``--retain`` duration
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"30m"``, ``"12h"`` or ``"7d"`` (argparse type; > 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 90s, 30m, 12h or 7d, got {text!r}")
    return float(match[1]) * _UNITS[match[2] or "s"]


def main(argv: Sequence[str] | None = None) -> int:
    """``qstore serve``'s command line: ``--host --port --api-keys-file --db --profile``, limits and retention.

    Returns the exit status once the server stops: 0, or 2 for bad input (one line on stderr).
    """
    try:
        from ..ionq.server import API_KEYS_ENV, JobLimits, ServerConfig, serve
    except MissingExtraError as error:
        print(f"qstore serve: error: {error}", file=sys.stderr)
        return 2
    defaults = ServerConfig.__dataclass_fields__
    parser = argparse.ArgumentParser(prog="qstore serve", description="Run a local IonQ-compatible API server.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one and prints it (default)")
    parser.add_argument("--api-keys-file", help=f"file with one API key per line (also read: ${API_KEYS_ENV})")
    parser.add_argument("--db", default="qstore-ionq.sqlite", help="SQLite job store (default qstore-ionq.sqlite)")
    parser.add_argument("--profile", default="none",
                        help="injected latency: 'none', 'ionq-cloud', or a profile JSON file (default none)")
    parser.add_argument("--workers", type=int, default=2, help="jobs simulated at once (default 2)")
    limits = parser.add_argument_group("limits (over one: 400 naming it; bodies: 413; quota: 429)")
    per_job = JobLimits()
    for flag, help_text in [
        ("--max-qubits", "widest circuit"),
        ("--max-shots", "most shots"),
        ("--max-circuits", "most circuits in a job"),
        ("--max-gates", "most gates in one circuit"),
        ("--max-work", "most gate-amplitude updates in a job: sum of gates x 2**qubits (about a minute of one "
                       "worker)"),
        ("--max-result-entries", "most probability entries in a job's results"),
    ]:
        default = getattr(per_job, flag[2:].replace("-", "_"))
        limits.add_argument(flag, type=int, default=default, help=f"{help_text} (default {default})")
    for flag, help_text in [
        ("--max-body-bytes", "largest request body, bytes"),
        ("--max-queued-per-key", "most unfinished jobs per API key"),
        ("--max-attempts", "runs a job may crash the server in before it fails"),
        ("--max-connections", "connections served at once (more: 503)"),
    ]:
        default = defaults[flag[2:].replace("-", "_")].default
        limits.add_argument(flag, type=int, default=default, help=f"{help_text} (default {default})")
    limits.add_argument("--receive-timeout", type=float, default=defaults["receive_timeout"].default,
                        help="seconds a client may take to send a body (default %(default)s)")
    limits.add_argument("--keep-alive", type=float, default=defaults["keep_alive"].default,
                        help="seconds an idle connection stays open (default %(default)s)")
    parser.add_argument("--retain", type=duration, default=None,
                        help="delete finished jobs (bodies, results) this long after they finished, e.g. 7d, 12h "
                             "(default: keep them)")
    args = vars(parser.parse_args(argv))
    where = [args.pop(name) for name in ("host", "port", "api_keys_file", "db", "profile")]
    try:
        job_limits = JobLimits(**{name: args.pop(name) for name in vars(per_job)})
        serve(*where, limits=job_limits, **args)
    except (ValueError, OSError) as error:
        parser.exit(2, f"qstore serve: error: {error}\n")
    return 0
