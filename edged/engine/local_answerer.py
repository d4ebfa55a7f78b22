"""LocalAnswerer: the asyncio side of the engine — submit a request, receive its events in order, cancel on exit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Mapping

from edged.domain import InferenceRequest
from edged.engine import (
    ConfidenceMonitor,
    EngineEvent,
    ErrorEvent,
    FinishEvent,
    GenerationJob,
    LlamaEngine,
    TokenEvent,
)
from edged.engine.grammar import json_schema_grammar
from edged.errors import ModelNotFound, NotReady


class EventRelay:
    """Carries one job's events from the engine thread to the event loop, joining text on the way.

    The engine calls `put` once per token. Waking the event loop, a trip through the pipeline and a gRPC message
    per token cost about as much CPU again as the token's own Python work, taken from the cores llama.cpp decodes
    on; so consecutive token events are joined into one:
      - always while the loop has not yet taken the previous ones (no latency is added: the caller is busy);
      - and, after the first text, while less than `interval_s` has passed since the loop was last woken (a
        held token waits at most `interval_s` plus one engine step; 0 wakes the loop for every token).
    The end of a job (its FinishEvent or ErrorEvent) always wakes the loop at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._pending: list[EngineEvent] = []
        self._scheduled = False
        self._text_out = False
        self._woken_at = 0.0
        self._ready = asyncio.Event()

    def put(self, event: EngineEvent) -> None:  # the engine thread
        with self._lock:
            self._pending.append(event)
            if self._scheduled:
                return
            now = time.monotonic()
            if isinstance(event, TokenEvent):
                if self._text_out and now - self._woken_at < self._interval_s:
                    return  # held: a later event (at the latest the job's end) wakes the loop
                self._text_out = self._text_out or bool(event.text)
            self._scheduled = True
            self._woken_at = now
        self._loop.call_soon_threadsafe(self._ready.set)

    async def take(self) -> list[EngineEvent]:
        """The events that arrived since the last call (at least one), consecutive token events joined."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            with self._lock:
                events, self._pending = self._pending, []
                self._scheduled = False
            if events:
                return _join_tokens(events)


def _join_tokens(events: list[EngineEvent]) -> list[EngineEvent]:
    """Runs of TokenEvents become one (their text joined; the last token's index, signals and id)."""
    joined: list[EngineEvent] = []
    run: list[TokenEvent] = []
    for event in [*events, None]:
        if isinstance(event, TokenEvent):
            run.append(event)
            continue
        if len(run) == 1:
            joined.append(run[0])
        elif run:
            last = run[-1]
            joined.append(
                TokenEvent(
                    text="".join(e.text for e in run),
                    index=last.index,
                    signals=last.signals,
                    token=last.token,
                )
            )
        run = []
        if event is not None:
            joined.append(event)
    return joined


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
        self,
        request: InferenceRequest,
        monitor: ConfidenceMonitor | None = None,
        *,
        stream_interval_s: float = 0.0,
    ) -> AsyncGenerator[EngineEvent, None]:
        """The engine's events for this request, ending with a FinishEvent; errors are raised.

        Consecutive token events may arrive joined into one (see EventRelay; `stream_interval_s` is its
        interval, the config's api.stream_interval_ms). Leaving the iteration early (the
        caller cancelled, the deadline passed, a consumer stopped reading) cancels the job, which frees its slot
        within one engine step.
        """
        engine = self.engine_for(request.model)
        grammar = json_schema_grammar(request.params.json_schema) if request.params.json_schema else None
        relay = EventRelay(asyncio.get_running_loop(), stream_interval_s)
        job = GenerationJob(
            request_id=request.request_id,
            messages=request.messages,
            params=request.params,
            emit=relay.put,
            deadline=request.deadline,
            monitor=monitor,
            grammar=grammar,
        )
        engine.submit(job)
        finished = False
        try:
            while True:
                for event in await relay.take():
                    # a finished job needs no cancel, also when the caller stops reading at its FinishEvent
                    finished = isinstance(event, ErrorEvent | FinishEvent)
                    if isinstance(event, ErrorEvent):
                        raise event.error
                    yield event
                    if finished:
                        return
        finally:
            if not finished:
                engine.cancel(job)
