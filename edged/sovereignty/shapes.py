"""Recognizers by shape: tokens shaped like identifiers or passwords, street addresses in international
formats, and phone numbers in many regions' formats.

`SecretShapeRecognizer` takes a token built like a password (`W!nter2024`) for one, with or without a cue.

`IdShapeRecognizer` is the detector's fail-closed net: a token with letters and digits mixed (`X4821977`,
`AB-123-CD`), digit groups joined by separators (`850101-1234`, `123.456.789-09`) or a long run of digits is an
identifier of some kind, reported as ID_NUMBER (class `identifier`, REDACT by default), unless it has a harmless
shape (a version string, a date, a time, a measurement, a hash, or a shape the profile lists in
`detector.harmless_id_shapes`). It ranks below every specific type (edged.sovereignty.detector.FALLBACK_TYPES),
so where a phone number, card or passport recognizer also matched, the specific type wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

import phonenumbers
import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS

from edged.sovereignty.countries import COUNTRY_NAMES
from edged.sovereignty.words import COMMON_WORDS, MONTH_ABBREVIATIONS, MONTHS

CASE_SENSITIVE = int(re.DOTALL | re.MULTILINE)

DATE_LIKE = re.compile(
    r"\d{4}-\d{2}-\d{2}|\d{1,2}[./\-]\d{1,2}[./\-](?:\d{2}|\d{4})|\d{4}[./]\d{1,2}[./]\d{1,2}"
)
ARITHMETIC = re.compile(r"[=*^/<>%]")  # next to a number: a calculation, not an identifier or phone number

# -- identifier-shaped tokens ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"(?<![\w@/\\.:\-+#])[A-Za-z0-9](?:[A-Za-z0-9]|[\-./](?=[A-Za-z0-9])){3,48}(?![\w@\-]|[./:]\w)"
)
HARMLESS_SHAPES = (
    r"v?\d+(?:\.\d+)+(?:[\-+.]?(?:rc|a|b|alpha|beta|dev|post|pre)\d*)?",  # versions and decimals: 3.11, v1.2.3
    r"v\d+",
    r"\d{4}-\d{2}-\d{2}(?:T\d{2})?",  # ISO dates
    r"\d{1,2}[./\-]\d{1,2}[./\-](?:\d{2}|\d{4})",  # dates
    r"\d{4}[./]\d{1,2}[./]\d{1,2}",
    r"(?:1[0-9]|20)\d\d[\-/](?:(?:1[0-9]|20)\d\d|\d\d)",  # year ranges: 1939-1945, 2023/24
    r"\d+(?:st|nd|rd|th|s)",  # ordinals, decades: 21st, 1990s
    r"\d+(?:[.,]\d+)?(?:[kKMGTPµmn]?(?:B|b|bps|Hz|W|Wh|Ah|mAh|V|A|g|s|m|px|pt|em|x|fps|dpi|ppi|hp|L|l)|"
    r"%|p|i|K|k|D|d|h|min|mm|cm|km|kg|mg|ms|ns|us|GB|MB|TB|KB|GiB|MiB|TiB|KiB|sec|yrs?|USD|EUR|GBP)",
    r"(?=[0-9]*[a-f])(?=[a-f]*[0-9])[0-9a-f]{7,64}",  # hashes, commit ids (lower-case hex)
    r"(?:[A-Za-z]+-)+\d{1,3}",  # COVID-19, GPT-4, UTF-8, ISO-8601 style names
    r"[A-Za-z]{1,6}\d{1,3}",  # SHA256, H200, MP3, IPv6, ES2015-style short names
    r"\d{1,3}[A-Za-z]{1,4}",  # 4K, 5G, 3D, 64bit
    r"[A-Za-z]+\d*(?:[./][A-Za-z]+\d*)+",  # file names and paths with few digits: main.py, a/b
)


class IdShapeRecognizer(EntityRecognizer):
    """Identifier-shaped tokens as ID_NUMBER (see the module docstring)."""

    SCORE = 0.45

    def __init__(self, harmless: Iterable[str] = ()) -> None:
        self._builtin = re.compile("|".join(f"(?:{p})" for p in HARMLESS_SHAPES))
        self._harmless = [re.compile(p) for p in harmless]  # the profile's, each with its own flags
        super().__init__(supported_entities=["ID_NUMBER"], name="edged-id-shape")

    def load(self) -> None:
        """Nothing to load: the patterns are compiled in __init__."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for match in _TOKEN.finditer(text):
            token = match.group()
            if self._builtin.fullmatch(token) or any(h.fullmatch(token) for h in self._harmless):
                continue
            if not self._shaped_like_an_id(token, text, match):
                continue
            results.append(_result("ID_NUMBER", match.start(), match.end(), self.SCORE))
        return results

    def _shaped_like_an_id(self, token: str, text: str, match: re.Match[str]) -> bool:
        digits = sum(c.isdigit() for c in token)
        letters = [c for c in token if c.isalpha()]
        if letters:  # mixed: X4821977, AB-123-CD, 12345678Z (identifiers are written in capitals)
            return digits >= 2 and digits + len(letters) >= 6 and all(c.isupper() for c in letters)
        groups = [g for g in re.split(r"[\-./]", token) if g]
        if len(groups) >= 2:  # 850101-1234, 123.456.789-09
            return digits >= 6
        # a long run of digits, unless it is arithmetic ("2^32 = 4294967296")
        around = text[max(0, match.start() - 3) : match.start()] + text[match.end() : match.end() + 3]
        return digits >= 8 and not ARITHMETIC.search(around)


