"""Redaction: the conversation as it may leave the device, with each detected value replaced by a numbered
placeholder (`<PERSON_1>`; the same value gets the same placeholder in every message), and the mapping that
puts the values back, which never leaves this process.

Detected spans are replaced with Presidio's AnonymizerEngine; then every other occurrence of a redacted value
in any message is replaced too, so a name the detector found in one turn but missed in another cannot leak,
and so is each part of a found name that stands alone elsewhere ("Aantje Mourik" ... "Aantje").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edged.domain import Message
from edged.sovereignty.detector import Finding
from edged.sovereignty.restore import PLACEHOLDER, Restorer, StreamRestorer
from edged.sovereignty.words import COMMON_WORDS, NAME_PARTICLES, NAME_TITLES


@dataclass(frozen=True, slots=True)
class CloudRelease:
    """What the gate lets leave the device for one request, and how to restore the answer."""

    messages: tuple[Message, ...]  # send these, and only these, to the cloud
    redacted: bool
    counts: Mapping[str, int] = field(default_factory=dict)  # entity type -> distinct values replaced
    replacements: int = 0  # placeholders written, all messages together
    mapping: Mapping[str, str] = field(default_factory=dict, repr=False)  # placeholder -> value
    originals: tuple[Message, ...] = field(default=(), repr=False)
    # The control fields that go with the messages, as the gate let them (never redacted: see verdict.py).
    stop: tuple[str, ...] = field(default=(), repr=False)
    json_schema: str | None = field(default=None, repr=False)

    def restorer(self) -> Restorer:
        return Restorer(self.mapping, self.own_placeholders())

    def stream_restorer(self) -> StreamRestorer:
        return StreamRestorer(self.mapping, self.own_placeholders())

    def own_placeholders(self) -> frozenset[str]:
        """Placeholder-shaped texts the caller wrote (in the conversation or its control fields): an answer
        may quote them; they are not placeholders the cloud made up."""
        texts = (*(m.content for m in self.originals), *self.stop, self.json_schema or "")
        return frozenset(m.group(0) for text in texts for m in PLACEHOLDER.finditer(text))

    def in_conversation(self, value: str) -> bool:
        """Whether `value` occurs in the original conversation or its control fields (so the cloud did not
        invent it)."""
        texts = (*(m.content for m in self.originals), *self.stop, self.json_schema or "")
        return any(value in text for text in texts) or value in self.mapping.values()


class _Numbering:
    """Placeholders by value, numbered per entity type in order of first appearance, skipping numbers whose
    placeholder text already occurs in the conversation."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = taken
        self._last: Counter[str] = Counter()
        self.by_value: dict[str, str] = {}
        self.types: dict[str, str] = {}  # value -> entity type

    def of(self, entity_type: str, value: str) -> str:
        if (known := self.by_value.get(value)) is not None:
            return known
        number = self._last[entity_type] + 1
        while f"<{entity_type}_{number}>" in self._taken:
            number += 1
        self._last[entity_type] = number
        placeholder = self.by_value[value] = f"<{entity_type}_{number}>"
        self.types[value] = entity_type
        return placeholder


