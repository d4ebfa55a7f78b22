"""The local engine: continuous batching, queue bounds, cancellation, and confidence signals, on the real model."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

import numpy as np
import pytest
from llama_cpp import Llama

from edged.config.engine import EngineSettings
from edged.domain import Message
from edged.engine import ErrorEvent, FinishEvent, LlamaEngine, TokenEvent
from edged.engine.template import ChatTemplate
from edged.errors import Cancelled, DeadlineExceeded, InvalidRequest, Overloaded
from edged.models import ModelRegistry
from tests.engine_parts import Collected, submit

pytestmark = pytest.mark.slow

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "What is 2+2?",
    "Name three fruits.",
    "Explain gravity in one sentence.",
    "Who wrote Hamlet?",
    "What color is the sky?",
    "Translate 'hello' to French.",
]


def make_engine(**settings: object) -> LlamaEngine:
    path = ModelRegistry.from_dir().resolve("smollm2-135m-instruct-q4_1").path
    config = {"threads": 2, "slots": 8, "context_per_slot": 512, "queue_size": 4, **settings}
    engine = LlamaEngine("smollm2-135m-instruct-q4_1", path, EngineSettings.model_validate(config))
    engine.start()
    return engine


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = make_engine()
    yield engine
    engine.close()


def finish(collected: Collected) -> FinishEvent:
    end = collected.wait()
    assert isinstance(end, FinishEvent), end
    return end


def test_greedy_outputs_under_8_way_concurrency_equal_single_stream(engine: LlamaEngine) -> None:
    single = []
    for prompt in PROMPTS:
        job = submit(engine, prompt, 40)
        finish(job)
        single.append(job.text)
    batch = [submit(engine, prompt, 40) for prompt in PROMPTS]
    for job in batch:
        finish(job)
    assert [job.text for job in batch] == single
    assert all(single)


def test_seeded_sampling_gives_the_same_answer_alone_and_under_8_way_batching(engine: LlamaEngine) -> None:
    """temperature > 0 with a fixed seed: each sequence has its own sampler chain, so what else is batched with
    it does not change its answer."""
    seeds = [1000 + i for i in range(len(PROMPTS))]
    greedy: list[str] = []
    alone: list[str] = []
    for prompt, seed in zip(PROMPTS, seeds, strict=True):
        for results, temperature in ((greedy, 0.0), (alone, 0.9)):
            job = submit(engine, prompt, 30, temperature=temperature, seed=seed)
            finish(job)
            results.append(job.text)
    batch = [submit(engine, p, 30, temperature=0.9, seed=s) for p, s in zip(PROMPTS, seeds, strict=True)]
    for job in batch:
        finish(job)
    assert [job.text for job in batch] == alone
    assert alone != greedy  # the premise: these answers were sampled, not the argmax


def test_requests_arriving_mid_stream_join_the_batch(engine: LlamaEngine) -> None:
    """A request admitted while others decode gets the same answer as alone (prefill between steps)."""
    alone = submit(engine, PROMPTS[1], 30)
    finish(alone)
    running = [submit(engine, p, 60) for p in PROMPTS[2:6]]
    for job in running:
        job.next_event()  # all four are decoding now
    late = submit(engine, PROMPTS[1], 30)
    finish(late)
    for job in running:
        finish(job)
    assert late.text == alone.text


def test_cancelled_job_frees_its_slot_and_the_next_queued_job_starts() -> None:
    engine = make_engine(slots=1, queue_size=2)
    try:
        first = submit(engine, "Write a long essay about the history of bread.", 400)
        first.next_event()
        second = submit(engine, "What is 2+2?", 8)
        assert engine.stats().queue_depth + engine.stats().slots_busy == 2
        engine.cancel(first.job)
        end = first.wait()
        assert isinstance(end, ErrorEvent)
        assert isinstance(end.error, Cancelled)
        assert len(first.tokens) < 400
        finish(second)
        assert second.text
        assert engine.stats().slots_busy == 0
    finally:
        engine.close()


def test_queue_bound_gives_overloaded_with_a_clear_message() -> None:
    engine = make_engine(slots=1, queue_size=1)
    try:
        running = submit(engine, "Write a long essay about rivers.", 300)
        queued = submit(engine, "What is 2+2?", 4)
        with pytest.raises(Overloaded, match="all 1 slots are busy and the queue of 1 is full"):
            submit(engine, "One more?", 4)
        engine.cancel(running.job)
        running.wait()
        finish(queued)
        assert submit(engine, "Now there is room.", 4).wait()
    finally:
        engine.close()


def test_deadline_expires_a_running_and_a_waiting_job() -> None:
    engine = make_engine(slots=1, queue_size=2)
    try:
        soon = time.monotonic() + 0.5
        running = submit(engine, "Write a long essay about clouds.", 400, deadline=soon)
        waiting = submit(engine, "What is 2+2?", 4, deadline=soon)
        for job in (running, waiting):
            end = job.wait()
            assert isinstance(end, ErrorEvent)
            assert isinstance(end.error, DeadlineExceeded)
        assert engine.stats().slots_busy == 0
    finally:
        engine.close()


def test_prompt_too_long_for_the_slot_is_invalid(engine: LlamaEngine) -> None:
    job = submit(engine, "word " * 600, 10)
    end = job.wait()
    assert isinstance(end, ErrorEvent)
    assert isinstance(end.error, InvalidRequest)
    assert "512 tokens per slot" in str(end.error)


def test_json_schema_constraint_in_a_batch(engine: LlamaEngine) -> None:
    schema = json.dumps({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]})
    constrained = submit(engine, "How many legs does a cat have? Answer in JSON.", 20, json_schema=schema)
    free = submit(engine, PROMPTS[0], 20)
    finish(constrained)
    finish(free)
    assert isinstance(json.loads(constrained.text)["n"], int)


def test_signals_match_a_reference_from_the_full_logits(engine: LlamaEngine) -> None:
    """Per-token logprob, margin and entropy equal log_softmax over llama.cpp's full logits (logits_all)."""
    prompt = "What is the capital of France?"
    job = submit(engine, prompt, 12)
    finish(job)
    generated = [t for t in job.tokens if t.token >= 0]
    path = ModelRegistry.from_dir().resolve("smollm2-135m-instruct-q4_1").path
    reference = Llama(
        model_path=str(path), n_ctx=512, logits_all=True, flash_attn=True, verbose=False, n_threads=2
    )
    template = reference.metadata["tokenizer.chat_template"]
    text = ChatTemplate(template, "", "").render((Message("user", prompt),))
    prompt_tokens = reference.tokenize(text.encode(), add_bos=False, special=True)
    reference.eval(prompt_tokens)  # the prompt in one batch, then one token per decode, as the engine does
    for event in generated[:-1]:
        reference.eval([event.token])
    scores = np.asarray(reference.scores, dtype=np.float64)
    for i, event in enumerate(generated):
        row = scores[len(prompt_tokens) - 1 + i]
        log_probs = row - (row.max() + np.log(np.exp(row - row.max()).sum()))
        top2 = np.sort(log_probs)[-2:]
        entropy = -(np.exp(log_probs) * log_probs).sum()
        assert event.signals is not None
        assert event.signals.logprob == pytest.approx(log_probs[event.token], abs=1e-3)
        assert event.signals.margin == pytest.approx(top2[1] - top2[0], abs=1e-3)
        assert event.signals.entropy == pytest.approx(entropy, abs=1e-3)
    reference.close()


