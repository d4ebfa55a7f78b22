"""Running jobs on a real LlamaEngine from synchronous test code."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field

from edged.domain import Message, SamplingParams
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine, TokenEvent
from edged.engine.grammar import json_schema_grammar


@dataclass
class Collected:
    job: GenerationJob
    events: queue.Queue[EngineEvent] = field(default_factory=queue.Queue)
    tokens: list[TokenEvent] = field(default_factory=list)
    end: FinishEvent | ErrorEvent | None = None

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)

    def next_event(self, timeout: float = 60.0) -> EngineEvent:
        event = self.events.get(timeout=timeout)
        if isinstance(event, TokenEvent):
            self.tokens.append(event)
        else:
            self.end = event
        return event

    def wait(self, timeout: float = 120.0) -> FinishEvent | ErrorEvent:
        while self.end is None:
            self.next_event(timeout)
        return self.end


def submit(
    engine: LlamaEngine,
    prompt: str,
    max_tokens: int = 32,
    *,
    temperature: float = 0.0,
    seed: int | None = None,
    deadline: float | None = None,
    json_schema: str | None = None,
) -> Collected:
    box: queue.Queue[EngineEvent] = queue.Queue()
    job = GenerationJob(
        request_id=prompt[:16],
        messages=(Message("user", prompt),),
        params=SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed),
        emit=box.put,
        deadline=deadline,
        grammar=json_schema_grammar(json_schema) if json_schema else None,
    )
    engine.submit(job)
    return Collected(job=job, events=box)
