"""The composition root's one builder: the Runtime a profile is answered with, from the validated config and
profile and the daemon's long-lived parts.

    build_runtime(profile, parts, previous)   blocking (Presidio or a router may load): call it off the loop

Whatever `previous` already holds that the new profile would build the same is reused (the gate when the
privacy settings are equal, the router when its name and the served model are); everything else is built
new, so a profile change either yields a whole new Runtime or raises EdgedError and changes nothing. The daemon
swaps the result into its RuntimeSlot (edged.pipeline.runtime) in one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edged.config.profile import DeviceProfile
from edged.escalation.cloud_answerer import CloudAnswerer
from edged.models import ModelRegistry
from edged.models.registry import served_sha256
from edged.pipeline.runtime import Runtime
from edged.routing.budget import CloudBudget
from edged.routing.router import PromptRouter, effective_weights, load_router
from edged.sovereignty.audit import AuditLog
from edged.sovereignty.gate import SensitivityGate
from edged.telemetry.metrics import EdgedMetrics

if TYPE_CHECKING:
    from edged.escalation.client import EscalationClient


@dataclass(frozen=True, slots=True)
class CloudLink:
    """The cloud link's long-lived parts, made once at start when a broker is configured."""

    escalation: EscalationClient
    audit: AuditLog


@dataclass(frozen=True, slots=True)
class RuntimeParts:
    """What outlives a profile: identity, where models live, the registry, metrics, the budget's use so far,
    the cloud link; and the live [api] setting a runtime carries."""

    device_id: str
    models_dir: Path | None
    metrics: EdgedMetrics
    budget: CloudBudget
    stream_interval_s: float = 0.0
    registry: ModelRegistry | None = None  # resolved by the daemon's profile step
    cloud: CloudLink | None = None  # with a broker, from the cloud link step on


def build_runtime(profile: DeviceProfile, parts: RuntimeParts, previous: Runtime | None = None) -> Runtime:
    """The Runtime for `profile`; raises EdgedError (a gate or router that cannot be built)."""
    budget = parts.budget.reconfigured(profile.budget)
    link = parts.cloud
    if link is None:
        return Runtime(profile, budget, parts.stream_interval_s, effective_weights(profile, None))
    gate = _gate(profile, parts, previous)
    router = _router(profile, parts, previous)
    return Runtime(
        profile,
        budget,
        parts.stream_interval_s,
        effective_weights(profile, router),
        router=router,
        gate=gate,
        audit=link.audit.reconfigured(profile.privacy.audit),
        cloud=CloudAnswerer(parts.device_id, link.escalation, gate, budget),
    )


def _gate(profile: DeviceProfile, parts: RuntimeParts, previous: Runtime | None) -> SensitivityGate:
    old = previous.gate if previous is not None else None
    if old is None:
        return SensitivityGate.load(profile.privacy, metrics=parts.metrics)
    assert previous is not None
    return old if profile.privacy == previous.profile.privacy else old.reconfigured(profile.privacy)


def _router(profile: DeviceProfile, parts: RuntimeParts, previous: Runtime | None) -> PromptRouter | None:
    """The router the profile names, checked against the GGUF it serves (sha256-checked, or signal-only for
    another model: routing/router.py); reused while neither changed."""
    if (
        previous is not None
        and previous.gate is not None
        and not _router_inputs_changed(previous.profile, profile)
    ):
        return previous.router
    assert parts.registry is not None  # the profile step resolved it before any cloud link
    served = served_sha256(parts.registry, profile.engine)
    return load_router(parts.models_dir, profile.routing.router_model, served)


def _router_inputs_changed(old: DeviceProfile, new: DeviceProfile) -> bool:
    return (old.routing.router_model, *_served(old)) != (new.routing.router_model, *_served(new))


def _served(profile: DeviceProfile) -> tuple[str, Path | None, str | None]:
    engine = profile.engine
    return engine.model, engine.model_path, engine.model_sha256
