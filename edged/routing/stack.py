"""The stacked AUTO score of a finished local answer: the answer model's score, the confidence signals and the
transfer cues, combined by one small logistic model.

    AUTO score = sigmoid(bias + answer_logit * logit(answer-model score) + Σ w_i * input_i)

over the inputs STACK_INPUTS (the 7 confidence signals of edged.routing.score, then the 12 cues of
edged.routing.cues). The weights are in the router manifest's `[answer.stack]` table, on the inputs' own
scale. scripts/train_router.py fits them on out-of-fold answer-model scores whose folds hold out one public
dataset at a time (the in-distribution set is split at random), so the weight on the answer model says how
far its hashed word features carry over to a kind of traffic it was not trained on, and the cues take over
where they do not (docs/routing.md, "the shipped design").
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from edged.config.base import StrictModel
from edged.domain import ConfidenceSummary
from edged.routing.cues import CUE_NAMES, transfer_cues
from edged.routing.score import SIGNALS, logit, sigmoid, signal_values

STACK_INPUTS = (*SIGNALS, *CUE_NAMES)
_Weight = Annotated[float, Field(ge=-1000.0, le=1000.0)]


class StackWeights(StrictModel):
    bias: _Weight = Field(description="Intercept.")
    answer_logit: _Weight = Field(description="Weight of logit(answer-model score).")
    inputs: dict[str, _Weight] = Field(
        description="Weight of each confidence signal and transfer cue, by name (all of STACK_INPUTS)."
    )

    @field_validator("inputs")
    @classmethod
    def _all_inputs(cls, value: dict[str, float]) -> dict[str, float]:
        missing = [name for name in STACK_INPUTS if name not in value]
        unknown = [name for name in value if name not in STACK_INPUTS]
        if missing or unknown:
            raise ValueError(
                f"needs exactly the inputs {list(STACK_INPUTS)}; missing {missing}, unknown {unknown}"
            )
        return value


def stack_inputs(prompt: str, reply: str, confidence: ConfidenceSummary) -> list[float]:
    """The stack's inputs for one finished answer, in STACK_INPUTS order."""
    values = signal_values(confidence)
    return [*(values[name] for name in SIGNALS), *transfer_cues(prompt, reply)]


def stacked_score(
    answer_score: float, prompt: str, reply: str, confidence: ConfidenceSummary, weights: StackWeights
) -> float:
    """Probability that the finished local answer is acceptable."""
    values = stack_inputs(prompt, reply, confidence)
    z = weights.bias + weights.answer_logit * logit(answer_score)
    z += sum(weights.inputs[name] * v for name, v in zip(STACK_INPUTS, values, strict=True))
    return sigmoid(z)
