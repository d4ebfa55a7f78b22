#!/usr/bin/env python3
"""Leave-one-dataset-out evaluation of the routing signals on public datasets.

For each public dataset (bench/evalsets/public/<task>.jsonl, labelled in models/router/public_labels.jsonl)
every signal set below is trained on the other public datasets (plus the synthetic train set with
--synthetic) and scored on the held-out one. Printed per dataset: items, local accuracy, chance accuracy,
AUROC and skill (edged.evaluation.metrics: 0 = random routing, 1 = the oracle; the cloud taken as always
right, as in `edged eval`'s reference mode and train_router's report). Datasets where the local model is not
clearly above chance (multiple choice: accuracy below chance + 2 standard errors) are reported apart and left
out of the main mean. The in-distribution figure beside it: 5-fold cross-validation over all items pooled.

    signal set      what it is trained on                                 cost at serving time
    shipped         models/router as committed (not retrained)            -
    router          prompt features (edged.routing.features), logistic    the pre-router
    auto            answer model + AUTO stacking, as scripts/train_router  the answer model (no model call)
    confidence      logprob / margin / entropy summary only (AUTO score    none
                    without a router)
    confidence+cues the summary plus transfer cues (edged.routing.cues)    none (regexes on prompt and reply)
    stacked         the shipped design (scripts/train_router.py): the      the answer model + cues
                    answer model (features v2, cues included) and the
                    stack over [its score, signals, cues] fitted on
                    out-of-fold scores that hold out one dataset at a time

    PYTHONPATH=. .venv/bin/python scripts/router_loo.py [--synthetic] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from train_router import (
    ANSWER_MODEL,
    PROMPT_DENSE,
    Network,
    answer_candidates,
    fit_network,
    fit_stack,
    grouped_out_of_fold,
    stack_folds,
    stacked_scores,
)

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.evaluation import metrics
from edged.evaluation.fit import fit_auto_weights, fit_logistic
from edged.evaluation.items import EvalItem, load_items
from edged.routing.answer_features import DENSE_COLUMNS, answer_features
from edged.routing.cues import transfer_cues
from edged.routing.features import prompt_features
from edged.routing.router import PromptRouter
from edged.routing.score import SIGNALS, auto_score, signal_values

FloatArray = npt.NDArray[np.float64]
SEED = 5
FOLDS = 5
STACK_FOLDS = 3  # out-of-fold answer scores for the AUTO stacking inside each training set
SETS = ["shipped", "router", "auto", "confidence", "confidence+cues", "stacked"]


@dataclass
class Data:
    items: list[EvalItem]
    replies: list[str]
    labels: FloatArray
    summaries: list[ConfidenceSummary]
    groups: list[str]
    x_prompt: FloatArray = field(init=False)
    x_answer: FloatArray = field(init=False)
    cues: FloatArray = field(init=False)
    signals: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.x_prompt = np.stack([prompt_features(i.prompt) for i in self.items]).astype(np.float64)
        self.x_answer = np.stack(
            [
                answer_features(i.prompt, r, c, v.astype(np.float32))
                for i, r, c, v in zip(self.items, self.replies, self.summaries, self.x_prompt, strict=True)
            ]
        ).astype(np.float64)
        self.cues = np.array(
            [transfer_cues(i.prompt, r) for i, r in zip(self.items, self.replies, strict=True)],
            dtype=np.float64,
        )
        self.signals = np.array(
            [[signal_values(c)[name] for name in SIGNALS] for c in self.summaries], dtype=np.float64
        )


def load(items_paths: Sequence[Path], labels_path: Path, group: str | None) -> Data:
    items = {item.id: item for path in items_paths for item in load_items(path)}
    rows = [json.loads(line) for line in labels_path.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row["id"] in items]
    return Data(
        items=[items[row["id"]] for row in rows],
        replies=[row["reply"] for row in rows],
        labels=np.array([float(row["correct"]) for row in rows]),
        summaries=[ConfidenceSummary.of([TokenSignals(*s) for s in row["signals"]]) for row in rows],
        groups=[group or items[row["id"]].task for row in rows],
    )


def concat(parts: Sequence[Data], masks: Sequence[npt.NDArray[np.bool_]]) -> Data:
    """The selected rows of several Data, features carried over (not recomputed)."""
    out = Data.__new__(Data)
    out.items = [
        i for d, m in zip(parts, masks, strict=True) for i, keep in zip(d.items, m, strict=True) if keep
    ]
    out.replies = [
        r for d, m in zip(parts, masks, strict=True) for r, k in zip(d.replies, m, strict=True) if k
    ]
    out.summaries = [
        s for d, m in zip(parts, masks, strict=True) for s, k in zip(d.summaries, m, strict=True) if k
    ]
    out.groups = [g for d, m in zip(parts, masks, strict=True) for g, k in zip(d.groups, m, strict=True) if k]
    out.labels = np.concatenate([d.labels[m] for d, m in zip(parts, masks, strict=True)])
    for name in ("x_prompt", "x_answer", "cues", "signals"):
        setattr(out, name, np.concatenate([getattr(d, name)[m] for d, m in zip(parts, masks, strict=True)]))
    return out


Scorer = Callable[[Data], FloatArray]


def _logistic(x: FloatArray, y: FloatArray, l2: float) -> Callable[[FloatArray], FloatArray]:
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    w, b = fit_logistic((x - mean) / std, y, l2)
    return lambda z: np.asarray(1.0 / (1.0 + np.exp(-(((z - mean) / std) @ w + b))), dtype=np.float64)


def _auto(train: Data) -> Scorer:
    """The answer model on all of `train`, its AUTO stacking fitted on out-of-fold answer scores."""
    x, y = train.x_answer, train.labels
    dense = DENSE_COLUMNS

    def fit(a: FloatArray, b: FloatArray, seed: int) -> Network:
        return fit_network(a, b, 1e-3, seed, hidden=0, dense=dense)

    folds = np.random.default_rng(SEED).permutation(len(y)) % STACK_FOLDS
    oof = np.zeros(len(y))
    for fold in range(STACK_FOLDS):
        held = folds == fold
        oof[held] = fit(x[~held], y[~held], SEED + fold).predict(x[held])
    weights = fit_auto_weights(list(oof), train.summaries, list(y > 0.5))
    net = fit(x, y, SEED)

    def score(d: Data) -> FloatArray:
        answer = net.predict(d.x_answer)
        return np.array([auto_score(float(a), c, weights) for a, c in zip(answer, d.summaries, strict=True)])

    return score


def _stacked(train: Data) -> Scorer:
    """The shipped design, exactly as scripts/train_router.py trains it, on `train` only."""
    trainer = answer_candidates()[ANSWER_MODEL]
    prompts = [i.prompt for i in train.items]
    oof = grouped_out_of_fold(
        trainer, train.x_answer, train.labels, list(stack_folds(train.groups, SEED)), SEED
    )
    stack = fit_stack(oof, prompts, train.replies, train.summaries, train.labels)
    net = trainer(train.x_answer, train.labels, SEED)
    return lambda d: stacked_scores(
        net.predict(d.x_answer), [i.prompt for i in d.items], d.replies, d.summaries, stack
    )


def train_set(name: str, train: Data, shipped: PromptRouter | None) -> Scorer:
    y = train.labels
    if name == "shipped":
        if shipped is None:
            raise ValueError("the shipped set needs --router")
        router = shipped
        return lambda d: np.array(
            [
                router.finished_score(i.prompt, r, router.score(i.prompt), c, router.manifest.score_weights)
                for i, r, c in zip(d.items, d.replies, d.summaries, strict=True)
            ]
        )
    if name == "router":
        net = fit_network(train.x_prompt, y, 1e-2, SEED, hidden=0, dense=PROMPT_DENSE)
        return lambda d: net.predict(d.x_prompt)
    if name == "auto":
        return _auto(train)
    if name == "stacked":
        return _stacked(train)
    if name == "confidence":
        weights: ScoreWeights = fit_auto_weights([None] * len(y), train.summaries, list(y > 0.5))
        return lambda d: np.array([auto_score(None, c, weights) for c in d.summaries])
    predict = _logistic(np.hstack([train.signals, train.cues]), y, 1e-2)
    return lambda d: predict(np.hstack([d.signals, d.cues]))


def figures(scores: FloatArray, y: FloatArray) -> tuple[float | None, float | None]:
    """AUROC and skill of `scores` on labels `y` (the cloud always right)."""
    cloud = np.ones_like(y)
    oracle = metrics.apgr(metrics.oracle_scores(y, cloud), y, cloud)
    return metrics.auroc(scores, y > 0.5), metrics.skill(metrics.apgr(scores, y, cloud), oracle)


def chance(d: Data) -> float | None:
    """Chance accuracy of a multiple-choice dataset (1 / number of choices), None for open answers."""
    counts = {len(i.choices) for i in d.items if i.grader in ("option", "choice")}
    return 1.0 / min(counts) if counts and all(i.choices for i in d.items) else None


def at_chance(d: Data) -> bool:
    c = chance(d)
    n = len(d.labels)
    return c is not None and float(d.labels.mean()) < c + 2.0 * math.sqrt(c * (1.0 - c) / n)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@dataclass
class HeldOut:
    task: str
    n: int
    accuracy: float
    chance: float | None
    at_chance: bool
    auroc: dict[str, float | None] = field(default_factory=dict)
    skill: dict[str, float | None] = field(default_factory=dict)


def leave_one_out(
    public: Data, synthetic: Data | None, shipped: PromptRouter | None, tasks: Sequence[str] = ()
) -> list[HeldOut]:
    """Each public dataset (or only `tasks`) held out in turn, trained on all the others."""
    rows: list[HeldOut] = []
    groups = np.array(public.groups)
    for task in sorted(set(tasks) if tasks else set(public.groups)):
        held = groups == task
        parts, masks = [public], [~held]
        if synthetic is not None:
            parts.append(synthetic)
            masks.append(np.ones(len(synthetic.labels), dtype=bool))
        train = concat(parts, masks)
        test = concat([public], [held])
        row = HeldOut(task, int(held.sum()), float(test.labels.mean()), chance(test), at_chance(test))
        for name in SETS:
            row.auroc[name], row.skill[name] = figures(train_set(name, train, shipped)(test), test.labels)
        print(f"  {task}: " + " ".join(f"{n}={_fmt(row.skill[n])}" for n in SETS), flush=True)
        rows.append(row)
    return rows


def in_distribution(
    public: Data, synthetic: Data, shipped: PromptRouter | None
) -> dict[str, dict[str, object]]:
    """5-fold CV over the union (random folds); figures on the public and the synthetic part."""
    union = concat(
        [public, synthetic], [np.ones(len(public.labels), bool), np.ones(len(synthetic.labels), bool)]
    )
    is_public = np.arange(len(union.labels)) < len(public.labels)
    folds = np.random.default_rng(SEED).permutation(len(union.labels)) % FOLDS
    out: dict[str, dict[str, object]] = {}
    for name in SETS:
        scores = np.zeros(len(union.labels))
        for fold in range(1 if name == "shipped" else FOLDS):
            held = folds == fold if name != "shipped" else np.ones(len(union.labels), bool)
            scorer = train_set(name, concat([union], [~held]) if name != "shipped" else union, shipped)
            scores[held] = scorer(concat([union], [held]))
        y = union.labels
        cloud = np.ones_like(y)
        syn = ~is_public
        out[name] = {
            "public_auroc": figures(scores[is_public], y[is_public])[0],
            "public_skill": figures(scores[is_public], y[is_public])[1],
            "synthetic_skill": figures(scores[syn], y[syn])[1],
            "synthetic_share_at_95": metrics.cloud_share_at(scores[syn], y[syn], cloud[syn]),
            "synthetic_oracle_share_at_95": metrics.cloud_share_at(
                metrics.oracle_scores(y[syn], cloud[syn]), y[syn], cloud[syn]
            ),
        }
        print(f"  in-distribution {name}: {out[name]}", flush=True)
    return out


def load_heldout(items_path: Path, records_path: Path) -> Data:
    """The synthetic held-out set as `edged eval --records` wrote it (reply, grade, confidence summary)."""
    items = {item.id: item for item in load_items(items_path)}
    rows = [json.loads(line) for line in records_path.read_text().splitlines() if line.strip()]
    return Data(
        items=[items[row["id"]] for row in rows],
        replies=[row["reply"] for row in rows],
        labels=np.array([float(row["local_correct"]) for row in rows]),
        summaries=[ConfidenceSummary(**row["confidence"]) for row in rows],
        groups=["heldout"] * len(rows),
    )


def heldout(
    public: Data, synthetic: Data, held: Data, shipped: PromptRouter | None
) -> dict[str, dict[str, object]]:
    """Each set trained on every public and synthetic item, scored on the synthetic held-out set (the
    in-distribution figure of docs/routing.md: skill, and the cloud share at 95% against the oracle's)."""
    union = concat(
        [public, synthetic], [np.ones(len(public.labels), bool), np.ones(len(synthetic.labels), bool)]
    )
    y = held.labels
    cloud = np.ones_like(y)
    oracle_share = metrics.cloud_share_at(metrics.oracle_scores(y, cloud), y, cloud)
    out: dict[str, dict[str, object]] = {}
    for name in SETS:
        scores = train_set(name, union, shipped)(held)
        auroc, skill = figures(scores, y)
        share = metrics.cloud_share_at(scores, y, cloud)
        out[name] = {"auroc": auroc, "skill": skill, "share_at_95": share, "oracle_share_at_95": oracle_share}
        print(f"  heldout {name}: {out[name]}", flush=True)
    return out


def table(rows: list[HeldOut]) -> str:
    head = "| dataset | n | local acc. | chance | " + " | ".join(f"{n} AUROC / skill" for n in SETS) + " |"
    lines = [head, "|" + "---|" * (4 + len(SETS))]
    for at in (False, True):
        chosen = [r for r in rows if r.at_chance is at]
        for r in chosen:
            cells = [f"{_fmt(r.auroc[n])} / {_fmt(r.skill[n])}" for n in SETS]
            mark = " (at chance)" if at else ""
            lead = f"| {r.task}{mark} | {r.n} | {r.accuracy:.2f} | {_fmt(r.chance)} | "
            lines.append(lead + " | ".join(cells) + " |")
        if chosen:
            label = "mean, at-chance datasets" if at else "mean (datasets above chance)"
            cells = [_fmt(mean_skill(chosen, n)) for n in SETS]
            lines.append(f"| **{label}** | | | | " + " | ".join(f"skill {c}" for c in cells) + " |")
    return "\n".join(lines)


def mean_skill(rows: Sequence[HeldOut], name: str) -> float | None:
    values = [v for r in rows if (v := r.skill[name]) is not None]
    return float(np.mean(values)) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--public", type=Path, default=Path("bench/evalsets/public"))
    parser.add_argument("--public-labels", type=Path, default=Path("models/router/public_labels.jsonl"))
    parser.add_argument("--items", type=Path, default=Path("bench/evalsets/train.jsonl"))
    parser.add_argument("--labels", type=Path, default=Path("models/router/train_labels.jsonl"))
    parser.add_argument("--router", type=Path, default=Path("models/router"))
    parser.add_argument("--synthetic", action="store_true", help="train on the synthetic set too")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--heldout", type=Path, default=Path("bench/evalsets/heldout.jsonl"))
    parser.add_argument("--heldout-records", type=Path, default=Path("bench/evalsets/heldout_records.jsonl"))
    parser.add_argument(
        "--part", choices=("both", "loo", "in-distribution", "heldout", "loo+heldout"), default="both"
    )
    parser.add_argument(
        "--sets", nargs="+", choices=tuple(SETS), default=list(SETS), help="signal sets to compare"
    )
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=[],
        metavar="TASK",
        help="hold out only these datasets (default: each in turn); the folds do not depend on each other, "
        "so runs over disjoint lists can be merged",
    )
    args = parser.parse_args()
    SETS[:] = args.sets  # the one switch every figure below reads
    public = load(sorted(args.public.glob("*.jsonl")), args.public_labels, None)
    synthetic = load([args.items], args.labels, "synthetic")
    shipped = PromptRouter.load(args.router) if "shipped" in SETS else None
    print(
        f"{len(public.labels)} public items, {len(synthetic.labels)} synthetic; training on the other "
        f"public datasets{' and the synthetic set' if args.synthetic else ''}",
        flush=True,
    )
    rows = (
        leave_one_out(public, synthetic if args.synthetic else None, shipped, args.held_out)
        if args.part in ("both", "loo", "loo+heldout")
        else []
    )
    inside = in_distribution(public, synthetic, shipped) if args.part in ("both", "in-distribution") else {}
    held = load_heldout(args.heldout, args.heldout_records)
    on_heldout = heldout(public, synthetic, held, shipped) if args.part in ("heldout", "loo+heldout") else {}
    if rows:
        print(table(rows))
    if args.json:
        held_rows = [dataclasses.asdict(r) for r in rows]
        args.json.write_text(
            json.dumps(
                {"leave_one_out": held_rows, "in_distribution": inside, "heldout": on_heldout}, indent=1
            )
        )


if __name__ == "__main__":
    main()
