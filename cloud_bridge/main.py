"""`edged-cloud-bridge`: run one worker until SIGTERM or SIGINT, then drain and exit (see service.py).

Flags override the config file; with no backend flags and no file it serves Gemma 3 270M in process.
Exit codes: 0 after a clean drain, 1 for a bad config or a backend that cannot start or dies, 130 on a
second Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloud_bridge.config import load_bridge_config
from cloud_bridge.service import BridgeService
from edged.errors import ConfigError

logger = logging.getLogger("cloud_bridge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged-cloud-bridge", description="Answer edged's escalated requests from an MQTT broker."
    )
    parser.add_argument("--config", type=Path, help="config file (TOML)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    parser.add_argument("--group", help="shared-subscription group (workers of one group split the load)")
    parser.add_argument("--backend", choices=("gguf", "openai", "sleep", "echo"), help="backend type")
    parser.add_argument("--model", metavar="PATH_OR_ID", help="GGUF file (gguf) or model id (openai)")
    parser.add_argument(
        "--openai-url", metavar="URL", help="base URL of an OpenAI-compatible API (implies openai)"
    )
    parser.add_argument("--concurrency", type=int, metavar="N", help="requests handed to the backend at once")
    parser.add_argument("--worker-id", help="this worker's id (default: host name and process id)")
    parser.add_argument("--state-dir", type=Path, help="where the worker keeps files")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument(
        "--check-config", action="store_true", help="validate the config and flags, then exit"
    )
    return parser


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as a partial config document (only flags that were given)."""
    raw: dict[str, Any] = {}
    if args.broker:
        raw["broker"] = {"url": args.broker}
    for key in ("group", "concurrency", "worker_id", "state_dir", "log_level"):
        value = getattr(args, key)
        if value is not None:
            raw[key] = str(value) if isinstance(value, Path) else value
    backend: dict[str, Any] = {}
    kind = args.backend or ("openai" if args.openai_url else None)
    if kind:
        backend["type"] = kind
    if args.openai_url:
        backend["url"] = args.openai_url
    if args.model:
        backend["model" if kind == "openai" else "model_path"] = args.model
    if backend:
        raw["backend"] = backend
    return raw


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    flags = overrides(args)
    try:
        config = load_bridge_config(args.config, flags)
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"ok: worker {config.worker_id}, group {config.group}, backend {config.backend.type}")
        return 0
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(BridgeService(config, args.config, flags).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
