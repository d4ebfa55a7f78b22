"""Connecting CLI commands to a running daemon."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from edged import client
from edged.api.error_map import status_code
from edged.config.paths import default_socket_path
from edged.errors import EdgedError, EngineError


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket", type=Path, default=None, help=f"daemon socket (default {default_socket_path()})"
    )
    parser.add_argument("--tcp", metavar="HOST:PORT", help="connect over TCP instead of the socket")
    parser.add_argument(
        "--timeout",
        type=_timeout,
        default=120.0,
        help="seconds before giving up (default 120, at most 86400)",
    )


def _timeout(text: str) -> float:
    """An argparse type: a finite number of seconds in (0, 86400], else a usage error naming the value."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0 < value <= 86_400):
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 86400] seconds")
    return value


def open_client(args: argparse.Namespace) -> client.Client:
    return client.Client(args.socket, tcp=args.tcp, timeout=args.timeout)


def describe_error(exc: EdgedError) -> str:
    """One line: the gRPC status name and edged's message (an unreachable daemon's message says it all)."""
    if isinstance(exc, client.Unreachable | EngineError):  # EngineError's message already names its status
        return str(exc)
    return f"{status_code(exc).name}: {exc}"
