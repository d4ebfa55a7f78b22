"""The PII corpora through the real detector and gate: per-entity recall floors, and redaction of every
conversation with no detected value left anywhere and an exact round trip.

pii_corpus.jsonl is the development set the recognizers were tuned on; pii_corpus_holdout.jsonl was written
afterwards and never tuned against. Their scores are in docs/sovereignty.md (bench/pii_scan.py prints them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edged.config import parse_profile
from edged.config.privacy import DataPolicy, PrivacySettings
from edged.domain import Message
from edged.sovereignty.evaluation import (
    CorpusEntry,
    EntityScore,
    gold_spans,
    load_corpus,
    released_text,
    score,
    total,
)
from edged.sovereignty.gate import SensitivityGate
from edged.sovereignty.presidio import PresidioDetector
from tests.sovereignty_parts import generated_corpus

DATA = Path(__file__).parent / "data"
DEV = load_corpus(DATA / "pii_corpus.jsonl")
HOLDOUT = load_corpus(DATA / "pii_corpus_holdout.jsonl")
ISSUE_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "STREET_ADDRESS",
)


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


@pytest.fixture(scope="module")
def dev_scores(detector: PresidioDetector) -> dict[str, EntityScore]:
    return {s.entity_type: s for s in score(DEV, detector.scan)}


def test_corpora_cover_the_issue_entities_single_and_multi_turn() -> None:
    for corpus in (DEV, HOLDOUT):
        types = {t for entry in corpus for t, _ in entry.entities}
        assert set(ISSUE_ENTITIES) | {"API_KEY"} <= types
        assert any(len(entry.messages) > 2 and entry.entities for entry in corpus)
        assert any(not entry.entities for entry in corpus)  # prompts with no personal data


def test_dev_recall_floors(dev_scores: dict[str, EntityScore]) -> None:
    for entity, floor in {"PERSON": 0.85, "STREET_ADDRESS": 0.85}.items():
        assert dev_scores[entity].recall >= floor, dev_scores[entity]
    for entity in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "API_KEY"):
        assert dev_scores[entity].recall == 1.0, dev_scores[entity]
    assert total(list(dev_scores.values())).f2 >= 0.95


def test_holdout_floors(detector: PresidioDetector) -> None:
    overall = total(score(HOLDOUT, detector.scan))
    assert overall.recall >= 0.9, overall
    assert overall.hidden_rate >= 0.9, overall
    assert overall.f2 >= 0.9, overall


def test_prompts_without_personal_data_mostly_stay_clean(detector: PresidioDetector) -> None:
    clean = [e for e in (*DEV, *HOLDOUT) if not e.entities]
    noisy = [e.id for e in clean if any(detector.scan(m.content) for m in e.messages)]
    assert len(noisy) <= len(clean) // 10, noisy


@pytest.mark.parametrize("corpus", [DEV, HOLDOUT], ids=["dev", "holdout"])
def test_redaction_round_trip_over_the_corpus(detector: PresidioDetector, corpus: list[CorpusEntry]) -> None:
    redact_all = {name: {"policy": "REDACT"} for name in PrivacySettings().classes()}
    gate = SensitivityGate(parse_profile({"privacy": {"data_classes": redact_all}}).privacy, detector)
    for entry in corpus:
        verdict = gate.assess(entry.messages)
        release = gate.release(entry.messages, verdict)
        sent = "\n".join(m.content for m in release.messages)
        restorer = release.restorer()
        assert [restorer.restore(m.content) for m in release.messages] == [m.content for m in entry.messages]
        detected = {
            m.content[f.start : f.end]
            for m, findings in zip(entry.messages, verdict.findings, strict=True)
            for f in findings
        }
        for _, value in entry.entities:
            if any(_covers(value, d) for d in detected):
                assert value not in sent, (entry.id, value)


def _covers(gold: str, detected: str) -> bool:
    return gold in detected


def test_gold_spans_find_every_occurrence() -> None:
    assert gold_spans("a Bo b Bo", [("PERSON", "Bo")]) == {(2, 4, "PERSON"), (7, 9, "PERSON")}


# -- the generated corpus (bench/pii_corpus.py): dev slice only; the held-back slice is never tested on ----------


def test_generated_dev_slice_keeps_every_value_on_the_device(detector: PresidioDetector) -> None:
    """PREFER_CLOUD with the default policy: a verdict kept local sends nothing, otherwise the released
    messages must not hold the value (bench/pii_scan.py prints the same per type and locale)."""
    gate = SensitivityGate(PrivacySettings(), detector)
    leaked, values, flagged, clean = [], 0, [], 0
    for entry in generated_corpus("dev"):
        messages = [Message(m["role"], m["content"]) for m in entry["messages"]]
        verdict = gate.assess(messages)
        if not entry["entities"]:
            clean += 1
            flagged += [entry["id"]] if verdict.policy is not DataPolicy.ALLOW else []
            continue
        sent = released_text(gate, messages, verdict)
        for gold in entry["entities"]:
            values += 1
            leaked += [f"{entry['id']} {gold['type']}"] if gold["value"] in sent else []
    assert values >= 250
    assert len(leaked) <= values // 100, leaked
    assert len(flagged) <= clean // 10, flagged


def test_generated_clean_prompts_cover_what_the_issue_names() -> None:
    for slice_name in ("dev", "test"):
        clean = [e["messages"][0]["content"] for e in generated_corpus(slice_name) if not e["entities"]]
        first_words = {text.split()[0] for text in clean}
        assert {"Email", "Call", "Text", "Message"} & first_words  # verbs opening a sentence
        assert any(re.search(r"\b\d+\.\d+(?:\.\d+)?\b", t) for t in clean)  # version strings
        assert any(re.search(r"\b1\d{3}\b", t) for t in clean)  # dates of historical events
        assert any("def " in t or "range(" in t for t in clean)  # code
        assert any(re.search(r"\d\s*[*+/^=]\s*\d|x\^2", t) for t in clean)  # maths
        assert any(p in t for t in clean for p in ("Raspberry Pi", "PostgreSQL", "Kubernetes", "Jetson"))
