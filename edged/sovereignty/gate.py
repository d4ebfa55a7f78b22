"""SensitivityGate: the one place that decides what of a conversation may leave the device.

The pipeline calls, per request (each call synchronous and thread-safe; run them via asyncio.to_thread):

    verdict = gate.assess_request(request)        # scans every message, stop string and the json_schema
    release = gate.release_request(request, verdict)  # before any escalation; SensitiveDataBlocked if LOCAL_ONLY
    ... send release.messages, .stop and .json_schema; restore the answer with release.stream_restorer() ...
    report = gate.scan_reply(raw_cloud_text, release)

Routing policy cannot override it: the only way to obtain cloud-bound messages and control fields is
release(), which refuses a LOCAL_ONLY verdict and redacts a REDACT one. Control fields (stop strings, the JSON
schema) are never redacted: a request whose control field holds a value the verdict would redact stays on the
device like a LOCAL_ONLY one. A detector failure or an unscannable conversation yields a LOCAL_ONLY verdict
(fail closed), never an exception.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from edged.config.privacy import SENSITIVE_CLASS, DataPolicy, PrivacySettings
from edged.domain import InferenceRequest, Message
from edged.errors import DetectorFault, SensitiveDataBlocked
from edged.sovereignty.counters import PrivacyMetrics, SovereigntyCounters
from edged.sovereignty.detector import Detector, Finding
from edged.sovereignty.redaction import CloudRelease, Redactor, mentions
from edged.sovereignty.restore import PLACEHOLDER
from edged.sovereignty.verdict import UNSCANNED_CLASS, Verdict, decide, unscanned

logger = logging.getLogger(__name__)

SCAN_CACHE_SIZE = 1024


FIELDS_NOTE = "stop strings and json_schema are never redacted"


def control_fields(stop: Sequence[str] = (), json_schema: str | None = None) -> tuple[tuple[str, str], ...]:
    """(name, text) of each control field that goes to the cloud with the messages: `stop[i]`,
    `json_schema`."""
    named = [(f"stop[{i}]", text) for i, text in enumerate(stop)]
    if json_schema:
        named.append(("json_schema", json_schema))
    return tuple(named)


@dataclass(frozen=True, slots=True)
class ReplyReport:
    """What the scan of a cloud reply found: values the cloud wrote that were not in the conversation (left in
    the answer, reported), and how many known placeholders it used."""

    invented: dict[str, int] = field(default_factory=dict)
    placeholders: int = 0
    detector_failed: bool = False


class SensitivityGate:
    """Detection, policy and redaction for the pipeline (see the module docstring for the call sequence)."""

    def __init__(
        self,
        settings: PrivacySettings,
        detector: Detector,
        *,
        metrics: PrivacyMetrics | None = None,
        counters: SovereigntyCounters | None = None,
        cache_size: int = SCAN_CACHE_SIZE,
    ) -> None:
        self.settings = settings
        self.counters = counters or SovereigntyCounters()
        self._detector = detector
        self._external_metrics = metrics
        self._metrics: list[PrivacyMetrics] = [self.counters, *([metrics] if metrics else [])]
        self._redactor = Redactor()
        # Findings of recently scanned message texts, keyed by a digest (no text is kept): conversations
        # resend their system prompt and history with every turn.
        self._cache: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    @classmethod
    def load(cls, settings: PrivacySettings, *, metrics: PrivacyMetrics | None = None) -> SensitivityGate:
        """The gate with the Presidio detector (loads spaCy and Presidio: call once, at daemon start)."""
        from edged.sovereignty.presidio import PresidioDetector  # noqa: PLC0415 - heavy, loaded only here

        return cls(settings, PresidioDetector(settings), metrics=metrics)

    def reconfigured(self, settings: PrivacySettings) -> SensitivityGate:
        """A gate for new privacy settings (a profile change), keeping the counters and metrics. The detector is
        reused when it would be built the same (only policies or classes changed, not the entity types,
        detector settings or custom recognizers); otherwise Presidio is loaded again (seconds: call it off the
        event loop, then swap the gate in)."""
        old = self.settings
        same = (
            settings.detected_entities() == old.detected_entities()
            and settings.detector == old.detector
            and settings.custom_recognizers == old.custom_recognizers
        )
        if same:
            detector = self._detector
        else:
            from edged.sovereignty.presidio import PresidioDetector  # noqa: PLC0415 - heavy, loaded only here

            detector = PresidioDetector(settings)
        return SensitivityGate(
            settings,
            detector,
            metrics=self._external_metrics,
            counters=self.counters,
            cache_size=self._cache_size,
        )

    @property
    def detector(self) -> Detector:
        return self._detector

    # -- assessment -----------------------------------------------------------------------------------------

    def assess(
        self,
        messages: Sequence[Message],
        *,
        sensitive: bool = False,
        data_classes: Sequence[str] = (),
        stop: Sequence[str] = (),
        json_schema: str | None = None,
    ) -> Verdict:
        """Scan every message and control field (stop strings, JSON schema) and decide the policy. An unknown
        declared class raises InvalidRequest."""
        self.settings.check_declared(data_classes)
        declared = (*data_classes, *([SENSITIVE_CLASS] if sensitive else []))
        fields = control_fields(stop, json_schema)
        total = sum(len(m.content) for m in messages) + sum(len(text) for _name, text in fields)
        if total > self.settings.detector.max_scan_chars:
            limit = self.settings.detector.max_scan_chars
            reason = f"conversation of {total} characters exceeds detector.max_scan_chars {limit}"
            return self._failed(reason, declared)
        try:
            findings = [self._scan(m.content) for m in messages]
            field_findings = [self._scan(text) for _name, text in fields]
        except Exception as exc:  # any detector fault keeps the request on the device
            # The exception text may quote the prompt: log its type only, the traceback at DEBUG.
            logger.error("PII detector failed (%s): the request stays on the device", type(exc).__name__)
            logger.debug("PII detector failure", exc_info=exc)
            return self._failed(f"PII detector failed ({type(exc).__name__})", declared)
        verdict = decide(
            self.settings,
            findings,
            sensitive=sensitive,
            declared=data_classes,
            fields=[name for name, _text in fields],
            field_findings=field_findings,
        )
        verdict = _fields_kept_local(verdict, messages, fields)
        for sink in self._metrics:
            sink.record_detections(verdict.entities)
        return verdict

    def assess_request(self, request: InferenceRequest) -> Verdict:
        return self.assess(
            request.messages,
            sensitive=request.sensitive,
            data_classes=request.data_classes,
            stop=request.params.stop,
            json_schema=request.params.json_schema,
        )

    def _scan(self, text: str) -> tuple[Finding, ...]:
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        findings = tuple(self._detector.scan(text))
        if any(not 0 <= f.start < f.end <= len(text) for f in findings):
            # a detector bug: what it flagged cannot be redacted reliably, so nothing of this request leaves
            raise DetectorFault("a finding lies outside the scanned text")
        with self._cache_lock:
            self._cache[key] = findings
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return findings

    def _failed(self, reason: str, declared: Sequence[str]) -> Verdict:
        self.counters.record_detector_failure()
        return unscanned(reason, declared=declared)

    # -- release --------------------------------------------------------------------------------------------

    def release(
        self,
        messages: Sequence[Message],
        verdict: Verdict,
        *,
        stop: Sequence[str] = (),
        json_schema: str | None = None,
    ) -> CloudRelease:
        """The messages and control fields that may go to the cloud under `verdict` (assessed with the same
        ones): raises SensitiveDataBlocked (PERMISSION_DENIED) for LOCAL_ONLY, redacts the messages for
        REDACT, passes everything as it is for ALLOW. Every refusal counts as a blocked escalation: call this
        only when the request would otherwise escalate."""
        if not verdict.allows_cloud:
            for sink in self._metrics:
                sink.record_blocked_escalation(verdict.forced_by or UNSCANNED_CLASS)
            raise verdict.blocked_error()
        fields = control_fields(stop, json_schema)
        if len(verdict.findings) != len(messages) or verdict.fields != tuple(name for name, _ in fields):
            # a pipeline bug, not a request fault: these messages or fields were not scanned
            raise ValueError("verdict does not belong to these messages and control fields")
        if verdict.policy is DataPolicy.ALLOW:
            release = CloudRelease(messages=tuple(messages), redacted=False, originals=tuple(messages))
        else:
            release = self._redactor.redact(messages, verdict.findings, verdict.redactable_types())
            # assess() kept such a request local; checked again here, where a slip would leak the value
            if any(mentions(text, v) for _name, text in fields for v in release.mapping.values()):
                raise SensitiveDataBlocked(
                    verdict.forced_by or UNSCANNED_CLASS,
                    f"request may not leave the device: a control field holds a redacted value ({FIELDS_NOTE})",
                )
            for sink in self._metrics:
                sink.record_redaction()
            self.counters.record_redacted_values(release.replacements)
        return dataclasses.replace(release, stop=tuple(stop), json_schema=json_schema)

    def release_request(self, request: InferenceRequest, verdict: Verdict) -> CloudRelease:
        params = request.params
        return self.release(request.messages, verdict, stop=params.stop, json_schema=params.json_schema)

    # -- the reply ------------------------------------------------------------------------------------------

    def scan_reply(self, reply: str, release: CloudRelease) -> ReplyReport:
        """Scan the cloud's raw reply (before restoring): values it contains that are not in the conversation
        are counted as invented and left alone; placeholder text is not a finding."""
        placeholders = sum(1 for m in PLACEHOLDER.finditer(reply) if m.group(0) in release.mapping)
        try:
            findings = self._detector.scan(reply)
        except Exception as exc:  # the answer is already the caller's: report, do not fail
            logger.error("PII detector failed on a cloud reply (%s)", type(exc).__name__)
            logger.debug("PII detector failure", exc_info=exc)
            self.counters.record_detector_failure()
            return ReplyReport(placeholders=placeholders, detector_failed=True)
        values = ((f.entity_type, reply[f.start : f.end]) for f in findings)
        invented = Counter(
            entity
            for entity, value in values
            if not PLACEHOLDER.search(value) and not release.in_conversation(value)
        )
        if invented:
            logger.info("cloud reply holds values not in the conversation: %s", dict(invented))
            self.counters.record_invented(invented)
        return ReplyReport(invented=dict(sorted(invented.items())), placeholders=placeholders)


def _fields_kept_local(
    verdict: Verdict, messages: Sequence[Message], fields: Sequence[tuple[str, str]]
) -> Verdict:
    """A REDACT verdict whose control field holds a value it would replace (found in the field, or found in a
    message and written in the field too): the request stays on the device, since a field is never redacted."""
    if verdict.policy is not DataPolicy.REDACT or not fields:
        return verdict
    types = verdict.redactable_types()
    for (name, _text), found in zip(fields, verdict.field_findings, strict=True):
        for finding in found:
            if finding.entity_type in types:
                return _kept_local(verdict, finding.entity_type, f"detected {finding.entity_type} in {name}")
    values = {
        message.content[f.start : f.end]: f.entity_type
        for message, found in zip(messages, verdict.findings, strict=True)
        for f in found
        if f.entity_type in types
    }
    for name, text in fields:
        for value, entity in values.items():
            if mentions(text, value):
                return _kept_local(verdict, entity, f"{entity} of the conversation in {name}")
    return verdict


def _kept_local(verdict: Verdict, entity: str, where: str) -> Verdict:
    data_class = verdict.entity_classes.get(entity)
    if data_class is None or verdict.class_policies.get(data_class) is not DataPolicy.REDACT:
        # every detected type is redacted because the caller declared a REDACT class: that class decides
        data_class = next(c for c in verdict.declared if verdict.class_policies.get(c) is DataPolicy.REDACT)
    reason = f"data class {data_class!r} ({where}) stays LOCAL_ONLY: {FIELDS_NOTE}"
    return verdict.kept_local(data_class, reason)
