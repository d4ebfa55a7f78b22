#!/usr/bin/env python3
"""Router latency: p50/p95 of scoring one 1,000-character prompt, onnxruntime against plain numpy.

Both sides compute the same prompt features (edged.routing.features) and run the same trained network
(models/router/router.onnx): edged's PromptRouter through onnxruntime, and a numpy forward pass over the
graph's own weights (read with the `onnx` package: `pip install -e '.[train]'`). They run interleaved in one
process on the same prompts, so machine load hits both alike. Also timed: the features alone, and each
model's inference alone on precomputed features.

    .venv/bin/python bench/router_latency.py [--iterations 3000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper

from edged.evaluation.items import load_items
from edged.routing.features import prompt_features
from edged.routing.router import PromptRouter

ROOT = Path(__file__).resolve().parents[1]
PROMPT_CHARS = 1000


class NumpyRouter:
    """The same network as the ONNX graph, evaluated with numpy (the baseline)."""

    def __init__(self, path: Path) -> None:
        weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
        self.shift, self.scale = weights["shift"], weights["scale"]
        self.hidden = (weights["w1"], weights["b1"]) if "w1" in weights else None
        self.out_w, self.out_b = weights["out_w"][:, 0], float(weights["out_b"][0])

    def infer(self, x: npt.NDArray[np.float32]) -> float:
        h = (x - self.shift) * self.scale
        if self.hidden is not None:
            h = np.maximum(h @ self.hidden[0] + self.hidden[1], 0.0)
        return float(1.0 / (1.0 + np.exp(-(h @ self.out_w + self.out_b))))

    def score(self, prompt: str) -> float:
        return self.infer(prompt_features(prompt))


def prompts(count: int, seed: int = 3) -> list[str]:
    """1,000-character prompts made of held-out items' text, varied so caches do not flatter anyone."""
    texts = [i.prompt for i in load_items(ROOT / "bench/evalsets/heldout.jsonl")]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < PROMPT_CHARS:
            parts.append(rng.choice(texts))
        out.append(" ".join(parts)[:PROMPT_CHARS])
    return out


def measure(cases: dict[str, Callable[[int], object]], iterations: int) -> dict[str, list[float]]:
    """Microseconds per call for each case, the cases interleaved call by call."""
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(iterations):
        for name, call in cases.items():
            started = time.perf_counter()
            call(i)
            timings[name].append((time.perf_counter() - started) * 1e6)
    return timings


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()
    directory = ROOT / "models" / "router"
    router = PromptRouter.load(directory)
    baseline = NumpyRouter(directory / router.manifest.file)
    texts = prompts(256)
    features = [prompt_features(t) for t in texts]
    batches = [f[np.newaxis, :] for f in features]
    n = len(texts)
    for t in texts[:8]:  # the two sides agree
        assert abs(router.score(t) - baseline.score(t)) < 1e-4
    cases: dict[str, Callable[[int], object]] = {
        "onnxruntime: features + model (edged)": lambda i: router.score(texts[i % n]),
        "numpy: features + model (baseline)": lambda i: baseline.score(texts[i % n]),
        "features only": lambda i: prompt_features(texts[i % n]),
        "onnxruntime: model only": lambda i: router._run(batches[i % n]),
        "numpy: model only": lambda i: baseline.infer(features[i % n]),
    }
    measure(cases, 200)  # warm up
    timings = measure(cases, args.iterations)
    reference = statistics.median(timings["onnxruntime: features + model (edged)"])
    print(
        f"router {router.manifest.id}: {n} distinct {PROMPT_CHARS}-character prompts, {args.iterations} calls each"
    )
    print(f"{'case':40s} {'p50 µs':>8s} {'p95 µs':>8s} {'p50 / edged':>12s}")
    for name, values in timings.items():
        p50, p95 = percentile(values, 50), percentile(values, 95)
        print(f"{name:40s} {p50:8.1f} {p95:8.1f} {p50 / reference:12.2f}")


if __name__ == "__main__":
    main()
