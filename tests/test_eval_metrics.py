"""Routing metrics against hand computations.

The tiny set: scores s = [0.9, 0.2, 0.6, 0.4], local correct = [1, 0, 0, 1], cloud always correct.
Lowest score first: item 1 (gain 1), item 3 (gain 0), item 2 (gain 1), item 0 (gain 0), so
quality(k) = [0.5, 0.75, 0.75, 1.0, 1.0] and PGR(k) = [0, 0.5, 0.5, 1, 1];
APGR = mean of trapezoids (0.25, 0.5, 0.75, 1.0) = 0.625.
Oracle: quality = [0.5, 0.75, 1, 1, 1], PGR = [0, .5, 1, 1, 1], APGR = (0.25 + 0.75 + 1 + 1) / 4 = 0.75.
Skill = (0.625 - 0.5) / (0.75 - 0.5) = 0.5.
AUROC: positives {0.9, 0.4} vs negatives {0.2, 0.6}: 3 of 4 pairs ordered right = 0.75.
95% of always-cloud quality (0.95) is first reached at k = 3 (share 0.75); the oracle's at k = 2 (0.5).
"""

from __future__ import annotations

import numpy as np
import pytest

from edged.evaluation import metrics

SCORES = [0.9, 0.2, 0.6, 0.4]
LOCAL = [1.0, 0.0, 0.0, 1.0]
CLOUD = [1.0, 1.0, 1.0, 1.0]


def test_quality_curve_by_hand() -> None:
    assert metrics.quality_curve(SCORES, LOCAL, CLOUD).tolist() == [0.5, 0.75, 0.75, 1.0, 1.0]


def test_apgr_oracle_and_skill_by_hand() -> None:
    apgr = metrics.apgr(SCORES, LOCAL, CLOUD)
    oracle = metrics.apgr(metrics.oracle_scores(LOCAL, CLOUD), LOCAL, CLOUD)
    assert apgr == pytest.approx(0.625)
    assert oracle == pytest.approx(0.75)
    assert metrics.skill(apgr, oracle) == pytest.approx(0.5)


def test_auroc_by_hand() -> None:
    assert metrics.auroc(SCORES, [v > 0.5 for v in LOCAL]) == pytest.approx(0.75)
    assert metrics.auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts half
    assert metrics.auroc([0.1, 0.2], [True, True]) is None


def test_cloud_share_at_95_by_hand() -> None:
    assert metrics.cloud_share_at(SCORES, LOCAL, CLOUD) == pytest.approx(0.75)
    assert metrics.cloud_share_at(metrics.oracle_scores(LOCAL, CLOUD), LOCAL, CLOUD) == pytest.approx(0.5)


def test_ties_are_routed_in_expectation() -> None:
    # item 2 (0.1, gain 1) first, then the tie group {0, 1} with mean gain 0.5 per routed item
    curve = metrics.quality_curve([0.5, 0.5, 0.1], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert curve.tolist() == pytest.approx([1 / 3, 2 / 3, 5 / 6, 1.0])


def test_constant_and_random_scores_give_half() -> None:
    rng = np.random.default_rng(3)
    local = (rng.random(2000) < 0.3).astype(float)
    cloud = np.ones(2000)
    assert metrics.apgr(np.zeros(2000), local, cloud) == pytest.approx(0.5)
    assert metrics.apgr(rng.random(2000), local, cloud) == pytest.approx(0.5, abs=0.03)


def test_no_gap_means_no_apgr() -> None:
    assert metrics.apgr([0.1, 0.9], [1.0, 1.0], [1.0, 1.0]) is None
    assert metrics.skill(None, 0.75) is None


def test_quality_at_shares() -> None:
    assert metrics.quality_at_shares(SCORES, LOCAL, CLOUD, [0.0, 0.5, 1.0]) == [0.5, 0.75, 1.0]


def test_mismatched_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        metrics.quality_curve([0.1, 0.2], [1.0], [1.0, 1.0])
