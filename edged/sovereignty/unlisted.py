"""Names on doubt: a capitalised word that no English word list spells, in English prose, is taken for a name.

The NER finds the names it has seen and the cues (edged.sovereignty.cued) the names a sentence introduces; what
both miss is a name nobody introduces that the model does not know: "Have you been to a Calquín Cazares concert",
"Aniela is very reliable", "the true gender of Mette". Such a word is capitalised and is no English word, and
English word lists write common words in lower case and proper nouns capitalised. So a capitalised word whose
lower-case form SCOWL's large American and British lists spell neither as a word (`english_words.txt.gz`) nor
as a proper noun (`proper_nouns.txt.gz`: the places, companies, works and famous people a dictionary knows,
"Reuters", "Melbourne", "Turing"; both written by scripts/gen_english_words.py) is a PERSON finding, and so
is anything else a reader would not know. The exceptions: a word of a nationality, language, event or law the
NER found, or of a place of two words or more it found (it calls many single unknown names places), a word
after "X of" or ending a phrase after "the", a country's name, a common word of requests and titles, a month.
Names the lists know ("Jessica", "Smith") are left to the NER and the cues. The cost of a miss is a name leaving
the device; the cost
of a false find is a redacted word, so the rule fails closed, and `detector.allow_list` names a device's own
words (a product, a site).

A lower-case word with a letter outside ASCII that is no English word, with or without its marks, is a name on
doubt too ("bártová began writing", "ask jiří"; not "naïve", "décor", nor a quoted word talked about).
`recipient_names` reads an address block the same way: the lines right above an address that opens its line,
written as a name is, name its recipient (`emidio p lombardo⏎unit 1009 box 0219`), even in lower case.

Prose in another language is not read this way (most of its words are no English words, capitalised or not),
nor is code (`UserService`, `self.Config`, `Handler()`): camel case other than Mc/Mac names, and words glued to
dots, slashes, underscores, brackets or `@`, are left alone.
"""

from __future__ import annotations

import bisect
import gzip
import unicodedata
import zlib
from array import array
from functools import cache
from importlib import resources
from typing import Any

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from edged.sovereignty.countries import COUNTRY_NAMES
from edged.sovereignty.cued import CAPITALISED_WORD, NOT_A_NAME
from edged.sovereignty.words import MONTHS

WORDS_FILE = "english_words.txt.gz"
PROPER_NOUNS_FILE = "proper_nouns.txt.gz"

# spaCy's NER labels of what is not a person: a word inside such an entity is the place, group, event, law or
# language it names.
# Organisations, works and products are not among them: the NER calls many names it does not know ORG ("a Calquín
# Cazares concert", "the Ronner novel").
NOT_PEOPLE = frozenset({"NORP", "LANGUAGE", "EVENT", "LAW"})
# A place's name of two words or more exempts its words too ("San Bernardino", "Los Angeles"); a place of one word
# does not: the NER calls many single names it does not know a place ("the true gender of Mette").
PLACES = frozenset({"GPE", "LOC", "FAC"})
_COUNTRY_WORDS = frozenset(word.casefold() for name in COUNTRY_NAMES for word in name.split())
_NOT_UNLISTED = NOT_A_NAME | MONTHS | _COUNTRY_WORDS

