#!/usr/bin/env python3
"""Train the pre-generation router, the answer model and the AUTO score; export both models to ONNX with
their sha256 manifest.

Reproducible: the data are files in the repository, every random choice comes from --seed, and the ONNX
graphs are written with fixed names, so the same inputs give the same bytes (and the same sha256).

    inputs   --items (default bench/evalsets/train.jsonl; several allowed, e.g. + bench/evalsets/public/*.jsonl)
             + --labels (default models/router/train_labels.jsonl, + models/router/public_labels.jsonl):
             SmolLM2's graded answers and per-token signals, from scripts/label_evalset.py
    router   prompt features only (before generation); candidates (logistic regression at several L2
             strengths, a one-hidden-layer MLP) are compared by 5-fold cross-validated AUROC on the train
             items only; the best is refitted on all of them
    answer   logistic regression (L2 0.001, ANSWER_MODEL) over answer features v2 (prompt + reply text +
             confidence summary + transfer cues, known after generation at no extra model call)
    AUTO     [answer.stack]: a logistic model over [logit(answer score), 7 signals, 12 cues] fitted on
             out-of-fold answer-model scores whose folds hold out one dataset at a time (the first --items
             file, the in-distribution set, in random folds); [score_weights] (the cascade) on out-of-fold
             router scores; [signal_weights] on the signals alone (the fallback for another local model).
             Out-of-fold, so none is fooled by a model's in-sample confidence
    outputs  models/router/router.onnx, models/router/answer.onnx and models/router/manifest.toml

    .venv/bin/pip install -e '.[train]'    # onnx, for writing the graph
    .venv/bin/python scripts/train_router.py [--seed 5]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.evaluation import metrics
from edged.evaluation.fit import fit_auto_weights, fit_logistic
from edged.evaluation.items import load_items
from edged.models.registry import ModelRegistry
from edged.routing.answer_features import (
    ANSWER_FEATURE_VERSION,
    DENSE_COLUMNS,
    N_ANSWER_FEATURES,
    answer_features,
)
from edged.routing.features import DENSE_FEATURES, FEATURE_VERSION, N_FEATURES, prompt_features
from edged.routing.score import auto_score, logit
from edged.routing.stack import STACK_INPUTS, StackWeights, stack_inputs, stacked_score

FloatArray = npt.NDArray[np.float64]
FOLDS = 5
PROMPT_DENSE = tuple(range(DENSE_FEATURES))


@dataclass
class Network:
    """x -> (x - shift) * scale -> [W1, b1, relu] -> w2, b2 -> sigmoid; hidden is None for a linear model."""

    shift: FloatArray
    scale: FloatArray
    hidden: tuple[FloatArray, FloatArray] | None
    out_w: FloatArray
    out_b: float

    def predict(self, x: FloatArray) -> FloatArray:
        h = (x - self.shift) * self.scale
        if self.hidden is not None:
            h = np.maximum(h @ self.hidden[0] + self.hidden[1], 0.0)
        return np.asarray(1.0 / (1.0 + np.exp(-(h @ self.out_w + self.out_b))), dtype=np.float64)


def _standardiser(x: FloatArray, dense: Sequence[int]) -> tuple[FloatArray, FloatArray]:
    """Standardise the dense columns; the hashed counts (log1p, 0..~3) stay as they are."""
    shift = np.zeros(x.shape[1])
    scale = np.ones(x.shape[1])
    columns = list(dense)
    std = x[:, columns].std(axis=0)
    std[std < 1e-9] = 1.0
    shift[columns] = x[:, columns].mean(axis=0)
    scale[columns] = 1.0 / std
    return shift, scale


def fit_network(
    x: FloatArray,
    y: FloatArray,
    l2: float,
    seed: int,
    *,
    hidden: int,
    epochs: int = 300,
    dense: Sequence[int] = PROMPT_DENSE,
) -> Network:
    """Logistic regression (hidden=0) or a one-hidden-layer MLP, trained full-batch with Adam from a seeded
    initialisation; L2 on the weights, not the biases."""
    rng = np.random.default_rng(seed)
    shift, scale = _standardiser(x, dense)
    h_in = (x - shift) * scale
    n, d = h_in.shape
    width = hidden or d
    params = [
        rng.normal(0, np.sqrt(2.0 / d), (d, hidden)) if hidden else np.zeros((0, 0)),
        np.zeros(hidden),
        rng.normal(0, np.sqrt(1.0 / width), width) if hidden else np.zeros(d),
        np.zeros(1),
    ]
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    for step in range(1, epochs + 1):
        pre = h_in @ params[0] + params[1] if hidden else h_in
        act = np.maximum(pre, 0.0) if hidden else h_in
        p = 1.0 / (1.0 + np.exp(-(act @ params[2] + params[3][0])))
        err = (p - y) / n
        grads = [
            np.zeros_like(params[0]),
            np.zeros_like(params[1]),
            act.T @ err + l2 * params[2],
            err.sum(keepdims=True),
        ]
        if hidden:
            back = np.outer(err, params[2]) * (pre > 0)
            grads[0] = h_in.T @ back + l2 * params[0]
            grads[1] = back.sum(axis=0)
        for i, g in enumerate(grads):
            moments[i] = 0.9 * moments[i] + 0.1 * g
            squares[i] = 0.999 * squares[i] + 0.001 * g * g
            m_hat = moments[i] / (1 - 0.9**step)
            v_hat = squares[i] / (1 - 0.999**step)
            params[i] -= 0.01 * m_hat / (np.sqrt(v_hat) + 1e-8)
    layer = (params[0], params[1]) if hidden else None
    return Network(shift, scale, layer, params[2], float(params[3][0]))


Trainer = Callable[[FloatArray, FloatArray, int], Network]


def _fit(x: FloatArray, y: FloatArray, seed: int, *, l2: float, hidden: int, dense: Sequence[int]) -> Network:
    """fit_network as a Trainer (x, y, seed) with its hyper-parameters bound."""
    return fit_network(x, y, l2, seed, hidden=hidden, dense=dense)


def candidates() -> dict[str, Trainer]:
    """The pre-router's candidates (prompt features)."""
    out: dict[str, Trainer] = {}
    for l2 in (1e-3, 1e-2, 3e-2, 1e-1):
        out[f"logistic(l2={l2:g})"] = functools.partial(_fit, l2=l2, hidden=0, dense=PROMPT_DENSE)
    for l2 in (1e-3, 1e-2):
        out[f"mlp32(l2={l2:g})"] = functools.partial(_fit, l2=l2, hidden=32, dense=PROMPT_DENSE)
    return out


