"""Recognizers devices need that Presidio lacks (API keys and tokens, private keys, IMEI numbers, street
addresses), an e-mail recognizer that never touches the network, the profile's custom patterns, and the table
that builds the recognizer of each entity type.

Patterns run in Presidio's PatternRecognizer, which compiles them with the `regex` package; edged's own are
case-sensitive (Presidio's default flags ignore case, which would make `AKIA…` match any word of that shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    NhsRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

from edged.config.privacy import CustomRecognizer, DetectorSettings

# Presidio compiles with the `regex` package, whose flag values are those of `re`.
CASE_SENSITIVE = int(re.DOTALL | re.MULTILINE)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum (cards, IMEI) of a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


class ApiKeyRecognizer(PatternRecognizer):
    """Cloud credentials and tokens: AWS, GitHub, Slack, Google, Stripe, `sk-…` keys, JWTs, bearer tokens and
    `api_key = …`-style assignments."""

    PATTERNS = (
        Pattern("aws_access_key_id", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", 0.9),
        Pattern(
            "aws_secret_access_key",
            r"(?<=(?i:aws_?secret_?(?:access_?)?key)\W{1,4})[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
            0.9,
        ),
        Pattern("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b", 0.95),
        Pattern("github_pat", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b", 0.95),
        Pattern("slack_token", r"\bxox[abposr]-[A-Za-z0-9\-]{10,250}\b", 0.95),
        Pattern("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{20,120}", 0.95),
        Pattern("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])", 0.9),
        Pattern("stripe_key", r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,247}\b", 0.9),
        Pattern("sk_key", r"\bsk-(?:[A-Za-z0-9]+-){0,3}[A-Za-z0-9_\-]{20,200}(?![A-Za-z0-9_\-])", 0.85),
        Pattern("jwt", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}", 0.9),
        Pattern("bearer", r"(?<=\b(?i:bearer)\s{1,4})[A-Za-z0-9\-._~+/]{16,1024}=*", 0.8),
        Pattern(
            "assigned_secret",
            r"(?<=\b(?i:api[_\-]?key|secret(?:[_\-]?key)?|access[_\-]?token|auth[_\-]?token|token|passwd|password)"
            r"[\"']?\s{0,3}[:=]\s{0,3}[\"']?)[A-Za-z0-9_\-./+=]{12,512}",
            0.6,
        ),
    )
    CONTEXT = ("key", "token", "secret", "api", "credential", "password", "bearer")

    def __init__(self) -> None:
        super().__init__(
            supported_entity="API_KEY",
            patterns=list(self.PATTERNS),
            context=list(self.CONTEXT),
            name="edged-api-key",
            global_regex_flags=CASE_SENSITIVE,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        """A secret has a digit and a letter; this keeps `password: correcthorsebattery` type prose out of the
        generic assignment pattern (vendor prefixes are validated by their shape already)."""
        has_digit = any(c.isdigit() for c in pattern_text)
        has_alpha = any(c.isalpha() for c in pattern_text)
        return has_digit and has_alpha


class PrivateKeyRecognizer(PatternRecognizer):
    """PEM/OpenSSH/PGP private key blocks, also when pasted without their END line."""

    _LABEL = r"(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?"
    PATTERNS = (
        Pattern("pem_private_key", rf"-----BEGIN {_LABEL}-----.*?-----END {_LABEL}-----", 1.0),
        # a key pasted without its END line: the header and every base64 line after it
        Pattern(
            "pem_private_key_head", rf"-----BEGIN {_LABEL}-----(?:(?!-----END)[A-Za-z0-9+/=:\-,\s])*", 0.95
        ),
    )

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PRIVATE_KEY",
            patterns=list(self.PATTERNS),
            context=["key"],
            name="edged-private-key",
            global_regex_flags=CASE_SENSITIVE,
        )


class ImeiRecognizer(PatternRecognizer):
    """15-digit IMEI numbers (Luhn-valid), plain or grouped 2-6-6-1."""

    PATTERNS = (Pattern("imei", r"\b\d{2}[ \-]?\d{6}[ \-]?\d{6}[ \-]?\d\b", 0.5),)
    CONTEXT = ("imei", "device", "handset", "phone", "serial")
    # 15-digit card numbers (American Express) start 34 or 37; no IMEI reporting body uses those prefixes.
    _CARD_PREFIXES = ("34", "37")

    def __init__(self) -> None:
        super().__init__(
            supported_entity="IMEI",
            patterns=list(self.PATTERNS),
            context=list(self.CONTEXT),
            name="edged-imei",
            global_regex_flags=CASE_SENSITIVE,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = re.sub(r"\D", "", pattern_text)
        return len(digits) == 15 and not digits.startswith(self._CARD_PREFIXES) and luhn_valid(digits)


class StreetAddressRecognizer(PatternRecognizer):
    """Street addresses in the English-speaking style (`221B Baker Street`, `1600 Pennsylvania Ave NW,
    Washington, DC 20500`), with unit, town, state and ZIP when they follow; and PO boxes."""

    _SUFFIX = (
        r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
        r"Parkway|Pkwy|Circle|Cir|Square|Sq|Highway|Hwy|Trail|Trl|Close|Crescent|Cres|Row|Alley|Plaza|Gardens|"
        r"Mews|Hill|Walk)"
    )
    _NAME_WORD = r"(?:\d{1,3}(?:st|nd|rd|th)|[A-Z][A-Za-z'\-]*\.?)"
    _UNIT = r"(?:,?\s(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|#)\.?\s?#?[A-Za-z0-9\-]{1,6})"
    _TOWN = r"(?:,\s[A-Z][a-z][A-Za-z'\-]*(?:\s[A-Z][a-z][A-Za-z'\-]*){0,3})"
    _REGION = r"(?:,?\s[A-Z]{2}(?=[\s,.;]|$))"
    _POSTCODE = r"(?:,?\s(?:\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}))"
    PATTERNS = (
        Pattern(
            "street_address",
            rf"\b\d{{1,6}}[A-Za-z]?\s(?:{_NAME_WORD}\s){{1,4}}{_SUFFIX}\b\.?(?:\s(?:N|S|E|W|NE|NW|SE|SW)\b)?"
            rf"{_UNIT}?{_TOWN}?{_REGION}?{_POSTCODE}?",
            0.9,
        ),
        Pattern("po_box", r"\bP\.?\s?O\.?\s?Box\s\d{1,6}\b", 0.6),
    )
    CONTEXT = ("address", "live", "lives", "street", "ship", "deliver", "mail", "home", "office")

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            patterns=list(self.PATTERNS),
            context=list(self.CONTEXT),
            name="edged-street-address",
            global_regex_flags=CASE_SENSITIVE,
        )


class PersonCueRecognizer(PatternRecognizer):
    """Names after the phrases that introduce one (`my name is`, `Dear`, `Mr.`, `I'm`): spaCy's small model misses
    some of these, most often names it has not seen."""

    _CUE = r"(?:[Mm]y name is|[Nn]ame:|I'm|I am|Dear|Mr\.?|Mrs\.?|Ms\.?|Miss|Dr\.?|Prof\.?|[Cc]ontact|[Ff]rom:|[Tt]o:)"
    _WORD = r"[A-Z][a-z]*(?:['\-][A-Z]?[a-z]+)*"
    _TITLE = r"(?:Mr|Mrs|Ms|Miss|Dr|Prof)\b"  # "Dear Mr. Smith": the name is the word after the title
    PATTERNS = (
        Pattern(
            "cued_name",
            rf"(?<=\b{_CUE}\s{{1,3}})(?!{_TITLE}){_WORD}(?:\s{_WORD}){{0,3}}(?=[\s,.;:!?)]|$)",
            0.6,
        ),
    )

    def __init__(self) -> None:
        super().__init__(
            supported_entity="PERSON",
            patterns=list(self.PATTERNS),
            name="edged-person-cue",
            global_regex_flags=CASE_SENSITIVE,
        )


class CardRecognizer(CreditCardRecognizer):
    """Presidio's card recognizer (Luhn-checked), plus Mastercard's 2221-2720 range, which its pattern predates,
    and minus 15-digit numbers outside the 15-digit card ranges (Amex 34/37, UATP 1): those are IMEIs."""

    MASTERCARD_2_SERIES = Pattern(
        "mastercard_2_series", r"\b2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3
    )

    def __init__(self) -> None:
        super().__init__(
            patterns=[*CreditCardRecognizer.PATTERNS, self.MASTERCARD_2_SERIES], name="edged-card"
        )

    def validate_result(self, pattern_text: str) -> bool:
        digits = re.sub(r"\D", "", pattern_text)
        if len(digits) == 15 and not digits.startswith(("34", "37", "1")):
            return False
        return bool(super().validate_result(pattern_text))


class WindowedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (python-phonenumbers, once per region) run only on the stretches of text
    that can hold a number: runs of digits and phone punctuation with at least six digits (and an extension),
    plus two characters either side. On a 1,000-character prompt this halves its cost; on the PII corpora it
    finds exactly the numbers the stock recognizer finds."""

    _CANDIDATE = re.compile(r"[+(]?\d[\d \t().\-/]{4,}\d(?:[ \t,]*(?i:ext|extension|x|\#)\.?[ \t]*\d{1,7})?")
    _MARGIN = 2

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> list[Any]:
        results: list[Any] = []
        for candidate in self._CANDIDATE.finditer(text):
            if sum(c.isdigit() for c in candidate.group()) < 6:
                continue
            start = max(0, candidate.start() - self._MARGIN)
            window = text[start : candidate.end() + self._MARGIN]
            # (the artifacts are unused by the phone recognizer; Presidio's own hint omits None)
            for found in super().analyze(window, entities, nlp_artifacts):  # type: ignore[arg-type]
                found.start += start
                found.end += start
                results.append(found)
        return EntityRecognizer.remove_duplicates(results)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer with a tldextract that uses only its bundled public-suffix snapshot: the
    default extractor downloads the list on first use, and devices have no network (nor should they try)."""

    def __init__(self) -> None:
        super().__init__(name="edged-email")
        self._extract = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    def validate_result(self, pattern_text: str) -> bool:
        return self._extract(pattern_text).fqdn != ""


def custom_recognizer(spec: CustomRecognizer) -> PatternRecognizer:
    """A recognizer for one of the profile's custom entity types."""
    flags = CASE_SENSITIVE | (int(re.IGNORECASE) if spec.ignore_case else 0)
    patterns = [Pattern(f"{spec.entity.lower()}_{i}", p, spec.score) for i, p in enumerate(spec.patterns)]
    return PatternRecognizer(
        supported_entity=spec.entity,
        patterns=patterns,
        context=list(spec.context),
        name=f"custom-{spec.entity.lower()}",
        global_regex_flags=flags,
    )


