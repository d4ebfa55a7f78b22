"""Putting redacted values back into the cloud's answer, whole or as it streams.

Placeholders look like `<PERSON_1>`: one `<`, an entity type, a number, one `>`. Text that looks like a
placeholder but is not in the mapping (the caller's own text, or one the cloud invented) is left as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_[0-9]+>")


class Restorer:
    """Replaces every known placeholder in a complete text with its value."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = dict(mapping)
        self.restored = 0  # placeholders put back so far

    def __repr__(self) -> str:
        return f"{type(self).__name__}(placeholders={len(self._mapping)}, restored={self.restored})"

    def restore(self, text: str) -> str:
        if not self._mapping or "<" not in text:
            return text
        return PLACEHOLDER.sub(self._value_of, text)

    def _value_of(self, match: re.Match[str]) -> str:
        placeholder = match.group(0)
        value = self._mapping.get(placeholder)
        if value is None:
            return placeholder
        self.restored += 1
        return value


class StreamRestorer:
    """Restores an answer delta by delta. A delta ending inside a possible placeholder (`…<PERS`) is held
    back until the next delta completes or breaks it, so a caller never sees half a placeholder. Call finish()
    after the last delta for whatever is still held."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._restorer = Restorer(mapping)
        self._placeholders = tuple(mapping)
        self._longest = max((len(p) for p in mapping), default=0)
        self._held = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(placeholders={len(self._placeholders)}, held={len(self._held)})"

    @property
    def restored(self) -> int:
        return self._restorer.restored

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
        """Where the held-back tail starts: the last `<` when what follows it is a proper prefix of a known
        placeholder (a placeholder contains only one `<`, so no earlier one can still be completed)."""
        start = text.rfind("<")
        if start < 0 or len(text) - start >= self._longest:
            return len(text)
        tail = text[start:]
        if any(len(p) > len(tail) and p.startswith(tail) for p in self._placeholders):
            return start
        return len(text)
