"""The detector's recognizers, one by one, with the real Presidio + spaCy detector: what they must find (with
the exact span) and what they must not (checksums, case, shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from edged.config import parse_profile
from edged.config.privacy import BUILTIN_ENTITIES, PrivacySettings
from edged.errors import ConfigError
from edged.sovereignty.detector import Finding, disjoint
from edged.sovereignty.evaluation import load_corpus
from edged.sovereignty.presidio import PresidioDetector
from edged.sovereignty.recognizers import WindowedPhoneRecognizer, luhn_valid

PEM = (
    "-----BEGIN EC PRIVATE KEY-----\n"
    "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oGUtdyDmG8fRoAoGCCqGSM49\n"
    "-----END EC PRIVATE KEY-----"
)


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


def found(detector: PresidioDetector, text: str) -> list[tuple[str, str]]:
    return [(f.entity_type, text[f.start : f.end]) for f in detector.scan(text)]


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("export AWS_ACCESS_KEY_ID=AKIAZ7QRST4UVWXY2345", "API_KEY", "AKIAZ7QRST4UVWXY2345"),
        (
            "aws_secret_access_key = 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",
            "API_KEY",
            "Zx8mQ2vL9pR4tW7yB1nC5dF3gH6jK0aS2eU4iO8p",
        ),
        (
            "token ghp_Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Df3Hg5J",
            "API_KEY",
            "ghp_Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Df3Hg5J",
        ),
        (
            "bot token xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
            "API_KEY",
            "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
        ),
        ("key sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4", "API_KEY", "sk-proj-Q1w2E3r4T5y6U7i8O9p0A1s2D3f4"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "API_KEY", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("Authorization: Bearer Qm9vZ2xlRGV2ZWxvcGVyVG9rZW4x", "API_KEY", "Qm9vZ2xlRGV2ZWxvcGVyVG9rZW4x"),
        ('{"api_key": "a8f5f167f44f4964e6c998dee827110c"}', "API_KEY", "a8f5f167f44f4964e6c998dee827110c"),
        (f"here:\n{PEM}\nthanks", "PRIVATE_KEY", PEM),
        ("imei 35-209900-176148-1", "IMEI", "35-209900-176148-1"),
        ("IMEI: 490154203237518", "IMEI", "490154203237518"),
        ("mac 00:1A:2B:3C:4D:5E", "MAC_ADDRESS", "00:1A:2B:3C:4D:5E"),
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
        ("card 5555 5555 5555 4444", "CREDIT_CARD", "5555 5555 5555 4444"),
        ("card 2223 0031 2200 3222", "CREDIT_CARD", "2223 0031 2200 3222"),
        ("amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
        ("ssn 536-22-8107", "US_SSN", "536-22-8107"),
        ("mail ops@example.co.uk now", "EMAIL_ADDRESS", "ops@example.co.uk"),
        ("call +44 20 7946 0958", "PHONE_NUMBER", "+44 20 7946 0958"),
        (
            "ship to 55 Water Street, Apt 4B, Brooklyn, NY 11201.",
            "STREET_ADDRESS",
            "55 Water Street, Apt 4B, Brooklyn, NY 11201",
        ),
        ("Dear Sarah O'Connor, thanks", "PERSON", "Sarah O'Connor"),
        ("I met Barack Obama yesterday.", "PERSON", "Barack Obama"),
    ],
)
def test_finds_the_whole_value(detector: PresidioDetector, text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(detector, text)


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("card 4111 1111 1111 1112", "CREDIT_CARD"),  # Luhn check fails
        ("IBAN GB82 WEST 1234 5698 7654 31", "IBAN_CODE"),  # mod-97 check fails
        ("imei 35-209900-176148-2", "IMEI"),  # Luhn check fails
        ("number 378282246310005", "IMEI"),  # a Luhn-valid Amex number is a card, not an IMEI
        ("the code akiaz7qrst4uvwxy2345 is lowercase", "API_KEY"),  # AWS key ids are upper case
        ("password: correcthorsebatterystaple", "API_KEY"),  # no digit: prose, not a generated secret
        (
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
            "PRIVATE_KEY",
        ),
        ("See you at 5 pm on the main street.", "STREET_ADDRESS"),
        ("Dear Mr. Pierce", "PERSON"),  # the title itself is not a name ...
    ],
)
def test_does_not_find(detector: PresidioDetector, text: str, entity: str) -> None:
    values = [v for e, v in found(detector, text) if e == entity]
    if text == "Dear Mr. Pierce":
        assert values == ["Pierce"]  # ... the name after it is
    else:
        assert values == []


def test_ner_person_with_digits_or_symbols_is_dropped(detector: PresidioDetector) -> None:
    text = "The call returns REQUEST_DENIED; card expiry 09/27."  # spaCy tags both as PERSON
    assert [v for e, v in found(detector, text) if e == "PERSON"] == []


def test_allow_list_values_are_not_findings() -> None:
    settings = parse_profile({"privacy": {"detector": {"allow_list": ["support@edged.example"]}}}).privacy
    allowing = PresidioDetector(settings)
    text = "Write to support@edged.example or to maria@example.com."
    assert found(allowing, text) == [("EMAIL_ADDRESS", "maria@example.com")]


def test_custom_recognizer_from_the_profile() -> None:
    raw: dict[str, Any] = {
        "data_classes": {"employee": {"entities": ["EMPLOYEE_ID"], "policy": "LOCAL_ONLY"}},
        "custom_recognizers": [{"entity": "EMPLOYEE_ID", "patterns": [r"\bEMP-\d{6}\b"], "score": 0.9}],
    }
    custom = PresidioDetector(parse_profile({"privacy": raw}).privacy)
    assert ("EMPLOYEE_ID", "EMP-204518") in found(custom, "Badge EMP-204518 was lost.")
    assert found(custom, "badge emp-204518 was lost") == []  # case-sensitive unless ignore_case


def test_every_builtin_entity_type_has_a_recognizer() -> None:
    classes: dict[str, Any] = {name: {"entities": []} for name in PrivacySettings().classes()}
    everything = {"data_classes": classes}
    classes["all"] = {"entities": list(BUILTIN_ENTITIES), "policy": "REDACT"}
    full = PresidioDetector(parse_profile({"privacy": everything}).privacy)
    assert full.entities == sorted(BUILTIN_ENTITIES)


def test_a_missing_spacy_package_is_a_config_error_naming_it() -> None:
    settings = parse_profile({"privacy": {"detector": {"spacy_model": "no_such_spacy_pkg"}}}).privacy
    with pytest.raises(ConfigError) as caught:
        PresidioDetector(settings)
    assert caught.value.problems[0][:2] == ("spacy_model", "no_such_spacy_pkg")


def test_only_ner_is_loaded(detector: PresidioDetector) -> None:
    assert detector.pipe_names == ["ner"]


def test_ner_multiplies_with_openblas_only_when_it_is_pinned_to_one_thread(
    detector: PresidioDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    pinned = PresidioDetector(PrivacySettings())
    assert pinned.matrix_library == "openblas"
    text = "I'm Maria Garcia from Springfield; card 4111 1111 1111 1111, mail maria@example.com."
    assert found(pinned, text) == found(detector, text)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert PresidioDetector(PrivacySettings()).matrix_library == "blis"


def test_overlapping_findings_merge_into_their_union() -> None:
    merged = disjoint(
        [
            Finding(10, 20, "PERSON", 0.85),
            Finding(15, 40, "STREET_ADDRESS", 0.9),
            Finding(0, 5, "EMAIL_ADDRESS", 1.0),
            Finding(41, 45, "PHONE_NUMBER", 0.4),
        ]
    )
    assert merged == [
        Finding(0, 5, "EMAIL_ADDRESS", 1.0),
        Finding(10, 40, "STREET_ADDRESS", 0.9),
        Finding(41, 45, "PHONE_NUMBER", 0.4),
    ]


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("490154203237518")
    assert not luhn_valid("4111111111111112")


def test_windowed_phone_recognizer_finds_what_presidios_finds() -> None:
    data = Path(__file__).parent / "data"
    texts = [
        m.content
        for name in ("pii_corpus.jsonl", "pii_corpus_holdout.jsonl")
        for e in load_corpus(data / name)
        for m in e.messages
    ]
    texts.append("Call 0044 20 7946 0958 ext. 12, or (415)555-2671; fax +1-646-555-0177.")
    stock, windowed = PhoneRecognizer(), WindowedPhoneRecognizer()
    phones = 0
    for text in texts:
        expected = sorted((r.start, r.end) for r in stock.analyze(text, ["PHONE_NUMBER"]))
        assert sorted((r.start, r.end) for r in windowed.analyze(text, ["PHONE_NUMBER"])) == expected, text
        phones += len(expected)
    assert phones >= 20
