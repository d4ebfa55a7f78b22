"""The scan's fast paths against the slow ways they replace, on every message of the corpora: edged's NER decoder
against spaCy's own greedy loop (same entities), the street-address patterns run only where their required part
occurs against all of them always, the cued values tried only where a cue stands against each pattern's own
scan, the in-place context enhancement against Presidio's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy
import pytest
import spacy
from presidio_analyzer import AnalyzerEngine, PatternRecognizer
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from spacy.ml.models.tok2vec import (
    MaxoutWindowEncoder,
    MishWindowEncoder,
    MultiHashEmbed,
    build_Tok2Vec_model,
)
from thinc.api import Linear, Model, chain, list2array

from edged.config.privacy import PrivacySettings
from edged.sovereignty.cued import CUED_ENTITIES, CuedValueRecognizer
from edged.sovereignty.evaluation import load_corpus
from edged.sovereignty.ner_decoder import Floats, NerDecoder, Tok2Vec, WordVectors
from edged.sovereignty.nlp import NER_ONLY_EXCLUDES, pipeline_directory
from edged.sovereignty.presidio import PresidioDetector
from edged.sovereignty.recognizers import CASE_SENSITIVE
from edged.sovereignty.shapes import InternationalAddressRecognizer
from tests.sovereignty_parts import generated_corpus

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def directory() -> Path:
    return pipeline_directory(PrivacySettings().detector.spacy_model)


@pytest.fixture(scope="module")
def nlp(directory: Path) -> Any:
    """The default pipeline as spaCy loads it, with its whole vocab (strings and word vectors): the reference."""
    return spacy.load(directory, exclude=list(NER_ONLY_EXCLUDES))


@pytest.fixture(scope="module")
def vectors(directory: Path) -> WordVectors | None:
    return WordVectors.load(directory / "vocab")


@pytest.fixture(scope="module")
def decoder(nlp: Any, vectors: WordVectors | None) -> NerDecoder:
    built = NerDecoder.build(nlp.get_pipe("ner"), vectors)
    assert built is not None
    return built


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


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
    ours = decoder.spans(nlp.make_doc(text))
    assert [(e.start, e.end, e.label_) for e in ours] == [(e.start, e.end, e.label_) for e in nlp(text).ents]


def test_the_detector_decodes_with_edged(detector: PresidioDetector) -> None:
    assert detector.ner_decoder == "edged"


def spans(results: Any) -> list[tuple[int, int, str, float]]:
    return sorted((r.start, r.end, r.entity_type, round(r.score, 6)) for r in results)


def test_address_patterns_skipped_only_where_they_cannot_match() -> None:
    gated = InternationalAddressRecognizer()
    plain = PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        patterns=list(InternationalAddressRecognizer.PATTERNS),
        global_regex_flags=CASE_SENSITIVE,
    )
    plain.validate_result = gated.validate_result  # type: ignore[method-assign]  # the same validation
    texts = corpus_texts()
    patterns = {p.name for p in InternationalAddressRecognizer.PATTERNS}  # not the address parts beside them
    results = [
        [r for r in gated.analyze(t, ["STREET_ADDRESS"]) if r.analysis_explanation.pattern_name in patterns]
        for t in texts
    ]
    assert [spans(r) for r in results] == [spans(plain.analyze(t, ["STREET_ADDRESS"])) for t in texts]
    matched = {r.analysis_explanation.pattern_name for found in results for r in found}
    assert set(InternationalAddressRecognizer.REQUIRED) <= matched  # each gated pattern is run and matches


def test_cued_values_tried_only_where_a_cue_stands_find_what_each_patterns_own_scan_finds() -> None:
    recognizer = CuedValueRecognizer(CUED_ENTITIES)
    for text in corpus_texts():
        starts = [cue.start() for cue in recognizer._cue_at.finditer(text, overlapped=True)]
        for _entity, pattern, _score in recognizer._patterns:
            found = [m.span(1) for m in filter(None, (pattern.match(text, at) for at in starts))]
            assert found == [m.span(1) for m in pattern.finditer(text, overlapped=True)], text


def test_in_place_context_enhancement_scores_as_presidio_does(detector: PresidioDetector) -> None:
    ours = detector._analyzer
    theirs = AnalyzerEngine(
        registry=ours.registry,
        nlp_engine=ours.nlp_engine,
        supported_languages=["en"],
        default_score_threshold=ours.default_score_threshold,
        context_aware_enhancer=LemmaContextAwareEnhancer(),
    )
    boosted = 0
    for text in corpus_texts():
        a = ours.analyze(text, language="en", return_decision_process=True)
        assert spans(a) == spans(theirs.analyze(text, language="en")), text
        boosted += sum(bool(getattr(r.analysis_explanation, "supportive_context_word", "")) for r in a)
    assert boosted > 50  # context words raised many scores


def close_to(ours: Floats, theirs: Floats) -> bool:
    """The numpy tok2vec's tolerance: 1e-4 of the vectors' scale."""
    scale = max(1.0, float(numpy.abs(theirs).max(initial=0.0)))
    return ours.shape == theirs.shape and float(numpy.abs(ours - theirs).max(initial=0.0)) <= 1e-4 * scale


def test_the_numpy_tok2vec_gives_thincs_vectors_on_every_corpus_message(
    nlp: Any, vectors: WordVectors | None, decoder: NerDecoder
) -> None:
    model = nlp.get_pipe("ner").model.get_ref("tok2vec")
    tok2vec = Tok2Vec.build(model, vectors)
    assert tok2vec is not None
    assert decoder.tok2vec_library == "numpy"
    docs = [doc for doc in map(nlp.make_doc, corpus_texts()) if len(doc)]
    assert [i for i, doc in enumerate(docs) if not close_to(tok2vec(doc), model.predict([doc]))] == []


def projected_tok2vec(nlp: Any, encode: Model[Any, Any]) -> Model[Any, Any]:
    """A freshly initialised Tok2Vec.v2 of other sizes than en_core_web_sm's, with a projection as the NER's."""
    embed = MultiHashEmbed(width=32, attrs=["NORM", "SHAPE"], rows=[300, 200], include_static_vectors=False)
    model: Model[Any, Any] = chain(build_Tok2Vec_model(embed, encode), list2array(), Linear(16))
    model.initialize(X=[nlp.make_doc("Something to initialise the model with.")])
    return model


def test_the_numpy_tok2vec_computes_other_sizes_and_windows(nlp: Any) -> None:
    encode = MaxoutWindowEncoder(width=32, window_size=2, maxout_pieces=2, depth=3)
    model = projected_tok2vec(nlp, encode)
    tok2vec = Tok2Vec.build(model)
    assert tok2vec is not None
    for text in ["Bob", "Call Angela Merkel on +49 30 1234567 .", "x " * 40]:
        doc = nlp.make_doc(text)
        assert close_to(tok2vec(doc), model.predict([doc]))


def test_word_vector_rows_are_spacys(nlp: Any, vectors: WordVectors | None) -> None:
    assert vectors is not None  # the default model has static word vectors
    assert len(vectors) == len(nlp.vocab.vectors.key2row)
    assert vectors.width == nlp.vocab.vectors.shape[1]
    words = ["the", "The", "Okonkwo", "Lyon", "GB82WEST12345698765432", "zzqxj-not-a-word", "", "\n\n"]
    keys = numpy.array([nlp.vocab.strings.add(w) for w in words], dtype=numpy.uint64)
    rows = vectors.rows(keys)
    assert rows.tolist() == nlp.vocab.vectors.find(keys=keys).tolist()
    assert (rows >= 0).any()  # both kinds are checked
    assert (rows < 0).any()
    for key, row in zip(keys.tolist(), rows.tolist(), strict=True):
        if row >= 0:
            assert numpy.array_equal(vectors.table[row], nlp.vocab.vectors[key])


def test_a_tok2vec_with_static_vectors_needs_them(nlp: Any) -> None:
    model = nlp.get_pipe("ner").model.get_ref("tok2vec")
    assert Tok2Vec.build(model, None) is None


def test_tok2vec_models_of_other_shapes_get_none(nlp: Any) -> None:
    mish = projected_tok2vec(nlp, MishWindowEncoder(width=32, window_size=1, depth=2))
    unprojected = nlp.get_pipe("ner").model.get_ref("tok2vec").layers[0]
    assert Tok2Vec.build(mish) is None
    assert Tok2Vec.build(unprojected) is None
