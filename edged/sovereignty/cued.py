"""Values and names introduced by the words people write before them.

People type "passport X1234567", "my PIN is 4821", "call Nguyễn Thị Lan", "Best regards,\\nSigrún Jónsdóttir":
the word before a value says what it is, whatever the value's shape, and a name after "call", "cc", "Dear" or a
title is a name whether or not spaCy's small English model has seen it. Two recognizers read those cues:

- `CuedValueRecognizer`: the value after a cue ("password", "PIN", "passport", "licence", "account",
  "routing", "policy", "member", "MRN", "tax id", "SSN", "DOB", "IBAN", "I live at", "ship to", ...) as the
  cue's entity type;
- `CuedNameRecognizer`: capitalised words (any script's capitals, or words of scripts without case such as CJK
  and Arabic, with particles such as "van", "de", "bin") after a cue that introduces a person, the name a
  signature block ends with, and names the sentence places (who lives somewhere, is given or added as
  something, a dialogue's speakers); a lower-case given name of the census list where a name stands.

`conjunct_names` adds the capitalised words listed with a found name ("Monjeau, Graves and Reed").
`trim_common_words` is the filter the detector applies to every PERSON finding (spaCy's and these): a
capitalised verb or common word opening a sentence ("Email john.smith@example.com ...", "Convert ...") is not a
name.
Everything here is a handful of precompiled regular expressions (the `regex` package, for Unicode classes).
"""

from __future__ import annotations

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from spacy.lang.en.stop_words import STOP_WORDS

from edged.sovereignty.first_names import FIRST_NAMES
from edged.sovereignty.words import COMMON_WORDS, MONTHS, NAME_PARTICLES, NAME_TITLES


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum (cards, IMEI) of a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# -- cue -> value ---------------------------------------------------------------------------------------------

# After the cue: "number", "no.", "#", "ID", ":", "is", "=", "-" in any order (a few of them).
_FILLER = r"(?:\s*(?:(?i:number|num|no|nr|n[o°º]|code|id|is|was|will be|of)\b\.?|[#:=\-–]))*\s*"

# A value token: letters, digits and the separators ids are written with; groups after a space are taken while
# they hold a digit (or are one to three capitals, as in "AB 12 34 56 C"), so "1 84 12 76 451 089 46" is whole.
_GROUP = r"[A-Za-z0-9][A-Za-z0-9\-./]*"
_DIGIT_AHEAD = r"(?=[A-Za-z\-./]*\d)"  # the group holds a digit
_ID_VALUE = (
    rf"(?:[A-Z]{{1,3}}[ ](?=\d))?{_DIGIT_AHEAD}{_GROUP}(?:[ ](?:{_DIGIT_AHEAD}{_GROUP}|[A-Z]{{1,3}}\b))*"
)
_PHONE_VALUE = r"(?:\+|00)?[\d(][\d \-().]{4,22}\d(?:\s?(?i:x|ext\.?)\s?\d{1,6})?"

_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE_VALUE = (
    rf"(?:\d{{1,4}}[./\-]\d{{1,2}}[./\-]\d{{1,4}}|\d{{1,2}}(?:st|nd|rd|th)?\s{_MONTH},?\s\d{{4}}|"
    rf"{_MONTH}\s\d{{1,2}}(?:st|nd|rd|th)?,?\s\d{{4}})"
)
# An address after its cue: words (capitalised, abbreviated "Jl." "W.R.", or lower-case particles and street
# types: "del", "rue", "phố"), house numbers ("486", "11/686", "8a", "N° 658", "#12") and postcodes, joined by
# spaces or commas.
_ADDRESS_PART = (
    r"(?:N[°º]\.?|\p{Lu}(?:\.\p{Lu})+\.?|\p{Lu}\p{Ll}{0,4}\.|[\p{Lu}\p{Lt}][\p{L}\p{M}'’\-]*|"
    r"\d{1,6}(?:[\-/]\d{1,5})?[A-Za-z]?(?!\w)|#\d{1,6}|"
    r"(?:de|del|de la|des|du|la|le|di|da|do|dos|das|della|van|von|der|den|am|an|im|y|sur|phố|xã|đường|ngõ|số|"
    r"rue|avenue|av\.|boulevard|bd\.?|chemin|allée|place|impasse|quai|route|montée|cours|rua|via|calle|ul\.)"
    r"(?!\w))"
)
_ADDRESS_VALUE = rf"{_ADDRESS_PART}(?:(?:,[ ]?|[ ]){_ADDRESS_PART}){{0,15}}"
# A secret is whatever follows its cue up to white space; without ":", "=" or "is" it needs a digit or symbol.
_SECRET_VALUE = r"\S{3,128}"  # noqa: S105 - a pattern, not a password

