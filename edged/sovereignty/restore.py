"""Putting redacted values back into the cloud's answer, whole or as it streams.

Placeholders look like `<PERSON_1>`: one `<`, an entity type (at most 48 characters, as the config allows), `_`,
a number of at most 9 digits, one `>`. In the answer of a redacted request:

- a placeholder of the mapping is replaced by its value;
- placeholder-shaped text the caller wrote (it occurs in the conversation or its control fields) is left alone;
- any other one was made up by the cloud: it stands for no value the device holds, so it is never shown as if
  it were data. It becomes a neutral marker naming its type, `[unknown email address]` for
  `<EMAIL_ADDRESS_2>` (a marker rather than nothing, so the sentence still shows that something is missing),
  and is counted by entity type in `invented`.

An answer to a request that was not redacted (no mapping) is left exactly as it is: the cloud saw no
placeholders, so any it writes are its own text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Mapping

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]{0,47}_[0-9]{1,9}>")
# Every proper prefix of a placeholder (`<`, `<EMAIL_ADD`, `<EMAIL_ADDRESS_1`): a stream holds such a tail back.
_PREFIX = re.compile(r"<(?:[A-Z][A-Z0-9_]{0,47}(?:_[0-9]{0,9})?)?")
LONGEST_PLACEHOLDER = 1 + 48 + 1 + 9 + 1


def entity_of(placeholder: str) -> str:
    """The entity type a placeholder names: `<EMAIL_ADDRESS_2>` -> `EMAIL_ADDRESS`."""
    return placeholder[1:-1].rsplit("_", 1)[0]


def invented_marker(placeholder: str) -> str:
    """What the caller sees instead of a placeholder the cloud made up: `[unknown email address]`."""
    return f"[unknown {entity_of(placeholder).lower().replace('_', ' ')}]"


class Restorer:
    """Replaces every known placeholder in a complete text with its value, and every invented one with its
    marker (see the module docstring). `own` are the placeholder-shaped texts of the caller's conversation."""

    def __init__(self, mapping: Mapping[str, str], own: Collection[str] = ()) -> None:
        self._mapping = dict(mapping)
        self._own = frozenset(own)
        self.restored = 0  # placeholders put back so far
        self.invented: Counter[str] = Counter()  # placeholders the cloud made up, by entity type

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(placeholders={len(self._mapping)}, restored={self.restored}, "
            f"invented={sum(self.invented.values())})"
        )

    def restore(self, text: str) -> str:
        if not self._mapping or "<" not in text:
            return text
        return PLACEHOLDER.sub(self._value_of, text)

    def _value_of(self, match: re.Match[str]) -> str:
        placeholder = match.group(0)
        value = self._mapping.get(placeholder)
        if value is not None:
            self.restored += 1
            return value
        if placeholder in self._own:
            return placeholder
        self.invented[entity_of(placeholder)] += 1
        return invented_marker(placeholder)


class StreamRestorer:
    """Restores an answer delta by delta. A delta ending inside what could still become a placeholder
    (`…<PERS`, `…<EMAIL_ADDRESS_`) is held back until the next delta completes or breaks it, so a caller never
    sees half a placeholder, known or invented. Call finish() after the last delta for whatever is still held."""

    def __init__(self, mapping: Mapping[str, str], own: Collection[str] = ()) -> None:
        self._restorer = Restorer(mapping, own)
        self._active = bool(mapping)
        self._held = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._restorer!r}, held={len(self._held)})"

    @property
    def restored(self) -> int:
        return self._restorer.restored

    @property
    def invented(self) -> Counter[str]:
        return self._restorer.invented

    def feed(self, delta: str) -> str:
        """The restored text that can be emitted now (possibly empty)."""
        text = self._held + delta
        cut = self._hold_from(text)
        self._held = text[cut:]
        return self._restorer.restore(text[:cut])

    def finish(self) -> str:
        """The rest: text held back at the end of the stream (a placeholder prefix that never completed)."""
        text, self._held = self._held, ""
        return self._restorer.restore(text)

    def _hold_from(self, text: str) -> int:
        """Where the held-back tail starts: the last `<` when what follows it is a proper prefix of a
        placeholder (a placeholder contains only one `<`, so no earlier one can still be completed)."""
        start = text.rfind("<")
        if not self._active or start < 0 or len(text) - start >= LONGEST_PLACEHOLDER:
            return len(text)
        return start if _PREFIX.fullmatch(text, start) else len(text)
