"""PII detection: the Detector interface (one method), findings, and three fakes for the seam (one that fails,
one that counts, one that finds given values); the real detector, built on Presidio, is
edged.sovereignty.presidio.

A detector returns disjoint findings (character offsets, entity type, score), never the values themselves, so
what it returns can be kept and logged without holding personal data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: text[start:end] is of entity_type."""

    start: int
    end: int
    entity_type: str
    score: float


class Detector(Protocol):
    def scan(self, text: str) -> list[Finding]:
        """Disjoint findings in `text`, ordered by start. Thread-safe."""
        ...


FALLBACK_TYPES = frozenset({"ID_NUMBER"})
"""Types that only say "some identifier": where a finding of a specific type overlaps one, the specific type
names the merged finding whatever the scores."""


def disjoint(findings: Sequence[Finding]) -> list[Finding]:
    """Merge overlapping findings into one covering their union, typed by the one of a specific type (a fallback
    type only when nothing else is there) that holds the other whole (a street address with a street named after a
    person is an address), then by the best-scored, then the longest: redaction then replaces every character any
    recognizer flagged, exactly once. Ties go to the type name that sorts last, so the result never depends on the
    order recognizers ran in."""
    merged: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, -f.end, f.entity_type)):
        last = merged[-1] if merged else None
        if last is None or f.start >= last.end:
            merged.append(f)
            continue
        start, end = last.start, max(last.end, f.end)
        best = max(
            (last, f),
            key=lambda x: (
                x.entity_type not in FALLBACK_TYPES,
                x.start == start and x.end == end,
                x.score,
                x.end - x.start,
                x.entity_type,
            ),
        )
        merged[-1] = Finding(start, end, best.entity_type, best.score)
    return merged


class RaisingDetector:
    """A detector that fails on every scan (the seam for fail-closed tests)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or RuntimeError("detector failure injected at the seam")
        self.calls = 0

    def scan(self, text: str) -> list[Finding]:
        self.calls += 1
        raise self.error


class MisplacedDetector:
    """A detector whose findings lie past the end of the text (the seam for a detector bug)."""

    def scan(self, text: str) -> list[Finding]:
        return [Finding(len(text), len(text) + 5, "PERSON", 0.9)]


class CountingDetector:
    """Wraps a detector and counts its scans (the seam for cache tests)."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.calls = 0

    def scan(self, text: str) -> list[Finding]:
        self.calls += 1
        return self.inner.scan(text)


class ValueDetector:
    """Finds exactly the values it is given (case-sensitive), as their entity types: the seam for tests that
    must control what is detected and what is missed."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)  # value -> entity type

    def scan(self, text: str) -> list[Finding]:
        found = []
        for value, entity_type in self.values.items():
            start = text.find(value)
            while value and start >= 0:
                found.append(Finding(start, start + len(value), entity_type, 1.0))
                start = text.find(value, start + len(value))
        return disjoint(found)
