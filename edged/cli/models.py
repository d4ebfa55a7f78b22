"""`edged models list|verify`: the model manifests this device has, and whether their files check out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edged.engine.cpu import read_cpu_info
from edged.engine.selftest import run_selftest
from edged.errors import EdgedError
from edged.models import ModelRegistry


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("models", help="list or verify model manifests")
    parser.add_argument("--models-dir", type=Path, help="manifest directory (default: the bundled models/)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the manifests").set_defaults(func=run_list)
    verify = actions.add_parser(
        "verify",
        help="check model files against their sha256, and decode a few tokens of each in a child process",
    )
    verify.add_argument("ids", nargs="*", help="model ids (default: all)")
    verify.add_argument(
        "--no-selftest", action="store_true", help="only check the sha256, without the decode self-test"
    )
    verify.add_argument(
        "--threads", type=int, default=2, choices=range(1, 257), metavar="N", help="self-test threads (2)"
    )
    verify.set_defaults(func=run_verify)


def _registry(args: argparse.Namespace) -> ModelRegistry:
    return ModelRegistry.from_dir(args.models_dir)


def run_list(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except EdgedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{'ID':32} {'FORMAT':6} {'QUANT':8} {'CONTEXT':>8}  {'LICENSE':20} SOURCE")
    for model_id in registry.ids():
        m = registry.manifest(model_id)
        source = m.source
        origin = {"package": getattr(source, "package", ""), "assembled": getattr(source, "package", "")}.get(
            source.kind, str(getattr(source, "path", ""))
        )
        licence = m.license or "-"
        print(
            f"{m.id:32} {m.format:6} {m.quantization:8} {m.context_length:>8}  {licence:20} "
            f"{source.kind}:{origin}"
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    try:
        registry = _registry(args)
    except EdgedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for model_id in args.ids or registry.ids():
        try:
            resolved = registry.resolve(model_id)
        except EdgedError as exc:
            print(f"FAIL {model_id}: {exc}")
            failed += 1
        else:
            print(f"ok   {model_id}: {resolved.path}")
            if resolved.manifest.format == "gguf" and not args.no_selftest:
                failed += not _selftest(model_id, resolved.path, args.threads)
    return 1 if failed else 0


def _selftest(model_id: str, path: Path, threads: int) -> bool:
    """Decode a few tokens in a child process: a llama.cpp build this CPU cannot run fails here, not in edged."""
    try:
        result = run_selftest(path, model_id=model_id, threads=threads)
    except EdgedError as exc:
        print(f"FAIL {model_id} decode self-test: {exc}")
        return False
    print(
        f"ok   {model_id} decode self-test: {result.tokens} tokens in {result.seconds:.2f}s in a child process; "
        f"CPU {read_cpu_info().summary()}; llama.cpp {result.system_info}"
    )
    return True
