"""`edged ask "prompt"`: a real gRPC client that streams the answer to the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from edged.cli.client import add_connection_args, connect, describe_error
from edged.v1 import inference_pb2 as pb

MODES = {name.lower().replace("_", "-"): value for name, value in pb.Mode.items()}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("ask", help="ask the running daemon")
    parser.add_argument("prompt", help="the question")
    add_connection_args(parser)
    parser.add_argument(
        "--mode", choices=sorted(MODES), default="auto", help="where to answer (default auto)"
    )
    parser.add_argument("--max-tokens", type=int, help="tokens to generate")
    parser.add_argument("--temperature", type=float, help="0 = greedy")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--model", default="", help="model id (default: the device default)")
    parser.add_argument("--json-schema", default="", help="constrain the answer to this JSON Schema")
    parser.add_argument("--sensitive", action="store_true", help="mark the request sensitive")
    parser.add_argument("--data-class", action="append", default=[], help="declare a data class (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the whole response as one JSON object")
    parser.set_defaults(func=run)


def build_request(args: argparse.Namespace) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        prompt=args.prompt,
        mode=MODES[args.mode],
        model=args.model,
        json_schema=args.json_schema,
        sensitive=args.sensitive,
        data_classes=args.data_class,
    )
    if args.max_tokens is not None:
        request.max_tokens = args.max_tokens
    if args.temperature is not None:
        request.temperature = args.temperature
    if args.seed is not None:
        request.seed = args.seed
    return request


def run(args: argparse.Namespace) -> int:
    channel, stub = connect(args)
    request = build_request(args)
    try:
        with channel:
            if args.json:
                response = stub.Generate(request, timeout=args.timeout)
                print(json.dumps(MessageToDict(response, preserving_proto_field_name=True), indent=2))
                return 0
            last = None
            for chunk in stub.GenerateStream(request, timeout=args.timeout):
                if chunk.delta:
                    sys.stdout.write(chunk.delta)
                    sys.stdout.flush()
                if chunk.done:
                    last = chunk
            sys.stdout.write("\n")
            if last is not None:
                p = last.provenance
                where = pb.Source.Name(p.source)
                print(f"[{where} {p.model}; {'; '.join(p.reasons)}]", file=sys.stderr)
            return 0
    except grpc.RpcError as exc:
        print(describe_error(exc, args), file=sys.stderr)
        return 1
