"""What callers hand the engine and what it hands back, across the thread boundary."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.domain import ConfidenceSummary, Message, SamplingParams, TokenSignals
from edged.errors import EdgedError

_job_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """New answer text (may be empty while a possible stop string is held back) and the token's signals."""

    text: str
    index: int
    signals: TokenSignals | None
    token: int = -1  # the token id (-1 for text flushed at the end)


@dataclass(frozen=True, slots=True)
class FinishEvent:
    """The sequence ended. finish_reason: "stop", "length" or "low_confidence" (the monitor stopped it)."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    confidence: ConfidenceSummary
    queue_ms: float
    cached_tokens: int = 0  # prompt tokens whose KV cells were kept from the slot's previous request


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    error: EdgedError


EngineEvent = TokenEvent | FinishEvent | ErrorEvent

# Called on the engine thread after each token with its signals and index; returning True stops the sequence
# with finish_reason "low_confidence". It must be quick and must not block.
ConfidenceMonitor = Callable[[TokenSignals, int], bool]


@dataclass(slots=True)
class GenerationJob:
    """One request for the engine. `emit` is called on the engine thread and must not block."""

    request_id: str
    messages: tuple[Message, ...]
    params: SamplingParams
    emit: Callable[[EngineEvent], None]
    deadline: float | None = None  # time.monotonic()
    monitor: ConfidenceMonitor | None = None
    grammar: str | None = None  # GBNF, already validated
    submitted_at: float = field(default_factory=time.monotonic)
    job_id: int = field(default_factory=lambda: next(_job_ids))


@dataclass(frozen=True, slots=True)
class EngineStats:
    model_id: str
    loaded: bool
    slots_total: int
    slots_busy: int
    queue_depth: int
    queue_capacity: int
    context_per_slot: int
    heartbeat_age_s: float
    alive: bool