# A word standing as a word of prose: not glued to code punctuation, a path, an address or a call.
_PROSE_BEFORE = r"(?<![\w\-'’.@/\\#_`$<{\[])"
_PROSE_AFTER = r"(?![\w\-@/\\_`(\[{>]|\.\w)"
_WORD = regex.compile(rf"{_PROSE_BEFORE}({CAPITALISED_WORD}){_PROSE_AFTER}")
# "the Battle of Hastings", "the Treaty of Versailles", "University of Tartu": a place or an event's name
_OF_TITLE = regex.compile(rf"(?<![\w\-])(?:{CAPITALISED_WORD}) of $")
# "the signing of the Magna Carta?": a name after "the" that ends its phrase is a thing's ("the Ronner novel" is not)
_THE = regex.compile(r"(?<![\w\-])(?i:the) $")
_ENDS_PHRASE = regex.compile(r"[.,;:!?)]|\s*$")
_CAMEL = regex.compile(r"\p{Lu}\p{Ll}+\p{Lu}")
_MC = regex.compile(r"(?:Mc|Mac)\p{Lu}")
_LOWER_WORD = regex.compile(r"(?<![\w\-'’])\p{Ll}{2,}(?![\w\-'’])")
_PARTS = regex.compile(r"[\p{L}\p{M}]+")
_LOWER_MARKED = regex.compile(rf"{_PROSE_BEFORE}(\p{{Ll}}[\p{{Ll}}\p{{M}}]+)(?!['’]){_PROSE_AFTER}")
_QUOTED = regex.compile(r"(['‘\"“*_«„]).+(['’\"”*_»“])$")
# letters NFKD does not take apart
_FOLD = str.maketrans(
    {"ß": "ss", "ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
)
_CLITIC = regex.compile(r"['’](?:s|t|re|ll|ve|d|m)$|n['’]t$")
# Prose is read as English when at least this share of its lower-case words are English words (counted over
# texts with at least _MIN_WORDS of them; a shorter text is read as English: a name on doubt).
_ENGLISH_SHARE = 0.6
_MIN_WORDS = 4


class ScanArtifacts(NlpArtifacts):
    """Presidio's artifacts of a text, with the spans of the NER's entities that are no person (Presidio's
    own list keeps only the labels it maps to entity types: no organisations, events, works or laws)."""

    def __init__(self, *args: Any, not_people: tuple[tuple[int, int], ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.not_people = not_people


class WordList:
    """A word list held as a sorted array of the words' CRC-32s (0.5 MB for the 118,827 English words, where a set
    of the strings would take ~10 MB; a word not on the list shares a checksum with one on it with odds of about
    1 in 36,000, and then passes for listed)."""

    def __init__(self, words: list[str]) -> None:
        self._hashes = array("I", sorted({_crc(word) for word in words}))

    def __contains__(self, word: object) -> bool:
        if not isinstance(word, str):
            return False
        key = _crc(word)
        at = bisect.bisect_left(self._hashes, key)
        return at < len(self._hashes) and self._hashes[at] == key

    def __len__(self) -> int:
        return len(self._hashes)


@cache
def english_words() -> WordList:
    """The lower-case English words shipped with edged (loaded once, ~0.2 s)."""
    return WordList(_listed(WORDS_FILE))


@cache
def proper_nouns() -> WordList:
    """The proper nouns a dictionary knows, lower-cased."""
    return WordList(_listed(PROPER_NOUNS_FILE))


def _listed(name: str) -> list[str]:
    data = gzip.decompress(resources.files("edged.sovereignty").joinpath(name).read_bytes())
    return [line for line in data.decode("utf-8").splitlines() if line and not line.startswith("#")]


def _fold(word: str) -> str:
    """The word without its marks: "naïve" -> "naive", "bártová" -> "bartova", "søren" -> "soren"."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _crc(word: str) -> int:
    return zlib.crc32(word.encode("utf-8"))


class UnlistedNameRecognizer(EntityRecognizer):
    """Capitalised words no English word list spells, in English prose (see the module docstring)."""

    SCORE = 0.5

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="edged-unlisted-name")

    def load(self) -> None:
        self.words = english_words()
        self.known = proper_nouns()

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if not self._english(text):
            return []
        others = nlp_artifacts.not_people if isinstance(nlp_artifacts, ScanArtifacts) else ()
        spans: list[tuple[int, int]] = []
        for match in _WORD.finditer(text):
            start, end = match.span(1)
            word = _CLITIC.sub("", match.group(1))  # "Aniela's", "Don't": the word before the clitic
            end = start + len(word)
            if (
                self._unlisted(word)
                and not _OF_TITLE.search(text, 0, start)
                and not any(s <= start and end <= e for s, e in others)
            ):
                if spans and text[spans[-1][1] : start] in (" ", "\u00a0"):
                    start = spans.pop()[0]  # "Homero Portillo": one name
                spans.append((start, end))
        spans = [s for s in spans if not (_THE.search(text, 0, s[0]) and _ENDS_PHRASE.match(text, s[1]))]
        spans.extend(self._marked_lower(text))
        return [RecognizerResult("PERSON", start, end, self.SCORE) for start, end in spans]

    def _marked_lower(self, text: str) -> list[tuple[int, int]]:
        """Lower-case words with a letter outside ASCII that are no English word with or without their marks
        ("bártová began writing", "ask jiří"; not "café", "naïve", "décor"), unless quoted (a word talked about:
        "what does 'gemütlich' mean")."""
        if text.isascii():
            return []
        spans = []
        for match in _LOWER_MARKED.finditer(text):
            word, (start, end) = match.group(1), match.span(1)
            if word.isascii() or (start > 0 and _QUOTED.match(text, start - 1, end + 1)):
                continue
            folded = _fold(word)
            if not any(w in self.words or w in self.known for w in (word, folded)):
                spans.append((start, end))
        return spans

    def _english(self, text: str) -> bool:
        lower = _LOWER_WORD.findall(text)
        if len(lower) < _MIN_WORDS:
            return True
        return sum(word in self.words for word in lower) >= _ENGLISH_SHARE * len(lower)

    def _unlisted(self, word: str) -> bool:
        if _CAMEL.match(word) and not _MC.match(word):
            return False  # JavaScript, PowerPoint, YouTube: products are written so, and code
        key = word.casefold()
        if key in _NOT_UNLISTED or key in self.words or key in self.known:
            return False
        parts = _PARTS.findall(key)
        return not all(len(part) > 1 and part in self.words for part in parts)


# -- the recipient above an address ---------------------------------------------------------------------------

# One line of an address block's head: a few words, no digits, no label or sentence punctuation.
_HEAD_LINE = regex.compile(r"[ \t>]*([\p{L}\p{M}.'’\-]+(?:[ ][\p{L}\p{M}.'’\-]+){0,4})[ \t,]*")
_RECIPIENT_LINES = 2


def recipient_names(text: str, addresses: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The lines right above an address that starts a line, written as a name is ("Calquín Cazares⏎76556 29 Rue
    de Tanger", "emidio p lombardo⏎unit 1009 box 0219"): up to two lines of at most five words, none of them an
    English word written in lower case ("please send it here⏎12 Main St" is no name). Names in lower case and
    names no list knows are found so where the NER and the cues miss them."""
    words = english_words()
    found: list[tuple[int, int]] = []
    for start, _end in addresses:
        at = text.rfind("\n", 0, start)
        if at < 0 or text[at + 1 : start].strip(" \t>"):
            continue  # the address does not open its line
        for _ in range(_RECIPIENT_LINES):
            begin = text.rfind("\n", 0, at) + 1
            line = _HEAD_LINE.fullmatch(text, begin, at)
            if line is None or not _name_like(line.group(1), words):
                break
            found.append(line.span(1))
            if begin == 0:
                break
            at = begin - 1
    return found


def _name_like(line: str, words: WordList) -> bool:
    for word in line.split(" "):
        bare = word.strip(".'’-")
        if bare and bare == bare.lower() and len(bare) > 1 and bare in words:
            return False
    return any(len(word.strip(".'’-")) > 1 for word in line.split(" "))
