"""Recognizers devices need that Presidio lacks (API keys and tokens, private keys, IMEI numbers), an e-mail
recognizer that never touches the network, the profile's custom patterns, and the table that builds the
recognizer of each entity type (cue-driven values and names: edged.sovereignty.cued; identifier shapes,
international addresses and phone numbers: edged.sovereignty.shapes).

Patterns run in Presidio's PatternRecognizer, which compiles them with the `regex` package; edged's own are
case-sensitive (Presidio's default flags ignore case, which would make `AKIA…` match any word of that shape).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    NhsRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
)

from edged.config.privacy import CustomRecognizer, DetectorSettings
from edged.sovereignty.cued import CUED_ENTITIES, CuedNameRecognizer, CuedValueRecognizer, luhn_valid
from edged.sovereignty.shapes import (
    IdShapeRecognizer,
    InternationalAddressRecognizer,
    RegionsPhoneRecognizer,
    SecretShapeRecognizer,
)
from edged.sovereignty.unlisted import UnlistedNameRecognizer

# Presidio compiles with the `regex` package, whose flag values are those of `re`.
CASE_SENSITIVE = int(re.DOTALL | re.MULTILINE)


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


class CardRecognizer(CreditCardRecognizer):
    """Presidio's card recognizer (Luhn-checked), plus Mastercard's 2221-2720 range, which its pattern predates,
    and minus 15-digit numbers outside the 15-digit card ranges (Amex 34/37, UATP 1): those are IMEIs."""

    MASTERCARD_2_SERIES = Pattern(
        "mastercard_2_series", r"\b2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3
    )
    # 18- and 19-digit cards (Visa, Maestro, UnionPay, Discover): longer than Presidio's pattern allows
    LONG_CARDS = Pattern("long_cards", r"\b[2-6]\d{3}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}[- ]?\d{2,3}\b", 0.3)

    def __init__(self) -> None:
        super().__init__(
            patterns=[*CreditCardRecognizer.PATTERNS, self.MASTERCARD_2_SERIES, self.LONG_CARDS],
            name="edged-card",
        )

    def validate_result(self, pattern_text: str) -> bool:
        digits = re.sub(r"\D", "", pattern_text)
        if len(digits) == 15 and not digits.startswith(("34", "37", "1", "2131")):
            return False
        return bool(super().validate_result(pattern_text))


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
    "PHONE_NUMBER": lambda s: RegionsPhoneRecognizer(s.phone_regions),
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
    "STREET_ADDRESS": lambda _: InternationalAddressRecognizer(),
    "PERSON": lambda _: CuedNameRecognizer(),  # beside spaCy's NER
    "ID_NUMBER": lambda s: IdShapeRecognizer(s.harmless_id_shapes),
    "PASSWORD": lambda _: SecretShapeRecognizer(),  # beside the cues ("password: ...")
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
    if cued := CUED_ENTITIES & wanted:  # one recognizer reads every cue
        recognizers.append(CuedValueRecognizer(frozenset(cued)))
    if "PERSON" in wanted and settings.unlisted_names:  # names nobody introduces and the NER does not know
        recognizers.append(UnlistedNameRecognizer())
    recognizers.extend(custom_recognizer(spec) for spec in custom if spec.entity in wanted)
    return recognizers
