"""`edged audit [--since WHEN] [--route ROUTE] [--match VALUE] [--json]`: read the privacy audit log."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edged.config import load_config
from edged.config.paths import default_state_dir
from edged.errors import ConfigError
from edged.sovereignty.audit import (
    AuditReader,
    AuditRecord,
    AuditRoute,
    log_files,
    match_hash,
)

_RELATIVE = re.compile(r"^(\d{1,9})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("audit", help="show the privacy audit log (no raw content is ever logged)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="daemon config whose state_dir holds the log")
    where.add_argument("--state-dir", type=Path, help="state directory (default: the daemon's default)")
    parser.add_argument(
        "--since",
        type=parse_since,
        help="only records from then on: 30m, 2h, 7d, or an ISO time (UTC if no zone)",
    )
    parser.add_argument(
        "--route", type=AuditRoute, choices=list(AuditRoute), help="only records with this route"
    )
    parser.add_argument("--match", metavar="VALUE", help="only records in which this exact value was found")
    parser.add_argument("--json", action="store_true", help="print the records as JSON lines")
    parser.set_defaults(func=run)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`30m` / `2h` / `7d` before now, or an ISO 8601 time; argparse reports a ValueError as a bad value."""
    if match := _RELATIVE.match(text.strip()):
        amount, unit = match.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since {text!r}: expected a duration like 30m, 2h, 7d or an ISO time like 2026-05-01T12:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    try:
        state_dir = args.state_dir or (
            load_config(args.config).state_dir if args.config else default_state_dir()
        )
    except ConfigError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    directory = state_dir / "audit"
    if not log_files(directory):
        print(f"no audit log in {directory}", file=sys.stderr)
        return 1
    wanted_hash = None
    if args.match is not None:
        try:
            wanted_hash = match_hash(directory, args.match)
        except OSError as exc:
            print(f"cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
            return 1
        except ConfigError as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            return 1
    reader = AuditReader(directory, since=args.since, route=args.route, value_hash=wanted_hash)
    try:
        if args.json:
            for entry in reader:
                print(entry.to_json())
        else:
            _print_table(reader)
    except OSError as exc:
        print(f"cannot read the audit log in {directory}: {exc}", file=sys.stderr)
        return 1
    if reader.skipped:
        print(f"{reader.skipped} malformed lines skipped", file=sys.stderr)
    return 0


# ROUTE: what left the device; OUTCOME: how the request ended (answered_local, answered_cloud or the error's code)
_COLUMNS = ("TIME (UTC)", "REQUEST", "ROUTE", "OUTCOME", "POLICY", "CLASSES", "ENTITIES", "INVENTED")


def _row(entry: AuditRecord) -> tuple[str, ...]:
    entities = ", ".join(f"{k}×{v}" for k, v in entry.entities.items()) or "-"
    invented = ", ".join(f"{k}×{v}" for k, v in entry.invented.items()) or "-"
    classes = ",".join(entry.data_classes) or "-"
    when = entry.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    outcome = entry.outcome or "-"
    return (when, entry.request_id, entry.route.value, outcome, entry.policy, classes, entities, invented)


def _print_table(reader: AuditReader) -> None:
    rows = [_row(entry) for entry in reader]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(_COLUMNS)]
    for row in (_COLUMNS, *rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
