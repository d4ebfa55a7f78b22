"""The eval runner end to end on a tiny hand-made set (scripted local answers at the answerer seam, a fixed
router at the scorer seam): its report gives the APGR, AUROC and shares a hand computation gives.

Items 0..3: local replies right, wrong, wrong, right; router scores 0.9, 0.2, 0.6, 0.4 (the set worked by
hand in test_eval_metrics: APGR 0.625, oracle 0.75, skill 0.5, AUROC 0.75, share at 95% 0.75 vs 0.5).
Confidence (mean logprob) -0.1, -2.0, -0.5, -3.0: lowest first the order is 3, 1, 2, 0 with gains 0, 1, 1, 0,
so quality is [0.5, 0.5, 0.75, 1, 1], PGR [0, 0, .5, 1, 1], APGR (0 + .25 + .75 + 1) / 4 = 0.5; AUROC:
positives {-0.1, -3.0} against negatives {-2.0, -0.5}, 2 of 4 pairs ordered right = 0.5.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from edged.cli.eval import render
from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.evaluation.items import EvalItem
from edged.evaluation.local import LocalAnswer, ScriptedAnswerer
from edged.evaluation.runner import ReferenceCloud, report, run_items
from edged.routing.score import auto_score

ITEMS = [
    EvalItem("i0", "What is 2 + 2?", "4", "number"),
    EvalItem("i1", "What is 17 * 23?", "391", "number"),
    EvalItem("i2", "Capital of Velbel?", "Velpo", "contains"),
    EvalItem("i3", "Is 7 prime?", "yes", "choice", ("yes", "no")),
]
REPLIES = {"i0": "2 + 2 = 4", "i1": "17 * 23 = 381", "i2": "It is Sindra.", "i3": "Yes."}
LOGPROBS = {"i0": -0.1, "i1": -2.0, "i2": -0.5, "i3": -3.0}
ROUTER = {"i0": 0.9, "i1": 0.2, "i2": 0.6, "i3": 0.4}


class FixedRouter:
    def score(self, prompt: str) -> float:
        item = next(i for i in ITEMS if i.prompt == prompt)
        return ROUTER[item.id]


def _answerer() -> ScriptedAnswerer:
    signals = {i.id: (TokenSignals(LOGPROBS[i.id], 1.0, 1.0),) * 3 for i in ITEMS}
    return ScriptedAnswerer({i.prompt: LocalAnswer(REPLIES[i.id], signals[i.id]) for i in ITEMS})


@pytest.mark.parametrize("concurrency", [1, 3])
def test_tiny_set_report_matches_hand_computation(concurrency: int) -> None:
    results = run_items(
        ITEMS,
        _answerer(),
        router=FixedRouter(),
        weights=ScoreWeights(bias=0.0, router_logit=1.0),  # AUTO score = router score
        cloud=ReferenceCloud(),
        max_tokens=16,
        concurrency=concurrency,
    )
    assert [r.id for r in results] == ["i0", "i1", "i2", "i3"]
    assert [r.local_correct for r in results] == [True, False, False, True]
    summary = report(results)
    assert summary["n"] == 4
    assert summary["local_accuracy"] == 0.5
    assert summary["cloud_accuracy"] == 1.0
    assert summary["apgr"] == pytest.approx(0.625)
    assert summary["apgr_oracle"] == pytest.approx(0.75)
    assert summary["skill"] == pytest.approx(0.5)
    assert summary["apgr_by_signal"] == pytest.approx({"router": 0.625, "confidence": 0.5, "auto": 0.625})
    assert summary["auroc"] == pytest.approx({"router": 0.75, "confidence": 0.5, "auto": 0.75})
    assert summary["cloud_share_at_95"] == pytest.approx(0.75)
    assert summary["cloud_share_at_95_oracle"] == pytest.approx(0.5)
    assert summary["curve"]["oracle"] == [0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_progress_is_reported_for_every_item() -> None:
    seen: list[tuple[int, int]] = []
    run_items(
        ITEMS,
        _answerer(),
        router=None,
        weights=ScoreWeights(),
        cloud=ReferenceCloud(),
        max_tokens=16,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


class WrongCloud:
    """A live cloud stand-in that answers every item wrongly (at the CloudAnswerer seam)."""

    def answer(self, prompt: str, max_tokens: int) -> str:
        return "I do not know."


def test_a_live_cloud_is_graded_too() -> None:
    results = run_items(
        ITEMS, _answerer(), router=None, weights=ScoreWeights(), cloud=WrongCloud(), max_tokens=16
    )
    summary = report(results)
    assert summary["cloud_accuracy"] == 0.0
    assert "router" not in summary["auroc"]  # no router ran


def test_text_report_shows_signals_tasks_and_curve() -> None:
    results = run_items(
        ITEMS,
        _answerer(),
        router=FixedRouter(),
        weights=ScoreWeights(bias=0.0, router_logit=1.0),
        cloud=ReferenceCloud(),
        max_tokens=16,
    )
    summary = report(results)
    summary["cloud"] = "reference"
    text = render(summary)
    assert "items: 4   local accuracy: 0.500" in text
    assert "router       0.625   0.500   0.750" in text
    assert "cloud share for 95% of always-cloud quality:  0.750 (AUTO),  0.500 (oracle), +25.0 points" in text
    assert "oracle     0.500 0.500 0.750 0.750 1.000" in text


def test_per_task_skill_and_auroc() -> None:
    """Items 0, 1 (task "sums"): right at 0.9, wrong at 0.2, ranked right; items 2, 3 ("facts"): wrong at
    0.6, right at 0.4, ranked backwards."""
    tasks = {"i0": "sums", "i1": "sums", "i2": "facts", "i3": "facts"}
    items = [dataclasses.replace(i, task=tasks[i.id]) for i in ITEMS]
    results = run_items(
        items,
        _answerer(),
        router=FixedRouter(),
        weights=ScoreWeights(bias=0.0, router_logit=1.0),
        cloud=ReferenceCloud(),
        max_tokens=16,
    )
    by_task = report(results)["by_task"]
    assert by_task["sums"]["auroc"] == 1.0
    assert by_task["sums"]["skill"] == pytest.approx(1.0)
    assert by_task["facts"]["auroc"] == 0.0
    assert by_task["facts"]["skill"] is not None
    assert by_task["facts"]["skill"] < 0.0
    summary = report(results)
    summary["cloud"] = "reference"
    assert "sums                2      0.500            0.550   1.000   1.000" in render(summary)


class AnsweringRouter(FixedRouter):
    """A router with an answer model at the seam: it ranks the finished answers perfectly."""

    ANSWER: ClassVar[dict[str, float]] = {"i0": 0.8, "i1": 0.1, "i2": 0.2, "i3": 0.7}

    def score_answer(self, prompt: str, reply: str, confidence: ConfidenceSummary) -> float | None:
        item = next(i for i in ITEMS if i.prompt == prompt)
        assert reply == REPLIES[item.id]
        assert confidence.available
        return self.ANSWER[item.id]

    def finished_score(
        self,
        prompt: str,
        reply: str,
        router_score: float | None,
        confidence: ConfidenceSummary,
        weights: ScoreWeights,
    ) -> float:
        return auto_score(self.score_answer(prompt, reply, confidence), confidence, weights)


def test_the_auto_score_stacks_the_answer_models_score() -> None:
    results = run_items(
        ITEMS,
        _answerer(),
        router=AnsweringRouter(),
        weights=ScoreWeights(bias=0.0, router_logit=1.0),  # AUTO score = the answer model's score
        cloud=ReferenceCloud(),
        max_tokens=16,
    )
    assert [r.answer_score for r in results] == [0.8, 0.1, 0.2, 0.7]
    summary = report(results)
    assert summary["auroc"] == pytest.approx({"router": 0.75, "confidence": 0.5, "answer": 1.0, "auto": 1.0})
    assert summary["apgr"] == pytest.approx(0.75)  # the oracle's: items 1 and 2 go first
    assert summary["skill"] == pytest.approx(1.0)
    assert summary["cloud_share_at_95"] == pytest.approx(0.5)
