"""What GetStatus and `edged status` report: a snapshot assembled by the daemon from its parts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    quantization: str
    context_length: int
    sha256: str
    loaded: bool
    slots_total: int = 0
    slots_busy: int = 0
    context_per_slot: int = 0
    queue_depth: int = 0
    queue_capacity: int = 0
    is_default: bool = False


@dataclass(frozen=True, slots=True)
class LinkInfo:
    state: str = "disabled"  # disabled | connecting | connected | disconnected
    broker: str = ""
    rtt_ms: float = 0.0
    last_error: str = ""
    since_s: float = 0.0
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class LoadInfo:
    cpu_percent: float = 0.0
    load_average_1m: float = 0.0
    memory_available_mb: float = 0.0
    memory_percent: float = 0.0
    temperature_c: float | None = None
    battery_percent: float | None = None
    charging: bool | None = None
    age_s: float = 0.0
    over_limits: tuple[str, ...] = ()
    edged_cpu_percent: float = 0.0


@dataclass(frozen=True, slots=True)
class BudgetInfo:
    requests_this_hour: int = 0
    requests_today: int = 0
    tokens_this_hour: int = 0
    tokens_today: int = 0
    requests_per_hour_limit: int = 0
    requests_per_day_limit: int = 0
    tokens_per_hour_limit: int = 0
    tokens_per_day_limit: int = 0
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class ProfileInfo:
    name: str = "default"
    version: int = 0
    origin: str = "local"  # local | fleet
    group: str = ""
    applied_at_unix: float = 0.0


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    device_id: str
    version: str
    state: str  # loading | serving | draining
    models: tuple[ModelInfo, ...] = ()
    link: LinkInfo = field(default_factory=LinkInfo)
    load: LoadInfo | None = None
    budget: BudgetInfo = field(default_factory=BudgetInfo)
    profile: ProfileInfo = field(default_factory=ProfileInfo)
    uptime_s: float = 0.0
    requests_local: int = 0
    requests_cloud: int = 0
    http_listeners: tuple[str, ...] = ()
