"""The request and answer types every layer of edged speaks (the gRPC and MQTT layers convert to and from them)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    AUTO = "AUTO"
    LOCAL_ONLY = "LOCAL_ONLY"
    PREFER_LOCAL = "PREFER_LOCAL"
    PREFER_CLOUD = "PREFER_CLOUD"
    CLOUD_ONLY = "CLOUD_ONLY"


class Source(StrEnum):
    LOCAL = "LOCAL"
    CLOUD = "CLOUD"


ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    json_schema: str | None = None


@dataclass(frozen=True, slots=True)
class InferenceRequest:
    """One validated request. Times are time.monotonic() seconds."""

    request_id: str
    messages: tuple[Message, ...]
    params: SamplingParams
    model: str | None = None
    mode: Mode = Mode.AUTO
    sensitive: bool = False
    data_classes: tuple[str, ...] = ()
    router_threshold: float | None = None
    received_at: float = 0.0
    deadline: float | None = None

    def time_left(self, now: float) -> float | None:
        return None if self.deadline is None else self.deadline - now


@dataclass(frozen=True, slots=True)
class TokenSignals:
    """Confidence signals of one generated token, from the model's own next-token distribution."""

    logprob: float  # log-probability of the chosen token
    margin: float  # log-probability gap between the best and second-best token
    entropy: float  # entropy of the distribution (nats)


@dataclass(frozen=True, slots=True)
class ConfidenceSummary:
    tokens: int = 0
    mean_logprob: float = 0.0
    min_logprob: float = 0.0
    first_token_margin: float = 0.0
    mean_margin: float = 0.0
    mean_entropy: float = 0.0
    p10_logprob: float = 0.0
    available: bool = False

    @classmethod
    def of(cls, signals: list[TokenSignals]) -> ConfidenceSummary:
        """Aggregate per-token signals of one answer."""
        if not signals:
            return cls()
        logprobs = sorted(s.logprob for s in signals)
        n = len(signals)
        tail_index = max(0, math.ceil(0.1 * n) - 1)
        return cls(
            tokens=n,
            mean_logprob=sum(logprobs) / n,
            min_logprob=logprobs[0],
            first_token_margin=signals[0].margin,
            mean_margin=sum(s.margin for s in signals) / n,
            mean_entropy=sum(s.entropy for s in signals) / n,
            p10_logprob=logprobs[tail_index],
            available=True,
        )


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Timing:
    queue_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Provenance:
    source: Source
    model: str
    confidence: ConfidenceSummary = field(default_factory=ConfidenceSummary)
    reasons: tuple[str, ...] = ()
    degraded: bool = False
    device_id: str = ""
    router_score: float | None = None
    redacted: bool = False
    data_classes: tuple[str, ...] = ()
    # What the cloud's answer made up, by entity type: values that occur nowhere in the conversation (left in
    # the text) and placeholders that stand for no value (shown as `[unknown email address]`).
    invented: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    request_id: str
    text: str
    finish_reason: str
    provenance: Provenance
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of answer text, as it is produced."""

    text: str
