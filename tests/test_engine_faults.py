"""A fault in one request never ends the engine (issue 17: 1): a failing confidence hook or a chat template that
raises something other than a TemplateError fails that request, and the engine keeps serving."""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.config.engine import EngineSettings
from edged.domain import Message, SamplingParams, TokenSignals
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine
from edged.engine.native import MAX_LOG_CHARS, forward_llama_log
from edged.errors import Cancelled, DeadlineExceeded, EngineError
from edged.models import ModelRegistry
from tests.engine_parts import Collected, submit

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"
SETTINGS = {"threads": 2, "slots": 2, "context_per_slot": 256, "queue_size": 2}


def _engine(path: Path, **settings: object) -> LlamaEngine:
    engine = LlamaEngine(MODEL, path, EngineSettings.model_validate({**SETTINGS, **settings}))
    engine.start()
    return engine


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaEngine]:
    engine = _engine(ModelRegistry.from_dir().resolve(MODEL).path)
    yield engine
    engine.close()


def _with_monitor(engine: LlamaEngine, monitor: object) -> Collected:
    box: queue.Queue[EngineEvent] = queue.Queue()
    job = GenerationJob(
        request_id="hook",
        messages=(Message("user", "Name three fruits."),),
        params=SamplingParams(max_tokens=8, temperature=0.0),
        emit=box.put,
        monitor=monitor,  # type: ignore[arg-type]
    )
    engine.submit(job)
    return Collected(job=job, events=box)


def test_a_failing_confidence_hook_fails_its_request_only(engine: LlamaEngine) -> None:
    def broken(_signals: TokenSignals, _index: int) -> bool:
        raise ZeroDivisionError("a bug in the cascade hook")

    end = _with_monitor(engine, broken).wait()
    assert isinstance(end, ErrorEvent)
    assert isinstance(end.error, EngineError)
    assert "ZeroDivisionError" in str(end.error)
    assert engine.stats().alive
    assert engine.stats().slots_busy == 0
    assert isinstance(submit(engine, "What is 2+2?", 4).wait(), FinishEvent)


def _model_with_template(tmp_path: Path, template: str) -> Path:
    """A copy of the real model whose chat template is replaced, in place, by one of the same length."""
    source = ModelRegistry.from_dir().resolve(MODEL).path
    data = bytearray(source.read_bytes())
    start = data.index(b"{% for message in messages %}")
    length = int.from_bytes(data[start - 8 : start], "little")  # a GGUF string: u64 length, then the bytes
    replacement = template.encode()
    assert len(replacement) + 4 <= length
    data[start : start + length] = replacement + b"{#" + b" " * (length - len(replacement) - 4) + b"#}"
    path = tmp_path / "bad-template.gguf"
    path.write_bytes(bytes(data))
    return path


def test_a_template_that_raises_fails_the_request_and_the_engine_lives(tmp_path: Path) -> None:
    engine = _engine(_model_with_template(tmp_path, "{{ messages | length // 0 }}"))
    try:
        for _ in range(2):
            end = submit(engine, "What is 2+2?", 4).wait()
            assert isinstance(end, ErrorEvent)
            assert isinstance(end.error, EngineError)
            assert "ZeroDivisionError" in str(end.error)
        stats = engine.stats()
        assert stats.alive
        assert (stats.slots_busy, stats.queue_depth) == (0, 0)
    finally:
        engine.close()


def test_a_request_already_past_its_deadline_is_refused_and_takes_no_place() -> None:
    """issue 17 (17): twenty 1 ms requests filled the queue; one that arrives expired is refused at submit."""
    engine = _engine(ModelRegistry.from_dir().resolve(MODEL).path, slots=1, queue_size=1)
    try:
        running = submit(engine, "Write a long essay about rivers.", 200)
        running.next_event()  # it holds the only slot
        for _ in range(5):
            with pytest.raises(DeadlineExceeded, match="the deadline passed before the request reached"):
                submit(engine, "Too late.", 4, deadline=time.monotonic() - 0.001)
        queued = submit(engine, "What is 2+2?", 4)  # the queue's one place is still free
        engine.cancel(running.job)
        assert isinstance(queued.wait(), FinishEvent)
    finally:
        engine.close()


def test_cancelled_and_expired_jobs_do_not_count_against_capacity() -> None:
    """They leave at the engine's next step; until then they must not refuse live requests."""
    engine = _engine(ModelRegistry.from_dir().resolve(MODEL).path, slots=1, queue_size=1)
    try:
        running = submit(engine, "Write a long essay about rivers.", 200)
        running.next_event()
        cancelled = submit(engine, "Cancelled while waiting.", 4)
        engine.cancel(cancelled.job)
        expiring = submit(engine, "Expires while waiting.", 4, deadline=time.monotonic() + 0.05)
        while time.monotonic() < (expiring.job.deadline or 0.0):
            time.sleep(0.01)
        live = submit(engine, "What is 2+2?", 4)  # neither of the two above holds the queue's place
        ends = [cancelled.wait(), expiring.wait()]
        assert [type(e.error) for e in ends if isinstance(e, ErrorEvent)] == [Cancelled, DeadlineExceeded]
        engine.cancel(running.job)
        assert isinstance(live.wait(), FinishEvent)
    finally:
        engine.close()


def test_a_long_llama_cpp_log_line_is_cut(caplog: pytest.LogCaptureFixture) -> None:
    """issue 17 (13): a refusal in llama.cpp must not put a whole grammar (~80 KB) into the log."""
    long_line = b"parse: error parsing grammar: " + b"item ::= x\n" * 8000
    with caplog.at_level(logging.DEBUG, logger="edged.engine.llama_cpp"):
        forward_llama_log(4, long_line, None)
    (record,) = [r for r in caplog.records if r.name == "edged.engine.llama_cpp"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("parse: error parsing grammar: item ::= x")
    assert record.getMessage().endswith(f"... ({len(long_line.rstrip())} characters, cut)")
    assert len(record.getMessage()) < MAX_LOG_CHARS + 50