def answer_candidates() -> dict[str, Trainer]:
    """The answer model's candidates (answer features: prompt, reply and confidence)."""
    out: dict[str, Trainer] = {}
    for l2 in (3e-4, 1e-3, 1e-2):
        out[f"logistic(l2={l2:g})"] = functools.partial(_fit, l2=l2, hidden=0, dense=DENSE_COLUMNS)
    out["mlp32(l2=0.001)"] = lambda x, y, s: fit_network(x, y, 1e-3, s, hidden=32, dense=DENSE_COLUMNS)
    return out


ANSWER_MODEL = (
    "logistic(l2=0.001)"  # the shipped design's answer model (docs/routing.md: leave one dataset out)
)
STACK_L2 = 1e-2
IN_DISTRIBUTION = (
    "synthetic"  # the group split into random folds; every other group is a dataset held out whole
)


def stack_folds(groups: Sequence[str], seed: int) -> npt.NDArray[np.str_]:
    """The stack's inner folds: one per public dataset, and the in-distribution set in FOLDS random folds."""
    rng = np.random.default_rng(seed)
    folds = np.array(groups, dtype=object)
    mine = folds == IN_DISTRIBUTION
    folds[mine] = [f"{IN_DISTRIBUTION}-{k}" for k in rng.permutation(int(mine.sum())) % FOLDS]
    return folds.astype(str)


def grouped_out_of_fold(
    train: Trainer, x: FloatArray, y: FloatArray, folds: Sequence[str], seed: int
) -> FloatArray:
    """Each item scored by a model trained without its fold (for a public dataset: without the dataset)."""
    labels = np.asarray(folds)
    scores = np.zeros(len(y))
    for i, fold in enumerate(sorted(set(folds))):
        held = labels == fold
        scores[held] = train(x[~held], y[~held], seed + i).predict(x[held])
    return scores