STRESS_S = 60  # the run lasts a minute ...
STRESS_MAX_REQUESTS = 1500  # ... or this many submitted requests (about 20 a second here), whichever is first


def test_random_arrivals_cancellations_and_deadlines_do_not_hang_or_crash() -> None:
    """For a minute (and at most STRESS_MAX_REQUESTS requests), requests arrive, get cancelled and expire at
    random; every request gets exactly one outcome and the engine stays healthy."""
    engine = make_engine(slots=4, queue_size=4)
    rng = random.Random(7)
    outcomes: dict[str, int] = {}
    live: list[Collected] = []
    submitted = 0
    stop_at = time.monotonic() + STRESS_S
    try:
        while time.monotonic() < stop_at and submitted < STRESS_MAX_REQUESTS:
            action = rng.random()
            if action < 0.5:
                submitted += 1
                deadline = time.monotonic() + rng.uniform(0.05, 3.0) if rng.random() < 0.4 else None
                try:
                    live.append(submit(engine, rng.choice(PROMPTS), rng.randint(1, 60), deadline=deadline))
                except Overloaded:
                    outcomes["overloaded"] = outcomes.get("overloaded", 0) + 1
            elif action < 0.7 and live:
                engine.cancel(rng.choice(live).job)
            time.sleep(rng.uniform(0, 0.05))
            for job in [j for j in live if not j.events.empty()]:
                while not job.events.empty() and job.end is None:
                    job.next_event()
                if job.end is not None:
                    live.remove(job)
                    kind = type(job.end.error).__name__ if isinstance(job.end, ErrorEvent) else "finished"
                    outcomes[kind] = outcomes.get(kind, 0) + 1
        for job in live:
            end = job.wait(60)
            kind = type(end.error).__name__ if isinstance(end, ErrorEvent) else "finished"
            outcomes[kind] = outcomes.get(kind, 0) + 1
        assert sum(outcomes.values()) == submitted
        stats = engine.stats()
        assert stats.alive
        assert stats.slots_busy == 0
        assert stats.queue_depth == 0
        assert outcomes.get("finished", 0) > 0
        assert set(outcomes) <= {"finished", "Cancelled", "DeadlineExceeded", "overloaded"}
        assert isinstance(finish(submit(engine, "Still there?", 4)), FinishEvent)
    finally:
        engine.close()


def test_token_events_carry_signals_while_streaming(engine: LlamaEngine) -> None:
    job = submit(engine, PROMPTS[4], 16)
    end = finish(job)
    signals = [t.signals for t in job.tokens if isinstance(t, TokenEvent) and t.signals is not None]
    assert len(signals) == end.completion_tokens
    assert end.confidence.tokens == end.completion_tokens
    assert end.confidence.min_logprob <= end.confidence.mean_logprob <= 0
    assert end.confidence.first_token_margin == pytest.approx(signals[0].margin)