RecognizerFactory = Callable[[DetectorSettings], EntityRecognizer]

# The pattern recognizer of each entity type (NER types also come from the spaCy recognizer).
PATTERN_RECOGNIZERS: dict[str, RecognizerFactory] = {
    "EMAIL_ADDRESS": lambda _: OfflineEmailRecognizer(),
    "PHONE_NUMBER": lambda s: WindowedPhoneRecognizer(supported_regions=s.phone_regions),
    "CREDIT_CARD": lambda _: CardRecognizer(),
    "IBAN_CODE": lambda _: IbanRecognizer(),
    "IP_ADDRESS": lambda _: IpRecognizer(),
    "MAC_ADDRESS": lambda _: MacAddressRecognizer(),
    "URL": lambda _: UrlRecognizer(),
    "CRYPTO": lambda _: CryptoRecognizer(),
    "US_SSN": lambda _: UsSsnRecognizer(),
    "US_ITIN": lambda _: UsItinRecognizer(),
    "US_PASSPORT": lambda _: UsPassportRecognizer(),
    "US_DRIVER_LICENSE": lambda _: UsLicenseRecognizer(),
    "US_BANK_NUMBER": lambda _: UsBankRecognizer(),
    "UK_NHS": lambda _: NhsRecognizer(),
    "DATE_TIME": lambda _: DateRecognizer(),
    "API_KEY": lambda _: ApiKeyRecognizer(),
    "PRIVATE_KEY": lambda _: PrivateKeyRecognizer(),
    "IMEI": lambda _: ImeiRecognizer(),
    "STREET_ADDRESS": lambda _: StreetAddressRecognizer(),
    "PERSON": lambda _: PersonCueRecognizer(),  # beside spaCy's NER
}

# Entity types spaCy's NER reports, keyed by the spaCy label.
NER_LABELS: dict[str, str] = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "NORP": "NRP",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
NER_ENTITIES = frozenset(NER_LABELS.values())


def pattern_recognizers(
    entities: Iterable[str], settings: DetectorSettings, custom: Iterable[CustomRecognizer]
) -> list[EntityRecognizer]:
    """The pattern recognizers for the wanted entity types (NER types need none)."""
    wanted = set(entities)
    recognizers = [PATTERN_RECOGNIZERS[e](settings) for e in sorted(wanted) if e in PATTERN_RECOGNIZERS]
    recognizers.extend(custom_recognizer(spec) for spec in custom if spec.entity in wanted)
    return recognizers