def fit_stack(
    answer: FloatArray,
    prompts: Sequence[str],
    replies: Sequence[str],
    summaries: Sequence[ConfidenceSummary],
    y: FloatArray,
) -> StackWeights:
    """The stack over [logit(answer score), signals, cues], fitted standardised and written on raw scale."""
    raw = np.array([stack_inputs(p, r, c) for p, r, c in zip(prompts, replies, summaries, strict=True)])
    x = np.hstack([np.array([[logit(float(a))] for a in answer]), raw])
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    w, b = fit_logistic((x - mean) / std, y, STACK_L2)
    scaled = w / std
    bias = b - float(scaled @ mean)
    inputs = {name: round(float(v), 6) for name, v in zip(STACK_INPUTS, scaled[1:], strict=True)}
    return StackWeights(bias=round(bias, 6), answer_logit=round(float(scaled[0]), 6), inputs=inputs)


def stacked_scores(
    answer: FloatArray,
    prompts: Sequence[str],
    replies: Sequence[str],
    summaries: Sequence[ConfidenceSummary],
    weights: StackWeights,
) -> FloatArray:
    rows = zip(answer, prompts, replies, summaries, strict=True)
    return np.array([stacked_score(float(a), p, r, c, weights) for a, p, r, c in rows])


def out_of_fold(train: Trainer, x: FloatArray, y: FloatArray, seed: int) -> FloatArray:
    folds = np.random.default_rng(seed).permutation(len(y)) % FOLDS
    scores = np.zeros(len(y))
    for fold in range(FOLDS):
        held = folds == fold
        scores[held] = train(x[~held], y[~held], seed + fold).predict(x[held])
    return scores


