"""Repetition control: llama.cpp's repeat penalty on recent tokens, and a guard that stops degenerate loops.

A 135M model answering greedily falls into loops ("la femme au roi, la femme au roi, ...") until max_tokens. Two
defences, both per sequence and both on the engine thread:

- `RecentTokens` keeps the last `repeat_last_n` generated tokens; `penalize()` applies llama.cpp's (and Ollama's)
  repeat penalty to them on a logits row, in place, and `restore()` puts the row back, so the confidence signals
  are still computed on the model's own distribution.
- `LoopGuard` sees each token and says when the answer's tail is one span repeated: a period p (1..max_period)
  that the last `min_tokens` tokens (and at least three whole cycles) follow. It keeps, for every period, how many
  tokens in a row matched the token p back, so a step costs one comparison per period.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

MAX_PERIOD = 64


class RecentTokens:
    """The last `n` generated tokens of a sequence and the repeat penalty on them."""

    __slots__ = ("_saved", "_tokens", "penalty")

    def __init__(self, n: int, penalty: float) -> None:
        self._tokens: deque[int] = deque(maxlen=max(n, 1))
        self.penalty = penalty if n > 0 else 1.0
        self._saved: tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]] | None = None

    @property
    def active(self) -> bool:
        return self.penalty != 1.0 and bool(self._tokens)

    def push(self, token: int) -> None:
        self._tokens.append(token)

    def __contains__(self, token: int) -> bool:
        return token in self._tokens

    def penalize(self, row: npt.NDArray[np.float32]) -> None:
        """llama.cpp's penalty_repeat on this row (in place): a positive logit is divided, a negative one
        multiplied, once per distinct recent token."""
        ids = np.fromiter(set(self._tokens), dtype=np.intp)
        values = row[ids].copy()
        self._saved = (ids, values)
        row[ids] = np.where(values > 0, values / self.penalty, values * self.penalty)

    def restore(self, row: npt.NDArray[np.float32]) -> None:
        if self._saved is not None:
            ids, values = self._saved
            row[ids] = values
            self._saved = None


class LoopGuard:
    """Says when the generated tokens end in `min_tokens` (and >= 3 cycles) of one repeated span."""

    __slots__ = ("_history", "_min_tokens", "_periods", "_runs")

    def __init__(self, min_tokens: int, max_period: int = MAX_PERIOD) -> None:
        self._min_tokens = min_tokens
        self._periods = range(1, max_period + 1) if min_tokens > 0 else range(0)
        self._runs = [0] * (max_period + 1)  # _runs[p]: tokens in a row equal to the token p before them
        self._history: deque[int] = deque(maxlen=max_period + 1)

    def push(self, token: int) -> bool:
        """Take the next token; True when the answer has become a loop."""
        history, runs = self._history, self._runs
        history.append(token)
        n = len(history)
        looping = False
        for period in self._periods:
            if period >= n:
                break
            if history[n - 1 - period] == token:
                runs[period] += 1
                span = runs[period] + period
                if span >= self._min_tokens and span >= 3 * period:
                    looping = True
            else:
                runs[period] = 0
        return looping