# (entity type, cue words, value pattern, score). Cues are case-insensitive, except the short abbreviations
# ("PIN", "DL", "SIN", "PAN") that would otherwise match ordinary words.
_CUES: tuple[tuple[str, str, str, float], ...] = (
    (
        "PASSWORD",
        r"(?i:pass(?:word|wd|code|phrase)s?|pwd|wi-?fi (?:key|code)|kennwort|mot de passe|contrase[ñn]a|senha|"
        r"hasło|haslo)",
        _SECRET_VALUE,
        0.75,
    ),
    ("PASSWORD", r"(?i:pin(?: code| number)?)", _SECRET_VALUE, 0.75),
    ("PASSPORT", r"(?i:passport|reisepass|passeport|pasaporte|passaporto|paszport)", _ID_VALUE, 0.8),
    (
        "DRIVER_LICENSE",
        r"(?i:driv(?:er'?s?|ing) licen[cs]e|licen[cs]e|führerschein|permis de conduire)|\bDL\b",
        _ID_VALUE,
        0.8,
    ),
    (
        "BANK_ACCOUNT",
        r"(?i:(?:bank )?account|acct|routing|sort code|bban|kontonummer|konto|numéro de compte|cuenta|"
        r"conto)|\b(?:ABA|BSB|RTN)\b",
        _ID_VALUE,
        0.75,
    ),
    (
        "INSURANCE_ID",
        r"(?i:policy|member(?:ship)?|subscriber|insurance|insured|versicherungsnummer|claim)",
        _ID_VALUE,
        0.75,
    ),
    (
        "MEDICAL_ID",
        r"(?i:medical record|patient(?: id| number| no)|health record|chart|medicare|medicaid)|\b(?:MRN|NHS)\b",
        _ID_VALUE,
        0.8,
    ),
    (
        "TAX_ID",
        r"(?i:tax(?:payer)?[ \-]?(?:id|identification|number|no|code|reference)|vat(?: id| no| number)?|"
        r"steuer-?id|steuernummer|ust-?idnr|codice fiscale)|\b(?:TIN|EIN|NIF|CIF|UTR|ABN|VAT)\b",
        _ID_VALUE,
        0.8,
    ),
    (
        "NATIONAL_ID",
        r"(?i:ssn|social security|social insurance|national (?:id|identity|insurance)|ni number|"
        r"(?:personal|citizen|identity|id) (?:card|number|code|no)|id card|identity|personnummer|"
        r"henkilötunnus|pesel|aadhaar|kimlik|rodné číslo|personal id)|"
        r"\b(?:SIN|CPR|BSN|DNI|NIE|CPF|RG|CNP|PAN|NINO|AHV|OIB|EGN|AMKA|PPS|PPSN)\b",
        _ID_VALUE,
        0.75,
    ),
    ("NATIONAL_ID", r"\b(?i:id)\b", _ID_VALUE, 0.7),
    (
        "CREDIT_CARD",
        r"(?i:(?:credit |debit |bank |payment )?card(?: number| no)?|visa|mastercard|amex|maestro)",
        r"\d(?:[ \-]?\d){11,18}",
        0.7,
    ),
    (
        "PHONE_NUMBER",
        r"(?i:phone|mobile|cell|tel|telephone|fax|whatsapp|landline|(?:call|reach|text|ring|contact) me (?:on|at))",
        _PHONE_VALUE,
        0.5,
    ),  # a bare "ID": below every more specific cue
    # "My IBAN is ..." whether or not its country and checksum are valid (a typo, a country without IBANs)
    ("IBAN_CODE", r"(?i:iban)", r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){1,7}(?:[ ]?[A-Z0-9]{1,3})?", 0.75),
    # "I live at ...", "ship to ...", "my address is ...": a house number beside a capitalised word, in any
    # country's order (see _address_span)
    (
        "STREET_ADDRESS",
        r"(?i:(?:live|lives|living|reside|resides|residing|located|based) at|(?:ship|send|deliver|mail|post)"
        r"(?:ped|ping|ed|ing)?(?: (?:it|them|this|that|these|those|the \w+))? to|address|adresse|dirección|"
        r"direccion|endereço|indirizzo|adres|anschrift)",
        _ADDRESS_VALUE,
        0.7,
    ),
    (
        "DATE_OF_BIRTH",
        r"(?i:dob|d\.o\.b|date of birth|birth ?date|born(?: on)?|birthday|geboren(?: am)?|né le|née le)",
        _DATE_VALUE,
        0.75,
    ),
)
# Between a cue and its value: a few filler words, or (for "the login password for the laptop is X") up to four
# lower-case words ending in "is", ":" or "=".
_GAP = rf"(?:\s(?:[a-z']+\s){{0,4}}?(?:is|are|was|:|=)\s*|{_FILLER})"


