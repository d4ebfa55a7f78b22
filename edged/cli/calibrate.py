"""`edged calibrate FILE.jsonl (--target-cloud-share X | --target-quality Q) --write PROFILE.toml`.

Runs the labelled items through the local path like `edged eval` (reference cloud), fits the AUTO score's
weights and searches the router and confidence thresholds to reach the target, then writes them into the
[routing] section of a profile file (other keys in it are kept). The streaming cascade is part of the modelled
policy, with the cascade settings of the profile being written (layered over --config and --profile as the
daemon would), and the share it escalates is reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from edged.cli.eval import add_common_arguments, evaluate, prepare
from edged.errors import EdgedError
from edged.evaluation.calibration import calibrate, profile_routing, write_profile


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


MIN_CALIBRATION_ITEMS = 100  # below this, one item moves a threshold by a percent or more of the share


def run(args: argparse.Namespace) -> int:
    try:
        setup, items = prepare(args)
        routing = profile_routing(setup.profile, args.write)  # before the long run: a bad file fails fast
        results = evaluate(args, setup, items, live=False)
        result = calibrate(
            results,
            target_cloud_share=args.target_cloud_share,
            target_quality=args.target_quality,
            routing=routing,
        )
        write_profile(args.write, result)
    except (EdgedError, ValueError) as exc:
        print(f"edged calibrate: {exc}", file=sys.stderr)
        return 1
    if len(results) < MIN_CALIBRATION_ITEMS:
        print(
            f"warning: calibrated on only {len(results)} items (fewer than {MIN_CALIBRATION_ITEMS} items): the "
            "thresholds written fit this small set and may not hold for real traffic",
            file=sys.stderr,
        )
    status = "target met" if result.target_met else "TARGET NOT REACHABLE on this set: closest written"
    print(
        f"{status}: router_threshold={result.router_threshold:.4f} "
        f"confidence_threshold={result.confidence_threshold:.4f} -> cloud share {result.cloud_share:.3f}, "
        f"quality {result.quality:.3f} (local only {result.local_quality:.3f}, "
        f"always cloud {result.cloud_quality:.3f}); wrote {args.write}"
    )
    if result.cascade_share is not None:
        print(
            f"cascade ({result.cascade_note}): escalates {result.cascade_share:.3f} of requests after "
            f"{routing.cascade_tokens} tokens (counted in the cloud share)"
        )
        if routing.cascade_tokens > args.max_tokens:
            print(
                f"warning: cascade_tokens {routing.cascade_tokens} > --max-tokens {args.max_tokens}: no answer "
                "here reaches the cascade's verdict, so its share may be understated",
                file=sys.stderr,
            )
    else:
        print(f"cascade not modelled: {result.cascade_note}")
    return 0 if result.target_met else 2
