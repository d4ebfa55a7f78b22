"""SensitivityGate with the real Presidio detector: verdicts over whole conversations, release (block, redact,
allow), restoring answers, reply scans, fail-closed behaviour and metrics."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edged.config import parse_profile
from edged.config.privacy import SENSITIVE_CLASS, DataPolicy, PrivacySettings
from edged.domain import InferenceRequest, Message, SamplingParams
from edged.errors import InvalidRequest, SensitiveDataBlocked
from edged.sovereignty.detector import CountingDetector, MisplacedDetector, RaisingDetector, ValueDetector
from edged.sovereignty.gate import SensitivityGate
from edged.sovereignty.presidio import PresidioDetector
from edged.sovereignty.verdict import UNSCANNED_CLASS
from edged.telemetry.metrics import EdgedMetrics

NAME = "Maria Garcia"
EMAIL = "maria.garcia@gmail.com"
CARD = "4111 1111 1111 1111"
ADDRESS = "350 Fifth Avenue, New York, NY 10118"


def settings_with(raw: dict[str, Any]) -> PrivacySettings:
    return parse_profile({"privacy": raw}).privacy


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


@pytest.fixture
def gate(detector: PresidioDetector) -> SensitivityGate:
    return SensitivityGate(PrivacySettings(), detector)


def user(text: str) -> Message:
    return Message("user", text)


# -- verdicts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 1, 2])
def test_every_message_is_scanned_not_just_the_last(gate: SensitivityGate, where: int) -> None:
    conversation = [
        Message("system", "You are a helpful assistant."),
        user("Summarise our chat, please."),
        Message("assistant", "Of course."),
        user("Thanks, now give me three bullet points."),
    ]
    conversation[where] = Message(conversation[where].role, f"Card on file: {CARD}.")
    verdict = gate.assess(conversation)
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == "financial"
    assert verdict.entities == {"CREDIT_CARD": 1}
    assert [len(f) for f in verdict.findings] == [int(i == where) for i in range(4)]


def test_no_personal_data_is_allowed(gate: SensitivityGate) -> None:
    verdict = gate.assess([user("Explain photosynthesis in two sentences.")])
    assert verdict.policy is DataPolicy.ALLOW
    assert verdict.forced_by is None
    assert verdict.data_classes == ()
    assert verdict.allows_cloud


def test_strictest_policy_wins_and_reasons_put_it_first(gate: SensitivityGate) -> None:
    verdict = gate.assess([user(f"I'm {NAME}, email {EMAIL}."), user(f"My card is {CARD}.")])
    assert verdict.data_classes == ("contact", "financial", "identity")
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == "financial"
    assert verdict.entities == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PERSON": 1}
    assert verdict.reasons[0] == "data class 'financial' (detected CREDIT_CARD×1) is LOCAL_ONLY"
    assert not verdict.detector_failed


def test_sensitive_flag_is_the_sensitive_class(gate: SensitivityGate) -> None:
    verdict = gate.assess([user("What is the capital of France?")], sensitive=True)
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == SENSITIVE_CLASS
    assert "flagged by the caller" in verdict.reasons[0]


def test_declared_class_counts_even_when_nothing_is_detected(gate: SensitivityGate) -> None:
    verdict = gate.assess([user("Tell me a joke.")], data_classes=["identity"])
    assert verdict.policy is DataPolicy.REDACT
    assert verdict.forced_by == "identity"
    assert verdict.declared == ("identity",)


def test_unknown_declared_class_is_invalid_request(gate: SensitivityGate) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gate.assess([user("hi")], data_classes=["financial", "horoscope"])
    assert caught.value.field == "data_classes"
    assert "horoscope" in str(caught.value)


def test_assess_request_reads_the_request_fields(gate: SensitivityGate) -> None:
    request = InferenceRequest(
        request_id="r1", messages=(user("hello"),), params=SamplingParams(max_tokens=8), sensitive=True
    )
    assert gate.assess_request(request).forced_by == SENSITIVE_CLASS


def test_verdict_repr_holds_no_values(gate: SensitivityGate) -> None:
    verdict = gate.assess([user(f"I'm {NAME}, card {CARD}, email {EMAIL}.")])
    text = repr(verdict)
    assert NAME not in text
    assert CARD not in text
    assert EMAIL not in text


# -- release ------------------------------------------------------------------------------------------------


def test_local_only_release_is_permission_denied_naming_the_class(gate: SensitivityGate) -> None:
    conversation = [user(f"Pay with {CARD}")]
    verdict = gate.assess(conversation)
    with pytest.raises(SensitiveDataBlocked) as caught:
        gate.release(conversation, verdict)
    assert caught.value.data_class == "financial"
    assert "'financial'" in str(caught.value)
    assert gate.counters.blocked_escalations == {"financial": 1}


def test_redact_replaces_values_in_every_message_and_restores_them(gate: SensitivityGate) -> None:
    conversation = [
        Message("system", f"The user is {NAME}."),
        user(f"My email is {EMAIL} and I live at {ADDRESS}."),
        Message("assistant", f"Thanks {NAME}, noted."),
        user(f"Write to Wei Zhang on my behalf; sign it {NAME}."),
    ]
    verdict = gate.assess(conversation)
    assert verdict.policy is DataPolicy.REDACT
    release = gate.release(conversation, verdict)
    sent = "\n".join(m.content for m in release.messages)
    for value in (NAME, EMAIL, ADDRESS, "Wei Zhang"):
        assert value not in sent
    assert sent.count("<PERSON_1>") == 3  # the same value gets the same placeholder in every message
    assert "<EMAIL_ADDRESS_1>" in sent
    assert "<STREET_ADDRESS_1>" in sent
    assert "<PERSON_2>" in sent
    assert [m.role for m in release.messages] == [m.role for m in conversation]
    restorer = release.restorer()
    assert [restorer.restore(m.content) for m in release.messages] == [m.content for m in conversation]
    assert release.redacted
    assert release.replacements == 6
    assert release.counts == {"EMAIL_ADDRESS": 1, "PERSON": 2, "STREET_ADDRESS": 1}
    assert NAME not in repr(release)


def test_streamed_answer_is_restored_across_split_placeholders(gate: SensitivityGate) -> None:
    conversation = [user(f"I'm {NAME}; reply to {EMAIL}.")]
    release = gate.release(conversation, gate.assess(conversation))
    cloud_answer = "Hello <PERSON_1>, I will write to <EMAIL_ADDRESS_1> today. Regards, <PERSON_1>"
    restorer = release.stream_restorer()
    pieces = [restorer.feed(cloud_answer[i : i + 4]) for i in range(0, len(cloud_answer), 4)]
    pieces.append(restorer.finish())
    assert "".join(pieces) == f"Hello {NAME}, I will write to {EMAIL} today. Regards, {NAME}"
    assert not any(p.endswith(("<", "<PER", "<PERSON_")) for p in pieces)


def test_a_value_detected_once_is_redacted_where_the_detector_misses_it(gate: SensitivityGate) -> None:
    # Standing alone, a name made of two English words is found neither by the NER nor as unlisted words; the
    # cue in turn 1 finds it.
    assert gate.assess([user("Sterling Price asked whether the contract can be signed.")]).entities == {}
    conversation = [
        user("My name is Sterling Price."),
        user("Sterling Price asked whether the contract can be signed."),
    ]
    release = gate.release(conversation, gate.assess(conversation))
    assert all("Sterling" not in m.content for m in release.messages)
    assert release.messages[1].content.startswith("<PERSON_1> asked")


def test_a_part_of_a_found_name_standing_alone_is_redacted_too(gate: SensitivityGate) -> None:
    conversation = [
        user("My name is Olumide Adeyemi."),
        user("Olumide asked the Dr whether Adeyemi goes on the contract."),
    ]
    release = gate.release(conversation, gate.assess(conversation))
    assert release.messages[0].content == "My name is <PERSON_1>."
    sent = release.messages[1].content
    assert "Olumide" not in sent
    assert "Adeyemi" not in sent
    assert "the Dr whether" in sent  # a title is no part of a name
    first, last = re.findall(r"<PERSON_\d+>", sent)
    assert len({first, last, "<PERSON_1>"}) == 3  # each part its own placeholder, restored to that part
    assert release.restorer().restore(f"{first} and {last}") == "Olumide and Adeyemi"


def test_a_possessive_names_the_part_without_its_s(gate: SensitivityGate) -> None:
    conversation = [user("I loved the poem from Olumide Adeyemi's book. Is early Adeyemi better?")]
    sent = gate.release(conversation, gate.assess(conversation)).messages[0].content
    assert "Adeyemi" not in sent, sent


def test_placeholder_text_already_in_the_prompt_is_not_reused(gate: SensitivityGate) -> None:
    conversation = [user(f"Fill the template '<PERSON_1> owes money' for {NAME}.")]
    release = gate.release(conversation, gate.assess(conversation))
    assert release.messages[0].content == "Fill the template '<PERSON_1> owes money' for <PERSON_2>."
    assert release.restorer().restore("<PERSON_1> owes <PERSON_2>") == f"<PERSON_1> owes {NAME}"


def test_allow_policy_sends_the_conversation_as_is(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"data_classes": {"identity": {"policy": "ALLOW"}}}), detector)
    conversation = [user(f"Write a poem for {NAME}.")]
    verdict = gate.assess(conversation)
    assert verdict.policy is DataPolicy.ALLOW
    assert verdict.data_classes == ("identity",)
    release = gate.release(conversation, verdict)
    assert release.messages == tuple(conversation)
    assert not release.redacted


def test_only_redact_classes_are_redacted(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"data_classes": {"identity": {"policy": "ALLOW"}}}), detector)
    conversation = [user(f"Write a poem for {NAME} and mail it to {EMAIL}.")]
    release = gate.release(conversation, gate.assess(conversation))
    assert release.messages[0].content == f"Write a poem for {NAME} and mail it to <EMAIL_ADDRESS_1>."


def test_a_declared_redact_class_redacts_every_detected_value(detector: PresidioDetector) -> None:
    gate = SensitivityGate(
        settings_with({"sensitive_policy": "REDACT", "data_classes": {"identity": {"policy": "ALLOW"}}}),
        detector,
    )
    conversation = [user(f"Write a poem for {NAME}.")]
    verdict = gate.assess(conversation, sensitive=True)
    assert verdict.policy is DataPolicy.REDACT
    assert verdict.forced_by == SENSITIVE_CLASS
    assert gate.release(conversation, verdict).messages[0].content == "Write a poem for <PERSON_1>."


def test_a_verdict_for_other_messages_is_refused(gate: SensitivityGate) -> None:
    verdict = gate.assess([user(f"I'm {NAME}")])
    with pytest.raises(ValueError, match="does not belong"):
        gate.release([user(f"I'm {NAME}"), user("more")], verdict)


# -- the reply ----------------------------------------------------------------------------------------------


def test_reply_scan_reports_values_the_cloud_invented(gate: SensitivityGate) -> None:
    conversation = [user(f"I'm {NAME}; draft a note to my landlord.")]
    release = gate.release(conversation, gate.assess(conversation))
    reply = "Dear Mr. Jonathan Pierce, my tenant <PERSON_1> asks; call 415-555-0100."
    report = gate.scan_reply(reply, release)
    assert report.invented == {"PERSON": 1, "PHONE_NUMBER": 1}
    assert report.placeholders == 1
    assert gate.counters.invented == {"PERSON": 1, "PHONE_NUMBER": 1}


def test_reply_scan_does_not_count_values_from_the_conversation(gate: SensitivityGate) -> None:
    conversation = [user(f"Mail {EMAIL} a summary.")]
    release = gate.release(conversation, gate.assess(conversation))
    assert gate.scan_reply(f"I have mailed {EMAIL}.", release).invented == {}


# -- fail closed --------------------------------------------------------------------------------------------


def test_detector_error_keeps_the_request_local(caplog: pytest.LogCaptureFixture) -> None:
    failing = RaisingDetector(RuntimeError(f"model crashed while reading {CARD}"))
    gate = SensitivityGate(PrivacySettings(), failing)
    conversation = [user(f"pay with {CARD}")]
    with caplog.at_level(logging.INFO):
        verdict = gate.assess(conversation)
    assert failing.calls == 1
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.detector_failed
    assert verdict.forced_by == UNSCANNED_CLASS
    assert verdict.reasons == ("PII detector failed (RuntimeError)",)
    assert gate.counters.detector_failures == 1
    with pytest.raises(SensitiveDataBlocked) as caught:
        gate.release(conversation, verdict)
    assert caught.value.data_class == UNSCANNED_CLASS
    assert CARD not in caplog.text  # the exception's text may quote the prompt: it is not logged at INFO+


def test_detector_error_overrides_an_allow_everything_policy() -> None:
    allow_all = {name: {"policy": "ALLOW"} for name in PrivacySettings().classes()}
    gate = SensitivityGate(settings_with({"data_classes": allow_all}), RaisingDetector())
    assert gate.assess([user("hello")]).policy is DataPolicy.LOCAL_ONLY


def test_a_conversation_too_long_to_scan_stays_local(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"detector": {"max_scan_chars": 1000}}), detector)
    verdict = gate.assess([user("x" * 600), user("y" * 401)])
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert "1001 characters exceeds detector.max_scan_chars 1000" in verdict.reasons[0]


def test_a_conversation_at_the_scan_limit_is_scanned(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"detector": {"max_scan_chars": 1000}}), detector)
    verdict = gate.assess([user("x" * 599), user(f"I'm {NAME}.".ljust(401, "."))])
    assert not verdict.detector_failed
    assert verdict.entities == {"PERSON": 1}


def test_a_finding_outside_the_text_keeps_the_request_local() -> None:
    # a detector bug: its findings cannot be redacted reliably, so nothing leaves
    gate = SensitivityGate(PrivacySettings(), MisplacedDetector())
    verdict = gate.assess([user("hello there")])
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == UNSCANNED_CLASS
    assert verdict.reasons == ("PII detector failed (DetectorFault)",)


def test_an_identifier_the_gate_cannot_type_is_redacted(gate: SensitivityGate) -> None:
    conversation = [user("Reference XK4471QZ9 was rejected twice. Why would that be?")]
    verdict = gate.assess(conversation)
    assert verdict.policy is DataPolicy.REDACT
    assert verdict.forced_by == "identifier"
    assert verdict.entities == {"ID_NUMBER": 1}
    sent = gate.release(conversation, verdict).messages[0].content
    assert sent == "Reference <ID_NUMBER_1> was rejected twice. Why would that be?"


@pytest.mark.parametrize(
    ("text", "data_class"),
    [
        ("Passport no. X4821977 - translate the visa letter into English.", "government_id"),
        ("The login password for the shared laptop is Tr0ub4dor&3, write instructions.", "credentials"),
        ("MRN 00482913: summarise the discharge note for the family.", "health"),
        ("Transfer the rent to account 12345678, sort code 12-34-56.", "financial"),
    ],
)
def test_values_after_cues_keep_the_request_local(gate: SensitivityGate, text: str, data_class: str) -> None:
    verdict = gate.assess([user(text)])
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == data_class


def test_a_capitalised_verb_is_not_taken_for_a_name(gate: SensitivityGate) -> None:
    conversation = [user("Email john.smith@example.com about his invoice")]
    verdict = gate.assess(conversation)
    assert verdict.entities == {"EMAIL_ADDRESS": 1}
    sent = gate.release(conversation, verdict).messages[0].content
    assert sent == "Email <EMAIL_ADDRESS_1> about his invoice"


def test_a_non_english_name_after_a_cue_is_redacted(gate: SensitivityGate) -> None:
    conversation = [user("Please call Nguyễn Thị Lan tomorrow and book it under Oluwaseun Adeyemi.")]
    verdict = gate.assess(conversation)
    sent = gate.release(conversation, verdict).messages[0].content
    assert sent == "Please call <PERSON_1> tomorrow and book it under <PERSON_2>."


def test_reply_scan_failure_is_reported_not_raised() -> None:
    gate = SensitivityGate(PrivacySettings(), RaisingDetector())
    conversation = [user("hello")]
    release = gate.release(
        conversation, SensitivityGate(PrivacySettings(), _NoFindings()).assess(conversation)
    )
    report = gate.scan_reply("anything", release)
    assert report.detector_failed
    assert report.invented == {}


class _NoFindings:
    def scan(self, text: str) -> list[Any]:
        return []


# -- metrics, cache, threads --------------------------------------------------------------------------------


def test_metrics_reach_the_daemon_prometheus_series(detector: PresidioDetector) -> None:
    metrics = EdgedMetrics()
    gate = SensitivityGate(PrivacySettings(), detector, metrics=metrics)
    redactable = [user(f"I'm {NAME}, mail {EMAIL}")]
    gate.release(redactable, gate.assess(redactable))
    blocked = [user(f"card {CARD}")]
    with pytest.raises(SensitiveDataBlocked):
        gate.release(blocked, gate.assess(blocked))

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert sample("edged_sensitive_detections_total", entity_type="person") == 1
    assert sample("edged_sensitive_detections_total", entity_type="credit_card") == 1
    assert sample("edged_redactions_total") == 1
    assert sample("edged_blocked_escalations_total", data_class="financial") == 1
    snapshot = gate.counters.snapshot()
    assert snapshot["redactions"] == 1
    assert snapshot["blocked_escalations"] == {"financial": 1}


def test_repeated_messages_are_scanned_once(detector: PresidioDetector) -> None:
    counting = CountingDetector(detector)
    gate = SensitivityGate(PrivacySettings(), counting)
    history = [Message("system", "You are terse."), user(f"I'm {NAME}.")]
    first = gate.assess(history)
    second = gate.assess([*history, Message("assistant", "Hi."), user("Tell me a fact.")])
    assert counting.calls == 4  # two new messages on the second turn
    assert second.entities == first.entities


def test_concurrent_assessments_agree_with_sequential_ones(detector: PresidioDetector) -> None:
    gate = SensitivityGate(PrivacySettings(), detector, cache_size=0)
    texts = [f"I'm {NAME} {i}, card {CARD}" if i % 2 else f"Mail {EMAIL} item {i}" for i in range(12)]
    expected = [gate.assess([user(t)]).entities for t in texts]
    results: dict[int, dict[str, int]] = {}

    def worker(indexes: Iterator[int]) -> None:
        for i in indexes:
            results[i] = dict(gate.assess([user(texts[i])]).entities)

    threads = [threading.Thread(target=worker, args=(iter(range(k, 12, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(12)] == expected


def test_concurrent_releases_keep_their_own_mappings(detector: PresidioDetector) -> None:
    gate = SensitivityGate(PrivacySettings(), detector, cache_size=0)
    people = ["Maria Garcia", "Wei Zhang", "Priya Patel", "Liam Murphy", "Grace Kim", "David Cohen"]
    failures: list[str] = []

    def worker(name: str) -> None:
        for i in range(3):
            conversation = [user(f"I'm {name}; mail me at user{i}@example.com about the invoice.")]
            release = gate.release(conversation, gate.assess(conversation))
            restored = release.restorer().restore(release.messages[0].content)
            if name in release.messages[0].content or restored != conversation[0].content:
                failures.append(f"{name} {i}")

    threads = [threading.Thread(target=worker, args=(name,)) for name in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert gate.counters.redactions == len(people) * 3


def test_reconfigured_reuses_the_detector_when_only_policies_change(gate: SensitivityGate) -> None:
    stricter = gate.reconfigured(settings_with({"data_classes": {"identity": {"policy": "LOCAL_ONLY"}}}))
    assert stricter.detector is gate.detector
    assert stricter.counters is gate.counters
    assert stricter.assess([user(f"I'm {NAME}.")]).policy is DataPolicy.LOCAL_ONLY


def test_reconfigured_loads_a_new_detector_for_new_entity_types(gate: SensitivityGate) -> None:
    raw = {
        "data_classes": {"employee": {"entities": ["EMPLOYEE_ID"], "policy": "LOCAL_ONLY"}},
        "custom_recognizers": [{"entity": "EMPLOYEE_ID", "patterns": [r"\bEMP-\d{6}\b"]}],
    }
    extended = gate.reconfigured(settings_with(raw))
    assert extended.detector is not gate.detector
    assert extended.assess([user("Badge EMP-204518 was lost.")]).forced_by == "employee"


# -- control fields: stop strings and the JSON schema -------------------------------------------------------

SCHEMA = '{"type": "object", "properties": {"answer": {"type": "string"}}}'


def test_a_clean_request_releases_its_control_fields_as_they_are(gate: SensitivityGate) -> None:
    conversation = [user(f"I'm {NAME}; draft a short note to my landlord.")]
    stop = ["\n\nUser:", "###"]
    verdict = gate.assess(conversation, stop=stop, json_schema=SCHEMA)
    assert verdict.policy is DataPolicy.REDACT
    assert verdict.fields == ("stop[0]", "stop[1]", "json_schema")
    release = gate.release(conversation, verdict, stop=stop, json_schema=SCHEMA)
    assert "<PERSON_1>" in release.messages[0].content
    assert (release.stop, release.json_schema) == (tuple(stop), SCHEMA)
    assert SCHEMA not in repr(release)


@pytest.mark.parametrize(
    ("fields", "data_class", "where"),
    [
        ({"stop": [f"Regards, {NAME}"]}, "identity", "PERSON in stop[0]"),
        ({"stop": ["###", EMAIL]}, "contact", "EMAIL_ADDRESS in stop[1]"),
        (
            {"json_schema": f'{{"type": "string", "description": "a reply to {EMAIL}"}}'},
            "contact",
            "EMAIL_ADDRESS in json_schema",
        ),
    ],
    ids=["stop-name", "second-stop-email", "schema-email"],
)
def test_a_value_to_redact_in_a_control_field_keeps_the_request_local(
    gate: SensitivityGate, fields: dict[str, Any], data_class: str, where: str
) -> None:
    """A placeholder would change what a stop string or schema means, so they are never redacted: a request
    whose control field holds a value the policy would redact stays on the device, named by its class."""
    conversation = [user("Draft a short note to my landlord about the heating.")]
    verdict = gate.assess(conversation, **fields)
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == data_class
    assert verdict.reasons[0] == (
        f"data class {data_class!r} (detected {where}) stays LOCAL_ONLY: "
        "stop strings and json_schema are never redacted"
    )
    with pytest.raises(SensitiveDataBlocked) as caught:
        gate.release(conversation, verdict, **fields)
    assert caught.value.data_class == data_class
    assert "never redacted" in str(caught.value)
    assert NAME not in str(caught.value)
    assert EMAIL not in str(caught.value)


def test_a_local_only_value_in_a_control_field_is_local_only_as_in_a_message(gate: SensitivityGate) -> None:
    verdict = gate.assess([user("Is this card number valid?")], json_schema=f'{{"const": "{CARD}"}}')
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == "financial"
    assert verdict.entities == {"CREDIT_CARD": 1}
    assert verdict.reasons[0] == "data class 'financial' (detected CREDIT_CARD×1) is LOCAL_ONLY"


def test_a_redacted_value_of_the_conversation_written_in_a_control_field_keeps_it_local() -> None:
    # the detector finds the name as written in the message, not the upper-case form in the stop string
    gate = SensitivityGate(PrivacySettings(), ValueDetector({NAME: "PERSON"}))
    conversation = [user(f"I'm {NAME}; write my bio.")]
    stop = [f"Signed, {NAME.upper()}"]
    verdict = gate.assess(conversation, stop=stop)
    assert verdict.field_findings == ((),)
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert verdict.forced_by == "identity"
    assert verdict.reasons[0].startswith("data class 'identity' (PERSON of the conversation in stop[0])")
    # a word that only contains the value's text is not the value
    assert gate.assess(conversation, stop=["MARIA GARCIAS"]).policy is DataPolicy.REDACT


def test_release_refuses_a_redacted_value_in_a_control_field_even_for_a_hand_made_verdict() -> None:
    gate = SensitivityGate(PrivacySettings(), ValueDetector({NAME: "PERSON"}))
    conversation = [user(f"I'm {NAME}.")]
    redact = gate.assess(conversation)  # assessed without the field: REDACT
    with pytest.raises(ValueError, match="does not belong"):  # fields that were not scanned never leave
        gate.release(conversation, redact, stop=[NAME])
    verdict = dataclasses.replace(redact, fields=("stop[0]",), field_findings=((),))
    with pytest.raises(SensitiveDataBlocked, match="control field holds a redacted value"):
        gate.release(conversation, verdict, stop=[NAME.lower()])


def test_an_allowed_class_in_a_control_field_goes_as_it_is(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"data_classes": {"identity": {"policy": "ALLOW"}}}), detector)
    conversation = [user("Write a limerick.")]
    stop = [f"{NAME}:"]
    verdict = gate.assess(conversation, stop=stop)
    assert (verdict.policy, verdict.data_classes) == (DataPolicy.ALLOW, ("identity",))
    assert gate.release(conversation, verdict, stop=stop).stop == tuple(stop)


def test_control_fields_count_toward_the_scan_limit(detector: PresidioDetector) -> None:
    gate = SensitivityGate(settings_with({"detector": {"max_scan_chars": 1000}}), detector)
    verdict = gate.assess([user("x" * 600)], json_schema='{"description": "' + "y" * 400 + '"}')
    assert verdict.policy is DataPolicy.LOCAL_ONLY
    assert "1019 characters exceeds detector.max_scan_chars 1000" in verdict.reasons[0]


def test_assess_request_and_release_request_read_the_control_fields(gate: SensitivityGate) -> None:
    request = InferenceRequest(
        request_id="r2",
        messages=(user("Tell me a joke."),),
        params=SamplingParams(max_tokens=8, stop=("\n",), json_schema=SCHEMA),
    )
    verdict = gate.assess_request(request)
    assert verdict.fields == ("stop[0]", "json_schema")
    release = gate.release_request(request, verdict)
    assert (release.stop, release.json_schema) == (("\n",), SCHEMA)
    flagged = dataclasses.replace(request, params=SamplingParams(max_tokens=8, stop=(EMAIL,)))
    assert gate.assess_request(flagged).forced_by == "contact"


def test_an_unscanned_verdict_still_lists_the_declared_classes() -> None:
    gate = SensitivityGate(PrivacySettings(), RaisingDetector())
    verdict = gate.assess([user("hi")], sensitive=True, data_classes=["identity"])
    assert verdict.data_classes == ("identity", "sensitive", UNSCANNED_CLASS)
    assert verdict.forced_by == UNSCANNED_CLASS
