"""The daemon's real local path for evals: the batched llama.cpp engine (edged.engine.LlamaEngine), in process.

`EngineAnswerer.answer()` submits one greedy GenerationJob (the user prompt as one turn, the model's own chat
template, temperature 0) and blocks until its FinishEvent, collecting the text and per-token signals the
engine computes. It is safe to call from several threads at once: the engine decodes the jobs together as
sequences of one context, which is how `edged.evaluation.local.answer_all()` keeps every slot busy.
"""

from __future__ import annotations

import logging
import queue
from pathlib import Path

from edged.config.engine import EngineSettings
from edged.domain import Message, SamplingParams, TokenSignals
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine, TokenEvent
from edged.errors import EngineError
from edged.evaluation.local import LocalAnswer
from edged.models.registry import ModelRegistry
from edged.service.apply import start_engine

logger = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 600.0


class EngineAnswerer:
    def __init__(self, engine: LlamaEngine, slots: int) -> None:
        self._engine = engine
        self.slots = slots

    @classmethod
    def start(cls, model_id: str, settings: EngineSettings, models_dir: Path | None = None) -> EngineAnswerer:
        """Resolve the model (sha256-checked), load it into an engine and wait until it takes jobs."""
        registry = ModelRegistry.from_dir(models_dir)
        engine = start_engine(registry, settings.model_copy(update={"model": model_id}))  # the daemon's way
        return cls(engine, settings.slots)

    def close(self) -> None:
        self._engine.close()

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer:
        events: queue.Queue[EngineEvent] = queue.Queue()
        job = GenerationJob(
            request_id="eval",
            messages=(Message("user", prompt),),
            params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
            emit=events.put_nowait,  # called on the engine thread; put_nowait never blocks
        )
        self._engine.submit(job)
        parts: list[str] = []
        signals: list[TokenSignals] = []
        while True:
            try:
                event = events.get(timeout=ANSWER_TIMEOUT_S)
            except queue.Empty:
                self._engine.cancel(job)
                raise EngineError(f"no answer from the engine within {ANSWER_TIMEOUT_S:.0f}s") from None
            if isinstance(event, ErrorEvent):
                raise event.error
            if isinstance(event, TokenEvent):
                parts.append(event.text)
                if event.signals is not None:
                    signals.append(event.signals)
            elif isinstance(event, FinishEvent):
                return LocalAnswer("".join(parts), tuple(signals), event.prompt_tokens)