CUED_ENTITIES = frozenset(entity for entity, _cue, _value, _score in _CUES)


class CuedValueRecognizer(EntityRecognizer):
    """The value after a word that says what it is, as that word's entity type (see the module docstring)."""

    def __init__(self, entities: frozenset[str]) -> None:
        cues = [(entity, cue, value, score) for entity, cue, value, score in _CUES if entity in entities]
        self._patterns = [
            (entity, regex.compile(rf"(?<![\w\-])(?:{cue})(?![\w\-]){_GAP}({value})"), score)
            for entity, cue, value, score in cues
        ]
        # Where any cue stands, in one pass: each pattern begins with its cue, so it can match only there.
        # Trying each pattern at those few places finds exactly what its own overlapped scan of the whole text
        # finds (a match at every position it can start at), in a third of the time (12 scans become one).
        self._cue_at = regex.compile(
            r"(?<![\w\-])(?:" + "|".join(f"(?:{cue})" for _, cue, _, _ in cues) + r")(?![\w\-])"
        )
        super().__init__(
            supported_entities=sorted({e for e, _, _, _ in _CUES} & entities), name="edged-cued-value"
        )

    def load(self) -> None:
        """Nothing to load: the patterns are compiled in __init__."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        if not self._patterns:
            return results
        starts = [cue.start() for cue in self._cue_at.finditer(text, overlapped=True)]
        for entity, pattern, score in self._patterns:
            if entity not in entities:
                continue
            for match in filter(None, (pattern.match(text, at) for at in starts)):
                start, end = match.span(1)
                value = text[start:end]
                if entity == "PASSWORD":
                    # sentence punctuation after a secret is not part of it (keeps "!", ")" and the like)
                    value = value[:-1] if len(value) > 3 and value[-1] in ".,;:?" else value
                    if not _secret_like(value, text[match.start() : start]):
                        continue
                elif entity == "STREET_ADDRESS":
                    span = _address_span(text, start, end, " to" in text[match.start() : start].lower())
                    if span is None:
                        continue
                    start, value = span[0], text[span[0] : span[1]]
                else:
                    value = value.rstrip(".,;:!?)-/")
                    # a card number after its cue counts whatever its checksum: a typo is still the user's card
                    if entity != "DATE_OF_BIRTH" and not _id_like(value):
                        continue
                results.append(_result(entity, start, start + len(value), score))
        return results


def _id_like(value: str) -> bool:
    """An identifier has at least five letters and digits, two of them digits, and is not a year."""
    alnum = [c for c in value if c.isalnum()]
    digits = sum(c.isdigit() for c in alnum)
    return len(alnum) >= 5 and digits >= 2


_SENTENCE_END = regex.compile(r"\.\s+(\S+)")
_ADDRESS_WORDS = regex.compile(r"[^ ,]+")
# a house number beside a capitalised word ("Maravillas 525", "6730 King", "No. 646")
_NUMBER_BESIDE_WORD = regex.compile(r"\p{Lu}[\p{L}\p{M}.°º]*,?[ ]\d|\d[A-Za-z]?,?[ ]\p{Lu}")


def _address_span(text: str, start: int, end: int, recipient: bool) -> tuple[int, int] | None:
    """The address in a cued value: up to a sentence's end (a period before a common word), without lower-case
    or common words at either end ("to 12 Grimmauld Place, London on Saturday"), after the recipient's name
    when the cue sends something to someone ("ship to Kofi Mensah, 12 ..."); None unless a house number stands
    beside a capitalised word."""
    value = text[start:end]
    for stop in _SENTENCE_END.finditer(value):
        if stop.group(1).lower().strip(".,;:!?") in COMMON_WORDS:
            value = value[: stop.start()]
            break
    words = list(_ADDRESS_WORDS.finditer(value))
    while words and _not_address(words[0].group()):
        words.pop(0)
    while words and _not_address(words[-1].group()):
        words.pop()
    if not words:
        return None
    start, value = start + words[0].start(), value[words[0].start() : words[-1].end()]
    head, comma, rest = value.partition(", ")
    if recipient and comma and not any(c.isdigit() for c in head):
        start, value = start + len(head) + 2, rest  # the name (or company) the parcel goes to
    if not _NUMBER_BESIDE_WORD.search(value):
        return None
    return start, start + len(value.rstrip("."))


def _not_address(word: str) -> bool:
    """A word an address does not start or end with: lower-case ("to", "on"), or a common word ("Saturday")."""
    return word[:1].islower() or word.lower().strip(".,;:!?") in COMMON_WORDS


def _secret_like(value: str, cue_and_filler: str) -> bool:
    """A password follows an explicit ":", "=" or "is", or holds a digit or a symbol; a common word never is."""
    if value.lower().strip(".,;:!?") in COMMON_WORDS:
        return False
    if regex.search(r"[:=]|\bis\b|\bwas\b", cue_and_filler):
        return True
    return any(not c.isalpha() for c in value)


# -- names after cues -----------------------------------------------------------------------------------------

_UPPER = r"[\p{Lu}\p{Lt}]"
_LOWER = r"[\p{Ll}\p{Lm}\p{Mn}]"
# A name word: "Lan", "O'Connor", "D'Angelo", "McDonald", "Jean-Luc", "Nguyễn", "Çağrı", "高橋"; a particle: "van",
# "de", "bin".
# A word of a script without case (CJK, Hangul, Arabic, Devanagari, ...) after a cue is a name word too:
# "call 高橋 陽子", "cc 이경자" (letters of kind Lo, with their combining marks).
_CASELESS_WORD = r"\p{Lo}[\p{Lo}\p{M}]*"
# a capitalised word: "Lan", "O'Connor", "McDonald", "Jean-Luc"
CAPITALISED_WORD = rf"(?:{_UPPER}['’])?{_UPPER}{_LOWER}+(?:{_UPPER}{_LOWER}+)?(?:['’\-]{_UPPER}?{_LOWER}+)*"
_NAME_WORD = (
    rf"(?:{CAPITALISED_WORD}|{_UPPER}\.|"
    # an initial without its period before the next name word: "Shane M Culp"
    rf"{_UPPER}(?=[ \u00a0]{_UPPER}{_LOWER})|"
    rf"{_CASELESS_WORD})"
)
_PARTICLE = f"(?:{'|'.join(NAME_PARTICLES)})"
_TITLE = "|".join(NAME_TITLES)
_NAME = rf"{_NAME_WORD}(?:[ \u00a0](?:{_PARTICLE}[ \u00a0])*{_NAME_WORD}){{0,3}}"

_PERSON_CUES = (
    # introductions and greetings
    r"my name is|name is|name:|full name:?|i'm|i am|this is|called|named|dear|hi|hello|hey|greetings|"
    # "under my partner's name Shane Culp", "her maiden name Nyberg"
    r"(?:my|his|her|their|your|our|[\w]+'s) (?:(?:full|maiden|legal|real|first|last|middle|married) )?name",
    # titles and roles
    r"mr|mrs|ms|miss|mx|dr|prof|sir|madam|officer|detective|sergeant|sgt|captain|judge|herr|frau|monsieur|"
    r"madame|señor|señora|sr|sra|patient|nurse|doctor|professor|producer|director|editor|author|writer|"
    r"singer|actor|actress|artist|coach|president|senator|governor|mayor|minister|founder|chairman|"
    r"chairwoman|lieutenant|colonel|agent|attorney|lawyer|pastor|reverend|uncle|aunt|cousin|nephew|niece|"
    r"grandma|grandpa|landlady|ceo",
    # verbs that take a person
    r"call|phone|ring|text|e-?mail|message|ping|ask|tell|remind|invite|meet|met|contact|thank|pay|visit|"
    r"introduce|notify|inform|congratulate|cc|bcc|told|asked|thanked|hired|fired|married|interviewed|"
    r"(?:shout|shouted|yell|yelled|smile|smiled|look|looked|wave|waved) at|"
    r"(?:speak|spoke|talk|talked|talking|speaking|write|wrote|listen|listened|reply|replied|said) (?:to|with)|"
    r"met with|a word with",
    # who something is for or from
    r"(?:ship|send|sent|deliver|write|forward|address|addressed|mail|give|hand|assign|transfer|email)(?: it)? to|"
    r"under(?: the name(?: of)?)?|in the name of|on behalf of|attention|attn|c/o|care of|from|to:|cc:|"
    r"account holder|holder|passenger|guest|customer|client|employee|tenant|applicant|beneficiary|recipient|"
    r"contact person|colleague|manager|my (?:wife|husband|son|daughter|mother|father|mom|dad|friend|boss|"
    r"partner|brother|sister|neighbou?r|landlord|lawyer|doctor|colleague)|thanks|thank you",
)
_CUE = "|".join(_PERSON_CUES)
# A signature block: the sign-off, then the name after a comma or on the next line.
_SIGN_OFF = (
    r"(?:kind|best|warm|warmest|many)? ?(?:regards|wishes|thanks)|signed|sincerely|yours(?: sincerely| truly)?|"
    r"cheers|best|respectfully|cordially|thank you|mit freundlichen grüßen|cordialement|saludos|"
    r"met vriendelijke groet|pozdrawiam|med vänliga hälsningar"
)


class CuedNameRecognizer(EntityRecognizer):
    """Capitalised name words after a word that introduces a person (see the module docstring)."""

    SCORE = 0.6
    _PATTERNS = (
        # "call Lan Nguyễn", "Dear Mr. Pierce" (the title is a cue too)
        regex.compile(
            rf"(?<![\w\-])(?i:{_CUE})\.?(?:,?[ \t]{{1,3}}|:?(?<=:)[ \t]{{1,12}}|[,:!]?[ \t]*\n[ \t]*)"
            rf"(?:(?i:{_TITLE})\.?[ ])?({_NAME})(?![\w@'’\-])"
        ),
        # "Best regards,\nSigrún Jónsdóttir", "Signed, Kofi Mensah"
        regex.compile(
            rf"(?<![\w\-])(?i:{_SIGN_OFF})(?:[,!.]?[ \t]*\n[ \t]*|,[ \t]{{1,3}})({_NAME})(?![\w@'’\-])"
        ),
        # "Put Aoife Byrne in cc"
        regex.compile(rf"(?<![\w\-])({_NAME})(?= (?:in|on|to) (?:cc|bcc|copy)\b)"),
        # a name alone opening a line before a comma: "Kaito Tanaka, passport ..."
        regex.compile(rf"(?m)^[ \t]*({_NAME_WORD}(?:[ ](?:{_PARTICLE}[ ])*{_NAME_WORD}){{1,3}})(?=,[ ])"),
        # who was given something: "had given Hakuba his address"
        regex.compile(
            rf"(?<![\w\-])(?i:given|gave|give|handed|hand|showed|show|sent|send|offered|offer|promised|lent|"
            rf"paid|owe|owes|owed)[ ]({_NAME})(?= (?i:his|her|their|my|your|our|the|a|an|some)\b)"
        ),
        # who is added as what: "add Edvard Petrussen as a beneficiary"
        regex.compile(
            rf"(?<![\w\-])({_NAME})(?= as (?:(?:a|an|my|our|the|his|her) )?(?:(?:joint|secondary|primary|"
            rf"emergency|authori[sz]ed) )?(?:beneficiary|contact|co-?signer|guarantor|reference|trustee|executor|"
            rf"dependent|dependant|user|signatory|holder|guest|next of kin|witness|referee)\b)"
        ),
        # who lives somewhere: "Jacob lives on 90 Whitchurch Road"
        regex.compile(
            rf"(?<![\w\-])({_NAME})(?= (?:lives|lived|resides|resided|is living|was living|grew up) (?:on|at|in)\b)"
        ),
    )
    # After the strongest cues a name written in lower case is a name too: "her maiden name is nyberg".
    _LOWER_AFTER_CUE = regex.compile(
        r"(?<![\w\-])(?i:(?:my|his|her|their|your|our) (?:(?:full|maiden|legal|real|first|last) )?name is)"
        r"[ \t]+(\p{Ll}[\p{Ll}\p{Mn}'’\-]+(?:[ ]\p{Ll}[\p{Ll}\p{Mn}'’\-]+){0,2})"
        r"(?![\w@'’\-])"
    )
    # A given name written in lower case after a word that introduces a person: "call mary tomorrow", "cc chad
    # smith" (the name on the census list, not a word that is also a name: "call will", "under grant").
    _LOWER_AFTER_PERSON_CUE = regex.compile(
        rf"(?<![\w\-])(?i:{_CUE})[ \t]{{1,3}}(\p{{Ll}}[\p{{Ll}}'’\-]+)(?:[ ](\p{{Ll}}[\p{{Ll}}'’\-]+))?(?![\w@'’\-])"
    )
    # A list of lower-case words most of which are given names: "they had 6: silvana, adam, chad and caleb".
    _LOWER_LIST = regex.compile(
        r"(?<![\w\-])(\p{Ll}[\p{Ll}'’\-]+)(?:, (\p{Ll}[\p{Ll}'’\-]+))+,? (?:and|or|&) (\p{Ll}[\p{Ll}'’\-]+)"
        r"(?![\w\-])"
    )
    # A given name addressed at the start of a sentence: "Danial, can I please speak to your boss?" (on the census
    # list and no English word: "Will, can you" and "React, can you" are no names).
    _ADDRESSED = regex.compile(
        rf"(?:^|(?<=[.!?\n][ \t]?))({_UPPER}{_LOWER}+)(?=, (?i:can|could|would|will|please|do|did|are|have|i|you|we|"
        rf"thank|thanks|how|what|where|when|why|is|was|my|your|let|it)\b)"
    )
    # A speaker's name opening a line of a dialogue ("Danielle: Remember me?"), where two lines or more open so.
    _SPEAKER = regex.compile(
        rf"(?m)^[ \t>]*({_NAME_WORD}(?:[ ]{_NAME_WORD})?|\p{{Ll}}[\p{{Ll}}\p{{Mn}}'’\-]+)[ \t]?:[ \t]*(?=\S)"
    )

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="edged-cued-name")

    def load(self) -> None:
        """Nothing to load: the patterns are compiled with the class."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        spans = [
            match.span(1) for pattern in self._PATTERNS for match in pattern.finditer(text, overlapped=True)
        ]
        spans.extend(m.span(1) for m in self._LOWER_AFTER_CUE.finditer(text))
        spans.extend(
            m.span(1) for m in self._ADDRESSED.finditer(text) if lower_given_name(m.group(1).lower())
        )
        spans.extend(self._lower_given_names(text))
        if text.count(":") >= 2 and "\n" in text:
            speakers = [
                m for m in self._SPEAKER.finditer(text) if m.group(1).casefold() not in _NOT_A_SPEAKER
            ]
            if len(speakers) >= 2:
                spans.extend(m.span(1) for m in speakers)
        results = []
        for start, end in spans:
            span = trim_common_words(text, start, end)
            if span is not None:
                results.append(_result("PERSON", span[0], span[1], self.SCORE))
        return results

    def _lower_given_names(self, text: str) -> list[tuple[int, int]]:
        """Lower-case given names after a person cue and in lists of names. Both need a word of the text to be
        one (a run of lower-case letters, as both patterns' words are), so a text without one skips the cue
        alternation tried at every position (a third of the recognizer's time on 1,000 characters)."""
        if not any(lower_given_name(word) for word in set(_LOWER_RUN.findall(text))):
            return []
        spans = []
        for m in self._LOWER_AFTER_PERSON_CUE.finditer(text, overlapped=True):
            if lower_given_name(m.group(1)):
                surname = m.group(2)
                keep = surname is not None and surname not in _NOT_A_LOWER_NAME
                spans.append((m.start(1), m.end(2) if keep else m.end(1)))
        for m in self._LOWER_LIST.finditer(text):
            words = [(w, m.starts(i)[j]) for i in (1, 2, 3) for j, w in enumerate(m.captures(i))]
            if 2 * sum(lower_given_name(w) for w, _ in words) > len(words):
                spans.extend((at, at + len(w)) for w, at in words if w not in _NOT_A_LOWER_NAME)
        return spans


