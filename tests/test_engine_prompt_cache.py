"""The prompt cache (engine.prompt_cache), on the real model: a request placed in a slot whose kept KV cells share a
prefix with its prompt prefills only the rest, and gets the same greedy answer as a prompt prefilled in full."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edged.config.engine import EngineSettings
from edged.domain import SamplingParams
from edged.engine import FinishEvent, GenerationJob, LlamaEngine
from edged.engine.scheduler import _Sequence
from edged.models import ModelRegistry
from tests.engine_parts import submit

pytestmark = pytest.mark.slow

MODEL_ID = "smollm2-135m-instruct-q4_1"
FIRST = "Describe in detail how a steam engine works."
OTHER = "Name three fruits and say which one is the sweetest."


def make_engine(**settings: object) -> LlamaEngine:
    path = ModelRegistry.from_dir().resolve(MODEL_ID).path
    config = {"threads": 2, "slots": 1, "context_per_slot": 512, **settings}
    engine = LlamaEngine(MODEL_ID, path, EngineSettings.model_validate(config))
    engine.start()
    return engine


@pytest.fixture(scope="module")
def cached() -> Iterator[LlamaEngine]:
    engine = make_engine()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def uncached() -> Iterator[LlamaEngine]:
    engine = make_engine(prompt_cache=False)
    yield engine
    engine.close()


def answer(engine: LlamaEngine, prompt: str) -> tuple[str, FinishEvent]:
    job = submit(engine, prompt, 24)
    end = job.wait()
    assert isinstance(end, FinishEvent), end
    return job.text, end


def test_a_repeated_prompt_reuses_all_but_its_last_token_and_answers_alike(
    cached: LlamaEngine, uncached: LlamaEngine
) -> None:
    expected, plain = answer(uncached, FIRST)
    assert plain.cached_tokens == 0
    answer(cached, OTHER)  # whatever the slot held before
    text, first = answer(cached, FIRST)
    again, second = answer(cached, FIRST)
    assert first.cached_tokens < first.prompt_tokens - 1  # only the shared chat-template head was kept
    assert second.cached_tokens == second.prompt_tokens - 1  # the last prompt token is decoded for its logits
    assert text == again == expected


def test_a_different_prompt_reuses_only_the_shared_head(cached: LlamaEngine, uncached: LlamaEngine) -> None:
    """SmolLM2's template opens every prompt with the same system turn: that part is kept, the rest prefilled."""
    answer(cached, FIRST)
    text, end = answer(cached, OTHER)
    expected, plain = answer(uncached, OTHER)
    assert 0 < end.cached_tokens < end.prompt_tokens - 1
    assert plain.cached_tokens == 0
    assert text == expected


def test_without_the_cache_nothing_is_reused(uncached: LlamaEngine) -> None:
    answer(uncached, FIRST)
    assert answer(uncached, FIRST)[1].cached_tokens == 0


@pytest.mark.parametrize("kv_unified", [False, True], ids=["stream-per-slot", "unified"])
def test_a_prompt_another_slot_holds_is_copied_from_it_and_answers_alike(
    uncached: LlamaEngine, kv_unified: bool
) -> None:
    """A request whose prompt a running sequence already holds (its twin, sent a moment earlier) takes those
    KV cells from that slot instead of prefilling them in a fresh one (llama_memory_seq_cp; with a stream per
    slot llama.cpp copies the stream), and its greedy answer is the one a full prefill gives."""
    expected, _ = answer(uncached, FIRST)
    engine = make_engine(slots=2, kv_unified=kv_unified)
    try:
        first = submit(engine, FIRST, 24)
        first.next_event()  # running in slot 0: its prompt is in its cells
        second = submit(engine, FIRST, 24)
        end = second.wait()
        assert isinstance(end, FinishEvent), end
        assert end.cached_tokens == end.prompt_tokens - 1
        assert isinstance(first.wait(), FinishEvent)
        assert first.text == second.text == expected
    finally:
        engine.close()


def test_only_the_shared_head_is_copied_from_a_running_slot(uncached: LlamaEngine) -> None:
    """A different prompt shares only the chat template's head with the running sequence: that head is taken
    from it (24 tokens are worth a stream copy), the rest prefilled, and the answer is a full prefill's."""
    engine = make_engine(slots=2)
    try:
        first = submit(engine, FIRST, 24)
        first.next_event()
        other = submit(engine, OTHER, 24)
        end = other.wait()
        assert isinstance(end, FinishEvent), end
        assert 0 < end.cached_tokens < end.prompt_tokens - 1
        assert other.text == answer(uncached, OTHER)[0]
        first.wait()
    finally:
        engine.close()


def test_a_new_prompt_takes_an_empty_slot_and_leaves_another_prompts_cells_for_it(
    uncached: LlamaEngine,
) -> None:
    """Two slots: after FIRST, OTHER (sharing only the template's head) goes to the empty slot with that head
    copied, so FIRST asked again still finds all of its prompt kept."""
    engine = make_engine(slots=2)
    try:
        answer(engine, FIRST)
        _, other = answer(engine, OTHER)
        assert 0 < other.cached_tokens < other.prompt_tokens - 1
        text, again = answer(engine, FIRST)
        assert again.cached_tokens == again.prompt_tokens - 1
        assert text == answer(uncached, FIRST)[0]
    finally:
        engine.close()


class _UncuttableMemory:
    """A stand-in at the engine's llama.cpp seam (NativeContext) for a recurrent model's memory: no sequence
    can be cut at a position, so a prefix copy fails and leaves the slot empty."""

    def __init__(self) -> None:
        self.forgotten: list[int] = []

    def copy_prefix(self, src: int, dst: int, keep: int) -> bool:
        self.forgotten.append(dst)
        return False

    def truncate(self, seq: int, keep: int) -> bool:
        return False

    def forget(self, seq: int) -> None:
        self.forgotten.append(seq)


def test_a_failed_copy_prefills_the_whole_prompt() -> None:
    """A memory that cannot be cut at a position (recurrent models) cannot take a prefix from another slot, and
    the failed copy has emptied the slot: the request starts from its first token, not after the prefix the
    slot held before."""
    path = ModelRegistry.from_dir().resolve(MODEL_ID).path
    engine = LlamaEngine(MODEL_ID, path, EngineSettings.model_validate({"slots": 2}))  # not started
    memory = _UncuttableMemory()
    engine._ctx = memory  # type: ignore[assignment]
    prompt = list(range(100, 140))
    job = GenerationJob(
        request_id="r", messages=(), params=SamplingParams(max_tokens=1), emit=lambda _event: None
    )
    seq = _Sequence(slot=-1, job=job, prompt=prompt, sampler=None, admitted_at=0.0)
    # slot 0 keeps 30 tokens of the prompt and 9 of its own answer; slot 1 keeps the prompt's first 10 only
    engine._kept = [[*prompt[:30], 1, 2, 3, 4, 5, 6, 7, 8, 9], prompt[:10]]
    engine._place(seq)
    assert seq.slot == 1  # it loses nothing there; slot 0 keeps its request
    assert memory.forgotten == [1]  # the copy of slot 0's 30 tokens was tried, and emptied slot 1
    assert seq.prefilled == seq.reused == 0
