"""edged.client: Client and AsyncClient, for apps on the device, over the daemon's gRPC socket.

    with Client() as edged:                      # the default socket, as `edged ask` finds it
        answer = edged.generate("What is the capital of France?", max_tokens=32)
        print(answer.text, answer.provenance.source, answer.usage.completion_tokens, answer.timing.total_ms)
        for item in edged.stream("Tell me a story."):
            print(item.text if isinstance(item, Delta) else item.provenance.reasons)

Results are edged's domain types (edged.domain.Answer and Delta, as the pipeline produces them). A refused call
raises the domain error of its status (edged.errors: InvalidRequest naming the field, ModelNotFound, LimitReached,
DeadlineExceeded, Cancelled, NoCloudLink, Unavailable, SensitiveDataBlocked; EngineError for anything else); a
daemon that cannot be reached raises Unreachable. Every call has a deadline (`timeout`, seconds).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from edged.api.convert import decode_answer
from edged.api.error_map import error_from_status
from edged.config.paths import default_socket_path
from edged.domain import Answer, Delta, Message, Mode
from edged.errors import EdgedError, InvalidRequest, Unavailable
from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc

__all__ = ["AsyncClient", "Client", "GenerateOptions", "Unreachable", "target"]

DEFAULT_TIMEOUT_S = 120.0


class Unreachable(Unavailable):
    """No daemon answers at the address (is `edged serve` running?)."""


def target(socket: Path | str | None = None, tcp: str | None = None) -> str:
    """The gRPC target: `unix:PATH` (the default socket when neither is given) or HOST:PORT."""
    return tcp if tcp else f"unix:{socket or default_socket_path()}"


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """Everything a request may set besides its text (the GenerateRequest fields; unset: the daemon's default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: Sequence[str] = ()
    model: str = ""
    json_schema: str | dict[str, Any] | None = None
    mode: Mode | str = Mode.AUTO
    sensitive: bool = False
    data_classes: Sequence[str] = ()
    router_threshold: float | None = None
    request_id: str = ""

    def request(self, prompt: str | None, messages: Sequence[Message] | None) -> pb.GenerateRequest:
        schema = self.json_schema
        try:
            mode = Mode(str(self.mode).upper().replace("-", "_"))
        except ValueError:
            raise InvalidRequest("mode", f"{self.mode!r} is not one of {', '.join(Mode)}") from None
        msg = pb.GenerateRequest(
            prompt=prompt or "",
            messages=[pb.ChatMessage(role=m.role, content=m.content) for m in messages or ()],
            stop=list(self.stop),
            model=self.model,
            json_schema=json.dumps(schema) if isinstance(schema, dict) else schema or "",
            mode=pb.Mode.Value(mode.value),
            sensitive=self.sensitive,
            data_classes=list(self.data_classes),
            request_id=self.request_id,
        )
        for name in ("max_tokens", "temperature", "top_p", "seed", "router_threshold"):
            if (value := getattr(self, name)) is not None:
                setattr(msg, name, value)
        return msg


def _error(exc: grpc.RpcError, where: str) -> EdgedError:
    code: grpc.StatusCode = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        return Unreachable(f"cannot reach edged at {where}: is `edged serve` running? ({details})")
    return error_from_status(code, details)


def _options(options: GenerateOptions | None, fields: dict[str, Any]) -> GenerateOptions:
    return GenerateOptions(**fields) if options is None else options


class _Stream:
    """Turns GenerateStream chunks into Delta items and one final Answer."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def items(self, chunk: pb.GenerateChunk) -> Iterator[Delta | Answer]:
        if chunk.delta:
            self.parts.append(chunk.delta)
            yield Delta(chunk.delta)
        if chunk.done:
            yield decode_answer(chunk, "".join(self.parts))


class Client:
    """A blocking client; one channel, safe to share between threads."""

    def __init__(
        self, socket: Path | str | None = None, *, tcp: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.target = target(socket, tcp)
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.target)
        self._stub: Any = inference_pb2_grpc.InferenceStub(self._channel)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        options: GenerateOptions | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Answer:
        """One whole answer; `fields` are GenerateOptions' (or pass `options`)."""
        request = _options(options, fields).request(prompt, messages)
        try:
            response: pb.GenerateResponse = self._stub.Generate(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        return decode_answer(response, response.text)

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        options: GenerateOptions | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Generator[Delta | Answer, None, None]:
        """Text deltas as they are produced, then the Answer; leaving the loop early cancels the generation."""
        request = _options(options, fields).request(prompt, messages)
        call = self._stub.GenerateStream(request, timeout=timeout or self.timeout)
        stream = _Stream()
        try:
            for chunk in call:
                yield from stream.items(chunk)
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        finally:
            call.cancel()  # a no-op once the stream ended

    def status(self, timeout: float = 10.0) -> pb.StatusResponse:
        try:
            response: pb.StatusResponse = self._stub.GetStatus(pb.GetStatusRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        return response

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio client (grpc.aio); create and use it on one event loop."""

    def __init__(
        self, socket: Path | str | None = None, *, tcp: str | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.target = target(socket, tcp)
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(self.target)
        self._stub: Any = inference_pb2_grpc.InferenceStub(self._channel)

    async def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        options: GenerateOptions | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> Answer:
        request = _options(options, fields).request(prompt, messages)
        try:
            response: pb.GenerateResponse = await self._stub.Generate(
                request, timeout=timeout or self.timeout
            )
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        return decode_answer(response, response.text)

    async def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        options: GenerateOptions | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> AsyncGenerator[Delta | Answer, None]:
        request = _options(options, fields).request(prompt, messages)
        call = self._stub.GenerateStream(request, timeout=timeout or self.timeout)
        stream = _Stream()
        try:
            async for chunk in call:
                for item in stream.items(chunk):
                    yield item
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        finally:
            call.cancel()

    async def status(self, timeout: float = 10.0) -> pb.StatusResponse:
        try:
            response: pb.StatusResponse = await self._stub.GetStatus(pb.GetStatusRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise _error(exc, self.target) from exc
        return response

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
