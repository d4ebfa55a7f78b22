"""Chunked prefill and the batch bound, on the real model: a long prompt is prefilled `prefill_chunk` tokens per
step while running streams keep decoding, gives the same greedy answer whatever the chunk, and no step holds more
than `batch_tokens` tokens (NativeContext.add refuses a token beyond them, so an overfull step fails the job)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from edged.config.engine import EngineSettings
from edged.domain import Message, SamplingParams
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine, TokenEvent
from edged.errors import ModelError
from edged.models import ModelRegistry
from tests.engine_parts import submit

pytestmark = pytest.mark.slow

MODEL_ID = "smollm2-135m-instruct-q4_1"
STORY = "Write a long story about a dragon."  # greedy: runs on past 400 tokens
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")
ANIMALS = ("fox", "whale", "frog", "canary", "octopus", "tiger", "crow", "swan")
NOTES = " ".join(
    f"Note {i + 1}: the {COLOURS[i % 8]} {ANIMALS[(3 * i) % 8]} lives in house number {10 + 7 * i}."
    for i in range(15)
)
LONG_PROMPT = f"Read these notes.\n{NOTES}\nWhich animal lives in house number 17? Answer in one sentence."
CHUNK = 16
BATCH = 32


def make_engine(**settings: object) -> LlamaEngine:
    path = ModelRegistry.from_dir().resolve(MODEL_ID).path
    config = {"threads": 2, "slots": 8, "context_per_slot": 512, "queue_size": 8, **settings}
    engine = LlamaEngine(MODEL_ID, path, EngineSettings.model_validate(config))
    engine.start()
    return engine


@pytest.fixture(scope="module")
def chunked() -> Iterator[LlamaEngine]:
    """Small steps: 16 prompt tokens per step in a batch of 32."""
    engine = make_engine(batch_tokens=BATCH, prefill_chunk=CHUNK)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def whole() -> Iterator[LlamaEngine]:
    """The defaults: 256 prompt tokens per step in a batch of 512."""
    engine = make_engine(prefill_chunk=256)
    yield engine
    engine.close()


@dataclass
class EngineLog:
    """Every event of several jobs in the order the engine thread emitted them (one thread emits them all)."""

    entries: list[tuple[str, EngineEvent]] = field(default_factory=list)
    ended: dict[str, threading.Event] = field(default_factory=dict)

    def submit(
        self,
        engine: LlamaEngine,
        name: str,
        prompt: str,
        max_tokens: int,
        on_first_token: Callable[[], object] | None = None,
    ) -> GenerationJob:
        """Submit a greedy job; `on_first_token` runs on the engine thread right after its first token."""
        ended = self.ended.setdefault(name, threading.Event())

        def emit(event: EngineEvent) -> None:
            self.entries.append((name, event))
            if not isinstance(event, TokenEvent):
                ended.set()
            elif on_first_token is not None and event.index == 0:
                on_first_token()

        job = GenerationJob(
            request_id=name,
            messages=(Message("user", prompt),),
            params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
            emit=emit,
        )
        engine.submit(job)
        return job

    def wait_end(self, name: str, timeout: float = 120.0) -> FinishEvent:
        # setdefault: the job may still be about to be submitted (by another job's on_first_token)
        assert self.ended.setdefault(name, threading.Event()).wait(timeout), (
            f"{name} did not end in {timeout}s"
        )
        [end] = [e for n, e in self.entries if n == name and not isinstance(e, TokenEvent)]
        assert isinstance(end, FinishEvent), end
        return end

    def tokens(self, name: str, entries: list[tuple[str, EngineEvent]] | None = None) -> list[TokenEvent]:
        return [
            e
            for n, e in (self.entries if entries is None else entries)
            if n == name and isinstance(e, TokenEvent)
        ]

    def first_token_at(self, name: str) -> int:
        return next(i for i, (n, e) in enumerate(self.entries) if n == name and isinstance(e, TokenEvent))


def answer_alone(engine: LlamaEngine, prompt: str, max_tokens: int) -> tuple[str, FinishEvent]:
    job = submit(engine, prompt, max_tokens)
    end = job.wait()
    assert isinstance(end, FinishEvent), end
    return job.text, end


def test_a_long_prompt_in_16_token_chunks_gives_the_same_greedy_answer_as_in_256(
    chunked: LlamaEngine, whole: LlamaEngine
) -> None:
    text_16, end_16 = answer_alone(chunked, LONG_PROMPT, 40)
    text_256, end_256 = answer_alone(whole, LONG_PROMPT, 40)
    assert 280 <= end_16.prompt_tokens <= 340  # the premise: ~300 tokens, 18+ steps of 16, 2 steps of 256
    assert end_16.prompt_tokens == end_256.prompt_tokens
    assert text_16.strip()
    assert (text_16, end_16.completion_tokens) == (text_256, end_256.completion_tokens)


def running_tokens_while_prefilling(engine: LlamaEngine) -> tuple[int, int, str]:
    """Start a long greedy stream and, right after its first token (on the engine thread, so no step passes in
    between), submit the long prompt. Returns the stream's tokens emitted after that and before the prompt's
    first answer token, the prompt tokens prefilled (those the running stream did not already hold: the chat
    template's head is copied from its slot, engine.prompt_cache), and its answer."""
    log = EngineLog()
    running = log.submit(
        engine, "running", STORY, 400, on_first_token=lambda: log.submit(engine, "long", LONG_PROMPT, 40)
    )
    end = log.wait_end("long")
    engine.cancel(running)
    assert log.ended["running"].wait(60)
    between = log.entries[log.first_token_at("running") + 1 : log.first_token_at("long")]
    prefilled = end.prompt_tokens - end.cached_tokens
    return len(log.tokens("running", between)), prefilled, "".join(t.text for t in log.tokens("long"))


def test_a_running_stream_keeps_decoding_while_a_long_prompt_is_prefilled(
    chunked: LlamaEngine, whole: LlamaEngine
) -> None:
    """Every step decodes one token of the running stream beside one chunk of the long prompt: the stream emits
    a token per chunk (the prompt's first answer token comes from the step of its last chunk)."""
    alone, _ = answer_alone(chunked, LONG_PROMPT, 40)
    interleaved, prefilled, text = running_tokens_while_prefilling(chunked)
    assert interleaved == math.ceil(prefilled / CHUNK)  # about 18 steps for ~280 tokens
    assert text == alone  # prefilled beside a running stream, the answer is still the same
    # with 256-token chunks the same prompt takes two steps, during which the stream emits two tokens
    assert running_tokens_while_prefilling(whole)[0] == math.ceil(prefilled / 256)


def test_every_slot_busy_in_a_batch_as_small_as_the_slots() -> None:
    """slots = batch_tokens = 32 and 40 long answers: steps with up to 31 decoding rows beside a prompt that is
    still prefilling stay within the batch (an overfull step would fail its jobs with EngineError), and every
    answer equals the one alone."""
    engine = make_engine(slots=BATCH, batch_tokens=BATCH, prefill_chunk=CHUNK, context_per_slot=128)
    try:
        prompts = [f"Write a long story about a {thing}." for thing in ("dragon", "ship", "castle", "robot")]
        alone = {p: answer_alone(engine, p, 80) for p in prompts}
        assert all(end.finish_reason == "length" for _, end in alone.values())  # each keeps its slot busy
        jobs = [submit(engine, prompts[i % len(prompts)], 80) for i in range(40)]
        ends = [job.wait() for job in jobs]
        assert [end.error for end in ends if isinstance(end, ErrorEvent)] == []
        assert [job.text for job in jobs] == [alone[prompts[i % len(prompts)]][0] for i in range(40)]
        assert engine.stats().alive
    finally:
        engine.close()


def test_more_slots_than_batch_tokens_is_refused_at_load_not_aborted() -> None:
    """Config validation refuses slots > batch_tokens; an engine given such settings anyway refuses to load with
    a clear error instead of letting llama.cpp abort the process on the first decode."""
    settings = EngineSettings.model_construct(
        threads=2, slots=40, batch_tokens=32, prefill_chunk=16, context_per_slot=128
    )
    engine = LlamaEngine(MODEL_ID, ModelRegistry.from_dir().resolve(MODEL_ID).path, settings)
    try:
        with pytest.raises(ModelError, match=r"engine\.slots 40 exceeds engine\.batch_tokens 32"):
            engine.start()
        assert not engine.stats().alive
    finally:
        engine.close()
