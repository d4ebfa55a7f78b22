"""EventRelay: engine-thread events reach the event loop in order, with consecutive token text joined."""

from __future__ import annotations

import asyncio
import threading
from typing import cast

import pytest

from edged.domain import ConfidenceSummary, InferenceRequest, Message, SamplingParams, TokenSignals
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine, TokenEvent
from edged.engine.local_answerer import EventRelay, LocalAnswerer
from edged.errors import Cancelled


def token(i: int, text: str) -> TokenEvent:
    return TokenEvent(text=text, index=i, signals=TokenSignals(-0.1 * i, 1.0, 0.5), token=100 + i)


FINISH = FinishEvent("stop", 3, 4, ConfidenceSummary.of([]), 0.0)


async def collect(relay: EventRelay) -> list[EngineEvent]:
    got: list[EngineEvent] = []
    while not got or not isinstance(got[-1], FinishEvent | ErrorEvent):
        got.extend(await relay.take())
    return got


def test_first_text_at_once_then_tokens_joined_within_the_interval() -> None:
    async def main() -> list[list[EngineEvent]]:
        relay = EventRelay(asyncio.get_running_loop(), interval_s=60.0)
        batches: list[list[EngineEvent]] = []
        relay.put(token(0, ""))  # held-back text (a possible stop string) is not the first text
        batches.append(await relay.take())
        relay.put(token(1, "Hel"))
        batches.append(await relay.take())  # the first text is not held
        for i, text in enumerate(["lo", ",", " world"], start=2):
            relay.put(token(i, text))
        assert not relay._ready.is_set()  # held: within the interval nothing wakes the loop
        relay.put(FINISH)
        batches.append(await relay.take())
        return batches

    first, second, last = asyncio.run(main())
    assert [e.text for e in first if isinstance(e, TokenEvent)] == [""]
    assert [e.text for e in second if isinstance(e, TokenEvent)] == ["Hel"]
    joined, finish = last
    assert isinstance(joined, TokenEvent)
    assert joined.text == "lo, world"
    assert (joined.index, joined.token, joined.signals) == (4, 104, token(4, "").signals)
    assert finish is FINISH


def test_interval_zero_wakes_per_token_and_joins_only_what_the_loop_has_not_taken() -> None:
    async def main() -> tuple[list[EngineEvent], list[EngineEvent]]:
        relay = EventRelay(asyncio.get_running_loop(), interval_s=0.0)
        relay.put(token(0, "a"))
        relay.put(token(1, "b"))  # the loop has not run yet: joined, not lost or reordered
        first = await relay.take()
        relay.put(token(2, "c"))
        second = await relay.take()
        return first, second

    first, second = asyncio.run(main())
    assert [e.text for e in first if isinstance(e, TokenEvent)] == ["ab"]
    assert [e.text for e in second if isinstance(e, TokenEvent)] == ["c"]


def test_events_from_another_thread_arrive_complete_and_in_order() -> None:
    texts = [f"t{i} " for i in range(500)]

    async def main() -> list[EngineEvent]:
        relay = EventRelay(asyncio.get_running_loop(), interval_s=0.001)

        def engine() -> None:
            for i, text in enumerate(texts):
                relay.put(token(i, text))
            relay.put(ErrorEvent(Cancelled("cancelled by the caller")))

        thread = threading.Thread(target=engine)
        thread.start()
        got = await collect(relay)
        thread.join()
        return got

    got = asyncio.run(main())
    assert "".join(e.text for e in got if isinstance(e, TokenEvent)) == "".join(texts)
    assert isinstance(got[-1], ErrorEvent)
    assert len(got) < len(texts)  # joined on the way


class _FinishingEngine:
    """A stand-in at LocalAnswerer's engine seam: emits one token and the finish at submit, counts cancels."""

    model_id = "stand-in"

    def __init__(self) -> None:
        self.cancelled: list[GenerationJob] = []

    def submit(self, job: GenerationJob) -> None:
        job.emit(token(0, "Hi"))
        job.emit(FINISH)

    def cancel(self, job: GenerationJob) -> None:
        self.cancelled.append(job)


def _request() -> InferenceRequest:
    return InferenceRequest("r1", (Message("user", "hi"),), SamplingParams(max_tokens=4))


@pytest.mark.parametrize(
    ("stop_at", "cancels"),
    [(FinishEvent, 0), (TokenEvent, 1)],
    ids=["at-the-finish: the ended job is not cancelled", "before-the-finish: the job is cancelled"],
)
def test_a_caller_that_stops_reading_cancels_only_a_job_still_running(stop_at: type, cancels: int) -> None:
    engine = _FinishingEngine()
    local = LocalAnswerer(cast("dict[str, LlamaEngine]", {"stand-in": engine}), "stand-in")

    async def read_until() -> None:
        events = local.events(_request())
        async for event in events:
            if isinstance(event, stop_at):
                break  # at the FinishEvent: as the pipeline's local step does
        await events.aclose()

    asyncio.run(read_until())
    assert len(engine.cancelled) == cancels
