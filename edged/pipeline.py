"""InferencePipeline: one request from validated input to answer — route it, run it, say where and why.

The transport layers (gRPC today) call `answer()` and get text deltas followed by one final Answer; they never
decide anything themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from edged.domain import Answer, Delta, InferenceRequest, Mode, Provenance, Source, Timing, Usage
from edged.engine import FinishEvent, TokenEvent
from edged.errors import Cancelled, EdgedError, NoCloudLink
from edged.local import LocalAnswerer
from edged.telemetry.metrics import EdgedMetrics

logger = logging.getLogger(__name__)

CLOUD_MODES = (Mode.CLOUD_ONLY, Mode.PREFER_CLOUD)


class InferencePipeline:
    def __init__(self, device_id: str, local: LocalAnswerer, metrics: EdgedMetrics | None = None) -> None:
        self.device_id = device_id
        self.local = local
        self.metrics = metrics
        self.answered_local = 0
        self.answered_cloud = 0

    def route_reasons(self, request: InferenceRequest) -> list[str]:
        """Where the request goes and why; without a cloud link every answer is local."""
        reasons = [f"mode={request.mode.value}"]
        if request.mode == Mode.CLOUD_ONLY:
            raise NoCloudLink("no cloud link configured: CLOUD_ONLY needs `edged serve --broker URL`")
        if request.mode != Mode.LOCAL_ONLY:
            reasons.append("cloud_link=not_configured")
        return reasons

    async def answer(self, request: InferenceRequest) -> AsyncIterator[Delta | Answer]:
        """Text deltas as they are produced, then the final Answer; domain errors are raised."""
        try:
            async for item in self._answer(request):
                if isinstance(item, Answer) and self.metrics is not None:
                    self.metrics.record_answer(request.mode, item)
                yield item
        except EdgedError as exc:
            if self.metrics is not None:
                self.metrics.record_failure(request.mode, exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # the caller went away (cancelled, disconnected or past its deadline)
            if self.metrics is not None:
                self.metrics.record_failure(request.mode, Cancelled("the caller went away"))
            raise

    async def _answer(self, request: InferenceRequest) -> AsyncIterator[Delta | Answer]:
        reasons = self.route_reasons(request)
        degraded = request.mode == Mode.PREFER_CLOUD
        if degraded:
            reasons.append("fallback=local")
        first_token_at: float | None = None
        parts: list[str] = []
        async for event in self.local.events(request):
            if isinstance(event, TokenEvent):
                if first_token_at is None:
                    first_token_at = time.monotonic()
                if event.text:
                    parts.append(event.text)
                    yield Delta(event.text)
            elif isinstance(event, FinishEvent):
                self.answered_local += 1
                yield self._local_answer(request, "".join(parts), event, reasons, degraded, first_token_at)

    def _local_answer(
        self,
        request: InferenceRequest,
        text: str,
        finish: FinishEvent,
        reasons: list[str],
        degraded: bool,
        first_token_at: float | None,
    ) -> Answer:
        now = time.monotonic()
        engine = self.local.engine_for(request.model)
        return Answer(
            request_id=request.request_id,
            text=text,
            finish_reason=finish.finish_reason,
            provenance=Provenance(
                source=Source.LOCAL,
                model=engine.model_id,
                confidence=finish.confidence,
                reasons=(*reasons, "answered=local"),
                degraded=degraded,
                device_id=self.device_id,
                data_classes=request.data_classes,
            ),
            usage=Usage(finish.prompt_tokens, finish.completion_tokens),
            timing=Timing(
                queue_ms=finish.queue_ms,
                time_to_first_token_ms=((first_token_at or now) - request.received_at) * 1000.0,
                total_ms=(now - request.received_at) * 1000.0,
            ),
        )
