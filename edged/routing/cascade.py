"""The confidence cascade: judge a streaming local answer after its first k tokens and escalate a collapse.

`CascadeMonitor` is pure: it is fed each token's signals as they arrive and, exactly once, when the k-th token
arrives, returns a verdict (the AUTO score over the first k tokens, and whether it is below the cascade
threshold). `cascade_stream()` shows the contract the pipeline keeps so the caller sees one coherent stream:
the first k tokens are held back; on a collapse they are dropped and the cloud's answer is streamed instead;
otherwise they are released and the local answer streams on. A local answer that ends before k tokens is
released whole (the post-generation decision then judges it like a non-streamed answer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary, Source, TokenSignals
from edged.routing.score import auto_score


@dataclass(frozen=True, slots=True)
class CascadeVerdict:
    tokens: int  # tokens judged (k)
    score: float  # AUTO score over them
    threshold: float
    collapsed: bool  # escalate now


class CascadeMonitor:
    def __init__(
        self, *, k: int, threshold: float, weights: ScoreWeights, router_score: float | None = None
    ) -> None:
        if k < 1:
            raise ValueError(f"k: {k} must be at least 1")
        self.k = k
        self.threshold = threshold
        self._weights = weights
        self._router_score = router_score
        self._signals: list[TokenSignals] = []
        self.verdict: CascadeVerdict | None = None

    def observe(self, signals: TokenSignals) -> CascadeVerdict | None:
        """Add one token's signals; returns the verdict when (and only when) the k-th token arrives."""
        if self.verdict is not None:
            return None
        self._signals.append(signals)
        if len(self._signals) < self.k:
            return None
        summary = ConfidenceSummary.of(self._signals)
        score = auto_score(self._router_score, summary, self._weights)
        self.verdict = CascadeVerdict(self.k, score, self.threshold, collapsed=score < self.threshold)
        return self.verdict

    def engine_hook(
        self, can_escalate: Callable[[], bool] = lambda: True
    ) -> Callable[[TokenSignals, int], bool]:
        """This monitor as the engine's ConfidenceMonitor (edged.engine.jobs): True stops the sequence with
        finish_reason "low_confidence". Called on the engine thread; it only appends and compares.
        `can_escalate` is asked at the verdict (link up, budget left): a collapse nobody can take over from
        is let run to the end rather than cut short."""

        def hook(signals: TokenSignals, index: int) -> bool:
            verdict = self.observe(signals)
            return verdict is not None and verdict.collapsed and can_escalate()

        return hook


@dataclass(frozen=True, slots=True)
class StreamPiece:
    text: str
    source: Source


def cascade_stream(
    local: Iterable[tuple[str, TokenSignals]],
    monitor: CascadeMonitor,
    escalate: Callable[[CascadeVerdict], Iterable[str]],
) -> Iterator[StreamPiece]:
    """One coherent stream: the local answer, or (on a collapse within its first k tokens) the cloud's only.

    `local` yields (text piece, signals) per token and is closed (its generator's close()) when abandoned, so
    the local decode stops early; `escalate` starts the cloud answer and yields its text pieces.
    """
    held: list[str] = []
    collapse: CascadeVerdict | None = None
    tokens = iter(local)
    try:
        for text, signals in tokens:
            verdict = monitor.observe(signals)
            if monitor.verdict is None:
                held.append(text)
                continue
            if verdict is not None and verdict.collapsed:
                collapse = verdict
                break
            yield StreamPiece("".join([*held, text]), Source.LOCAL)
            held.clear()
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
    if collapse is None:
        if held:  # the answer ended before k tokens: release it whole
            yield StreamPiece("".join(held), Source.LOCAL)
        return
    for text in escalate(collapse):
        yield StreamPiece(text, Source.CLOUD)
