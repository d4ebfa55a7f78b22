"""The AUTO score: the router's prompt-only prediction combined with the local answer's confidence signals.

    AUTO score = sigmoid(bias + router_logit * logit(router score) + Σ weight_i * signal_i)

A logistic model over a handful of inputs, so it is cheap, monotone in each signal and explainable; its
weights are trained with the router (scripts/train_router.py, stored in the router manifest) and may be
overridden per profile (`edged calibrate`). Without a router score the router term is left out; without
confidence signals (a cloud answer, an engine without logits) only the router term remains.
"""

from __future__ import annotations

import math

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary

SIGNALS = (
    "mean_logprob",
    "min_logprob",
    "p10_logprob",
    "first_token_margin",
    "mean_margin",
    "mean_entropy",
    "log_tokens",
)
_EPSILON = 1e-4


def logit(probability: float) -> float:
    p = min(1.0 - _EPSILON, max(_EPSILON, probability))
    return math.log(p / (1.0 - p))


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def signal_values(confidence: ConfidenceSummary) -> dict[str, float]:
    """The AUTO score's inputs from one confidence summary (names as in ScoreWeights)."""
    return {
        "mean_logprob": confidence.mean_logprob,
        "min_logprob": confidence.min_logprob,
        "p10_logprob": confidence.p10_logprob,
        "first_token_margin": confidence.first_token_margin,
        "mean_margin": confidence.mean_margin,
        "mean_entropy": confidence.mean_entropy,
        "log_tokens": math.log1p(confidence.tokens),
    }


def auto_score(router_score: float | None, confidence: ConfidenceSummary, weights: ScoreWeights) -> float:
    """Probability that the local answer is acceptable, from everything known after (part of) generation."""
    z = weights.bias
    if router_score is not None:
        z += weights.router_logit * logit(router_score)
    if confidence.available:
        values = signal_values(confidence)
        z += sum(getattr(weights, name) * values[name] for name in SIGNALS)
    return sigmoid(z)
