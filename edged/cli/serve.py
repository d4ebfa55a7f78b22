"""`edged serve`: run the daemon (flags override the config file)."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import sys
from pathlib import Path
from typing import Any

from edged.config import load_config
from edged.errors import ConfigError
from edged.service.daemon import Daemon
from edged.telemetry.logging import configure_logging


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("serve", help="run the daemon")
    parser.add_argument("--config", type=Path, help="daemon config file (TOML)")
    parser.add_argument("--socket", type=Path, help="Unix socket path (api.socket)")
    parser.add_argument(
        "--tcp", metavar="HOST:PORT", help="also listen on TCP, loopback unless configured (api.tcp)"
    )
    parser.add_argument(
        "--http",
        action="store_true",
        default=None,
        help="serve the OpenAI-compatible HTTP API (http.enabled)",
    )
    parser.add_argument(
        "--http-tcp",
        metavar="HOST:PORT",
        help="the HTTP API also on TCP, loopback unless configured (http.tcp; implies --http)",
    )
    parser.add_argument("--device-id", help="this device's id (device_id)")
    parser.add_argument(
        "--broker", metavar="mqtt[s]://HOST:PORT", help="MQTT broker for the cloud link (broker.url)"
    )
    parser.add_argument("--profile", type=Path, help="device profile file (profile)")
    parser.add_argument(
        "--metrics-port", type=int, metavar="N", help="Prometheus metrics port (metrics.port)"
    )
    parser.add_argument("--group", help="fleet group to join (fleet.group)")
    parser.add_argument(
        "--fleet-key", type=Path, metavar="PUBLIC_KEY_FILE", help="fleet signing key (fleet.key)"
    )
    parser.add_argument("--state-dir", type=Path, help="durable state directory (state_dir)")
    parser.add_argument(
        "--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log level (log_level)"
    )
    parser.set_defaults(func=run)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as a partial config document, merged over the file."""
    flat: dict[str, Any] = {
        "api.socket": args.socket,
        "api.tcp": args.tcp,
        "http.enabled": True if args.http or args.http_tcp else None,
        "http.tcp": args.http_tcp,
        "device_id": args.device_id,
        "broker.url": args.broker,
        "profile": args.profile,
        "metrics.port": args.metrics_port,
        "fleet.group": args.group,
        "fleet.key": args.fleet_key,
        "state_dir": args.state_dir,
        "log_level": args.log_level,
    }
    doc: dict[str, Any] = {}
    for dotted, value in flat.items():
        if value is None:
            continue
        *sections, key = dotted.split(".")
        target = doc
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = str(value) if isinstance(value, Path) else value
    return doc


def run(args: argparse.Namespace) -> int:
    overrides = overrides_from(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"invalid configuration: {exc}", file=sys.stderr)
        return 1
    configure_logging(config.log_level)
    # A crash in native code (llama.cpp) prints every thread's Python stack to stderr, i.e. the journal, instead
    # of a silent exit 139: the model's self-test runs in a child first, this covers what happens after.
    faulthandler.enable()
    daemon = Daemon(config, config_path=args.config, overrides=overrides)
    return asyncio.run(daemon.run())
