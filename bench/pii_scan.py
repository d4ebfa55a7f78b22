"""PII scan latency and recall: edged's gate vs Presidio with its default full spaCy pipeline, side by side.

    .venv/bin/python bench/pii_scan.py [--prompts 20] [--rounds 10] [--no-recall] [--slice test|dev|wide|none]

--slice (default test, the held-back slice of bench/pii_corpus.py, never tuned on) runs the generated corpus
through the gate with the default policy as PREFER_CLOUD would: a conversation the verdict keeps local sends
nothing; otherwise a value is out when it occurs in the released (redacted) messages. It prints, per gold type
and per locale, the share of values that stay on the device ("kept"), the share detected as a type of the
value's own data class ("typed"), Presidio default's share covered by any of its findings, and the share of
clean prompts kept local or redacted needlessly.

edged: SensitivityGate.assess (scan cache off) with the default [privacy] settings — Presidio's AnalyzerEngine
over a NER-only pipeline of the default spaCy model (en_core_web_md) and only the recognizers the data classes need.
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

from pii_corpus import generate  # bench/pii_corpus.py, beside this script

from edged.config.privacy import DataPolicy, PrivacySettings
from edged.domain import Message
from edged.sovereignty.detector import Finding
from edged.sovereignty.evaluation import EntityScore, load_corpus, released_text, score, total
from edged.sovereignty.gate import SensitivityGate
from edged.sovereignty.nlp import pipeline_directory

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


# The data class a generated value of each gold type belongs to (bench/pii_corpus.py's types).
GOLD_CLASS = {
    "PERSON": "identity",
    "DATE_OF_BIRTH": "identity",
    "STREET_ADDRESS": "contact",
    "PHONE_NUMBER": "contact",
    "EMAIL_ADDRESS": "contact",
    "IBAN_CODE": "financial",
    "CREDIT_CARD": "financial",
    "BANK_ACCOUNT": "financial",
    "NATIONAL_ID": "government_id",
    "PASSPORT": "government_id",
    "DRIVER_LICENSE": "government_id",
    "TAX_ID": "government_id",
    "PASSWORD": "credentials",
    "MEDICAL_ID": "health",
    "INSURANCE_ID": "health",
}
GATES: dict[str, SensitivityGate] = {}


def load_edged() -> tuple[Scan, Callable[[str], object]]:
    gate = SensitivityGate.load(PrivacySettings())
    detector = gate.detector
    print(f"edged NER matrix products: {getattr(detector, 'matrix_library', '?')}")
    uncached = SensitivityGate(PrivacySettings(), detector, cache_size=0)
    GATES["edged"] = uncached
    return detector.scan, lambda text: uncached.assess([Message("user", text)])


def load_presidio_default() -> tuple[Scan, Callable[[str], object]]:
    configuration = {
        "nlp_engine_name": "spacy",
        # the same pipeline as edged's default, by its folder (Presidio would try to download a name spaCy does
        # not know as a package)
        "models": [
            {"lang_code": "en", "model_name": str(pipeline_directory(PrivacySettings().detector.spacy_model))}
        ],
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
    parser.add_argument(
        "--slice", choices=("test", "dev", "wide", "none"), default="test", help="generated corpus slice"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency table")
    args = parser.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    print(f"RSS after importing Presidio and spaCy: {rss_mb():.0f} MB")
    loaded: dict[str, tuple[Scan, Callable[[str], object]]] = {}
    for name, loader in (("edged", load_edged), ("presidio-default", load_presidio_default)):
        before, started = rss_mb(), time.perf_counter()
        loaded[name] = loader()
        print(f"{name:17} load {time.perf_counter() - started:5.2f} s, RSS +{rss_mb() - before:6.1f} MB")
        if name == "edged":
            print(f"RSS with edged's gate loaded (the gate's share of the daemon): {rss_mb():.0f} MB")
    if args.slice != "none":
        print_generated(args.slice, loaded["presidio-default"][0])
    if args.no_latency:
        return 0

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


def print_generated(slice_name: str, presidio: Scan) -> None:
    """The generated slice through the gate (see the module docstring)."""
    gate = GATES["edged"]
    classes = {e: c.name for c in gate.settings.classes().values() for e in c.entities}
    entries = generate(slice_name)
    kept: dict[str, list[bool]] = {}
    typed: dict[str, list[bool]] = {}
    theirs: dict[str, list[bool]] = {}
    by_locale: dict[str, list[bool]] = {}
    clean_flagged, clean = [], 0
    for entry in entries:
        messages = [Message(m["role"], m["content"]) for m in entry["messages"]]
        verdict = gate.assess(messages)
        if not entry["entities"]:
            clean += 1
            if verdict.policy is not DataPolicy.ALLOW:
                clean_flagged.append(f"{entry['id']} ({verdict.reasons[0]})")
            continue
        sent = released_text(gate, messages, verdict)
        for gold in entry["entities"]:
            value, gold_type = gold["value"], gold["type"]
            stays = value not in sent
            kept.setdefault(gold_type, []).append(stays)
            by_locale.setdefault(entry["locale"], []).append(stays)
            typed.setdefault(gold_type, []).append(
                _covered_by(messages, verdict.findings, value, _of_class(classes, GOLD_CLASS[gold_type]))
            )
            theirs.setdefault(gold_type, []).append(
                all(_covered(m.content, presidio(m.content), value) for m in messages if value in m.content)
            )
    print(f"\nGenerated slice '{slice_name}' ({len(entries)} conversations): values kept on the device\n")
    print("| gold type | data class | values | edged kept | edged typed | presidio-default covered |")
    print("|---|---|---:|---:|---:|---:|")
    for gold_type in sorted(kept):
        k, t, p = kept[gold_type], typed[gold_type], theirs[gold_type]
        print(f"| {gold_type} | {GOLD_CLASS[gold_type]} | {len(k)} | {_rate(k)} | {_rate(t)} | {_rate(p)} |")
    everything = [x for k in kept.values() for x in k]
    print(
        f"| **all** | | {len(everything)} | **{_rate(everything)}** | {_rate([x for t in typed.values() for x in t])} "
        f"| {_rate([x for p in theirs.values() for x in p])} |"
    )
    print("\n| locale | values | edged kept |\n|---|---:|---:|")
    for locale in sorted(by_locale):
        print(f"| {locale} | {len(by_locale[locale])} | {_rate(by_locale[locale])} |")
    share = len(clean_flagged) / clean if clean else 0.0
    print(f"\nClean prompts kept local or redacted needlessly: {len(clean_flagged)}/{clean} ({share:.1%})")
    for flagged in clean_flagged:
        print(f"  {flagged}")


def _of_class(classes: dict[str, str], data_class: str) -> Callable[[str], bool]:
    return lambda entity_type: classes.get(entity_type) == data_class


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags) / len(flags):.3f}" if flags else "-"


def _covered(
    text: str, findings: Sequence[Finding], value: str, wanted: Callable[[str], bool] = bool
) -> bool:
    """Every occurrence of `value` in `text` is covered by the union of the findings whose type is wanted."""
    start = text.find(value)
    while start >= 0:
        position, end = start, start + len(value)
        for f in sorted(findings, key=lambda f: f.start):
            if wanted(f.entity_type) and f.start <= position < f.end:
                position = f.end
        if position < end:
            return False
        start = text.find(value, start + 1)
    return True


def _covered_by(
    messages: Sequence[Message],
    findings: Sequence[Sequence[Finding]],
    value: str,
    wanted: Callable[[str], bool],
) -> bool:
    """Whether every message holding the value has it flagged; an unscanned verdict (a detector fault) has no
    findings, so nothing is covered (its text stays on the device, which `kept` counts)."""
    if len(findings) != len(messages):
        return False
    return all(
        _covered(m.content, found, value, wanted)
        for m, found in zip(messages, findings, strict=True)
        if value in m.content
    )


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
