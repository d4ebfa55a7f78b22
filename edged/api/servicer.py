"""The Inference service: decode, call the pipeline, encode. No decisions are made here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from edged.api.convert import (
    MODES,
    RequestLimits,
    decode_request,
    encode_answer,
    encode_last_chunk,
    encode_status,
)
from edged.api.error_map import stream_errors, unary_errors
from edged.domain import Delta, InferenceRequest, Mode
from edged.errors import DeadlineExceeded, EdgedError, InvalidRequest
from edged.pipeline.inference import DEADLINE_PASSED, InferencePipeline
from edged.service.snapshot import DaemonStatus
from edged.v1 import inference_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]


# edged ends a call at its deadline itself, a little early, so that the caller reads edged's DEADLINE_EXCEEDED
# and reason rather than gRPC's own "Deadline Exceeded" (sent when the client's timer fires first): a quarter of
# the time left, at most this much.
DEADLINE_MARGIN_S = 0.25


def answer_time(remaining_s: float) -> float:
    """Of the `remaining_s` the caller allows, the seconds edged gives the answer before it says it is late."""
    return remaining_s - min(DEADLINE_MARGIN_S, max(0.0, remaining_s) / 4)


def _late() -> DeadlineExceeded:
    return DeadlineExceeded(DEADLINE_PASSED)  # the pipeline counts and audits the request with the same words


class MalformedRequest:
    """Stands in for a request whose bytes did not parse (e.g. invalid UTF-8 in a string field)."""

    def __init__(self, type_name: str, error: str) -> None:
        self.message = f"request is not a valid {type_name}: {error}"


class InferenceServicer:
    def __init__(
        self,
        pipeline: InferencePipeline,
        limits: Callable[[], RequestLimits],
        status: Callable[[], DaemonStatus],
    ) -> None:
        self._pipeline = pipeline
        self._limits = limits
        self._status = status

    def _decode(self, request: pb.GenerateRequest | MalformedRequest, context: Context) -> InferenceRequest:
        try:
            if isinstance(request, MalformedRequest):
                raise InvalidRequest("request", request.message)
            remaining = context.time_remaining()
            deadline = time.monotonic() + answer_time(remaining) if remaining is not None else None
            return decode_request(request, self._limits(), deadline)
        except EdgedError as exc:
            mode = (
                MODES.get(request.mode, Mode.AUTO) if isinstance(request, pb.GenerateRequest) else Mode.AUTO
            )
            self._pipeline.record_refusal(mode, exc)
            raise

    @unary_errors
    async def Generate(  # noqa: N802 - gRPC method name
        self, request: pb.GenerateRequest | MalformedRequest, context: Context
    ) -> pb.GenerateResponse:
        decoded = self._decode(request, context)
        timeout = asyncio.timeout_at(decoded.deadline)
        try:
            async with timeout:
                answer = await self._pipeline.answer_whole(decoded)
        except TimeoutError:
            if not timeout.expired():
                raise  # some other timeout inside: not the call's deadline
            raise _late() from None
        return encode_answer(answer)

    @stream_errors
    async def GenerateStream(  # noqa: N802 - gRPC method name
        self, request: pb.GenerateRequest | MalformedRequest, context: Context
    ) -> AsyncIterator[pb.GenerateChunk]:
        decoded = self._decode(request, context)
        answer = self._pipeline.answer(decoded, streaming=True)
        async with contextlib.aclosing(answer):
            while True:
                # per item: a timeout around the yield would cancel gRPC's write, not the answer
                timeout = asyncio.timeout_at(decoded.deadline)
                try:
                    async with timeout:
                        item = await anext(answer)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timeout.expired():
                        raise
                    raise _late() from None
                if isinstance(item, Delta):
                    yield pb.GenerateChunk(request_id=decoded.request_id, delta=item.text)
                else:
                    yield encode_last_chunk(item)

    @unary_errors
    async def GetStatus(  # noqa: N802 - gRPC method name
        self, request: pb.GetStatusRequest | MalformedRequest, context: Context
    ) -> pb.StatusResponse:
        if isinstance(request, MalformedRequest):
            raise InvalidRequest("request", request.message)
        return encode_status(self._status())
