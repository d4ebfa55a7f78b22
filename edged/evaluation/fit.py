"""Small, seeded model fitting in numpy, shared by scripts/train_router.py and `edged calibrate`.

fit_logistic()    L2-regularised logistic regression (Newton steps; deterministic)
fit_auto_weights() the AUTO score's ScoreWeights from router scores, confidence summaries and labels
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary
from edged.routing.score import SIGNALS, logit, signal_values

FloatArray = npt.NDArray[np.float64]


def _sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


def fit_logistic(x: FloatArray, y: FloatArray, l2: float, iterations: int = 50) -> tuple[FloatArray, float]:
    """Weights and intercept of an L2-regularised logistic regression (the intercept is not penalised)."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = _sigmoid(design @ w)
        grad = design.T @ (p - y) / n + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design / n + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return w[:-1], float(w[-1])


def auto_inputs(
    router_scores: Sequence[float | None], confidences: Sequence[ConfidenceSummary]
) -> FloatArray:
    """Rows of [logit(router score), signal values...] in ScoreWeights order."""
    rows = []
    for score, confidence in zip(router_scores, confidences, strict=True):
        values = signal_values(confidence) if confidence.available else dict.fromkeys(SIGNALS, 0.0)
        rows.append([0.0 if score is None else logit(score), *(values[name] for name in SIGNALS)])
    return np.asarray(rows, dtype=np.float64)


def fit_auto_weights(
    router_scores: Sequence[float | None],
    confidences: Sequence[ConfidenceSummary],
    correct: Sequence[bool],
    l2: float = 1e-3,
) -> ScoreWeights:
    """Fit the AUTO score on standardised inputs, then express the weights on the raw ones."""
    x = auto_inputs(router_scores, confidences)
    y = np.asarray(correct, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    w, b = fit_logistic((x - mean) / std, y, l2)
    raw = w / std
    bias = b - float((raw * mean).sum())
    names = ("router_logit", *SIGNALS)
    return ScoreWeights(
        bias=_bounded(bias), **{n: _bounded(float(v)) for n, v in zip(names, raw, strict=True)}
    )


def _bounded(value: float) -> float:
    """Round for a readable file, and keep within ScoreWeights' bounds."""
    if not math.isfinite(value):
        return 0.0
    return round(max(-100.0, min(100.0, value)), 6)
