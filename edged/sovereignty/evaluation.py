"""Scoring a detector against an annotated corpus: per-entity recall, precision and F2 (recall weighted over
precision, as Presidio's evaluation recommends for PII: a missed value leaks, a false one only costs a
placeholder).

A corpus is JSON lines: {"id", "messages": [{"role", "content"}], "entities": [{"type", "value"}]}; every
occurrence of a value in any message is a gold span of its type.

    detected  a finding of the same type covers the whole gold span (a partial hit counts as a miss)
    hidden    the union of all findings, of any type, covers the gold span (what redaction would replace)
    precision findings of a type that overlap a gold span of that type, over all findings of that type
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edged.domain import Message
from edged.sovereignty.detector import Finding

if TYPE_CHECKING:
    from edged.sovereignty.gate import SensitivityGate
    from edged.sovereignty.verdict import Verdict

Scan = Callable[[str], Sequence[Finding]]


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    id: str
    messages: tuple[Message, ...]
    entities: tuple[tuple[str, str], ...]  # (type, value)


@dataclass(frozen=True, slots=True)
class EntityScore:
    entity_type: str
    gold: int
    detected: int
    hidden: int
    findings: int
    true_findings: int

    @property
    def recall(self) -> float:
        return self.detected / self.gold if self.gold else 0.0

    @property
    def hidden_rate(self) -> float:
        return self.hidden / self.gold if self.gold else 0.0

    @property
    def precision(self) -> float:
        return self.true_findings / self.findings if self.findings else 0.0

    @property
    def f2(self) -> float:
        p, r = self.precision, self.recall
        return 5 * p * r / (4 * p + r) if p + r else 0.0


def load_corpus(path: Path) -> list[CorpusEntry]:
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        data = json.loads(line)
        messages = tuple(Message(m["role"], m["content"]) for m in data["messages"])
        entities = tuple((e["type"], e["value"]) for e in data["entities"])
        for entity_type, value in entities:
            if not any(value in m.content for m in messages):
                raise ValueError(f"{path}:{number}: {entity_type} value is not in the messages")
        entries.append(CorpusEntry(data["id"], messages, entities))
    return entries


def released_text(gate: SensitivityGate, messages: Sequence[Message], verdict: Verdict) -> str:
    """The text a PREFER_CLOUD request would send with the default policy: its released (redacted) messages, or
    nothing when the verdict keeps it on the device."""
    if not verdict.allows_cloud:
        return ""
    return "\n".join(m.content for m in gate.release(messages, verdict).messages)


def gold_spans(text: str, entities: Iterable[tuple[str, str]]) -> set[tuple[int, int, str]]:
    spans = set()
    for entity_type, value in entities:
        start = text.find(value)
        while start >= 0:
            spans.add((start, start + len(value), entity_type))
            start = text.find(value, start + 1)
    return spans


def score(
    corpus: Iterable[CorpusEntry], scan: Scan, entity_types: Iterable[str] | None = None
) -> list[EntityScore]:
    """Per-entity scores of `scan` on the corpus (for `entity_types`, default: the types in the gold data)."""
    gold: Counter[str] = Counter()
    detected: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    found: Counter[str] = Counter()
    true_found: Counter[str] = Counter()
    for entry in corpus:
        for message in entry.messages:
            spans = gold_spans(message.content, entry.entities)
            findings = list(scan(message.content))
            for start, end, entity_type in spans:
                gold[entity_type] += 1
                detected[entity_type] += any(
                    f.entity_type == entity_type and f.start <= start and f.end >= end for f in findings
                )
                hidden[entity_type] += _covered(start, end, findings)
            for f in findings:
                found[f.entity_type] += 1
                true_found[f.entity_type] += any(
                    t == f.entity_type and f.start < e and s < f.end for s, e, t in spans
                )
    types = sorted(entity_types) if entity_types is not None else sorted(gold)
    return [EntityScore(t, gold[t], detected[t], hidden[t], found[t], true_found[t]) for t in types]


def total(scores: Sequence[EntityScore]) -> EntityScore:
    """Micro-averaged over the given types."""
    return EntityScore(
        "ALL",
        sum(s.gold for s in scores),
        sum(s.detected for s in scores),
        sum(s.hidden for s in scores),
        sum(s.findings for s in scores),
        sum(s.true_findings for s in scores),
    )


def _covered(start: int, end: int, findings: Sequence[Finding]) -> bool:
    position = start
    for f in sorted(findings, key=lambda f: f.start):
        if f.start <= position < f.end:
            position = f.end
        if position >= end:
            return True
    return position >= end