class Redactor:
    """Builds CloudReleases. Thread-safe: it keeps no state between calls."""

    def __init__(self) -> None:
        # presidio_anonymizer imports presidio_analyzer (~1.5 s): only a gate that redacts pays for it.
        from presidio_anonymizer import AnonymizerEngine  # noqa: PLC0415
        from presidio_anonymizer.entities import (  # noqa: PLC0415
            ConflictResolutionStrategy,
            OperatorConfig,
            RecognizerResult,
        )

        self._engine = AnonymizerEngine()  # type: ignore[no-untyped-call] # Presidio's __init__ is untyped
        self._result = RecognizerResult
        self._operator = OperatorConfig
        self._strategy = ConflictResolutionStrategy.REMOVE_INTERSECTIONS

    def redact(
        self, messages: Sequence[Message], findings: Sequence[Sequence[Finding]], types: frozenset[str]
    ) -> CloudRelease:
        """Replace the findings of `types` in every message; the rest of each message is unchanged."""
        wanted = [[f for f in per_message if f.entity_type in types] for per_message in findings]
        taken = {m.group(0) for message in messages for m in PLACEHOLDER.finditer(message.content)}
        numbering = _Numbering(taken)
        for message, per_message in zip(messages, wanted, strict=True):
            for f in per_message:
                numbering.of(f.entity_type, message.content[f.start : f.end])
        replaced = 0
        texts: list[str] = []
        for message, per_message in zip(messages, wanted, strict=True):
            text, count = self._replace_spans(message.content, per_message, numbering)
            text, swept = _sweep(text, numbering.by_value)
            replaced += count + swept
            texts.append(text)
        # A part of a found name standing alone elsewhere ("My name is Aantje Mourik ... calls me Aantje"):
        # the same person, so it gets a placeholder of its own (restored to that part, not the whole name).
        parts = {p for value, kind in numbering.types.items() if kind == "PERSON" for p in name_parts(value)}
        alone = [
            p
            for p in sorted(parts)
            if p not in numbering.by_value and any(mentions(t, p, any_case=False) for t in texts)
        ]
        if alone:
            swept_parts = {p: numbering.of("PERSON", p) for p in alone}
            for index, text in enumerate(texts):
                texts[index], swept = _sweep(text, swept_parts)
                replaced += swept
        out = [Message(message.role, text) for message, text in zip(messages, texts, strict=True)]
        return CloudRelease(
            messages=tuple(out),
            redacted=True,
            counts=dict(sorted(Counter(numbering.types.values()).items())),
            replacements=replaced,
            mapping={p: v for v, p in numbering.by_value.items()},
            originals=tuple(messages),
        )

    def _replace_spans(
        self, text: str, findings: Sequence[Finding], numbering: _Numbering
    ) -> tuple[str, int]:
        if not findings:
            return text, 0
        results = [self._result(f.entity_type, f.start, f.end, f.score) for f in findings]
        operators = {
            entity: self._operator("custom", {"lambda": lambda value, e=entity: numbering.of(e, value)})
            for entity in {f.entity_type for f in findings}
        }
        result = self._engine.anonymize(
            text,
            results,
            operators,
            conflict_resolution=self._strategy,
            merge_entities_with_spaces=False,
        )
        return str(result.text), len(result.items)


def _sweep(text: str, placeholders: Mapping[str, str]) -> tuple[str, int]:
    """Replace remaining whole-word occurrences of redacted values, never touching placeholder text."""
    if not placeholders:
        return text, 0
    values = sorted(placeholders, key=len, reverse=True)
    alternatives = "|".join(_whole(v) for v in values)
    pattern = re.compile(f"({PLACEHOLDER.pattern})|{alternatives}")
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(1):
            return match.group(1)
        count += 1
        return placeholders[match.group(0)]

    return pattern.sub(replace, text), count


_NAME_PART = re.compile(r"[^\W\d_](?:[^\W\d_]|['’\-](?=[^\W\d_]))*")
_NOT_A_PART = frozenset((*NAME_TITLES, *NAME_PARTICLES, "sir", "madam", "jr", "sr", "ii", "iii"))


_POSSESSIVE = re.compile(r"['’]s$")


def name_parts(name: str) -> list[str]:
    """The words of a name that identify its person on their own: capitalised, two letters or more, not a
    title, particle or common word, without a possessive's "'s" ("Dr. Ján M. Novák" -> "Ján", "Novák";
    "Emmie Ström's" -> "Emmie", "Ström")."""
    return [
        word
        for word in (_POSSESSIVE.sub("", w) for w in _NAME_PART.findall(name))
        if len(word) >= 2
        and word[0].isupper()
        and word.lower() not in _NOT_A_PART
        and word.lower() not in COMMON_WORDS
    ]


def mentions(text: str, value: str, *, any_case: bool = True) -> bool:
    """Whether `value` occurs in `text` as a whole word, in any case (or only in its own)."""
    flags = re.IGNORECASE if any_case else 0
    return value != "" and re.search(_whole(value), text, flags) is not None


def _whole(value: str) -> str:
    before = r"(?<!\w)" if re.match(r"\w", value[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", value[-1]) else ""
    return f"{before}{re.escape(value)}{after}"
