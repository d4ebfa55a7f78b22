"""`edged check-config [FILE] [--profile FILE]...`: validate a daemon config and profiles, exit 0 or 1.

With no FILE, the profiles are checked alone, on top of the built-in defaults: a fleet manager validates a device
profile without inventing a daemon config. A FILE that fails as a daemon config but reads as a profile is named
so, with the command that checks it.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from edged import fleet
from edged.config import effective_profile, load_config, load_profile
from edged.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "check-config", help="validate a config file and the profiles it names, or profiles alone"
    )
    parser.add_argument(
        "file", type=Path, nargs="?", help="daemon config (TOML); omit it to check --profile files alone"
    )
    parser.add_argument(
        "--profile", type=Path, action="append", default=[], help="also validate this profile"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.file is None and not args.profile:
        print("invalid: give a daemon config FILE, --profile FILE, or both", file=sys.stderr)
        return 2
    try:
        config = load_config(args.file)
        named = [*([config.profile] if config.profile else []), *args.profile]
        paths = [
            p for i, p in enumerate(named) if p.resolve() not in {q.resolve() for q in named[:i]}
        ]  # once each
        profiles = [load_profile(path) for path in paths]
        profile = effective_profile(config, profiles)
        _check_spacy_model(profile.privacy.detector.spacy_model, needed=config.broker.url is not None)
        key = config.fleet.key
        if key is not None and key.exists():
            fleet.load_public_key(key)  # the fleet's signing key must be an Ed25519 public key
        elif key is not None:
            # e.g. a systemd credential path, which exists only inside the running unit
            print(
                f"note: fleet.key {key} does not exist here; it is checked when edged starts", file=sys.stderr
            )
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        if args.file is not None and _reads_as_profile(args.file):
            print(
                f"note: {args.file} is a valid device profile; check it with: edged check-config --profile "
                f"{args.file}",
                file=sys.stderr,
            )
        return 1
    checked = ", ".join(str(p) for p in [*([args.file] if args.file else []), *paths])
    print(f"ok: {checked}" + ("" if args.file else " (as profiles, on the built-in defaults)"))
    return 0


def _reads_as_profile(path: Path) -> bool:
    try:
        load_profile(path)
    except ConfigError:
        return False
    return True


def _check_spacy_model(name: str, *, needed: bool) -> None:
    """The privacy gate's spaCy package must be installed where a cloud link needs the gate (found, not loaded)."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. "a.b" with no package "a"
        found = False
    if found:
        return
    if needed:
        raise ConfigError(
            "privacy",
            [("privacy.detector.spacy_model", name, "no installed Python package has this name")],
        )
    print(
        f"note: privacy.detector.spacy_model {name!r} is not installed; it is needed once a broker is configured",
        file=sys.stderr,
    )
