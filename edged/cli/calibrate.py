"""`edged calibrate FILE.jsonl (--target-cloud-share X | --target-quality Q) --write PROFILE.toml`.

Runs the labelled items through the local path like `edged eval` (reference cloud), fits the AUTO score's
weights and searches the router and confidence thresholds to reach the target, then writes them into the
[routing] section of a profile file (other keys in it are kept).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edged.cli.eval import add_common_arguments, evaluate, prepare
from edged.errors import EdgedError
from edged.evaluation.calibration import calibrate, write_profile


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("calibrate", help="fit routing thresholds and weights to a target")
    add_common_arguments(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--target-cloud-share", type=_fraction, help="highest share of requests sent to cloud"
    )
    target.add_argument("--target-quality", type=_fraction, help="lowest quality, as a share of always-cloud")
    parser.add_argument(
        "--write", type=Path, required=True, help="profile file to write (created if missing)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        setup, items = prepare(args)
        results = evaluate(args, setup, items, live=False)
        result = calibrate(
            results, target_cloud_share=args.target_cloud_share, target_quality=args.target_quality
        )
        write_profile(args.write, result)
    except (EdgedError, ValueError) as exc:
        print(f"edged calibrate: {exc}", file=sys.stderr)
        return 1
    status = "target met" if result.target_met else "TARGET NOT REACHABLE on this set: closest written"
    print(
        f"{status}: router_threshold={result.router_threshold:.4f} "
        f"confidence_threshold={result.confidence_threshold:.4f} -> cloud share {result.cloud_share:.3f}, "
        f"quality {result.quality:.3f} (local only {result.local_quality:.3f}, "
        f"always cloud {result.cloud_quality:.3f}); wrote {args.write}"
    )
    return 0 if result.target_met else 2
