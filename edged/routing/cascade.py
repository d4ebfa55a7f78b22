"""The confidence cascade: judge a streaming local answer after its first k tokens and escalate a collapse.

`CascadeMonitor` is pure: it is fed each token's signals as they arrive and, exactly once, when the k-th token
arrives, returns a verdict (the AUTO score over the first k tokens, and whether it is below the cascade
threshold). `HoldBack` is the contract the pipeline keeps so the caller sees one coherent stream (and
`cascade_stream()` the same contract over a plain iterator):
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


class HoldBack:
    """The one-stream contract: what of a local answer the caller may see yet.

    While the local answer may still be replaced by the cloud's, its text is held: for a stream, until the
    monitor has judged the first k tokens (a collapse keeps it held, to be dropped); for a unary call that could
    escalate after generation, to the end. Once the monitor keeps a stream, the held text goes out together with
    the next piece and the rest passes straight through. Used by the pipeline and by `cascade_stream`.
    """

    def __init__(self, monitor: CascadeMonitor | None, *, streaming: bool, can_escalate: bool) -> None:
        self._monitor = monitor
        self._streaming = streaming
        self._held: list[str] = []
        self.holding = can_escalate and (monitor is not None or not streaming)

    def feed(self, text: str) -> str:
        """The text to pass on now: '' while it is held."""
        if not self.holding:
            return text
        verdict = self._monitor.verdict if self._monitor is not None else None
        if not self._streaming or verdict is None or verdict.collapsed:
            self._held.append(text)  # undecided, or to be replaced by the cloud's answer
            return ""
        self.holding = False  # the monitor judged the first k tokens and kept the local answer
        released = "".join([*self._held, text])
        self._held.clear()
        return released

    @property
    def held(self) -> tuple[str, ...]:
        """The pieces held back so far (the whole answer, when it was held to its end)."""
        return tuple(self._held)


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
    the local decode stops early; `escalate` starts the cloud answer and yields its text pieces. The monitor is
    fed here; in the daemon the engine feeds it (its hook) and the pipeline holds back with the same HoldBack.
    """
    hold = HoldBack(monitor, streaming=True, can_escalate=True)
    collapse: CascadeVerdict | None = None
    tokens = iter(local)
    try:
        for text, signals in tokens:
            verdict = monitor.observe(signals)
            if verdict is not None and verdict.collapsed:
                collapse = verdict
                break
            released = hold.feed(text)
            if released:
                yield StreamPiece(released, Source.LOCAL)
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
    if collapse is None:
        if hold.held:  # the answer ended before k tokens: release it whole
            yield StreamPiece("".join(hold.held), Source.LOCAL)
        return
    for text in escalate(collapse):
        yield StreamPiece(text, Source.CLOUD)
