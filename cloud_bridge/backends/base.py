"""The backend interface: start, stream one job, close — and the values a job goes in and comes out as."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from edged.domain import Message, SamplingParams, Usage


@dataclass(frozen=True, slots=True)
class BackendJob:
    """One validated request, as a backend sees it. `deadline` is a time.monotonic() value."""

    request_id: str
    messages: tuple[Message, ...]
    params: SamplingParams
    model: str | None
    deadline: float


@dataclass(frozen=True, slots=True)
class BackendDone:
    """The end of an answer; the text came before it as str deltas."""

    finish_reason: str  # "stop" or "length"
    model: str
    usage: Usage


BackendEvent = str | BackendDone


class Backend(Protocol):
    """Where a worker's answers come from. `stream` yields text deltas, then exactly one BackendDone.

    Errors are edged's: CloudUnavailable (the server is down or busy), InvalidRequest (it refused the
    request), EngineError (it broke). `kind` and `model` name the backend in presence messages and answers."""

    kind: str
    model: str

    @property
    def alive(self) -> bool:
        """False once the backend cannot answer any more (its engine died): the worker then exits."""
        ...

    async def start(self) -> None: ...

    def stream(self, job: BackendJob) -> AsyncGenerator[BackendEvent, None]: ...

    async def close(self) -> None: ...
