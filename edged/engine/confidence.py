"""Per-token confidence signals from the logits a decode step already produced.

For every output row of a step (one per running sequence) this computes, in a few vectorised numpy passes over the
vocabulary and without `logits_all`: the chosen token's log-probability, the top-2 log-probability margin and the
entropy of the next-token distribution. The work is O(rows x vocab) float32 passes, which is a few percent of a
decode step for a 49k vocabulary (measured in bench/engine.py).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edged.domain import TokenSignals

FloatRows = npt.NDArray[np.float32]


class SignalComputer:
    """Reuses one scratch buffer per shape so the per-step work allocates nothing large."""

    def __init__(self) -> None:
        self._scratch: FloatRows | None = None
        self._ones: npt.NDArray[np.float32] | None = None

    def argmax(self, logits: FloatRows) -> npt.NDArray[np.intp]:
        indices: npt.NDArray[np.intp] = np.argmax(logits, axis=1)
        return indices

    def signals(
        self, logits: FloatRows, chosen: list[int], top_index: npt.NDArray[np.intp] | None = None
    ) -> list[TokenSignals]:
        """Signals for each row of `logits` (rows x vocab, float32) given the token chosen in that row.

        `top_index` is each row's argmax when the caller has it already (greedy sampling computes it).
        `logits` is briefly modified in place (and restored), so call this after sampling from it.
        Sums run in float32 as BLAS dot products (blocked, so their error stays small): the signals match a
        float64 reference to about 1e-5, well inside what routing thresholds resolve, at a third of the cost.
        """
        rows = logits.shape[0]
        if (
            self._scratch is None
            or self._scratch.shape[0] < rows
            or self._scratch.shape[1] != logits.shape[1]
        ):
            self._scratch = np.empty((max(rows, 1), logits.shape[1]), dtype=np.float32)
            self._ones = np.ones(logits.shape[1], dtype=np.float32)
        assert self._ones is not None
        if top_index is None:
            top_index = np.argmax(logits, axis=1)
        if rows == 1:
            return [self._one_row(logits[0], self._scratch[0], chosen[0], int(top_index[0]), self._ones)]
        scratch = self._scratch[:rows]
        row_index = np.arange(rows)
        top = logits[row_index, top_index]
        np.subtract(logits, top[:, None], out=scratch)
        np.exp(scratch, out=scratch)
        total = (scratch @ self._ones).astype(np.float64)
        weighted = np.array([float(scratch[i] @ logits[i]) for i in range(rows)])  # BLAS dots: exact enough
        log_total = np.log(total)
        log_norm = top.astype(np.float64) + log_total
        entropy = log_norm - weighted / total
        # The second-best logit: mask the best one in place and put it back (saves a copy of every row). The
        # caller has already sampled from these logits and the next decode overwrites them.
        logits[row_index, top_index] = -np.inf
        second = logits.max(axis=1)
        logits[row_index, top_index] = top
        chosen_logits = logits[row_index, np.asarray(chosen, dtype=np.intp)]
        logprob = chosen_logits.astype(np.float64) - log_norm
        margin = (top - second).astype(np.float64)
        return [
            TokenSignals(
                logprob=float(logprob[i]), margin=float(margin[i]), entropy=float(max(entropy[i], 0.0))
            )
            for i in range(rows)
        ]

    @staticmethod
    def _one_row(
        row: npt.NDArray[np.float32],
        scratch: npt.NDArray[np.float32],
        chosen: int,
        top_index: int,
        ones: npt.NDArray[np.float32],
    ) -> TokenSignals:
        """The same signals for a step with one output row (a single stream) in about half the numpy calls:
        right after a decode the caches are cold and each call costs several times its warm price."""
        top = float(row[top_index])
        np.subtract(row, np.float32(top), out=scratch)
        np.exp(scratch, out=scratch)
        total = float(scratch @ ones)
        weighted = float(scratch @ row)
        log_norm = top + math.log(total)
        row[top_index] = -np.inf
        second = float(row.max())
        row[top_index] = top
        return TokenSignals(
            logprob=float(row[chosen]) - log_norm,
            margin=top - second,
            entropy=max(log_norm - weighted / total, 0.0),
        )
