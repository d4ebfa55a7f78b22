"""The gate's verdict on one conversation: which data classes it carries and what may leave the device.

A verdict holds entity types, counts and character offsets, never the values, so it can be logged, audited and
kept on a request object safely.
"""

from __future__ import annotations

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
) -> Verdict:
    """The verdict for a scanned conversation (findings per message) and the caller's declarations."""
    owner = {e: c.name for c in settings.classes().values() for e in c.entities}
    counts = Counter(f.entity_type for message in findings for f in message)
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
    )


def unscanned(reason: str, *, declared: Iterable[str] = ()) -> Verdict:
    """Fail closed: a conversation the detector could not scan stays on the device."""
    return Verdict(
        policy=DataPolicy.LOCAL_ONLY,
        forced_by=UNSCANNED_CLASS,
        data_classes=(UNSCANNED_CLASS,),
        class_policies={UNSCANNED_CLASS: DataPolicy.LOCAL_ONLY},
        entities={},
        entity_classes={},
        reasons=(reason,),
        detector_failed=True,
        declared=tuple(declared),
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
