#!/usr/bin/env python3
"""Build bench/evalsets/public/<dataset>.jsonl: fixed, seeded samples of public datasets with gold answers.

The router is trained and judged leave-one-dataset-out on these (scripts/train_router.py --loo). The raw files
come from public GitHub repositories (models/router/SOURCES.md names each repository, commit, file and
licence); this script only reads them from SOURCES, a folder holding each repository's files under
SOURCES/<owner>/<name>/<path>, and writes eval items (edged.evaluation.items), one dataset a file. Nothing is
fetched here and nothing at run time: the items are committed files.

    .venv/bin/python scripts/make_public_evalset.py SOURCES --per-dataset 60 [--seed 14]   # the committed samples
    .venv/bin/python scripts/make_public_evalset.py SOURCES --per-dataset 60 --datasets svamp addsub   # only these

Every dataset is sampled with random.Random(f"{seed}:{dataset}") from the items that pass its filter (below),
so adding a dataset does not change the others' samples.
"""

from __future__ import annotations

import argparse
import ast
import bz2
import csv
import io
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edged.evaluation.graders import OPTION_LETTERS
from edged.evaluation.items import parse_item

Item = dict[str, Any]
MAX_CONTEXT_CHARS = 1_200  # SQuAD paragraphs above this are skipped: labelling time grows with the prompt


def _options_prompt(lead: str, options: list[str]) -> str:
    lines = [f"{OPTION_LETTERS[i]}. {text}" for i, text in enumerate(options)]
    return f"{lead}\n\n" + "\n".join(lines) + "\n\nAnswer with the letter of the correct option."


def _option_item(prompt: str, options: list[str], right: int) -> Item | None:
    """An 'option' item, or None when its options are not distinct non-empty strings (the grader needs both)."""
    cleaned = [o.strip() for o in options]
    if any(not o for o in cleaned) or len({o.lower() for o in cleaned}) != len(cleaned):
        return None
    return {
        "prompt": _options_prompt(prompt, cleaned),
        "answer": cleaned[right],
        "grader": "option",
        "choices": cleaned,
    }


def _any_of(golds: list[str]) -> str:
    """A regex for any gold answer as whole words, case-insensitive (the 'regex' grader)."""
    return "(?i)(?<!\\w)(?:" + "|".join(re.escape(g) for g in golds) + ")(?!\\w)"


def gsm8k(root: Path) -> Iterator[Item]:
    """openai/grade-school-math test split; the gold number follows '####' in the worked solution."""
    path = root / "openai/grade-school-math/grade_school_math/data/test.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        answer = row["answer"].split("####")[-1].strip().replace(",", "")
        prompt = f"{row['question']}\nAnswer with just the number."
        yield {"prompt": prompt, "answer": answer, "grader": "number"}


