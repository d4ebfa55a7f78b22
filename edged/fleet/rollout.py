"""Rollout progress from what devices publish (cloud side): a row per device, counts for the latest rollout.

Input is the retained state of the fleet (device `status` and `state` documents, the retained profile
envelopes on group and device topics); nothing here talks to the broker, so `edged-fleet status` and the tests
share it.

For a rollout (stream S = profile:SCOPE:NAME, version V), a device's outcome is, first match wins:
    its last outcome reported for S is for version V       -> that outcome (applied, rejected, rolled_back)
    the highest version it accepted for S is V or above    -> applied (rolled_back if V itself rolled back)
    otherwise                                              -> pending
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged.fleet.envelope import Envelope, Target

OUTCOMES = ("applied", "rejected", "rolled_back", "pending")


@dataclass(frozen=True, slots=True)
class Rollout:
    """The newest signed profile on a group or device topic."""

    target: Target
    version: int
    issued_at: int
    expires_at: int
    key_id: str
    profile: str

    @classmethod
    def of(cls, envelope: Envelope) -> Rollout:
        name = envelope.body.get("name", "default")
        return cls(
            envelope.target,
            envelope.version,
            envelope.issued_at,
            envelope.expires_at,
            envelope.key_id,
            str(name),
        )

    @property
    def stream(self) -> str:
        return self.target.stream("profile")


@dataclass(frozen=True, slots=True)
class DeviceRow:
    device: str
    presence: str  # online, offline, unknown
    group: str | None
    profile: str
    group_version: int | None
    device_version: int | None
    last_seen: float | None
    outcome: str | None  # for the latest rollout, when the device is one of its targets
    reason: str | None


@dataclass(frozen=True, slots=True)
class FleetStatus:
    rows: list[DeviceRow]
    rollout: Rollout | None
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        rollout = None
        if self.rollout is not None:
            rollout = {
                "target": self.rollout.target.to_json(),
                "version": self.rollout.version,
                "issued_at": self.rollout.issued_at,
                "expires_at": self.rollout.expires_at,
                "key_id": self.rollout.key_id,
                "profile": self.rollout.profile,
            }
        rows = [{name: getattr(row, name) for name in DeviceRow.__dataclass_fields__} for row in self.rows]
        return {"devices": rows, "rollout": rollout, "counts": self.counts}


def latest_rollout(envelopes: list[Envelope], group: str | None = None) -> Rollout | None:
    """The most recently issued profile envelope (optionally only those for `group`)."""
    chosen = [
        e for e in envelopes if e.kind == "profile" and (group is None or e.target == Target("group", group))
    ]
    if not chosen:
        return None
    return Rollout.of(max(chosen, key=lambda e: (e.issued_at, e.version)))


def is_target(rollout: Rollout, device: str, state: Mapping[str, Any]) -> bool:
    if rollout.target.scope == "device":
        return rollout.target.name == device
    return bool(state.get("group") == rollout.target.name)


def outcome_for(rollout: Rollout, state: Mapping[str, Any]) -> tuple[str, str | None]:
    """(outcome, reason) of one device for the rollout, by the rule in the module docstring."""
    last = state.get("last", {}).get(rollout.stream)
    if isinstance(last, Mapping) and last.get("version") == rollout.version:
        return str(last.get("outcome")), last.get("reason")
    accepted = state.get("streams", {}).get(rollout.stream)
    if isinstance(accepted, Mapping) and isinstance(accepted.get("version"), int):
        if accepted["version"] > rollout.version:
            return "applied", "superseded"
        if accepted["version"] == rollout.version:
            rolled_back = accepted.get("state") == "rolled_back"
            return ("rolled_back", "apply_failed") if rolled_back else ("applied", None)
    return "pending", None


def fleet_status(
    states: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, Mapping[str, Any]],
    envelopes: list[Envelope],
    group: str | None = None,
) -> FleetStatus:
    """Rows for every device known from its state or status, and counts for the latest rollout."""
    rollout = latest_rollout(envelopes, group)
    counts = dict.fromkeys(OUTCOMES, 0)
    rows = []
    for device in sorted(set(states) | set(statuses)):
        state, status = states.get(device, {}), statuses.get(device, {})
        if group is not None and state.get("group", status.get("group")) != group:
            continue
        outcome: str | None = None
        reason: str | None = None
        if rollout is not None and is_target(rollout, device, state or status):
            outcome, reason = outcome_for(rollout, state)
            counts[outcome] = counts.get(outcome, 0) + 1
        rows.append(_row(device, state, status, outcome, reason))
    return FleetStatus(rows, rollout, counts)


def _row(
    device: str, state: Mapping[str, Any], status: Mapping[str, Any], outcome: str | None, reason: str | None
) -> DeviceRow:
    layers = state.get("layers", {})
    seen = [t for t in (state.get("at"), status.get("since")) if isinstance(t, int | float)]
    return DeviceRow(
        device=device,
        presence=str(status.get("state", "unknown")),
        group=state.get("group", status.get("group")),
        profile=str(state.get("profile", "")),
        group_version=layers.get("group", {}).get("version"),
        device_version=layers.get("device", {}).get("version"),
        last_seen=max(seen) if seen else None,
        outcome=outcome,
        reason=reason,
    )
