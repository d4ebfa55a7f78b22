"""Routing state as GetStatus, `edged status` and metrics show it (edged.status types; the gRPC layer encodes)."""

from __future__ import annotations

import math

from edged.config.limits import LoadLimits
from edged.routing.budget import BudgetStatus
from edged.routing.load import LoadSnapshot, over_limits
from edged.status import BudgetInfo, LoadInfo


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
