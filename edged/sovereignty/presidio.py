"""The real detector: Presidio's AnalyzerEngine over a NER-only spaCy pipeline (imported only when a gate is
built: loading Presidio and spaCy takes a second or two and ~150 MB)."""

from __future__ import annotations

import bisect
import logging
import re
import threading
import time
from typing import Any

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer, LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

from edged.config.privacy import PrivacySettings
from edged.errors import ConfigError
from edged.sovereignty.cued import CuedNameRecognizer, conjunct_names, trim_common_words
from edged.sovereignty.detector import Finding, disjoint
from edged.sovereignty.nlp import NerOnlySpacyEngine
from edged.sovereignty.recognizers import NER_ENTITIES, pattern_recognizers
from edged.sovereignty.unlisted import recipient_names

logger = logging.getLogger(__name__)

# Scanned once at load so every recognizer's lazy state (phone metadata, compiled patterns) is built before
# the first request.
_WARM_UP_TEXT = (
    "Ada Lovelace lives at 12 St James's Square, London. Mail ada@example.org, call +44 20 7946 0958, "
    "card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE."
)


class IndexedContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's context enhancement, with the token under each finding found by bisection.

    Presidio finds it by walking the spaCy Doc from its start for every finding (a Token object made per step),
    so its cost grows as findings x tokens: a third of a 1,000-character scan. The rule is the same (the first
    token that starts at the finding or ends after its start); the token ends are computed once per scan.
    Scans run one at a time (PresidioDetector's lock), so one remembered Doc is enough.

    Presidio's enhance_using_context also starts with a deep copy of every result (~40,000 deepcopy calls in a
    1,000-character scan, ~1 ms); the results it is given were made by this scan's recognizers and the analyzer
    drops them once enhanced, so this one updates them in place, by the same rule.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tokens: Any = None
        self._ends: list[int] = []

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        by_id = {recognizer.id: recognizer for recognizer in recognizers}
        extra = [word.lower() for word in context or []]
        for result in raw_results:
            metadata = result.recognition_metadata or {}
            recognizer = by_id.get(metadata.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
            if recognizer is None or not recognizer.context:
                continue
            if metadata.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                continue  # already boosted by the recognizer itself
            words = self._extract_surrounding_words(
                nlp_artifacts, text[result.start : result.end], result.start
            )
            supportive = self._find_supportive_word_in_context(
                words + extra, recognizer.context, self.context_matching_mode
            )
            if supportive:
                score = max(
                    result.score + self.context_similarity_factor, self.min_score_with_context_similarity
                )
                result.score = min(score, ContextAwareEnhancer.MAX_SCORE)
                if explanation := result.analysis_explanation:  # None from recognizers that make none
                    explanation.set_supportive_context_word(supportive)
                    explanation.set_improved_score(result.score)
        return raw_results

    def _find_index_of_match_token(  # type: ignore[override]  # presidio's is a staticmethod
        self, word: str, start: int, tokens: Any, tokens_indices: list[int]
    ) -> int:
        if tokens is not self._tokens:
            self._tokens = tokens
            self._ends = [index + len(token) for index, token in zip(tokens_indices, tokens, strict=True)]
        i = bisect.bisect_right(self._ends, start)
        if i == len(self._ends):
            raise ValueError(
                f"Did not find word '{word}' in the list of tokens although it is expected to be found"
            )
        return i


class PresidioDetector:
    """Presidio's AnalyzerEngine with a NER-only spaCy pipeline and only the recognizers the policy needs."""

    def __init__(self, settings: PrivacySettings) -> None:
        started = time.monotonic()
        detector = settings.detector
        self.entities = sorted(settings.detected_entities())
        engine = NerOnlySpacyEngine(detector.spacy_model, detector.language)
        engine.load()
        recognizers = pattern_recognizers(self.entities, detector, settings.custom_recognizers)
        ner_wanted = sorted(NER_ENTITIES.intersection(self.entities))
        if ner_wanted:
            recognizers.append(
                SpacyRecognizer(supported_language=detector.language, supported_entities=ner_wanted)
            )
        served = {e for r in recognizers for e in r.supported_entities}
        if missing := sorted(set(self.entities) - served):
            raise ConfigError("privacy", [("data_classes", missing, "no recognizer for these entity types")])
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[detector.language])
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=engine,
            supported_languages=[detector.language],
            default_score_threshold=detector.score_threshold,
            context_aware_enhancer=IndexedContextEnhancer(),
        )
        self._engine = engine
        self._language = detector.language
        self._threshold = detector.score_threshold
        self._allow_list = list(detector.allow_list) or None
        self._allowed = frozenset(detector.allow_list)
        # the lines above an address name its recipient: with the names on doubt, when both types are scanned
        self._recipients = detector.unlisted_names and {"PERSON", "STREET_ADDRESS"} <= set(self.entities)
        # spaCy documents no thread-safety for a shared pipeline (its StringStore grows on unseen words), and
        # a scan is CPU-bound under the GIL anyway: one scan at a time costs no throughput.
        self._lock = threading.Lock()
        if self.entities:
            self.scan(_WARM_UP_TEXT)
        logger.info(
            "PII detector ready in %.1f s: %d entity types, %d recognizers",
            time.monotonic() - started,
            len(self.entities),
            len(recognizers),
        )

    @property
    def matrix_library(self) -> str:
        """ "openblas" or "blis" (see edged.sovereignty.nlp)."""
        return self._engine.matrix_library

    @property
    def ner_decoder(self) -> str:
        """ "edged" or "spaCy": what decodes the NER model's scores into entities (see edged.sovereignty.nlp)."""
        return "edged" if self._engine.decoder else "spaCy"

    @property
    def pipe_names(self) -> list[str]:
        """The spaCy components that run on every scan."""
        return list(self._engine.get_nlp(self._language).pipe_names)

    def scan(self, text: str) -> list[Finding]:
        if not self.entities or not text.strip():
            return []
        with self._lock:
            results = self._analyzer.analyze(
                text=text,
                language=self._language,
                entities=self.entities,
                score_threshold=self._threshold,
                allow_list=self._allow_list,
            )
        findings = []
        for r in results:
            start, end = r.start, r.end
            if r.entity_type == "PERSON":
                if _acronym_as_person(text, r):
                    continue
                span = trim_common_words(text, start, end)  # "Email john@..." : "Email" is not a name
                if span is None:
                    continue
                start, end = span
            findings.append(Finding(start, end, r.entity_type, float(r.score)))
        names = [(f.start, f.end) for f in findings if f.entity_type == "PERSON"]
        score = CuedNameRecognizer.SCORE
        if names:
            findings.extend(Finding(s, e, "PERSON", score) for s, e in conjunct_names(text, names))
        if "\n" in text and self._recipients:
            addresses = [(f.start, f.end) for f in findings if f.entity_type == "STREET_ADDRESS"]
            findings.extend(
                Finding(s, e, "PERSON", score)
                for s, e in recipient_names(text, addresses)
                if text[s:e] not in self._allowed
            )
        return disjoint(findings)


_ACRONYM = re.compile(r"^[A-Z][A-Z0-9]{1,5}$")
# Words that introduce a name: after them an all-capital word is taken for a name, not an acronym.
_NAME_CUE = re.compile(
    r"(?:name is|name:|i'm|i am|dear|hi|hello|mr\.?|mrs\.?|ms\.?|miss|dr\.?|prof\.?|called|ask|tell|from:|to:)\s*$",
    re.IGNORECASE,
)


def _acronym_as_person(text: str, result: Any) -> bool:
    """spaCy's small English model tags short all-capital words ("MQTT", "HTTP") as PERSON; such a finding of
    spaCy's NER alone is dropped, unless a word that introduces a name comes right before it ("Dear JOHN")."""
    if result.entity_type != "PERSON" or not _ACRONYM.match(text[result.start : result.end]):
        return False
    metadata = getattr(result, "recognition_metadata", None) or {}
    if str(metadata.get("recognizer_name", "")) != "SpacyRecognizer":
        return False
    return not _NAME_CUE.search(text[max(0, result.start - 24) : result.start])
