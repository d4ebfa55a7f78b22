"""The confidence cascade: a crafted collapsing stream escalates after k tokens, and the caller sees one
coherent answer (the cloud's only), never local and cloud text glued together."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edged.config.routing import ScoreWeights
from edged.domain import Source, TokenSignals
from edged.routing.cascade import CascadeMonitor, CascadeVerdict, HoldBack, cascade_stream

# AUTO score = sigmoid(3 + 2 * mean logprob): ~0.95 for sure tokens, ~0.007 for a collapse
WEIGHTS = ScoreWeights(bias=3.0, router_logit=0.0, mean_logprob=2.0)
SURE = TokenSignals(logprob=-0.05, margin=5.0, entropy=0.1)
LOST = TokenSignals(logprob=-4.0, margin=0.1, entropy=4.5)


def _monitor(k: int = 4) -> CascadeMonitor:
    return CascadeMonitor(k=k, threshold=0.15, weights=WEIGHTS)


def test_collapse_fires_exactly_at_k_tokens() -> None:
    monitor = _monitor()
    verdicts = [monitor.observe(LOST) for _ in range(6)]
    assert verdicts[:3] == [None, None, None]
    fired = verdicts[3]
    assert fired is not None
    assert fired.collapsed
    assert fired.tokens == 4
    assert fired.score < 0.01
    assert verdicts[4:] == [None, None]  # judged once


def test_confident_stream_passes() -> None:
    monitor = _monitor()
    verdicts = [monitor.observe(SURE) for _ in range(4)]
    assert verdicts[-1] is not None
    assert not verdicts[-1].collapsed
    assert verdicts[-1].score > 0.9


def test_one_bad_token_among_sure_ones_is_not_a_collapse() -> None:
    monitor = _monitor()
    for signals in (SURE, LOST, SURE, SURE):
        verdict = monitor.observe(signals)
    assert verdict is not None
    assert not verdict.collapsed  # mean logprob -1.04: score 0.69


def test_engine_hook_stops_the_sequence_on_collapse() -> None:
    hook = _monitor(k=3).engine_hook()
    assert [hook(LOST, i) for i in range(3)] == [False, False, True]


def test_engine_hook_lets_the_answer_finish_when_nobody_can_take_over() -> None:
    monitor = _monitor(k=3)
    hook = monitor.engine_hook(can_escalate=lambda: False)
    assert [hook(LOST, i) for i in range(5)] == [False] * 5
    assert monitor.verdict is not None
    assert monitor.verdict.collapsed


class _LocalStream:
    """A local decode as the engine yields it; records whether it was stopped early."""

    def __init__(self, tokens: list[tuple[str, TokenSignals]]) -> None:
        self.tokens = tokens
        self.yielded = 0
        self.closed = False

    def __iter__(self) -> Iterator[tuple[str, TokenSignals]]:
        try:
            for token in self.tokens:
                self.yielded += 1
                yield token
        finally:
            self.closed = True


def test_collapsing_stream_escalates_and_the_caller_sees_only_the_cloud_answer() -> None:
    local = _LocalStream([(f" bad{i}", LOST) for i in range(20)])
    escalations: list[CascadeVerdict] = []

    def escalate(verdict: CascadeVerdict) -> Iterator[str]:
        escalations.append(verdict)
        yield from ("The answer", " is 42.")

    generator = local.__iter__()
    pieces = list(cascade_stream(generator, _monitor(), escalate))
    assert [p.source for p in pieces] == [Source.CLOUD, Source.CLOUD]
    assert "".join(p.text for p in pieces) == "The answer is 42."
    assert len(escalations) == 1
    assert escalations[0].collapsed
    assert local.yielded == 4  # the local decode stopped at k, not after 20 tokens
    assert local.closed


def test_confident_stream_is_released_whole_and_in_order() -> None:
    tokens = [(f"w{i} ", SURE) for i in range(7)]

    def escalate(verdict: CascadeVerdict) -> Iterator[str]:
        pytest.fail("a confident stream must not escalate")
        yield ""

    pieces = list(cascade_stream(iter(tokens), _monitor(), escalate))
    assert all(p.source is Source.LOCAL for p in pieces)
    assert "".join(p.text for p in pieces) == "".join(t for t, _ in tokens)
    assert pieces[0].text == "w0 w1 w2 w3 "  # the first k tokens were held back, then released together


def test_short_answer_below_k_is_released_at_the_end() -> None:
    def escalate(verdict: CascadeVerdict) -> Iterator[str]:
        pytest.fail("no verdict before k tokens")
        yield ""

    pieces = list(cascade_stream(iter([("Yes.", LOST)]), _monitor(), escalate))
    assert [(p.text, p.source) for p in pieces] == [("Yes.", Source.LOCAL)]


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k: 0 must be at least 1"):
        CascadeMonitor(k=0, threshold=0.1, weights=WEIGHTS)


def test_hold_back_keeps_a_unary_answer_that_may_escalate_to_its_end() -> None:
    monitor = _monitor(k=2)
    hold = HoldBack(monitor, streaming=False, can_escalate=True)
    for signals in (SURE, SURE, SURE):
        monitor.observe(signals)
        assert hold.feed("w ") == ""  # a unary answer is judged once it is whole, kept or not by the cascade
    assert hold.holding
    assert hold.held == ("w ", "w ", "w ")


def test_hold_back_passes_everything_when_nothing_could_replace_it() -> None:
    hold = HoldBack(_monitor(), streaming=True, can_escalate=False)
    assert [hold.feed(t) for t in ("a", "b")] == ["a", "b"]
    assert not hold.holding
    assert hold.held == ()


def test_hold_back_keeps_a_collapsed_stream_held_for_the_cloud_to_replace() -> None:
    monitor = _monitor(k=2)
    hold = HoldBack(monitor, streaming=True, can_escalate=True)
    out = []
    for text in ("x", "y", "z"):
        monitor.observe(LOST)
        out.append(hold.feed(text))
    assert out == ["", "", ""]
    assert hold.held == ("x", "y", "z")