def mmlu(root: Path) -> Iterator[Item]:
    """MMLU-Redux (aryopg/mmlu-redux): 100 MMLU questions per subject, re-annotated; only those marked OK."""
    folder = root / "aryopg/mmlu-redux/mmlu_redux"
    for path in sorted(folder.glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_").replace("_", " ")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # one subject file is not UTF-8: skipped, not guessed at
            continue
        delimiter = ";" if text.split("\n", 1)[0].startswith("question;") else ","  # both occur
        for row in csv.DictReader(io.StringIO(text), delimiter=delimiter):
            if row.get("error_type") != "OK":
                continue
            try:
                options = ast.literal_eval(row["choices"])
            except (ValueError, SyntaxError):
                continue
            lead = f"A question on {subject}.\n\n{row['question'].strip()}"
            item = _option_item(lead, [str(o) for o in options], int(row["answer"]))
            if item is not None:
                yield item


def hellaswag(root: Path) -> Iterator[Item]:
    """HellaSwag validation (klosax/hellaswag_text_data: 6 lines a task, context, label, 4 endings)."""
    raw = bz2.decompress((root / "klosax/hellaswag_text_data/hellaswag_val_full.txt.bz2").read_bytes())
    lines = raw.decode("utf-8").splitlines()
    for first in range(0, len(lines) - 5, 6):
        context, label, *endings = lines[first : first + 6]
        lead = f"Which ending completes the text best?\n\n{context.strip()} ..."
        item = _option_item(lead, endings, int(label))
        if item is not None:
            yield item


AG_TOPICS = ["World", "Sports", "Business", "Science and technology"]


def ag_news(root: Path) -> Iterator[Item]:
    """AG News (Zhang et al. 2015) as carried by Shane-Neeley/CharCnn_Keras: class (1-4), title, description."""
    text = (root / "Shane-Neeley/CharCnn_Keras/data/ag_news_csv/train.csv").read_text(encoding="utf-8")
    for label, title, description in csv.reader(io.StringIO(text)):
        article = f"{title.strip()}. {description.strip()}".replace("\\n", " ").replace("\\", " ")
        lead = f"What is the topic of this news article?\n\n{article}"
        item = _option_item(lead, AG_TOPICS, int(label) - 1)
        if item is not None:
            yield item


def strategyqa(root: Path) -> Iterator[Item]:
    """StrategyQA (Geva et al. 2021) dev split as carried by wywy136/StrategyQA: yes/no implicit questions."""
    for row in json.loads((root / "wywy136/StrategyQA/data/dev.json").read_text(encoding="utf-8")):
        yield {
            "prompt": f"{row['question'].strip()} Answer yes or no.",
            "answer": "yes" if row["answer"] else "no",
            "grader": "choice",
            "choices": ["yes", "no"],
        }


def squad(root: Path) -> Iterator[Item]:
    """SQuAD 2.0 dev questions with an answer (VinACE/san_mrc carries a part of the dev file); any gold span
    counts, as whole words, case-insensitive."""
    data = json.loads((root / "VinACE/san_mrc/dev-v1.1.json").read_text(encoding="utf-8"))
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"].strip()
            if len(context) > MAX_CONTEXT_CHARS:
                continue
            for qa in paragraph["qas"]:
                golds = sorted({a["text"].strip() for a in qa["answers"] if a["text"].strip()})
                if qa.get("is_impossible") or not golds:
                    continue
                pattern = _any_of(golds)
                prompt = f"{context}\n\nQuestion: {qa['question'].strip()}\nAnswer with a short phrase from the text."
                yield {"prompt": prompt, "answer": pattern, "grader": "regex"}


def nq_open(root: Path) -> Iterator[Item]:
    """Natural Questions open-domain dev split (google-research-datasets/natural-questions, nq_open): real
    search questions with short gold answers, asked closed-book; any gold answer counts, as whole words,
    case-insensitive."""
    path = root / "google-research-datasets/natural-questions/nq_open/NQ-open.dev.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        golds = sorted({a.strip() for a in row["answer"] if a.strip()})
        if not golds:
            continue
        prompt = f"Question: {row['question'].strip()}?\nAnswer with a short phrase."
        yield {"prompt": prompt, "answer": _any_of(golds), "grader": "regex"}


def _number(value: float | str) -> str:
    """A gold number as the grader reads it: 51.0 -> "51", 2.5 -> "2.5"."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _arithmetic(root: Path, name: str) -> Iterator[Item]:
    """One of the arithmetic word-problem sets as carried by wzy6642/PRP (data/<name>.json: problem, gold_answer);
    every problem in the order of the file, a repeated problem (MultiArith and SingleOp hold some) once."""
    rows = json.loads((root / f"wzy6642/PRP/data/{name}.json").read_text(encoding="utf-8"))
    seen: set[str] = set()
    for row in rows:
        problem = " ".join(row["problem"].split())
        if problem.lower() in seen:
            continue
        seen.add(problem.lower())
        prompt = f"{problem}\nAnswer with just the number."
        yield {"prompt": prompt, "answer": _number(row["gold_answer"]), "grader": "number"}


def svamp(root: Path) -> Iterator[Item]:
    """SVAMP (Patel et al. 2021): one-unknown word problems with varied structure, 1,000 problems."""
    return _arithmetic(root, "SVAMP")


def multiarith(root: Path) -> Iterator[Item]:
    """MultiArith (Roy and Roth 2015): two-step arithmetic word problems, 600 problems."""
    return _arithmetic(root, "MultiArith")


def addsub(root: Path) -> Iterator[Item]:
    """AddSub (Hosseini et al. 2014): addition and subtraction word problems, 395 problems."""
    return _arithmetic(root, "AddSub")


def singleop(root: Path) -> Iterator[Item]:
    """SingleOp (Roy et al. 2015): single-operation word problems, 562 problems."""
    return _arithmetic(root, "SingleOp")


DATASETS: dict[str, Callable[[Path], Iterator[Item]]] = {
    "gsm8k": gsm8k,
    "mmlu": mmlu,
    "hellaswag": hellaswag,
    "ag_news": ag_news,
    "strategyqa": strategyqa,
    "squad": squad,
    "svamp": svamp,
    "multiarith": multiarith,
    "addsub": addsub,
    "singleop": singleop,
    "nq_open": nq_open,
}


def sample(name: str, root: Path, count: int, seed: int) -> list[Item]:
    pool = list(DATASETS[name](root))
    if len(pool) < count:
        raise SystemExit(f"{name}: only {len(pool)} usable items, {count} wanted (--per-dataset)")
    indexes = sorted(random.Random(f"{seed}:{name}").sample(range(len(pool)), count))
    items = [{"id": f"{name}-{i:05d}", **pool[i], "task": name} for i in indexes]
    for item in items:
        parse_item(item, item["id"])  # the same validation `edged eval` applies
    return items


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/evalsets/public"))
    parser.add_argument("--per-dataset", type=int, default=80)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(DATASETS),
        default=list(DATASETS),
        help="build only these (default: all); the others' files are left as they are",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        items = sample(name, args.sources, args.per_dataset, args.seed)
        lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        (args.out / f"{name}.jsonl").write_text(lines, encoding="utf-8")
        print(f"{name}: {len(items)} items")


if __name__ == "__main__":
    main()
