"""A backend that answers with the conversation it received: a test and demo backend, never a real cloud.

It shows what reached the cloud side. edged's privacy tests use it to prove restoration: the worker receives
placeholders (`<PERSON_1>`), echoes them back, and the caller must get the original values. The answer is the
messages' contents joined by newlines, streamed in deltas of `chunk_chars` characters (each delta counts as
one token, so `max_tokens` cuts it short with finish reason "length"); a small `chunk_chars` splits
placeholders across deltas, as a real model's tokens do.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from pathlib import Path

from cloud_bridge.backends.base import BackendDone, BackendEvent, BackendJob
from cloud_bridge.config import EchoBackendSettings
from edged.domain import Usage


def echo_text(job: BackendJob) -> str:
    """What the echo backend answers for `job`: every message's content, in order, one per line."""
    return "\n".join(message.content for message in job.messages)


class EchoBackend:
    kind = "echo"
    model = "echo"

    def __init__(self, settings: EchoBackendSettings, state_dir: Path | None = None) -> None:
        self._chunk = settings.chunk_chars
        self.calls = 0

    @property
    def alive(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stream(self, job: BackendJob) -> AsyncGenerator[BackendEvent, None]:
        self.calls += 1
        text = echo_text(job)
        deltas = [text[i : i + self._chunk] for i in range(0, len(text), self._chunk)]
        sent = deltas[: job.params.max_tokens]
        for delta in sent:
            yield delta
        finish = "length" if len(sent) < len(deltas) else "stop"
        prompt = math.ceil(len(text) / self._chunk)
        yield BackendDone(finish, self.model, Usage(prompt_tokens=prompt, completion_tokens=len(sent)))

    async def close(self) -> None:
        return None
