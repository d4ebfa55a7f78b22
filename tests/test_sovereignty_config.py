"""[privacy] settings: data classes merged onto the defaults, bounds, and errors that name key, value and reason."""

from __future__ import annotations

from typing import Any

import pytest

from edged.config import effective_profile, parse_config, parse_profile
from edged.config.privacy import (
    DEFAULT_DATA_CLASSES,
    SENSITIVE_CLASS,
    DataPolicy,
    PrivacySettings,
)
from edged.errors import ConfigError, InvalidRequest


def privacy(raw: dict[str, Any]) -> PrivacySettings:
    return parse_profile({"privacy": raw}).privacy


def problem_of(raw: dict[str, Any]) -> tuple[str, object, str]:
    with pytest.raises(ConfigError) as caught:
        privacy(raw)
    assert caught.value.problems
    return caught.value.problems[0]


def test_defaults_cover_the_issue_entities_with_conservative_policies() -> None:
    classes = PrivacySettings().classes()
    assert classes == DEFAULT_DATA_CLASSES
    owner = {e: c.name for c in classes.values() for e in c.entities}
    for entity in ("API_KEY", "PRIVATE_KEY", "CREDIT_CARD", "IBAN_CODE", "US_SSN"):
        assert classes[owner[entity]].policy is DataPolicy.LOCAL_ONLY, entity
    for entity in ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "STREET_ADDRESS", "MAC_ADDRESS", "IMEI"):
        assert classes[owner[entity]].policy is DataPolicy.REDACT, entity
    assert PrivacySettings().sensitive_policy is DataPolicy.LOCAL_ONLY


def test_a_profile_changes_one_class_and_keeps_the_others() -> None:
    settings = privacy({"data_classes": {"contact": {"policy": "LOCAL_ONLY"}}})
    classes = settings.classes()
    assert classes["contact"].policy is DataPolicy.LOCAL_ONLY
    assert classes["contact"].entities == DEFAULT_DATA_CLASSES["contact"].entities
    assert classes["identity"] == DEFAULT_DATA_CLASSES["identity"]


def test_layers_merge_class_by_class() -> None:
    config = parse_config({"privacy": {"data_classes": {"identity": {"policy": "ALLOW"}}}})
    merged = {"privacy": {"data_classes": {"device": {"policy": "LOCAL_ONLY"}}}}
    profile = effective_profile(config, [parse_profile(merged)])
    classes = profile.privacy.classes()
    assert classes["identity"].policy is DataPolicy.ALLOW
    assert classes["device"].policy is DataPolicy.LOCAL_ONLY


def test_new_class_with_custom_recognizer() -> None:
    settings = privacy(
        {
            "data_classes": {"employee": {"entities": ["EMPLOYEE_ID"], "policy": "REDACT"}},
            "custom_recognizers": [
                {"entity": "EMPLOYEE_ID", "patterns": ["\\bE-\\d{6}\\b"], "context": ["badge"]}
            ],
        }
    )
    assert settings.classes()["employee"].entities == frozenset({"EMPLOYEE_ID"})
    assert "EMPLOYEE_ID" in settings.detected_entities()
    assert settings.class_names()[-1] == SENSITIVE_CLASS


def test_declared_only_class_needs_no_entities() -> None:
    settings = privacy({"data_classes": {"medical": {"entities": [], "policy": "LOCAL_ONLY"}}})
    assert settings.policy_of("medical") is DataPolicy.LOCAL_ONLY


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"data_classes": {SENSITIVE_CLASS: {"policy": "ALLOW"}}}, "privacy", "reserved"),
        ({"data_classes": {"medical": {"policy": "ALLOW"}}}, "privacy", "needs both entities and policy"),
        ({"data_classes": {"x": {"entities": ["NO_SUCH"], "policy": "ALLOW"}}}, "privacy", "NO_SUCH"),
        ({"data_classes": {"x": {"entities": ["PERSON"], "policy": "ALLOW"}}}, "privacy", "identity and x"),
        (
            {"data_classes": {"Bad Name": {"entities": [], "policy": "ALLOW"}}},
            "privacy.data_classes.Bad Name",
            "",
        ),
        ({"data_classes": {"contact": {"policy": "MAYBE"}}}, "privacy.data_classes.contact.policy", ""),
        (
            {"custom_recognizers": [{"entity": "EMP", "patterns": ["E\\d+"]}]},
            "privacy",
            "EMP is in no data class",
        ),
        ({"custom_recognizers": [{"entity": "PERSON", "patterns": ["x"]}]}, "privacy", "already defined"),
        (
            {"custom_recognizers": [{"entity": "EMP", "patterns": ["E[0-9"]}]},
            "privacy.custom_recognizers.0",
            "E[0-9",
        ),
        (
            {"custom_recognizers": [{"entity": "EMP", "patterns": ["a*"]}]},
            "privacy.custom_recognizers.0",
            "empty",
        ),
        (
            {"custom_recognizers": [{"entity": "EMP", "patterns": ["x" * 513]}]},
            "privacy.custom_recognizers.0",
            "",
        ),
        (
            {"detector": {"score_threshold": 1.5}},
            "privacy.detector.score_threshold",
            "less than or equal to 1",
        ),
        ({"detector": {"max_scan_chars": 10}}, "privacy.detector.max_scan_chars", "greater than or equal"),
        ({"detector": {"phone_regions": ["usa"]}}, "privacy.detector.phone_regions.0", ""),
        (
            {"detector": {"harmless_id_shapes": ["RTX(\\d"]}},
            "privacy.detector.harmless_id_shapes",
            "not a valid",
        ),
        ({"detector": {"harmless_id_shapes": ["x?"]}}, "privacy.detector.harmless_id_shapes", "empty string"),
        (
            {"detector": {"harmless_id_shapes": ["x" * 201]}},
            "privacy.detector.harmless_id_shapes.0",
            "at most 200",
        ),
        (
            {"detector": {"harmless_id_shapes": ["RTX"] * 65}},
            "privacy.detector.harmless_id_shapes",
            "at most 64",
        ),
        ({"detector": {"language": "de"}}, "privacy.detector.language", ""),
        ({"audit": {"max_bytes": 10}}, "privacy.audit.max_bytes", "greater than or equal"),
        ({"audit": {"keep_files": 0}}, "privacy.audit.keep_files", "greater than or equal"),
        (
            {"data_classes": {"contact": {"policy": "REDACT", "extra": 1}}},
            "privacy.data_classes.contact.extra",
            "",
        ),
    ],
)
def test_bad_settings_name_key_value_and_reason(raw: dict[str, Any], key: str, reason: str) -> None:
    found_key, _value, found_reason = problem_of(raw)
    assert found_key.startswith(key)
    assert reason in found_reason or reason in found_key


def test_unknown_declared_class_is_the_callers_error() -> None:
    settings = PrivacySettings()
    settings.check_declared(["financial", SENSITIVE_CLASS])
    with pytest.raises(InvalidRequest) as caught:
        settings.check_declared(["financial", "astrology"])
    assert caught.value.field == "data_classes"
    assert "'astrology'" in str(caught.value)
    assert "financial" in str(caught.value)  # the known classes are listed


def test_sensitive_class_takes_sensitive_policy() -> None:
    assert privacy({"sensitive_policy": "REDACT"}).policy_of(SENSITIVE_CLASS) is DataPolicy.REDACT


def test_policy_strictness_order() -> None:
    order = sorted(DataPolicy, key=lambda p: p.strictness)
    assert order == [DataPolicy.ALLOW, DataPolicy.REDACT, DataPolicy.LOCAL_ONLY]
