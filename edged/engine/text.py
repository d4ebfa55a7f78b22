"""Turning generated token bytes into text: incremental UTF-8 decoding and stop-string matching."""

from __future__ import annotations

import codecs


class Utf8Stream:
    """Decodes a byte stream piece by piece; a multi-byte character split across tokens waits for its rest."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds the first stop string in generated text and holds back text that might begin one.

    `push(text)` returns (text safe to emit now, whether a stop string was found). Once a stop string is found,
    the text before it has been emitted and nothing after it ever is.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self._longest = max((len(s) for s in self._stops), default=0)

    def push(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        pending = self._held + text
        cut = min((i for i in (pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held = ""
            return pending[:cut], True
        keep = self._partial_suffix(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], False

    def flush(self) -> str:
        """Text still held back when generation ends without a stop string."""
        held, self._held = self._held, ""
        return held

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
        for length in range(min(len(text), self._longest - 1), 0, -1):
            tail = text[-length:]
            if any(stop.startswith(tail) for stop in self._stops):
                return length
        return 0