# -- password-shaped tokens ----------------------------------------------------------------------------------

# A run of letters, digits and the symbols passwords are made with, between white space (or quotes, brackets).
_SECRET_TOKEN = re.compile(r"(?<![^\s\"'(\[<])[A-Za-z0-9!@#$%^&*?~_.\-]{8,64}(?![^\s\"')\]>,;:.!?])")
_SECRET_SYMBOL = re.compile(r"[!@#$%^&*?~]")
_LOWER_USER_AT = re.compile(r"[a-z0-9._\-]+@")  # "admin@Server01": a user at a host, not a secret
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


class SecretShapeRecognizer(EntityRecognizer):
    """Tokens made the way password rules ask (`W!nter2024`, `SecureP@ss8901`): upper and lower case letters,
    a digit and a symbol inside the token, 8 to 64 characters, as PASSWORD whether or not a word says so
    ("login: maria@example.com / SecureP@ss8901"). Markup around a token (`**Step1**`) and sentence punctuation
    after it do not count as its symbol; e-mail addresses and `user@Host` logins are not secrets."""

    SCORE = 0.5

    def __init__(self) -> None:
        super().__init__(supported_entities=["PASSWORD"], name="edged-secret-shape")

    def load(self) -> None:
        """Nothing to load: the patterns are compiled with the module."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = []
        for match in _SECRET_TOKEN.finditer(text):
            start, end = match.span()
            while end > start and text[end - 1] in ".,;:!?*_~":  # sentence punctuation, closing markup
                end -= 1
            while start < end and text[start] in "*_~":  # opening markup
                start += 1
            token = text[start:end]
            if len(token) < 8 or not _secret_shaped(token):
                continue
            results.append(_result("PASSWORD", start, end, self.SCORE))
        return results


def _secret_shaped(token: str) -> bool:
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token)):
        return False
    if not any(c.isdigit() for c in token) or not _SECRET_SYMBOL.search(token):
        return False
    return not (_EMAIL_LIKE.fullmatch(token) or _LOWER_USER_AT.match(token))


# -- street addresses -----------------------------------------------------------------------------------------

_W = r"(?:\p{Lu}\p{Ll}{0,3}\.|\p{Lu}[\p{L}\p{M}'’\-]*)"  # a capitalised word or abbreviation ("St.")
_PARTICLE = (
    r"(?:de|del|de la|des|du|la|le|les|di|da|do|dos|das|della|delle|dello|degli|dei|dal|dalla|van|von|der|den|"
    r"am|an|im|i|y|e|na|sur)\b"
)
_NAMEW = rf"(?:{_W}|\d{{1,3}}(?:st|nd|rd|th|\.)?|{_PARTICLE})"
_HOUSE = r"\d{1,5}[A-Za-z]?(?:\s?[\-/]\s?\d{1,5}[A-Za-z]?)?"
# street types glued to the street's name ("Hauptstraße"), and those written after a hyphen ("Karl-Marx-Allee")
_GLUED_SUFFIXES = (  # noqa: SIM905 - a word list is read best as text
    "straße strasse str. gasse weg platz allee damm ufer markt steig pfad chaussee gade vej vænget vägen gatan "
    "gränd torget katu tie kuja polku kaari straat laan plein gracht kade singel dijk utca körút ulice třída stræde "
    "náměstí nábřeží boulevard dreef steenweg veien vegen gata vegur stræti braut brücke brucke"
).split()
# glued street types distinctive enough to take a street's name written in lower case ("hersnapvej 18")
_LOWER_GLUED_SUFFIXES = (  # noqa: SIM905 - a word list is read best as text
    "vej gade stræde straße strasse gasse katu gatan vägen straat brücke veien vegen"
).split()
_HYPHENATED_SUFFIXES = ("Straße", "Strasse", "Gasse", "Weg", "Platz", "Allee", "Ring", "Damm", "Ufer")
_GLUED = (
    rf"(?:\p{{Lu}}\p{{L}}*(?:{'|'.join(map(regex.escape, _GLUED_SUFFIXES))})|"
    rf"(?<![\p{{L}}\-])\p{{Ll}}{{3,}}(?:{'|'.join(map(regex.escape, _LOWER_GLUED_SUFFIXES))})|"
    rf"(?<=-)(?:{'|'.join(_HYPHENATED_SUFFIXES)}))"
)
# street types written as their own word after the name: "Kossuth Lajos utca 12", "Nørre Allé 5"
_WORD_SUFFIX = (
    r"(?:utca|u\.|út|útja|tér|tere|körút|köz|sor|sétány|rakpart|fasor|allé|gade|vej|plads|torg|gata|tie|"
    r"cesta|iela|gatvė|tänav|maantee|mnt\.|puiestee|küçəsi|prospekti|"
    # the German and Dutch ones written as a word of their own: "Villacher Strasse 89", "Berliner Str. 5"
    r"Straße|Strasse|Str\.|Gasse|Weg|Platz|Allee|Damm|Ufer|Chaussee|Laan|Straat|Plein|Gracht|Kade)"
)
# street types before the street's name ("rue de la Paix", "ul. Długa"), matched in any case
_PREFIXES = (  # noqa: SIM905 - a word list is read best as text
    "rue avenue av. boulevard bd. bd chemin allée place impasse quai route cours calle callejón c/ avenida avda. "
    "avda ronda glorieta travesía pasaje cuesta urbanización rambla vía plaza paseo camino carrer rua travessa "
    "largo praça alameda estrada via viale piazza piazzale corso vicolo strada str. ulica ul. aleja al. os. plac "
    "bulevardul calea șoseaua soseaua splaiul aleea intrarea piața sokak sokağı caddesi cad. mahallesi mah. "
    "jalan jl. jln. gg. cerrada calzada privada prolongación andador montée phố đường ngõ hẻm rruga"
).split()
_PREFIX = rf"(?i:{'|'.join(map(regex.escape, _PREFIXES))})"
_EN_SUFFIX = (
    # the USPS street suffixes (and their plurals) and the British and Irish ones
    r"(?:Alley|Annex|Arcade|Bayou|Beach|Bluffs?|Bottom|Branch|Bridge|Brooks?|Burgs?|Bypass|Camp|Canyon|Cape|"
    r"Causeway|Centers?|Circles?|Cliffs?|Club|Common|Corners?|Course|Courts?|Coves?|Creek|Crest|Crossing|"
    r"Curve|Dale|Dam|Divide|Drives?|Estates?|Expressway|Extensions?|Falls?|Ferry|Fields?|Flats?|Fords?|"
    r"Forests?|Forges?|Forks?|Fort|Freeway|Gardens?|Gateway|Glens?|Greens?|Groves?|Harbors?|Havens?|Heights|"
    r"Hills?|Hollow|Inlet|Islands?|Isle|Junctions?|Keys?|Knolls?|Lakes?|Landing|Light|Lights|Locks?|Lodge|"
    r"Manors?|Meadows?|Mills?|Mission|Motorway|Mounts?|Mountains?|Neck|Orchard|Oval|Overpass|Parks?|Parkways?|"
    r"Passage|Pines|Plains?|Points?|Ports?|Prairie|Radial|Ranch|Rapids?|Rest|Ridges?|River|Roads?|Route|"
    r"Shoals?|Shores?|Skyway|Springs?|Spurs?|Squares?|Stravenue|Streams?|Streets?|Summit|Throughway|Trace|"
    r"Track|Trafficway|Tunnel|Turnpike|Underpass|Unions?|Valleys?|Viaduct|Views?|Villages?|Ville|Vista|"
    r"Walks?|Wells?|Ways?|Wharf|"
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Parkway|Pkwy|Circle|Cir|Square|Sq|Highway|Hwy|Trail|Trl|Close|Crescent|Cres|Row|Alley|Plaza|Gardens|"
    r"Mews|Hill|Walk|Grove|Park|View|Rise|Green|Esplanade|Parade|Quay|Wharf|Heights|Point|Ridge|Vale|Glen|"
    r"Loop|Run|Pass|Path|Pike|Crossing|Commons|Estate|Lodge|Meadow|Meadows|Fields|Gate|Yard|End|Bend|Cove|"
    r"Junction|Manor|Mall|Key|Isle|Harbor|Harbour|Port|Station|Mount|Mt)"
)
_UNIT = (
    r"(?:,?\s(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|Rm|Flat|Piano|Int\.?|Étage|Etg|Top|Stiege|Tür|Puerta|"
    r"Piso|Escalera|Esc\.|Bajo|Portal|"
    r"bl\.|sc\.|ap\.|et\.|lok\.|m\.|#)\.?\s?#?[A-Za-z0-9\-/]{1,6}|,?\s\d{1,2}(?:º|ª|°|\.)\s?[A-Za-z]?)"
)
_POSTCODE = (
    r"(?:\d{5}-\d{3}|\d{4}-\d{3}|\d{2}-\d{3}|\d{3}\s\d{2}|\d{4}\s?[A-Z]{2}\b|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}|"
    r"[A-Z]\d[A-Z]\s?\d[A-Z]\d|[A-Z]\d{2}\s?[A-Z0-9]{4}|(?:[A-Z]{1,3}-)?\d{4,6}(?:-\d{4})?)"
)
_TOWN = rf"{_W}(?:[\s\-](?:{_W}|{_PARTICLE}|an der\b|bei\b)){{0,3}}(?:\s\([A-Z]{{2}}\)|\s?/\s?[A-Z]{{2}})?"
_REGION = r"(?:[A-Z]{2,3})"
# after the street: unit, then "[postcode] town [region] [postcode]", each part optional, "," or space between
_TAIL = (
    rf"{_UNIT}?(?:(?:,\s*|\s)(?:{_POSTCODE},?\s)?{_TOWN}(?:,?\s{_REGION}\b)?(?:,?\s{_POSTCODE})?|"
    rf"(?:,\s*|\s){_POSTCODE}(?:,?\s{_TOWN})?)?"
)


class InternationalAddressRecognizer(PatternRecognizer):
    """Street addresses in the English style (`221B Baker Street, London NW1 6XE`), the continental styles with
    the house number after the street (`Hauptstraße 5, 10115 Berlin`, `ul. Długa 12/3, 00-238 Warszawa`,
    `Via Roma 12, 00184 Roma (RM)`) or before it (`12, rue de la Paix, 75002 Paris`), with unit, postcode,
    town and region when they follow; and PO boxes.

    Four of the patterns begin with optional name words, tried at every position of the text (~3 ms of a
    1,000-character scan together). Each is run only when a part it cannot match without (`REQUIRED`, a run of
    its own consecutive parts, so a text without it has no match of the whole) occurs in the text: ~0.4 ms.
    """

    PATTERNS = (
        Pattern(
            "number_first",
            rf"\b\d{{1,6}}[A-Za-z]?,?\s(?:{_NAMEW}\s){{1,4}}{_EN_SUFFIX}\b\.?(?:\s(?:N|S|E|W|NE|NW|SE|SW)\b)?"
            rf"{_TAIL}",
            0.9,
        ),
        Pattern(
            "glued_suffix", rf"(?:{_NAMEW}[\s\-]){{0,3}}{_GLUED}\s(?!(?:19|20)\d\d\b){_HOUSE}{_TAIL}", 0.85
        ),
        # the name's words after the first may be lower case: "Árpád fejedelem útja 3"
        Pattern(
            "word_suffix",
            rf"{_NAMEW}\s(?:(?:{_NAMEW}|\p{{Ll}}{{3,}})\s){{0,2}}{_WORD_SUFFIX}\s{_HOUSE}\b\.?{_TAIL}",
            0.8,
        ),
        Pattern(
            "number_first_postcode",
            rf"\b\d{{1,6}}[A-Za-z]?\s(?:{_NAMEW}\s){{0,3}}{_W}{_UNIT}?,\s{_TOWN},?\s(?:{_REGION}\s)?{_POSTCODE}\b",
            0.75,
        ),
        Pattern(
            "prefix_word",
            rf"(?:\b{_HOUSE},?\s)?(?<![\p{{L}}]){_PREFIX}\s(?:{_NAMEW}[\s\-]){{0,5}}{_NAMEW}"
            rf"(?:,?\s(?:(?i:n[r°º]?\.?|no\.?|nº)\s?)?{_HOUSE}\b)?{_TAIL}",
            0.7,
        ),
        Pattern(
            "street_number_postcode",
            rf"(?:{_NAMEW}\s){{0,3}}{_W}\s{_HOUSE},?\s{_POSTCODE}\s{_TOWN}",
            0.75,
        ),
        Pattern("po_box", r"\b(?:P\.?\s?O\.?\s?Box|Postfach|Apartado|Caixa Postal|BP)\s\d{1,6}\b", 0.6),
        # US military mail: "Unit 8524 Box 0979, DPO AA 56703", "PSC 4355, Box 4187", "USNS Lopez, FPO AE 01708"
        Pattern(
            "military",
            r"(?i:\b(?:(?:Unit|PSC|CMR)\s\d{3,5},?\s(?:Box\s\d{1,5})|(?:USNS|USNV|USS|USCGC)\s\p{Lu}[\p{L}\-]+)"
            r"(?:,?\s{1,3}(?:APO|FPO|DPO)\s(?:AA|AE|AP)\s\d{5})?)",
            0.7,
        ),
        # an address's unit on a line of its own, as address blocks are written: "Apt. 461", "> Suite 727"
        Pattern(
            "unit_line",
            r"(?m)(?<=^[ \t>*•\-?]*)(?i:Apt|Apartment|Suite|Ste|Unit|Flat)\.?[ ]?#?\d{1,5}[A-Za-z]?[ \t]*$",
            0.6,
        ),
    )
    REQUIRED: ClassVar[dict[str, str]] = {
        "glued_suffix": rf"{_GLUED}\s(?!(?:19|20)\d\d\b){_HOUSE}",
        "word_suffix": rf"\s{_WORD_SUFFIX}\s{_HOUSE}\b",
        "prefix_word": rf"(?<![\p{{L}}]){_PREFIX}\s",
        "street_number_postcode": rf"\s{_HOUSE},?\s{_POSTCODE}\s",
    }
    CONTEXT = ("address", "live", "lives", "street", "ship", "deliver", "mail", "home", "office", "send")
    NAME = "edged-street-address"

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            patterns=list(self.PATTERNS),
            context=list(self.CONTEXT),
            name=self.NAME,
            global_regex_flags=CASE_SENSITIVE,
        )
        self._all_patterns: list[Pattern] = list(self.PATTERNS)
        self._required = {name: regex.compile(r, flags=CASE_SENSITIVE) for name, r in self.REQUIRED.items()}
        # Cheaper still, before two of those: one of the street type words they need, as text ("in" is ~20x
        # faster than the regex's capitalised word before it); (words, whether they match in any case). The
        # prefixes are looked for in the case-folded text (none holds a letter whose full case folding differs
        # from the simple one the regex uses).
        self._required_words: dict[str, tuple[tuple[str, ...], bool]] = {
            "glued_suffix": ((*_GLUED_SUFFIXES, *_HYPHENATED_SUFFIXES), False),
            "prefix_word": (tuple(word.casefold() for word in _PREFIXES), True),
        }

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        # Presidio's analyze runs self.patterns; scans run one at a time (PresidioDetector's lock), so setting
        # them per text is safe.
        self.patterns: list[Pattern] = [p for p in self._all_patterns if self._may_match(p.name, text)]
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for part, start, end in address_parts(text):
            score = ADDRESS_PARTS[part]
            explanation = self.build_regex_explanation(self.NAME, part, part, score, True, CASE_SENSITIVE)
            results.append(RecognizerResult("STREET_ADDRESS", start, end, score, explanation))
        return results

    def _may_match(self, pattern_name: str, text: str) -> bool:
        words, any_case = self._required_words.get(pattern_name, ((), False))
        if words:
            haystack = text.casefold() if any_case else text
            if not any(word in haystack for word in words):
                return False
        required = self._required.get(pattern_name)
        return required is None or required.search(text) is not None

    def validate_result(self, pattern_text: str) -> bool | None:
        """A street with a house number: the prefix-word pattern also matches "place the order" prose."""
        return any(c.isdigit() for c in pattern_text)


# Address parts the street patterns above do not reach, each found by where it stands rather than by a street
# type: a house number, a street's words and a number ("4596 Tylova 285", "meet me at 2407 tawastintie 6, ...")
# where an address starts (a line's start, after at/to/on/in/from, a comma or a question) and ends (the line's
# end, a comma, a unit, "St."); a postcode after the country on an address block's last line ("Belgium
# 42940"); the two streets of "the corner of X and Y".
_NOT_STREET_WORDS = frozenset(
    (*COMMON_WORDS, *STOP_WORDS, *MONTHS, *MONTH_ABBREVIATIONS, "past", "till", "minus", "plus", "times")
)
_COUNTRIES = frozenset(name.casefold() for name in COUNTRY_NAMES)
_WORD = r"\p{L}[\p{L}\p{M}'’\-]*"
_NUMBERED_STREET = regex.compile(
    rf"(?m)(?:^[ \t>*•?\-]*|(?<=\b(?i:at|to|on|in|from|address:?)[ \t])|(?<=[,?!][ \t]))"
    rf"\d{{1,5}}[ \t](?P<words>{_WORD}(?:[ \t]{_WORD}){{0,2}})[ \t]\d{{1,4}}[A-Za-z]?"
    r"(?=[ \t]*(?:$|,|\.(?:\s|$)|[ \t](?:Apt|Suite|Unit|St)\b))"
)
_CAP_WORD = r"\p{Lu}[\p{L}\p{M}'’\-]*"
_BLOCK_POSTCODE = regex.compile(
    rf"(?m)^[ \t>*•?\-]*(?P<words>{_CAP_WORD}(?:[ \t]{_CAP_WORD}){{0,2}}),?[ \t]+(?P<code>\d{{4,6}})[ \t]*$"
)
_CORNER = regex.compile(
    r"(?i:\bcorner[ \t]of)[ \t](?P<a>[^\n,;:!?()]{2,60}?)[ \t](?i:and|&)[ \t]"
    r"(?P<b>[\p{L}\d][\p{L}\p{M}\d.'’\-]*(?:[ \t][\p{L}\d][\p{L}\p{M}\d.'’\-]*){0,3})"
)


ADDRESS_PARTS = {"numbered_street": 0.6, "block_postcode": 0.5, "corner": 0.6}  # name -> score


def address_parts(text: str) -> list[tuple[str, int, int]]:
    """The address parts above: (name of the part's rule in ADDRESS_PARTS, start, end)."""
    found: list[tuple[str, int, int]] = []
    if any(c.isdigit() for c in text):
        for m in _NUMBERED_STREET.finditer(text):
            if _street_words(m.group("words")):
                found.append(("numbered_street", m.start(), m.end()))
        if "\n" in text:
            for m in _BLOCK_POSTCODE.finditer(text):
                if _block_postcode(text, m):
                    found.append(("block_postcode", m.start("code"), m.end("code")))
    if "corner" not in text.casefold():
        return found
    for m in _CORNER.finditer(text):
        words = list(regex.finditer(r"\S+", m.group("b")))
        while words and words[-1].group().casefold().strip(".,") in _NOT_STREET_WORDS:
            words.pop()
        streets = m.group("a") + " " + " ".join(w.group() for w in words)
        if words and any(c.isdigit() or c.isupper() for c in streets):  # not "the corner of the page and ..."
            found.append(("corner", m.start("a"), m.start("b") + words[-1].end()))
    return found


def _street_words(words: str) -> bool:
    """Words that can name a street: none a common English word or a month, none an acronym."""
    parts = words.split()
    return all(
        w.casefold().strip(".") not in _NOT_STREET_WORDS and not (len(w) > 1 and w.isupper()) for w in parts
    ) and any(len(w) >= 3 for w in parts)


def _block_postcode(text: str, m: regex.Match[str]) -> bool:
    """A postcode after a country's name on a line of an address block: a short line right above it, and the
    number no year ("ISO 27001" and "Standard 9001" are no postcodes)."""
    code = m.group("code")
    if len(code) == 4 and 1800 <= int(code) <= 2099:
        return False
    if " ".join(m.group("words").split()).casefold() not in _COUNTRIES:
        return False
    above = text[: m.start()].rstrip("\n").rpartition("\n")[2].strip(" \t>*•?-")
    return m.start() > 0 and 0 < len(above) <= 60


# -- phone numbers --------------------------------------------------------------------------------------------


POSSIBLE, VALID = phonenumbers.Leniency.POSSIBLE, phonenumbers.Leniency.VALID


class RegionsPhoneRecognizer(EntityRecognizer):
    """Phone numbers validated by python-phonenumbers: each stretch of text that can hold one (digits and
    phone punctuation, six digits or more) is matched in the regions' formats in order, stopping at the first
    region that finds a valid number there; a number written with "+" or "00" is matched once, in any
    region's format. So many regions cost little: most candidates are settled by the first region or two."""

    SCORE = 0.6
    _CANDIDATE = re.compile(
        r"(?:\+|\b00|\()?\d[\d \t().\-/]{4,}\d(?:[ \t,]*(?i:ext|extension|x|\#)\.?[ \t]*\d{1,7})?"
    )
    _MARGIN = 2

    def __init__(self, regions: Iterable[str]) -> None:
        self.regions = tuple(regions)
        # per region: its national (trunk) prefix and the possible lengths of its national numbers, to skip
        # the regions a run of digits cannot be a number of before asking phonenumbers
        self._lengths: dict[str, tuple[str, frozenset[int]]] = {}
        for region in self.regions:
            metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
            if metadata is not None and metadata.general_desc is not None:
                lengths = frozenset(metadata.general_desc.possible_length or ())
                self._lengths[region] = (metadata.national_prefix or "", lengths)
        super().__init__(supported_entities=["PHONE_NUMBER"], name="edged-phone")

    def _plausible_regions(self, digits: str) -> list[str]:
        plausible = []
        for region in self.regions:
            prefix, lengths = self._lengths.get(region, ("", frozenset()))
            if (
                not lengths
                or len(digits) in lengths
                or (prefix and digits.startswith(prefix) and len(digits) - len(prefix) in lengths)
            ):
                plausible.append(region)
        return plausible

    def load(self) -> None:
        """Nothing to load: phonenumbers loads each region's metadata on first use (the detector warms up)."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for candidate in self._CANDIDATE.finditer(text):
            if sum(c.isdigit() for c in candidate.group()) < 6 or ARITHMETIC.search(
                text, max(0, candidate.start() - 3), candidate.start()
            ):
                continue  # (a result: "2^32 = 4294967296")
            if DATE_LIKE.fullmatch(candidate.group().strip()):
                continue
            start = max(0, candidate.start() - self._MARGIN)
            # "+49 (0) 30 ...": the national trunk prefix in brackets is not dialled (blanked, offsets kept)
            window = text[start : candidate.end() + self._MARGIN].replace("(0)", "   ")
            international = candidate.group().lstrip("( ").startswith(("+", "00"))
            # A number with a country code is matched once, and only needs a possible length for its country
            # (generated and new numbers need not be in the metadata's ranges); "00" is the international prefix
            # of most of the world (not of the US): read as in Germany.
            if international:
                regions, leniency = ["DE"], POSSIBLE
            else:
                number = re.split(r"(?i)[ \t,]*(?:ext|extension|x|\#)", candidate.group())[0]
                regions, leniency = self._plausible_regions(re.sub(r"\D", "", number)), VALID
            for region in regions:
                found = list(phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency))
                if found:
                    results.extend(
                        _result("PHONE_NUMBER", start + m.start, start + m.end, self.SCORE) for m in found
                    )
                    break
        return results


def _result(entity: str, start: int, end: int, score: float) -> RecognizerResult:
    """A finding; the analyzer adds the recognizer's name and id to its metadata."""
    return RecognizerResult(entity, start, end, score)