# -- names beside names ----------------------------------------------------------------------------------------

# a whole word: an initial counts only before the next name word, which the slice before a name lacks
_BEFORE_NAME = regex.compile(
    rf"(?<![\w\-'’])({CAPITALISED_WORD}|{_CASELESS_WORD})"
    rf"(,? (?:and|or|&) |, )(?:(?i:{_TITLE})\.? )?$"
)
_AFTER_NAME = regex.compile(rf"(,? (?:and|or|&) |, )(?:(?i:{_TITLE})\.? )?({_NAME_WORD})(?![\w\-'’])")


def conjunct_names(text: str, names: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The capitalised words listed with a found name (`founders: Monjeau, Graves and Reed` where Graves and
    Reed were found): each word joined to a name by ", ", "and", "or" or "&" (a title between is skipped), in a
    list that holds at least one "and", "or" or "&", and is no common word. The spans of those words not found
    already."""
    found: set[tuple[int, int]] = set(names)
    added: list[tuple[int, int]] = []
    for start, end in names:
        chain: list[tuple[int, int]] = []
        joined = False
        for step, first in ((_word_before, start), (_word_after, end)):
            edge = first
            while (m := step(text, edge)) is not None:
                word, separator = m
                joined |= separator.strip(", ") != ""
                chain.append(word)
                edge = word[0] if step is _word_before else word[1]
        if joined:
            added.extend(span for span in chain if span not in found)
            found.update(chain)
    return added


def _word_before(text: str, at: int) -> tuple[tuple[int, int], str] | None:
    """The name word right before `at` and its separator ("Monjeau, " before "Graves")."""
    head = text[max(0, at - 40) : at]
    m = _BEFORE_NAME.search(head)
    if m is None or m.group(1).lower() in NOT_A_NAME:
        return None
    offset = at - len(head)
    return (offset + m.start(1), offset + m.end(1)), m.group(2)


def _word_after(text: str, at: int) -> tuple[tuple[int, int], str] | None:
    """The separator and name word right after `at` (" and Reed" after "Graves")."""
    m = _AFTER_NAME.match(text, at)
    if m is None or m.group(2).lower() in NOT_A_NAME:
        return None
    return m.span(2), m.group(1)


# -- what is not a name ---------------------------------------------------------------------------------------


NOT_A_NAME = COMMON_WORDS | frozenset(NAME_TITLES)
# The labels that open lines of prompts, transcripts and logs and are no speaker's name.
_NOT_A_SPEAKER = NOT_A_NAME | frozenset(  # a word list is read best as text
    """
    question answer input output example examples error warning info debug trace step hint context options
    choices option choice solution result results title description date time re fwd fw q a user assistant
    system human ai bot agent model prompt response reason rationale explanation source target label category
    sentiment topic premise hypothesis claim passage story text translation name address email phone tel fax
    mobile cell website url id status priority type value key note tip caution important summary problem
    task goal steps usage returns args arguments parameters params exercise instructions
    """.split()  # noqa: SIM905
)


# Given names that are also English words, and months: written in lower case they are taken for the word.
_WORD_NAMES = frozenset(  # a word list is read best as text
    """
    grant rose mark bill hope faith joy art guy chance summer dawn frank jack ray sky will autumn amber crystal
    pearl ruby holly ivy lily daisy iris violet jasmine hazel olive ginger honey candy sandy rusty buck bud chip
    chuck clay cliff dean drew earl ernest forest gene glen grace harmony heath hunter king lane lee major
    marshall mason miles noble norman pat penny rich rob robin rod sage skip sterling stone tad ted van wade ward
    white young sunny storm star river rain price page love lucky merry misty destiny genesis trinity unique
    precious princess queen don sue gay carol christian miss sonny marion warren cherry sherry brandy shelby
    """.split()  # noqa: SIM905
)
_NOT_LOWER_NAMES = STOP_WORDS | MONTHS | _WORD_NAMES


_NOT_A_LOWER_NAME = NOT_A_NAME | _NOT_LOWER_NAMES
_LOWER_RUN = regex.compile(r"\p{Ll}+")


def lower_given_name(word: str) -> bool:
    """Whether a lower-case word is a given name of the census list and no English word."""
    return word in FIRST_NAMES and word not in _NOT_A_LOWER_NAME


def trim_common_words(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The span without common words or titles at either end ("Email John" -> "John", "Dr Lee" -> "Lee", "the Dr"
    -> None); None when nothing is left."""
    words = list(regex.finditer(r"\S+", text[start:end]))
    while words and words[0].group().lower().strip(".,:;!?") in NOT_A_NAME:
        words.pop(0)
    while words and words[-1].group().lower().strip(".,:;!?") in NOT_A_NAME:
        words.pop()
    if not words:
        return None
    return start + words[0].start(), start + words[-1].end()


def _result(entity: str, start: int, end: int, score: float) -> RecognizerResult:
    """A finding; the analyzer adds the recognizer's name and id to its metadata."""
    return RecognizerResult(entity, start, end, score)
