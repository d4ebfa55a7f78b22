"""Connecting CLI commands to a running daemon."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import grpc

from edged import client
from edged.config.paths import default_socket_path
from edged.v1 import inference_pb2_grpc


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


def target(args: argparse.Namespace) -> str:
    return client.target(args.socket, args.tcp)


def connect(args: argparse.Namespace) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(target(args))
    return channel, inference_pb2_grpc.InferenceStub(channel)


def describe_error(exc: grpc.RpcError, args: argparse.Namespace) -> str:
    code = exc.code()
    details = exc.details()
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in (details or "").lower():
        return f"cannot reach edged at {target(args)}: is `edged serve` running? ({details})"
    return f"{code.name}: {details}"
