#!/usr/bin/env python3
"""Label eval items with the local model's real answers: reply, correctness and per-token signals.

Runs the bundled SmolLM2-135M greedily (LlamaAnswerer: the GGUF's chat template, temperature 0) on every item
and writes one JSON object per line: {"id", "task", "reply", "correct", "prompt_tokens", "signals": [[logprob,
margin, entropy], ...]}. These labels are the router's training data and the offline record of the dev set.

    .venv/bin/python scripts/label_evalset.py bench/evalsets/train.jsonl models/router/train_labels.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edged.evaluation.items import load_items
from edged.evaluation.local import LlamaAnswerer, bundled_smollm2


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("items", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="keep the labels already in OUT, add the rest")
    args = parser.parse_args()
    items = load_items(args.items)
    done = _labelled(args.out) if args.resume else {}
    answerer = LlamaAnswerer(bundled_smollm2(), threads=args.threads)
    started = time.monotonic()
    correct = sum(done.values())
    with args.out.open("a" if args.resume else "w") as out:
        for n, item in enumerate(items, start=1):
            if item.id in done:
                continue
            answer = answerer.answer(item.prompt, args.max_tokens)
            ok = item.is_correct(answer.text)
            correct += ok
            signals = [[round(s.logprob, 4), round(s.margin, 4), round(s.entropy, 4)] for s in answer.signals]
            record = {"id": item.id, "task": item.task, "reply": answer.text, "correct": ok}
            record |= {"prompt_tokens": answer.prompt_tokens, "signals": signals}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            if n % 50 == 0:
                rate = n / (time.monotonic() - started)
                print(f"{n}/{len(items)} accuracy {correct / n:.3f} ({rate:.1f} items/s)", file=sys.stderr)
    print(f"{args.out}: {len(items)} items, local accuracy {correct / len(items):.3f}")


if __name__ == "__main__":
    main()
