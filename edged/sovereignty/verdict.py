"""The gate's verdict on one conversation: which data classes it carries and what may leave the device.

A verdict holds entity types, counts and character offsets, never the values, so it can be logged, audited and
kept on a request object safely.

Besides the messages, a verdict covers the request's control fields that travel to the cloud with them: its stop
strings (`stop[0]`, `stop[1]`, ...) and its `json_schema`. Their findings count like a message's; they are never
redacted (a placeholder would change what the field means), so the gate keeps a request whose control field
holds a value it would redact on the device (`Verdict.kept_local`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from edged.config.privacy import SENSITIVE_CLASS, DataPolicy, PrivacySettings
from edged.errors import SensitiveDataBlocked
from edged.sovereignty.detector import Finding

UNSCANNED_CLASS = "unscanned"
"""The class a verdict names when the conversation could not be scanned (detector error, too long)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the gate decided for one conversation."""

    policy: DataPolicy
    forced_by: str | None  # the data class whose policy is `policy`; None when nothing was found (ALLOW)
    data_classes: tuple[str, ...]  # detected and declared, sorted
    class_policies: Mapping[str, DataPolicy]
    entities: Mapping[str, int]  # entity type -> number of findings, all messages together
    entity_classes: Mapping[str, str]  # detected entity type -> its data class
    reasons: tuple[str, ...]
    detector_failed: bool = False
    declared: tuple[str, ...] = ()  # classes the caller declared (the sensitive flag as "sensitive")
    findings: tuple[tuple[Finding, ...], ...] = field(default=(), repr=False)  # per message, disjoint
    fields: tuple[str, ...] = ()  # the control fields scanned with the messages ("stop[0]", "json_schema")
    field_findings: tuple[tuple[Finding, ...], ...] = field(default=(), repr=False)  # per control field

    @property
    def allows_cloud(self) -> bool:
        return self.policy is not DataPolicy.LOCAL_ONLY

    @property
    def needs_redaction(self) -> bool:
        return self.policy is DataPolicy.REDACT

    def blocked_error(self) -> SensitiveDataBlocked:
        """The PERMISSION_DENIED error for a cloud-only request this verdict keeps on the device."""
        data_class = self.forced_by or UNSCANNED_CLASS
        reason = self.reasons[0] if self.reasons else f"data class {data_class!r} is LOCAL_ONLY"
        return SensitiveDataBlocked(data_class, f"request may not leave the device: {reason}")

    def kept_local(self, data_class: str, reason: str) -> Verdict:
        """This verdict made LOCAL_ONLY by `data_class` for `reason` (a control field holds what would be
        redacted): the reason goes first, so the refusal names it."""
        return dataclasses.replace(
            self, policy=DataPolicy.LOCAL_ONLY, forced_by=data_class, reasons=(reason, *self.reasons)
        )

    def redactable_types(self) -> frozenset[str]:
        """Entity types to replace with placeholders: those of REDACT classes, and every detected type when a
        class the caller declared is REDACT (the caller says the whole conversation is sensitive)."""
        if any(self.class_policies.get(c) is DataPolicy.REDACT for c in self.declared):
            return frozenset(self.entities)
        return frozenset(
            entity
            for entity, data_class in self.entity_classes.items()
            if self.class_policies.get(data_class) is DataPolicy.REDACT
        )


def decide(
    settings: PrivacySettings,
    findings: Sequence[Sequence[Finding]],
    *,
    sensitive: bool,
    declared: Iterable[str],
    fields: Sequence[str] = (),
    field_findings: Sequence[Sequence[Finding]] = (),
) -> Verdict:
    """The verdict for a scanned conversation (findings per message, and per control field named in `fields`)
    and the caller's declarations."""
    if len(fields) != len(field_findings):
        raise ValueError("one list of findings per control field")
    owner = {e: c.name for c in settings.classes().values() for e in c.entities}
    counts = Counter(f.entity_type for text in (*findings, *field_findings) for f in text)
    declared_classes = tuple(dict.fromkeys([*declared, *([SENSITIVE_CLASS] if sensitive else [])]))
    entity_classes = {e: owner[e] for e in sorted(counts) if e in owner}
    present = sorted(set(entity_classes.values()) | set(declared_classes))
    policies = {c: settings.policy_of(c) for c in present}
    # Strictest first; of equal policies a declared class names the verdict, then the alphabetically first.
    ranked = sorted(present, key=lambda c: (-policies[c].strictness, c not in declared_classes, c))
    strictest = ranked[0] if ranked else None
    return Verdict(
        policy=policies[strictest] if strictest else DataPolicy.ALLOW,
        forced_by=strictest,
        data_classes=tuple(present),
        class_policies=policies,
        entities=dict(sorted(counts.items())),
        entity_classes=entity_classes,
        reasons=tuple(_reason(c, policies[c], counts, owner, c in declared_classes) for c in ranked),
        declared=declared_classes,
        findings=tuple(tuple(m) for m in findings),
        fields=tuple(fields),
        field_findings=tuple(tuple(f) for f in field_findings),
    )


def declared_classes(data_classes: Iterable[str], *, sensitive: bool) -> tuple[str, ...]:
    """The classes a caller declared, with "sensitive" for the flag, sorted: a request's data classes when
    nothing was scanned (no cloud link), as a verdict lists them."""
    return tuple(sorted({*data_classes, *([SENSITIVE_CLASS] if sensitive else [])}))


def unscanned(reason: str, *, declared: Iterable[str] = ()) -> Verdict:
    """Fail closed: a conversation the detector could not scan stays on the device. The classes the caller
    declared are still its data classes."""
    declared = tuple(dict.fromkeys(declared))
    return Verdict(
        policy=DataPolicy.LOCAL_ONLY,
        forced_by=UNSCANNED_CLASS,
        data_classes=tuple(sorted({UNSCANNED_CLASS, *declared})),
        class_policies={UNSCANNED_CLASS: DataPolicy.LOCAL_ONLY},
        entities={},
        entity_classes={},
        reasons=(reason,),
        detector_failed=True,
        declared=declared,
    )


def _reason(
    data_class: str, policy: DataPolicy, counts: Mapping[str, int], owner: Mapping[str, str], declared: bool
) -> str:
    if declared:
        source = "flagged by the caller" if data_class == SENSITIVE_CLASS else "declared by the caller"
    else:
        found = sorted(e for e in counts if owner.get(e) == data_class)
        source = "detected " + ", ".join(f"{e}×{counts[e]}" for e in found)
    return f"data class {data_class!r} ({source}) is {policy.value}"
