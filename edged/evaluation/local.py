"""The local side of an eval: something that answers a prompt on the device and reports per-token signals.

`LocalAnswerer` is the seam: `edged.evaluation.engine.EngineAnswerer` is the daemon's real engine,
`ScriptedAnswerer` replays fixed replies (for tests of the runner and metrics). `answer_all()` answers many
prompts, several in flight at once when the answerer can batch them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

from edged.domain import TokenSignals
from edged.errors import EngineError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    text: str
    signals: tuple[TokenSignals, ...] = field(default=())
    prompt_tokens: int = 0


class LocalAnswerer(Protocol):
    """Answers one user prompt on the device, greedily, with at most `max_tokens` tokens."""

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer: ...


class ScriptedAnswerer:
    """Replays a fixed reply (and signals) per prompt: the fake at the answerer seam, for tests."""

    def __init__(self, replies: Mapping[str, LocalAnswer]) -> None:
        self._replies = dict(replies)

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer:
        try:
            return self._replies[prompt]
        except KeyError:
            raise EngineError(f"no scripted reply for a prompt of {len(prompt)} characters") from None


def answer_all(
    answerer: LocalAnswerer,
    prompts: Sequence[str],
    max_tokens: int,
    *,
    concurrency: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[LocalAnswer]:
    """Answers in prompt order; with concurrency > 1 the prompts are in flight together (engine batching)."""
    if concurrency <= 1:
        answers = []
        for done, prompt in enumerate(prompts, start=1):
            answers.append(answerer.answer(prompt, max_tokens))
            if progress is not None:
                progress(done, len(prompts))
        return answers
    results: list[LocalAnswer | None] = [None] * len(prompts)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        futures: dict[Future[LocalAnswer], int] = {
            pool.submit(answerer.answer, p, max_tokens): i for i, p in enumerate(prompts)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(prompts))
    return [r for r in results if r is not None]
