"""edged's NER decoder against spaCy's own greedy loop, on the real model: the same entities on every message
of the corpora, and the detector uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import spacy

from edged.config.privacy import PrivacySettings
from edged.sovereignty.evaluation import load_corpus
from edged.sovereignty.ner_decoder import NerDecoder
from edged.sovereignty.nlp import NER_ONLY_EXCLUDES
from edged.sovereignty.presidio import PresidioDetector
from tests.sovereignty_parts import generated_corpus

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def nlp() -> Any:
    return spacy.load(PrivacySettings().detector.spacy_model, exclude=list(NER_ONLY_EXCLUDES))


@pytest.fixture(scope="module")
def decoder(nlp: Any) -> NerDecoder:
    built = NerDecoder.build(nlp.get_pipe("ner"))
    assert built is not None
    return built


def corpus_texts() -> list[str]:
    texts = [
        m.content
        for path in (DATA / "pii_corpus.jsonl", DATA / "pii_corpus_holdout.jsonl")
        for e in load_corpus(path)
        for m in e.messages
    ]
    texts += [m["content"] for name in ("dev", "test") for e in generated_corpus(name) for m in e["messages"]]
    return texts


def test_the_decoder_finds_what_spacy_finds_on_every_corpus_message(nlp: Any, decoder: NerDecoder) -> None:
    texts = corpus_texts()
    assert len(texts) > 500
    differing = [
        text
        for text in texts
        if decoder.entities(nlp.make_doc(text)) != [(e.start, e.end, e.label_) for e in nlp(text).ents]
    ]
    assert differing == []


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\n", "Bob", "Angela Merkel", "Call Angela Merkel", "  Angela  Merkel  \n", "x " * 300],
)
def test_edge_cases_match_spacy(nlp: Any, decoder: NerDecoder, text: str) -> None:
    ours = decoder(nlp.make_doc(text))
    assert [(e.start, e.end, e.label_) for e in ours.ents] == [
        (e.start, e.end, e.label_) for e in nlp(text).ents
    ]


def test_the_detector_decodes_with_edged() -> None:
    assert PresidioDetector(PrivacySettings()).ner_decoder == "edged"
