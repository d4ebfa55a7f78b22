"""`edged ask "prompt"`: streams the answer to the terminal through edged.client (the daemon's gRPC socket)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from google.protobuf.json_format import MessageToDict

from edged.api.convert import encode_answer
from edged.cli.client import add_connection_args, describe_error, open_client
from edged.client import GenerateOptions
from edged.domain import Delta, Mode
from edged.errors import EdgedError

INT32_MAX = 2**31 - 1  # GenerateRequest.max_tokens is an int32
UINT32_MAX = 2**32 - 1  # GenerateRequest.seed is a uint32
MODES = {mode.value.lower().replace("_", "-"): mode for mode in Mode}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("ask", help="ask the running daemon")
    parser.add_argument("prompt", help="the question")
    add_connection_args(parser)
    parser.add_argument(
        "--mode", choices=sorted(MODES), default="auto", help="where to answer (default auto)"
    )
    parser.add_argument(
        "--max-tokens",
        type=bounded_int(1, INT32_MAX),
        help="tokens to generate (the daemon allows up to engine.max_tokens_cap)",
    )
    parser.add_argument("--temperature", type=bounded_float(0.0, 2.0), help="0..2, 0 = greedy")
    parser.add_argument("--seed", type=bounded_int(0, UINT32_MAX), help=f"sampling seed, 0..{UINT32_MAX}")
    parser.add_argument("--model", default="", help="model id (default: the device default)")
    parser.add_argument("--json-schema", default="", help="constrain the answer to this JSON Schema")
    parser.add_argument("--sensitive", action="store_true", help="mark the request sensitive")
    parser.add_argument("--data-class", action="append", default=[], help="declare a data class (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the whole response as one JSON object")
    parser.set_defaults(func=run)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in low..high, else a usage error naming the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in low..high, else a usage error naming the value and the range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value

    return parse


def build_options(args: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(
        mode=MODES[args.mode],
        model=args.model,
        json_schema=args.json_schema or None,
        sensitive=args.sensitive,
        data_classes=tuple(args.data_class),
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    options = build_options(args)
    try:
        with open_client(args) as edged:
            if args.json:
                answer = edged.generate(args.prompt, options=options)
                print(
                    json.dumps(
                        MessageToDict(encode_answer(answer), preserving_proto_field_name=True), indent=2
                    )
                )
                return 0
            for item in edged.stream(args.prompt, options=options):
                if isinstance(item, Delta):
                    sys.stdout.write(item.text)
                    sys.stdout.flush()
                    continue
                sys.stdout.write("\n")
                p = item.provenance
                notes = ["degraded", *p.reasons] if p.degraded else list(p.reasons)  # a fallback happened
                if p.invented:  # the cloud made up values or placeholders the request did not have
                    notes.append("invented=" + ",".join(f"{k}×{v}" for k, v in sorted(p.invented.items())))
                print(f"[{p.source.value} {p.model}; {'; '.join(notes)}]", file=sys.stderr)
            return 0
    except EdgedError as exc:
        print(describe_error(exc), file=sys.stderr)
        return 1
