"""`edged-cloud-bridge`: run one worker until SIGTERM or SIGINT, then drain and exit.

Flags override the config file; with no backend flags and no file it serves Gemma 3 270M in process.
Exit codes: 0 after a clean drain, 1 for a bad config or a backend that cannot start, 130 on a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloud_bridge.backends import create_backend
from cloud_bridge.config import BridgeConfig, load_bridge_config
from cloud_bridge.worker import BridgeWorker
from edged.errors import ConfigError, EngineError, ModelError

logger = logging.getLogger("cloud_bridge")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged-cloud-bridge", description="Answer edged's escalated requests from an MQTT broker."
    )
    parser.add_argument("--config", type=Path, help="config file (TOML)")
    parser.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    parser.add_argument("--group", help="shared-subscription group (workers of one group split the load)")
    parser.add_argument("--backend", choices=("gguf", "openai", "sleep"), help="backend type")
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
    try:
        config = load_bridge_config(args.config, overrides(args))
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"ok: worker {config.worker_id}, group {config.group}, backend {config.backend.type}")
        return 0
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(serve(config))
    except KeyboardInterrupt:
        return 130


async def serve(config: BridgeConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        worker = BridgeWorker(config, create_backend(config.backend, config.state_dir))
        await worker.start()
    except (ConfigError, ModelError, EngineError) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    await stop.wait()
    logger.info("stopping: draining in-flight requests")
    await worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
