"""The eval runner: every item through the local path and the routing scores, then the routing metrics.

For each item: the local answer (text and per-token signals, from a LocalAnswerer), its grade, the router
score of the prompt, the answer model's score of the finished answer (when the router has one), the
confidence summary and the per-token signals it came from (what `edged calibrate` needs to replay the
streaming cascade on the first k tokens), the AUTO score (answer-model or router score + confidence, the
weights the daemon uses) and the cloud's grade (`ReferenceCloud`: always correct, the oracle upper bound
routing papers use; or a live CloudAnswerer). `report()` turns the results into the numbers `edged eval` prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.evaluation import metrics
from edged.evaluation.items import EvalItem
from edged.evaluation.local import LocalAnswerer, answer_all
from edged.routing.score import auto_score

logger = logging.getLogger(__name__)

SIGNALS = ("router", "confidence", "answer", "auto")
CURVE_SHARES = tuple(i / 10 for i in range(11))


class CloudAnswerer(Protocol):
    """Answers a prompt in the cloud (live escalation), returning the reply text."""

    def answer(self, prompt: str, max_tokens: int) -> str: ...


class ReferenceCloud:
    """The reference cloud: every answer counts as correct (no call is made)."""


class PromptScorer(Protocol):
    def score(self, prompt: str) -> float: ...


@runtime_checkable
class AnswerScorer(Protocol):
    """A router that also scores finished answers (PromptRouter with an answer model)."""

    def score_answer(self, prompt: str, reply: str, confidence: ConfidenceSummary) -> float | None: ...

    def finished_score(
        self,
        prompt: str,
        reply: str,
        router_score: float | None,
        confidence: ConfidenceSummary,
        weights: ScoreWeights,
    ) -> float: ...


@dataclass(frozen=True, slots=True)
class ItemResult:
    id: str
    task: str
    reply: str
    local_correct: bool
    cloud_correct: bool
    router_score: float | None
    confidence: ConfidenceSummary
    auto_score: float
    answer_score: float | None = None
    # The local answer's per-token signals, in order (empty for results built without them: then the cascade
    # cannot be replayed; `has_signals` tells them from an answer that had no tokens).
    signals: tuple[TokenSignals, ...] = ()

    @property
    def has_signals(self) -> bool:
        """Whether `signals` are the answer's own (one per token of the confidence summary)."""
        return len(self.signals) == self.confidence.tokens


def run_items(
    items: Sequence[EvalItem],
    local: LocalAnswerer,
    *,
    router: PromptScorer | None,
    weights: ScoreWeights,
    cloud: CloudAnswerer | ReferenceCloud,
    max_tokens: int,
    concurrency: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[ItemResult]:
    """Answer every item locally (`concurrency` in flight together), score and grade it."""
    prompts = [item.prompt for item in items]
    answers = answer_all(local, prompts, max_tokens, concurrency=concurrency, progress=progress)
    results = []
    for item, answer in zip(items, answers, strict=True):
        router_score = router.score(item.prompt) if router is not None else None
        confidence = ConfidenceSummary.of(list(answer.signals))
        answer_score = None
        auto = auto_score(router_score, confidence, weights)
        if isinstance(router, AnswerScorer):
            answer_score = router.score_answer(item.prompt, answer.text, confidence)
            auto = router.finished_score(item.prompt, answer.text, router_score, confidence, weights)
        if isinstance(cloud, ReferenceCloud):
            cloud_correct = True
        else:
            cloud_correct = item.is_correct(cloud.answer(item.prompt, max_tokens))
        results.append(
            ItemResult(
                id=item.id,
                task=item.task,
                reply=answer.text,
                local_correct=item.is_correct(answer.text),
                cloud_correct=cloud_correct,
                router_score=router_score,
                confidence=confidence,
                auto_score=auto,
                answer_score=answer_score,
                signals=tuple(answer.signals),
            )
        )
    logger.debug("eval: %d items answered", len(results))
    return results


def signal_scores(results: Sequence[ItemResult]) -> dict[str, list[float]]:
    """Each routing signal's score per item (signals without a value everywhere are left out)."""
    out: dict[str, list[float]] = {
        "confidence": [r.confidence.mean_logprob if r.confidence.available else -99.0 for r in results],
        "auto": [r.auto_score for r in results],
    }
    if all(r.router_score is not None for r in results):
        out["router"] = [r.router_score or 0.0 for r in results]
    if all(r.answer_score is not None for r in results):
        out["answer"] = [r.answer_score or 0.0 for r in results]
    return {name: out[name] for name in SIGNALS if name in out}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report(results: Sequence[ItemResult]) -> dict[str, Any]:
    """The eval summary: keys as `edged eval --json` prints them (unsuffixed ones for the AUTO score)."""
    local = np.array([float(r.local_correct) for r in results])
    cloud = np.array([float(r.cloud_correct) for r in results])
    oracle = metrics.oracle_scores(local, cloud)
    apgr_oracle = metrics.apgr(oracle, local, cloud)
    scores = signal_scores(results)
    apgr_by = {name: metrics.apgr(s, local, cloud) for name, s in scores.items()}
    positive = local > 0.5
    return {
        "n": len(results),
        "local_accuracy": _round(float(local.mean())),
        "cloud_accuracy": _round(float(cloud.mean())),
        "apgr": _round(apgr_by["auto"]),
        "apgr_oracle": _round(apgr_oracle),
        "skill": _round(metrics.skill(apgr_by["auto"], apgr_oracle)),
        "apgr_by_signal": {name: _round(value) for name, value in apgr_by.items()},
        "skill_by_signal": {name: _round(metrics.skill(v, apgr_oracle)) for name, v in apgr_by.items()},
        "auroc": {name: _round(metrics.auroc(s, positive)) for name, s in scores.items()},
        "cloud_share_at_95": _round(metrics.cloud_share_at(scores["auto"], local, cloud)),
        "cloud_share_at_95_oracle": _round(metrics.cloud_share_at(oracle, local, cloud)),
        "by_task": by_task(results),
        "curve": {
            "cloud_share": list(CURVE_SHARES),
            **{
                name: [round(q, 4) for q in metrics.quality_at_shares(s, local, cloud, CURVE_SHARES)]
                for name, s in {**scores, "oracle": list(oracle)}.items()
            },
        },
    }


def by_task(results: Sequence[ItemResult]) -> dict[str, dict[str, float | None]]:
    """Per task label: items, local accuracy, mean AUTO score, and the AUTO score's skill and AUROC within
    the task (None where the task's answers are all right or all wrong; items without a label count as "-")."""
    groups: dict[str, list[ItemResult]] = {}
    for r in results:
        groups.setdefault(r.task or "-", []).append(r)
    return {task: _task_row(rows) for task, rows in sorted(groups.items())}


def _task_row(rows: Sequence[ItemResult]) -> dict[str, float | None]:
    local = np.array([float(r.local_correct) for r in rows])
    cloud = np.array([float(r.cloud_correct) for r in rows])
    scores = [r.auto_score for r in rows]
    oracle = metrics.apgr(metrics.oracle_scores(local, cloud), local, cloud)
    return {
        "n": float(len(rows)),
        "local_accuracy": round(float(local.mean()), 4),
        "mean_auto_score": round(sum(scores) / len(rows), 4),
        "skill": _round(metrics.skill(metrics.apgr(scores, local, cloud), oracle)),
        "auroc": _round(metrics.auroc(scores, local > 0.5)),
    }