def to_onnx(net: Network, model_id: str, width: int) -> bytes:
    """The network as an ONNX graph (opset 17): input "features" [N, width] -> output "p_local" [N]."""
    f32 = np.float32
    inits = [
        numpy_helper.from_array(net.shift.astype(f32), "shift"),
        numpy_helper.from_array(net.scale.astype(f32), "scale"),
        numpy_helper.from_array(net.out_w.astype(f32).reshape(-1, 1), "out_w"),
        numpy_helper.from_array(np.array([net.out_b], dtype=f32), "out_b"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "shift"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["h0"]),
    ]
    last = "h0"
    if net.hidden is not None:
        inits += [
            numpy_helper.from_array(net.hidden[0].astype(f32), "w1"),
            numpy_helper.from_array(net.hidden[1].astype(f32), "b1"),
        ]
        nodes += [
            helper.make_node("Gemm", ["h0", "w1", "b1"], ["pre1"]),
            helper.make_node("Relu", ["pre1"], ["h1"]),
        ]
        last = "h1"
    nodes += [
        helper.make_node("Gemm", [last, "out_w", "out_b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["p_column"]),
        helper.make_node("Reshape", ["p_column", "flat"], ["p_local"]),
    ]
    graph = helper.make_graph(
        nodes,
        model_id,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("p_local", TensorProto.FLOAT, ["N"])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edged-train-router"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@dataclass
class Training:
    prompts: list[str]
    replies: list[str]
    labels: FloatArray
    summaries: list[ConfidenceSummary]
    groups: list[str]


def load_training(items_paths: Sequence[Path], labels_paths: Sequence[Path]) -> Training:
    """Every labelled item of the label files, its prompt from whichever items file holds its id; its group
    is IN_DISTRIBUTION for the first items file, else its task (its dataset)."""
    prompts = {item.id: item.prompt for path in items_paths for item in load_items(path)}
    first = {item.id for item in load_items(items_paths[0])}
    rows = [
        json.loads(line) for path in labels_paths for line in path.read_text().splitlines() if line.strip()
    ]
    return Training(
        prompts=[prompts[row["id"]] for row in rows],
        replies=[row["reply"] for row in rows],
        labels=np.array([float(row["correct"]) for row in rows]),
        summaries=[ConfidenceSummary.of([TokenSignals(*s) for s in row["signals"]]) for row in rows],
        groups=[IN_DISTRIBUTION if row["id"] in first else str(row["task"]) for row in rows],
    )


def _toml_value(value: float | str) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _weights_table(name: str, weights: ScoreWeights) -> list[str]:
    return ["", f"[{name}]", *(f"{key} = {value!r}" for key, value in weights.model_dump().items())]


@dataclass
class Exported:
    digest: str
    answer_digest: str
    weights: ScoreWeights
    signal_weights: ScoreWeights
    stack: StackWeights


def _stack_table(stack: StackWeights) -> list[str]:
    return [
        "",
        "[answer.stack]",
        f"bias = {stack.bias!r}",
        f"answer_logit = {stack.answer_logit!r}",
        "",
        "[answer.stack.inputs]",
        *(f"{name} = {value!r}" for name, value in stack.inputs.items()),
    ]


LOCAL_MODEL = "smollm2-135m-instruct-q4_1"


def local_model_table(model_id: str) -> list[str]:
    """[local_model]: the model the labels came from, by id and its GGUF's sha256 (models/<id>.toml)."""
    manifest = ModelRegistry.from_dir().manifest(model_id)
    return ["", "[local_model]", f"id = {json.dumps(model_id)}", f'sha256 = "{manifest.sha256}"']


def manifest_text(
    model_id: str, exported: Exported, description: str, cv: dict[str, float], local_model: list[str]
) -> str:
    lines = [
        "# The pre-generation router and the answer model (written by scripts/train_router.py: do not edit by hand).",
        f'id = "{model_id}"',
        'kind = "router"',
        'file = "router.onnx"',
        f'sha256 = "{exported.digest}"',
        f"feature_version = {FEATURE_VERSION}",
        f"n_features = {N_FEATURES}",
        f"description = {_toml_value(description)}",
        *_weights_table("score_weights", exported.weights),
        *_weights_table("signal_weights", exported.signal_weights),
        *local_model,
        "",
        "[answer]",
        'file = "answer.onnx"',
        f'sha256 = "{exported.answer_digest}"',
        f"feature_version = {ANSWER_FEATURE_VERSION}",
        f"n_features = {N_ANSWER_FEATURES}",
        *_stack_table(exported.stack),
        "",
        "[metrics]",
        *(f"{name} = {round(value, 4)!r}" for name, value in cv.items()),
    ]
    return "\n".join(lines) + "\n"


def select(
    label: str, trainers: dict[str, Trainer], x: FloatArray, y: FloatArray, seed: int
) -> tuple[str, FloatArray]:
    """The candidate with the best 5-fold cross-validated AUROC, and its out-of-fold scores."""
    cv: dict[str, FloatArray] = {}
    for name, trainer in trainers.items():
        cv[name] = out_of_fold(trainer, x, y, seed)
        print(f"  {label} {name:20s} CV AUROC {metrics.auroc(cv[name], y > 0.5):.4f}", flush=True)
    best = max(cv, key=lambda name: metrics.auroc(cv[name], y > 0.5) or 0.0)
    return best, cv[best]


def cv_report(
    data: Training,
    router: FloatArray,
    answer: FloatArray,
    weights: ScoreWeights,
    stacked: FloatArray,
) -> dict[str, float]:
    """Cross-validated metrics of every signal (out-of-fold scores; the cloud taken as always right).
    `answer` is 5-fold out-of-fold; `stacked` the AUTO score over the dataset-grouped out-of-fold scores."""
    y = data.labels
    summaries = data.summaries
    auto_router = np.array([auto_score(float(r), c, weights) for r, c in zip(router, summaries, strict=True)])
    conf = np.array([c.mean_logprob for c in summaries])
    cloud = np.ones_like(y)
    oracle = metrics.apgr(metrics.oracle_scores(y, cloud), y, cloud)
    positive = y > 0.5

    def skill(scores: FloatArray) -> float:
        return metrics.skill(metrics.apgr(scores, y, cloud), oracle) or 0.0

    return {
        "cv_auroc_router": metrics.auroc(router, positive) or 0.0,
        "cv_auroc_answer": metrics.auroc(answer, positive) or 0.0,
        "cv_auroc_auto_router": metrics.auroc(auto_router, positive) or 0.0,
        "grouped_auroc_auto": metrics.auroc(stacked, positive) or 0.0,
        "cv_skill_router": skill(router),
        "cv_skill_confidence": skill(conf),
        "cv_skill_answer": skill(answer),
        "cv_skill_auto_router": skill(auto_router),
        "grouped_skill_auto": skill(stacked),
        "grouped_share_at_95_auto": metrics.cloud_share_at(stacked, y, cloud) or 0.0,
        "cv_share_at_95_oracle": metrics.cloud_share_at(metrics.oracle_scores(y, cloud), y, cloud) or 0.0,
        "train_items": float(len(y)),
        "train_local_accuracy": float(y.mean()),
    }


def train_stack(data: Training, xa: FloatArray, seed: int) -> tuple[Network, StackWeights, FloatArray]:
    """The shipped design: the answer model on all items, its stack fitted on dataset-grouped out-of-fold
    answer scores. Returns the model, the stack and the stacked AUTO scores of those out-of-fold scores."""
    trainer = answer_candidates()[ANSWER_MODEL]
    folds = stack_folds(data.groups, seed)
    oof = grouped_out_of_fold(trainer, xa, data.labels, list(folds), seed)
    stack = fit_stack(oof, data.prompts, data.replies, data.summaries, data.labels)
    stacked = stacked_scores(oof, data.prompts, data.replies, data.summaries, stack)
    return trainer(xa, data.labels, seed), stack, stacked


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=Path, nargs="+", default=[Path("bench/evalsets/train.jsonl")])
    parser.add_argument("--labels", type=Path, nargs="+", default=[Path("models/router/train_labels.jsonl")])
    parser.add_argument("--out", type=Path, default=Path("models/router"))
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--id", default="router-smollm2-v3")
    parser.add_argument("--local-model", default=LOCAL_MODEL, help="model id (models/) the labels came from")
    args = parser.parse_args()

    data = load_training(args.items, args.labels)
    y = data.labels
    x = np.stack([prompt_features(t) for t in data.prompts]).astype(np.float64)
    xa = np.stack(
        [
            answer_features(p, r, c, v.astype(np.float32))
            for p, r, c, v in zip(data.prompts, data.replies, data.summaries, x, strict=True)
        ]
    ).astype(np.float64)
    print(f"{len(y)} training items, local accuracy {y.mean():.3f}, {x.shape[1]} / {xa.shape[1]} features")
    best, oof = select("router", candidates(), x, y, args.seed)
    oof_answer = out_of_fold(answer_candidates()[ANSWER_MODEL], xa, y, args.seed)
    # [score_weights] stack the router score with the confidence summary (the cascade, judging a partial
    # answer); [signal_weights] the confidence summary alone (the fallback for another local model);
    # [answer.stack] the finished answer's AUTO score. All fitted on out-of-fold scores.
    weights = fit_auto_weights(list(oof), data.summaries, list(y > 0.5))
    signal_weights = fit_auto_weights([None] * len(y), data.summaries, list(y > 0.5))
    answer_net, stack, stacked = train_stack(data, xa, args.seed)
    report = cv_report(data, oof, oof_answer, weights, stacked)
    print(f"router: {best}; answer model: {ANSWER_MODEL}")
    for key, value in report.items():
        print(f"  {key:24s} {value:.4f}")
    router_bytes = to_onnx(candidates()[best](x, y, args.seed), args.id, N_FEATURES)
    answer_bytes = to_onnx(answer_net, f"{args.id}-answer", N_ANSWER_FEATURES)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "router.onnx").write_bytes(router_bytes)
    (args.out / "answer.onnx").write_bytes(answer_bytes)
    exported = Exported(
        hashlib.sha256(router_bytes).hexdigest(),
        hashlib.sha256(answer_bytes).hexdigest(),
        weights,
        signal_weights,
        stack,
    )
    description = (
        f"router {best} over edged.routing.features v{FEATURE_VERSION}, answer model {ANSWER_MODEL} over "
        f"edged.routing.answer_features v{ANSWER_FEATURE_VERSION} stacked with the confidence signals and "
        f"transfer cues; trained with seed {args.seed} on {len(y)} items of "
        f"{', '.join(str(p) for p in args.items)} labelled through the engine by {args.local_model} "
        "(greedy, 48 tokens)"
    )
    local = local_model_table(args.local_model)
    (args.out / "manifest.toml").write_text(manifest_text(args.id, exported, description, report, local))
    print(f"wrote router.onnx ({exported.digest}), answer.onnx ({exported.answer_digest}) and the manifest")


if __name__ == "__main__":
    main()
