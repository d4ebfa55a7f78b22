"""What the daemon reports about itself: GetStatus's snapshot, fleet telemetry and the systemd status line."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edged import __version__
from edged.comms.messages import LinkPhase
from edged.config.limits import LoadLimits
from edged.config.profile import DeviceProfile
from edged.engine import LlamaEngine
from edged.models import ModelRegistry
from edged.routing.budget import BudgetStatus
from edged.routing.load import LoadSnapshot, over_limits
from edged.service.snapshot import BudgetInfo, DaemonStatus, LinkInfo, LoadInfo, ModelInfo, ProfileInfo

if TYPE_CHECKING:
    from edged.escalation.client import EscalationClient
    from edged.fleet.agent import FleetAgent


def model_infos(
    registry: ModelRegistry | None, engines: Mapping[str, LlamaEngine], default: str
) -> list[ModelInfo]:
    infos = []
    known = set(registry.ids()) if registry is not None else set()
    for model_id in sorted(known | set(engines)):
        manifest = registry.manifest(model_id) if registry is not None and model_id in known else None
        if manifest is not None and manifest.format != "gguf":
            continue  # the router and other non-LLM models are not generation models
        engine = engines.get(model_id)
        stats = engine.stats() if engine is not None else None
        infos.append(
            ModelInfo(
                id=model_id,
                quantization=manifest.quantization if manifest else "",
                context_length=manifest.context_length if manifest else 0,
                sha256=manifest.sha256 if manifest else "",
                loaded=stats is not None and stats.loaded,
                slots_total=stats.slots_total if stats else 0,
                slots_busy=stats.slots_busy if stats else 0,
                context_per_slot=stats.context_per_slot if stats else 0,
                queue_depth=stats.queue_depth if stats else 0,
                queue_capacity=stats.queue_capacity if stats else 0,
                is_default=model_id == default,
            )
        )
    return infos


def link_info(client: EscalationClient | None) -> LinkInfo:
    if client is None:
        return LinkInfo()
    state = client.link_state()
    return LinkInfo(
        # a link not (or no longer) running is reported as disconnected
        state="disconnected" if state.phase is LinkPhase.STOPPED else state.phase.value,
        broker=state.broker,
        rtt_ms=state.rtt_ms or 0.0,
        last_error=state.last_error or "",
        since_s=max(0.0, time.time() - state.since),
        in_flight=client.in_flight(),
    )


def profile_info(profile: DeviceProfile, agent: FleetAgent | None, group: str | None) -> ProfileInfo:
    layers = agent.device.layers if agent is not None else {}
    if not layers:
        return ProfileInfo(name=profile.name, group=group or "")
    return ProfileInfo(
        name=profile.name,
        version=max(layer.version for layer in layers.values()),
        origin="fleet",
        group=group or "",
        applied_at_unix=max(layer.applied_at for layer in layers.values()),
    )


def daemon_status(
    *,
    device_id: str,
    state: str,
    started_at: float,
    models: list[ModelInfo],
    link: LinkInfo,
    load: LoadInfo | None,
    budget: BudgetInfo,
    profile: ProfileInfo,
    answered: tuple[int, int],
    http_listeners: tuple[str, ...] = (),
) -> DaemonStatus:
    return DaemonStatus(
        device_id=device_id,
        version=__version__,
        state=state,
        models=tuple(models),
        link=link,
        load=load,
        budget=budget,
        profile=profile,
        uptime_s=time.monotonic() - started_at,
        requests_local=answered[0],
        requests_cloud=answered[1],
        http_listeners=http_listeners,
    )


def telemetry(status: DaemonStatus) -> dict[str, Any]:
    """The periodic fleet telemetry document: load, traffic by side, escalation rate, models."""
    total = status.requests_local + status.requests_cloud
    load = status.load
    return {
        "state": status.state,
        "uptime_s": round(status.uptime_s, 1),
        "profile": {"name": status.profile.name, "version": status.profile.version},
        "requests": {"local": status.requests_local, "cloud": status.requests_cloud},
        "escalation_rate": round(status.requests_cloud / total, 4) if total else 0.0,
        "load": None
        if load is None
        else {
            "cpu_percent": load.cpu_percent,
            "edged_cpu_percent": load.edged_cpu_percent,
            "load_average_1m": load.load_average_1m,
            "memory_available_mb": load.memory_available_mb,
            "temperature_c": load.temperature_c,
            "battery_percent": load.battery_percent,
            "over_limits": list(load.over_limits),
        },
        "slots": {
            "busy": sum(m.slots_busy for m in status.models),
            "total": sum(m.slots_total for m in status.models),
        },
        "models": [{"id": m.id, "sha256": m.sha256, "loaded": m.loaded} for m in status.models if m.loaded],
        "link": {"state": status.link.state, "rtt_ms": status.link.rtt_ms},
    }


def status_line(status: DaemonStatus) -> str:
    """One line for `systemctl status`."""
    busy = sum(m.slots_busy for m in status.models)
    total = sum(m.slots_total for m in status.models)
    default = next((m.id for m in status.models if m.is_default), "-")
    return (
        f"{status.state}: {default}, {busy}/{total} slots busy, link {status.link.state}, "
        f"profile {status.profile.name} v{status.profile.version}; "
        f"answered {status.requests_local} local / {status.requests_cloud} cloud"
    )


def load_info(snapshot: LoadSnapshot, limits: LoadLimits, now: float) -> LoadInfo:
    """The latest load sample, its age and the limits it is beyond (`now` is time.monotonic())."""
    system = snapshot.system
    return LoadInfo(
        cpu_percent=system.cpu_percent,
        load_average_1m=system.load_average_1m,
        memory_available_mb=system.memory_available_mb,
        memory_percent=system.memory_percent,
        temperature_c=system.temperature_c,
        battery_percent=system.battery_percent,
        charging=system.charging,
        age_s=snapshot.age_s(now),
        over_limits=over_limits(snapshot, limits),
        edged_cpu_percent=system.edged_cpu_percent,
    )


def budget_info(status: BudgetStatus) -> BudgetInfo:
    limits = status.limits
    return BudgetInfo(
        requests_this_hour=status.requests_this_hour,
        requests_today=status.requests_today,
        tokens_this_hour=status.tokens_this_hour,
        tokens_today=status.tokens_today,
        requests_per_hour_limit=limits.requests_per_hour,
        requests_per_day_limit=limits.requests_per_day,
        tokens_per_hour_limit=limits.tokens_per_hour,
        tokens_per_day_limit=limits.tokens_per_day,
        exhausted=status.exhausted is not None,
    )


def budget_remaining(status: BudgetStatus) -> list[tuple[str, str, float]]:
    """(resource, window, remaining) of every window, for edged_cloud_budget_remaining; an unlimited window is
    +Inf, so the series (and a dashboard's budget panel) is there before any limit is set."""
    limits = status.limits
    windows = (
        ("requests", "hour", limits.requests_per_hour, status.requests_this_hour),
        ("requests", "day", limits.requests_per_day, status.requests_today),
        ("tokens", "hour", limits.tokens_per_hour, status.tokens_this_hour),
        ("tokens", "day", limits.tokens_per_day, status.tokens_today),
    )
    return [
        (resource, window, float(max(0, limit - used)) if limit else math.inf)
        for resource, window, limit, used in windows
    ]
