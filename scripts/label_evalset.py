#!/usr/bin/env python3
"""Label eval items with the local model's real answers: reply, correctness and per-token signals.

Runs every item through the daemon's local path (edged.engine.LlamaEngine in process, greedy, the model's
chat template; items in flight together fill the engine's slots) and writes one JSON object per line:
{"id", "task", "reply", "correct", "prompt_tokens", "signals": [[logprob, margin, entropy], ...]}. These
labels are the router's training data (models/router/train_labels.jsonl) and the offline record of the
held-out set.

    .venv/bin/python scripts/label_evalset.py bench/evalsets/train.jsonl models/router/train_labels.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edged.config.engine import DEFAULT_MODEL_ID, EngineSettings
from edged.evaluation.engine import EngineAnswerer
from edged.evaluation.items import EvalItem, load_items
from edged.evaluation.local import LocalAnswer, answer_all

BATCH = 64  # items per write, so an interrupted run keeps what it finished (--resume)


def _labelled(path: Path) -> dict[str, bool]:
    """Ids (and correctness) of the complete records already in `path`."""
    if not path.exists():
        return {}
    done: dict[str, bool] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[record["id"]] = bool(record["correct"])
    return done


def record(item: EvalItem, answer: LocalAnswer) -> dict[str, object]:
    signals = [[round(s.logprob, 4), round(s.margin, 4), round(s.entropy, 4)] for s in answer.signals]
    return {
        "id": item.id,
        "task": item.task,
        "reply": answer.text,
        "correct": item.is_correct(answer.text),
        "prompt_tokens": answer.prompt_tokens,
        "signals": signals,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--resume", action="store_true", help="keep the labels already in OUT, add the rest")
    args = parser.parse_args()
    items = load_items(args.items)
    done = _labelled(args.out) if args.resume else {}
    todo = [item for item in items if item.id not in done]
    answerer = EngineAnswerer.start(DEFAULT_MODEL_ID, EngineSettings(threads=args.threads, slots=args.slots))
    started = time.monotonic()
    try:
        with args.out.open("a" if args.resume else "w") as out:
            for first in range(0, len(todo), BATCH):
                batch = todo[first : first + BATCH]
                answers = answer_all(
                    answerer, [i.prompt for i in batch], args.max_tokens, concurrency=args.slots
                )
                for item, answer in zip(batch, answers, strict=True):
                    out.write(json.dumps(record(item, answer), ensure_ascii=False) + "\n")
                out.flush()
                finished = first + len(batch)
                rate = finished / (time.monotonic() - started)
                print(f"{finished}/{len(todo)} ({rate:.2f} items/s)", file=sys.stderr)
    finally:
        answerer.close()
    labels = _labelled(args.out)
    print(f"{args.out}: {len(labels)} items, local accuracy {sum(labels.values()) / len(labels):.3f}")


if __name__ == "__main__":
    main()
