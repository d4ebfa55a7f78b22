"""A backend that sleeps a fixed time and answers fixed text: the stand-in for benchmarks and tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from cloud_bridge.backends.base import BackendDone, BackendEvent, BackendJob
from cloud_bridge.config import SleepBackendSettings
from edged.domain import Usage


class SleepBackend:
    kind = "sleep"
    model = "sleep"

    def __init__(self, settings: SleepBackendSettings, state_dir: Path | None = None) -> None:
        self._settings = settings
        self.calls = 0

    @property
    def alive(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def stream(self, job: BackendJob) -> AsyncGenerator[BackendEvent, None]:
        self.calls += 1
        if self._settings.delay_s > 0:
            await asyncio.sleep(self._settings.delay_s)
        words = self._settings.text.split(" ")
        produced = 0
        for index, word in enumerate(words):
            if produced >= job.params.max_tokens:
                break
            produced += 1
            yield word if index == 0 else " " + word
        prompt_words = sum(len(message.content.split()) for message in job.messages)
        finish = "length" if produced < len(words) else "stop"
        yield BackendDone(finish, self.model, Usage(prompt_tokens=prompt_words, completion_tokens=produced))

    async def close(self) -> None:
        return None
