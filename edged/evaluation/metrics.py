"""Routing metrics over a labelled set: each item has a local quality, a cloud quality and a routing score.

A score is "how acceptable the local answer is likely to be": routing at cloud share c sends the c·n items
with the lowest scores to the cloud. Items with equal scores are routed in random order, so the curve is the
expectation over that order (linear within a tie group); constant scores therefore give random routing.

    quality(k)    mean quality when the k lowest-scored items go to the cloud, k = 0..n
    PGR(k)        (quality(k) - quality(0)) / (quality(n) - quality(0)): performance gap recovered
    APGR          the area under PGR over cloud shares 0..1 (trapezoids at k/n); random routing gives 0.5
    oracle        the score that routes exactly the items the cloud improves first (local - cloud quality)
    skill         (APGR - 0.5) / (oracle APGR - 0.5): 0 = random, 1 = perfect
    AUROC         probability that a random locally-correct item scores above a random locally-wrong one
    share at 95%  the smallest cloud share whose quality reaches 95% of always-cloud quality
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _arrays(*values: Sequence[float] | FloatArray) -> list[FloatArray]:
    arrays = [np.asarray(v, dtype=np.float64) for v in values]
    n = arrays[0].size
    if n == 0 or any(a.shape != (n,) for a in arrays):
        raise ValueError(f"need equal-length non-empty 1-d inputs, got shapes {[a.shape for a in arrays]}")
    return arrays


def quality_curve(
    scores: Sequence[float] | FloatArray,
    local: Sequence[float] | FloatArray,
    cloud: Sequence[float] | FloatArray,
) -> FloatArray:
    """quality(k) for k = 0..n (length n + 1), ties routed in expectation."""
    s, q_local, q_cloud = _arrays(scores, local, cloud)
    n = s.size
    order = np.argsort(s, kind="stable")
    s, gain = s[order], (q_cloud - q_local)[order]
    cumulative = np.empty(n + 1)
    cumulative[0] = 0.0
    start = 0
    while start < n:  # walk tie groups: inside one, each routed item gains the group's mean gain
        end = start + 1
        while end < n and s[end] == s[start]:
            end += 1
        mean_gain = float(gain[start:end].mean())
        steps = np.arange(1, end - start + 1)
        cumulative[start + 1 : end + 1] = cumulative[start] + steps * mean_gain
        start = end
    return (float(q_local.sum()) + cumulative) / n


def apgr(
    scores: Sequence[float] | FloatArray,
    local: Sequence[float] | FloatArray,
    cloud: Sequence[float] | FloatArray,
) -> float | None:
    """Average performance gap recovered; None when local and cloud quality are equal (no gap to recover)."""
    curve = quality_curve(scores, local, cloud)
    gap = curve[-1] - curve[0]
    if abs(gap) < 1e-12:
        return None
    pgr = (curve - curve[0]) / gap
    return float(((pgr[1:] + pgr[:-1]) / 2.0).mean())


def oracle_scores(local: Sequence[float] | FloatArray, cloud: Sequence[float] | FloatArray) -> FloatArray:
    q_local, q_cloud = _arrays(local, cloud)
    return q_local - q_cloud


def skill(apgr_value: float | None, oracle_apgr: float | None) -> float | None:
    if apgr_value is None or oracle_apgr is None or abs(oracle_apgr - 0.5) < 1e-12:
        return None
    return (apgr_value - 0.5) / (oracle_apgr - 0.5)


def auroc(
    scores: Sequence[float] | FloatArray, positive: Sequence[bool] | npt.NDArray[np.bool_]
) -> float | None:
    """Mann-Whitney AUROC (ties count half); None when either class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(positive, dtype=bool)
    pos, neg = s[labels], s[~labels]
    if pos.size == 0 or neg.size == 0:
        return None
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def _average_ranks(values: FloatArray) -> FloatArray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    while start < values.size:
        end = start + 1
        while end < values.size and sorted_values[end] == sorted_values[start]:
            end += 1
        ranks[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    return ranks


def cloud_share_at(
    scores: Sequence[float] | FloatArray,
    local: Sequence[float] | FloatArray,
    cloud: Sequence[float] | FloatArray,
    fraction: float = 0.95,
) -> float:
    """Smallest cloud share k/n whose quality reaches `fraction` of always-cloud quality."""
    curve = quality_curve(scores, local, cloud)
    target = fraction * curve[-1] - 1e-12
    reached = np.nonzero(curve >= target)[0]
    k = int(reached[0]) if reached.size else curve.size - 1
    return k / (curve.size - 1)


def quality_at_shares(
    scores: Sequence[float] | FloatArray,
    local: Sequence[float] | FloatArray,
    cloud: Sequence[float] | FloatArray,
    shares: Sequence[float],
) -> list[float]:
    """Quality at the given cloud shares (each rounded to the nearest whole item)."""
    curve = quality_curve(scores, local, cloud)
    n = curve.size - 1
    return [float(curve[round(share * n)]) for share in shares]
