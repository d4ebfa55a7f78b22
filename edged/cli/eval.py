"""`edged eval FILE.jsonl [--json] [--cloud reference|live]`: how well does this device route?

Every item goes through the daemon's local path (the llama.cpp engine, in process, greedy) and the same
router and AUTO score the daemon uses; the cloud is the reference (always correct) or live escalation.
Prints local and cloud accuracy, the quality vs cloud-share curve, APGR, skill and AUROC per routing signal,
and the cloud share needed for 95% of always-cloud quality (and the oracle's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from edged.errors import EdgedError
from edged.evaluation.items import EvalItem, load_items
from edged.evaluation.runner import ItemResult, ReferenceCloud, report, run_items
from edged.evaluation.setup import EvalSetup, load_setup


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "eval", help="measure local accuracy and routing quality on a labelled set"
    )
    add_common_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument(
        "--cloud",
        choices=("reference", "live"),
        default="reference",
        help="reference: the cloud is always correct (default); live: escalate through the broker",
    )
    parser.add_argument("--records", type=Path, help="also write each item's result here (JSONL)")
    parser.set_defaults(func=run)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments `edged eval` and `edged calibrate` share."""
    parser.add_argument("file", type=Path, help="eval items, one JSON object per line")
    parser.add_argument("--config", type=Path, help="daemon config (TOML); default: built-in defaults")
    parser.add_argument("--profile", type=Path, action="append", default=[], help="profile layered on top")
    parser.add_argument("--max-tokens", type=int, default=48, help="tokens per local answer (default 48)")
    parser.add_argument("--limit", type=int, help="only the first N items")


class ProgressBar:
    """A one-line progress bar on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, label: str, width: int = 30) -> None:
        self._label = label
        self._width = width
        self._started = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / max(1, total)
        elapsed = time.monotonic() - self._started
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        filled = int(fraction * self._width)
        bar = "#" * filled + "." * (self._width - filled)
        line = f"{self._label} [{bar}] {done}/{total} {elapsed:5.0f}s elapsed, {eta:4.0f}s left"
        if self._tty:
            end = "\n" if done >= total else ""
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        elif int(fraction * 10) != self._last_decile:
            self._last_decile = int(fraction * 10)
            print(line, file=sys.stderr, flush=True)


def evaluate(
    args: argparse.Namespace, setup: EvalSetup, items: list[EvalItem], live: bool
) -> list[ItemResult]:
    """Run the items through the engine (and the live cloud when asked), closing both afterwards."""
    from edged.evaluation.engine import EngineAnswerer  # noqa: PLC0415 - loads llama.cpp: only when run

    engine_settings = setup.profile.engine
    answerer = EngineAnswerer.start(engine_settings.model, engine_settings, setup.config.models_dir)
    cloud: Any = ReferenceCloud()
    try:
        if live:
            from edged.evaluation.cloud import LiveCloud  # noqa: PLC0415 - paho only when asked

            cloud = LiveCloud(setup.config.broker, setup.config.device_id)
        return run_items(
            items,
            answerer,
            router=setup.router,
            weights=setup.weights,
            cloud=cloud,
            max_tokens=args.max_tokens,
            concurrency=answerer.slots,
            progress=ProgressBar("eval"),
        )
    finally:
        answerer.close()
        if live:
            cloud.close()


def prepare(args: argparse.Namespace) -> tuple[EvalSetup, list[EvalItem]]:
    if not 1 <= args.max_tokens <= 4096:
        raise ValueError(f"--max-tokens: {args.max_tokens} is outside [1, 4096]")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: {args.limit} must be at least 1")
    items = load_items(args.file)[: args.limit]
    return load_setup(args.config, args.profile), items


def run(args: argparse.Namespace) -> int:
    try:
        setup, items = prepare(args)
        results = evaluate(args, setup, items, live=args.cloud == "live")
    except (EdgedError, ValueError) as exc:
        print(f"edged eval: {exc}", file=sys.stderr)
        return 1
    summary = report(results)
    summary["cloud"] = args.cloud
    if args.records:
        write_records(args.records, results)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary))
    return 0


def write_records(path: Path, results: list[ItemResult]) -> None:
    """One JSON object per item; `signals` is the local answer's per-token [logprob, margin, entropy] list
    (4 decimals, as in scripts/label_evalset.py), so the streaming cascade's first-k verdict can be replayed
    for any k. Records written before it was added have no `signals`."""
    with path.open("w", encoding="utf-8") as out:
        for r in results:
            row = {
                "id": r.id,
                "task": r.task,
                "reply": r.reply,
                "local_correct": r.local_correct,
                "cloud_correct": r.cloud_correct,
                "router_score": r.router_score,
                "auto_score": r.auto_score,
                "confidence": dataclasses.asdict(r.confidence),
                "signals": [
                    [round(s.logprob, 4), round(s.margin, 4), round(s.entropy, 4)] for s in r.signals
                ],
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def _points(share: float | None, oracle: float | None) -> str:
    """How far the AUTO score's share at 95% is above the oracle's, in points."""
    if share is None or oracle is None:
        return "no share reaches 95%"
    return f"{100 * (share - oracle):+.1f} points against the oracle"


def render(summary: dict[str, Any]) -> str:
    lines = [
        f"items: {summary['n']}   local accuracy: {summary['local_accuracy']:.3f}   "
        f"cloud accuracy: {summary['cloud_accuracy']:.3f} ({summary['cloud']})",
        "",
        "signal        APGR   skill   AUROC",
    ]
    for name, value in summary["apgr_by_signal"].items():
        skill, auc = summary["skill_by_signal"][name], summary["auroc"][name]
        lines.append(f"{name:11s} {_fmt(value)}  {_fmt(skill)}  {_fmt(auc)}")
    lines.append(f"{'oracle':11s} {_fmt(summary['apgr_oracle'])}   1.000")
    lines += [
        "",
        f"cloud share for 95% of always-cloud quality: {_fmt(summary['cloud_share_at_95'])} (AUTO), "
        f"{_fmt(summary['cloud_share_at_95_oracle'])} (oracle), "
        f"{_points(summary['cloud_share_at_95'], summary['cloud_share_at_95_oracle'])}",
    ]
    lines.append("")
    lines.append("task            items  local acc  mean AUTO score   skill   AUROC")
    for task, row in summary["by_task"].items():
        lines.append(
            f"{task:15s} {row['n']:5.0f}  {row['local_accuracy']:9.3f}  {row['mean_auto_score']:15.3f}  "
            f"{_fmt(row['skill'])}  {_fmt(row['auroc'])}"
        )
    lines += ["", "quality vs cloud share"]
    curve = summary["curve"]
    lines.append("share      " + " ".join(f"{s:5.1f}" for s in curve["cloud_share"]))
    for name in (*summary["apgr_by_signal"], "oracle"):
        lines.append(f"{name:10s} " + " ".join(f"{q:5.3f}" for q in curve[name]))
    return "\n".join(lines)
