"""LocalAnswerer: the asyncio side of the engine — submit a request, receive its events in order, cancel on exit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from edged.domain import InferenceRequest
from edged.engine import ConfidenceMonitor, EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine
from edged.engine.grammar import json_schema_grammar
from edged.errors import ModelNotFound, NotReady


class LocalAnswerer:
    """Runs requests on the loaded local engines (one per model id)."""

    def __init__(self, engines: Mapping[str, LlamaEngine], default_model: str) -> None:
        self._engines = engines
        self.default_model = default_model

    def engine_for(self, model: str | None) -> LlamaEngine:
        model_id = model or self.default_model
        if not self._engines:
            raise NotReady("the local model is still loading; retry shortly")
        try:
            return self._engines[model_id]
        except KeyError:
            loaded = ", ".join(sorted(self._engines)) or "none"
            raise ModelNotFound(
                f"model {model_id!r} is not served on this device (loaded: {loaded})"
            ) from None

    def engines(self) -> dict[str, LlamaEngine]:
        """The engines serving now, by model id (a copy)."""
        return dict(self._engines)

    def replace_engines(self, engines: Mapping[str, LlamaEngine], default_model: str) -> None:
        """Swap in newly loaded engines (a profile changed the model); requests already running keep theirs."""
        self._engines = engines
        self.default_model = default_model

    async def events(
        self, request: InferenceRequest, monitor: ConfidenceMonitor | None = None
    ) -> AsyncGenerator[EngineEvent, None]:
        """The engine's events for this request, ending with a FinishEvent; errors are raised.

        Leaving the iteration early (the caller cancelled, the deadline passed, a consumer stopped reading)
        cancels the job, which frees its slot within one engine step.
        """
        engine = self.engine_for(request.model)
        grammar = json_schema_grammar(request.params.json_schema) if request.params.json_schema else None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent] = asyncio.Queue()

        def emit(event: EngineEvent) -> None:  # engine thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        job = GenerationJob(
            request_id=request.request_id,
            messages=request.messages,
            params=request.params,
            emit=emit,
            deadline=request.deadline,
            monitor=monitor,
            grammar=grammar,
        )
        engine.submit(job)
        finished = False
        try:
            while True:
                event = await queue.get()
                if isinstance(event, ErrorEvent):
                    finished = True
                    raise event.error
                yield event
                if isinstance(event, FinishEvent):
                    finished = True
                    return
        finally:
            if not finished:
                engine.cancel(job)
