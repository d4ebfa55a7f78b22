"""Names on doubt (edged.sovereignty.unlisted): a capitalised word no English word list spells is a name, with the
real detector (Presidio + spaCy's medium model) and the shipped word list."""

from __future__ import annotations

import gzip
from importlib import resources

import pytest

from edged.config.privacy import DetectorSettings, PrivacySettings
from edged.sovereignty.nlp import NerOnlySpacyEngine
from edged.sovereignty.presidio import PresidioDetector
from edged.sovereignty.unlisted import (
    PROPER_NOUNS_FILE,
    WORDS_FILE,
    UnlistedNameRecognizer,
    WordList,
    english_words,
    proper_nouns,
    recipient_names,
)


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


@pytest.fixture(scope="module")
def engine() -> NerOnlySpacyEngine:
    engine = NerOnlySpacyEngine(PrivacySettings().detector.spacy_model)
    engine.load()
    return engine


def names(detector: PresidioDetector, text: str) -> list[str]:
    return [text[f.start : f.end] for f in detector.scan(text) if f.entity_type == "PERSON"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Have you been to a Homero Portillo concert before?", "Homero Portillo"),  # the NER calls it ORG
        ("Aniela is very reliable. You can always depend on him.", "Aniela"),
        ("Unlike the Ronner novel, it's not about that.", "Ronner"),
        ("I borrowed Aniela's bike yesterday.", "Aniela"),  # the possessive is not part of the name
        ("Rościsław Dudek of Lexisnexis is the CEO of the year.", "Rościsław Dudek"),
        ("Aniela", "Aniela"),  # too short to tell the language: a name on doubt
        ("bártová began writing as a teenager, publishing her first story at 16.", "bártová"),  # lower case
        ("Please ask jiří about the contract tomorrow.", "jiří"),
    ],
)
def test_a_capitalised_word_no_english_word_list_spells_is_a_name(
    detector: PresidioDetector, text: str, name: str
) -> None:
    assert name in names(detector, text)


@pytest.mark.parametrize(
    "text",
    [
        "Translate 'good morning' into German, French and Spanish.",  # nationalities and languages (NER)
        "What happened at the Battle of Hastings on 14 October 1066?",  # an event's name: "X of Y"
        "What happened on 15 June 1215, the day of the signing of the Magna Carta?",  # "the ...": a thing
        "The Normans conquered England in 1066, and later sailed to California's coast.",  # the NER's places
        "Don't restart the server. Can't we wait? Won't it recover?",  # contractions of English words
        "Reuters says Verizon and Boeing met near Geelong; Turing would have liked it.",  # proper nouns SCOWL knows
        "Flights from San Bernardino to Los Angeles were delayed.",  # places of two words the NER finds
        "Rename class UserService to AccountService and call self.Config or Handler() in it.",  # code
        "Port the JavaScript code to TypeScript and export the PowerPoint slides.",  # camel case products
        "Das ist ein Haus mit einem Garten, wo viele Leute wohnen und arbeiten.",  # prose in another language
        "We had a naïve plan, a résumé and a nice café with great décor.",  # English words with their marks
        "What does 'gemütlich' mean in English?",  # a quoted word is a word talked about
    ],
)
def test_words_a_reader_knows_are_not_names(engine: NerOnlySpacyEngine, text: str) -> None:
    recognizer = UnlistedNameRecognizer()
    recognizer.load()
    found = recognizer.analyze(text, ["PERSON"], engine.process_text(text, "en"))
    assert [text[r.start : r.end] for r in found] == []


def test_the_allow_list_names_a_device_s_own_words() -> None:
    text = "Is Vue good for a small dashboard?"
    assert names(PresidioDetector(PrivacySettings()), text) == ["Vue"]
    allowed = PrivacySettings(detector=DetectorSettings(allow_list=("Vue",)))
    assert names(PresidioDetector(allowed), text) == []


def test_the_rule_can_be_turned_off() -> None:
    text = "Have you been to a Homero Portillo concert before?"
    off = PrivacySettings(detector=DetectorSettings(unlisted_names=False))
    assert names(PresidioDetector(off), text) == []  # the NER alone calls it an organisation


def test_the_word_list_holds_lower_case_english_words_and_no_names() -> None:
    words = english_words()
    assert len(words) > 100_000
    for word in ("reliable", "colour", "color", "python", "necrophilia"):
        assert word in words, word
    for name in ("aniela", "portillo", "mette", "dudek", "london", "tokyo"):
        assert name not in words, name
    assert 3 not in words  # not a word at all
    known = proper_nouns()
    for proper in ("reuters", "melbourne", "turing", "jessica"):
        assert proper in known, proper
    for name in ("aniela", "portillo", "dudek"):
        assert name not in known, name


@pytest.mark.parametrize("name", [WORDS_FILE, PROPER_NOUNS_FILE])
def test_the_word_lists_carry_their_licence(name: str) -> None:
    data = gzip.decompress(resources.files("edged.sovereignty").joinpath(name).read_bytes())
    header = [line for line in data.decode("utf-8").splitlines() if line.startswith("#")]
    notice = "\n".join(header)
    assert "Copyright 2000-2011 by Kevin Atkinson" in notice
    assert "Permission to use, copy, modify, distribute and sell" in notice


def test_a_checksum_table_answers_as_a_set_would() -> None:
    words = WordList(["alpha", "beta", "gamma"])
    assert len(words) == 3
    assert "beta" in words
    assert "delta" not in words


def test_the_lines_above_an_address_name_its_recipient(detector: PresidioDetector) -> None:
    text = "Please forward the parcel:\nemidio p lombardo\n12 Main Street\nSpringfield, IL 62704"
    assert "emidio p lombardo" in names(detector, text)  # lower case and on no list: found by where it stands
    plain = "Please send it here\n12 Main Street\nSpringfield, IL 62704"
    assert names(detector, plain) == []  # English words in lower case are no name


def test_recipient_lines_need_an_address_that_opens_its_line() -> None:
    text = "Tzigane Lantos\n>76556 29 Rue de Tanger\n>Suite 399"
    at = text.index("76556")
    assert [text[s:e] for s, e in recipient_names(text, [(at, at + 22)])] == ["Tzigane Lantos"]
    inline = "Tzigane Lantos lives at 29 Rue de Tanger"
    at = inline.index("29")
    assert recipient_names(inline, [(at, at + 16)]) == []
