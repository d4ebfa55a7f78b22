"""[routing]: when AUTO and PREFER_LOCAL requests are answered locally and when they escalate.

Two scores, both "probability that the local answer is acceptable":
  router score   from the prompt alone, before generation (the learned pre-router in models/router/);
  AUTO score     after generation: the router score combined with the answer's confidence signals,
                 sigmoid(bias + router_logit * logit(router score) + sum of signal weights * signals).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edged.config.base import StrictModel

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Weight = Annotated[float, Field(ge=-100.0, le=100.0)]


class ScoreWeights(StrictModel):
    """Weights of the AUTO score (a logistic model over the router score and the confidence summary)."""

    bias: Weight = Field(default=0.0, description="Intercept (log-odds).")
    router_logit: Weight = Field(default=1.0, description="Weight of logit(router score).")
    mean_logprob: Weight = Field(default=0.0, description="Weight of the mean token log-probability.")
    min_logprob: Weight = Field(default=0.0, description="Weight of the lowest token log-probability.")
    p10_logprob: Weight = Field(
        default=0.0, description="Weight of the 10th-percentile token log-probability."
    )
    first_token_margin: Weight = Field(default=0.0, description="Weight of the first token's top-2 margin.")
    mean_margin: Weight = Field(default=0.0, description="Weight of the mean top-2 margin.")
    mean_entropy: Weight = Field(default=0.0, description="Weight of the mean next-token entropy (nats).")
    log_tokens: Weight = Field(default=0.0, description="Weight of log(1 + answer tokens).")


class RoutingSettings(StrictModel):
    router_threshold: Probability = Field(
        default=0.5,
        description="AUTO answers locally when the pre-generation router predicts at least this probability "
        "that the local answer is acceptable (a request may override it).",
    )
    confidence_threshold: Probability = Field(
        default=0.5,
        description="AUTO and PREFER_LOCAL escalate a local answer whose AUTO score (router score combined "
        "with the answer's confidence signals) is below this.",
    )
    score_weights: ScoreWeights | None = Field(
        default=None,
        description="Weights of the AUTO score; unset means the weights trained with the router model "
        "(its manifest). `edged calibrate` writes them.",
    )
    cascade: bool = Field(
        default=True, description="Stop a streaming local answer early when its confidence collapses."
    )
    cascade_tokens: Annotated[int, Field(ge=1, le=256)] = Field(
        default=8, description="Tokens (k) the cascade monitor waits for before it judges the stream."
    )
    cascade_threshold: Probability = Field(
        default=0.15,
        description="After cascade_tokens tokens, a stream whose AUTO score over the tokens so far is below "
        "this escalates at once (a collapse, well below confidence_threshold).",
    )
    router_model: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")] = Field(
        default="router", description="Directory under the models directory that holds the router manifest."
    )
