"""SignalComputer against a float64 log-softmax reference, for one output row and for a batch of rows."""

from __future__ import annotations

import numpy as np
import pytest

from edged.engine.confidence import SignalComputer


def reference(row: np.ndarray, chosen: int) -> tuple[float, float, float]:
    row64 = row.astype(np.float64)
    log_probs = row64 - (row64.max() + np.log(np.exp(row64 - row64.max()).sum()))
    top2 = np.sort(log_probs)[-2:]
    entropy = float(-(np.exp(log_probs) * log_probs).sum())
    return float(log_probs[chosen]), float(top2[1] - top2[0]), entropy


@pytest.mark.parametrize("rows", [1, 2, 7])
def test_signals_match_a_float64_log_softmax(rows: int) -> None:
    rng = np.random.default_rng(rows)
    logits = (rng.standard_normal((rows, 49152)) * 4).astype(np.float32)
    logits[:, 17] += 12.0  # a confident row, as most generated tokens are
    original = logits.copy()
    chosen = [int(rng.integers(0, 49152)) if r % 2 else int(logits[r].argmax()) for r in range(rows)]
    computer = SignalComputer()
    for _ in range(2):  # a second step reuses the scratch buffers
        got = computer.signals(logits, chosen, computer.argmax(logits))
        assert len(got) == rows
        for r, signals in enumerate(got):
            logprob, margin, entropy = reference(original[r], chosen[r])
            assert signals.logprob == pytest.approx(logprob, abs=1e-4)
            assert signals.margin == pytest.approx(margin, abs=1e-4)
            assert signals.entropy == pytest.approx(entropy, abs=1e-4)
    np.testing.assert_array_equal(logits, original)  # restored after the in-place masking


def test_one_row_and_batched_paths_agree() -> None:
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((3, 1000)) * 3).astype(np.float32)
    chosen = [5, 6, 7]
    batched = SignalComputer().signals(logits.copy(), chosen)
    for r in range(3):
        single = SignalComputer().signals(logits[r : r + 1].copy(), [chosen[r]])[0]
        assert single.logprob == pytest.approx(batched[r].logprob, abs=1e-5)
        assert single.margin == pytest.approx(batched[r].margin, abs=1e-6)
        assert single.entropy == pytest.approx(batched[r].entropy, abs=1e-5)
