"""Every Prometheus series edged exports, defined once in a registry the daemon owns; the endpoint serving it.

    edged_requests_total{mode,route,outcome}          answers and failures
    edged_tokens_total{route,kind}                    prompt and completion tokens
    edged_queue_seconds{route}                        histogram: waiting for a slot
    edged_time_to_first_token_seconds{route}          histogram
    edged_request_duration_seconds{route}             histogram: whole request
    edged_escalations_total{reason}                   local -> cloud decisions
    edged_fallbacks_total{reason}                     a degraded answer from the other side
    edged_sensitive_detections_total{entity_type}     sensitive values found in prompts
    edged_redactions_total                            requests escalated redacted
    edged_blocked_escalations_total{data_class}       escalations the privacy policy refused
    edged_device_*                                    device load (CPU, load, memory, temperature, battery)
    edged_engine_queue_depth, edged_engine_slots_busy, edged_engine_slots
    edged_link_state{edged_link_state}, edged_link_rtt_seconds
    edged_profile_version, edged_cloud_budget_remaining{resource,window}, edged_build_info
    process_*                                         the daemon's own CPU, memory and file descriptors

Label values that come from outside a fixed set (reasons, entity types, data classes) are reduced to a short
snake_case code and capped in number, so a free-text reason cannot explode the series count.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import re
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import start_http_server

from edged import __version__
from edged.config.metrics import MetricsSettings
from edged.domain import Answer, Mode, Source
from edged.errors import ConfigError, EdgedError

logger = logging.getLogger(__name__)

NO_ROUTE: Final = "none"  # a request that failed before it was routed
OTHER: Final = "other"  # label value once a label has MAX_LABEL_VALUES distinct values
MAX_LABEL_VALUES: Final = 64
LINK_STATES: Final = ("disabled", "connecting", "connected", "disconnected")

QUEUE_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TTFT_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOTAL_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

_NOT_CODE = re.compile(r"[^a-z0-9]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def label_code(text: str) -> str:
    """A short snake_case code for a label value: "low_confidence: 0.31 < 0.5" -> "low_confidence"."""
    head = text.split(":", 1)[0]
    code = _NOT_CODE.sub("_", _CAMEL_BOUNDARY.sub("_", head).lower()).strip("_")
    return code[:48] or "unknown"


def outcome_of(error: BaseException) -> str:
    """The outcome label of a failed request: the edged error class in snake_case, else "internal_error"."""
    for cls in type(error).__mro__:
        if issubclass(cls, EdgedError) and cls is not EdgedError:
            return label_code(cls.__name__)
    return "internal_error"


class _BoundedLabel:
    """Keeps one label's distinct values under a cap; values past it are counted as "other"."""

    def __init__(self, name: str, limit: int) -> None:
        self._name = name
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._warned = False

    def value(self, text: str) -> str:
        code = label_code(text)
        with self._lock:
            if code in self._seen:
                return code
            if len(self._seen) < self._limit:
                self._seen.add(code)
                return code
            warn, self._warned = not self._warned, True
        if warn:
            logger.warning(
                "metric label %s has %d values; counting new ones as %r", self._name, self._limit, OTHER
            )
        return OTHER


class EdgedMetrics:
    """The daemon's metrics: one registry, every series, and the calls that record into them (thread-safe)."""

    def __init__(self, device_id: str = "", *, max_label_values: int = MAX_LABEL_VALUES) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_request_series(self.registry)
        self._define_privacy_series(self.registry)
        self._define_load_series(self.registry)
        self._define_state_series(self.registry)
        ProcessCollector(registry=self.registry)

        self.build.info({"version": __version__, "device_id": device_id})
        self.link_state.state("disabled")
        self.link_rtt.set(math.nan)
        for gauge in (self.temperature, self.battery_percent, self.battery_charging):
            gauge.set(math.nan)
        self._reasons = _BoundedLabel("reason", max_label_values)
        self._fallback_reasons = _BoundedLabel("fallback reason", max_label_values)
        self._entity_types = _BoundedLabel("entity_type", max_label_values)
        self._data_classes = _BoundedLabel("data_class", max_label_values)

    def _define_request_series(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "edged_requests",
            "Requests by mode, route (local, cloud, none) and outcome (ok or the error).",
            ["mode", "route", "outcome"],
            registry=r,
        )
        self.tokens = Counter(
            "edged_tokens", "Tokens by route and kind (prompt, completion).", ["route", "kind"], registry=r
        )
        self.queue_seconds = Histogram(
            "edged_queue_seconds",
            "Time a request waited for a slot.",
            ["route"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "edged_time_to_first_token_seconds",
            "Time from receipt to the first answer token.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "edged_request_duration_seconds",
            "Time from receipt to the complete answer.",
            ["route"],
            buckets=TOTAL_BUCKETS,
            registry=r,
        )
        self.escalations = Counter(
            "edged_escalations", "Requests sent to the cloud, by reason.", ["reason"], registry=r
        )
        self.fallbacks = Counter(
            "edged_fallbacks",
            "Answers from the other side than asked (degraded), by reason.",
            ["reason"],
            registry=r,
        )

    def _define_privacy_series(self, r: CollectorRegistry) -> None:
        self.detections = Counter(
            "edged_sensitive_detections",
            "Sensitive values found, by entity type.",
            ["entity_type"],
            registry=r,
        )
        self.redactions = Counter(
            "edged_redactions", "Requests escalated with sensitive values redacted.", registry=r
        )
        self.blocked_escalations = Counter(
            "edged_blocked_escalations",
            "Escalations the privacy policy kept on the device, by data class.",
            ["data_class"],
            registry=r,
        )

    def _define_load_series(self, r: CollectorRegistry) -> None:
        self.cpu_percent = Gauge(
            "edged_device_cpu_percent",
            "CPU used by everything except edged, percent of all cores (what the cpu_percent limit judges).",
            registry=r,
        )
        self.edged_cpu_percent = Gauge(
            "edged_process_cpu_percent", "CPU used by edged's own process, percent of all cores.", registry=r
        )
        self.load1 = Gauge("edged_device_load1", "Device 1-minute load average.", registry=r)
        self.memory_available = Gauge(
            "edged_device_memory_available_bytes", "Device memory available to new work.", registry=r
        )
        self.temperature = Gauge(
            "edged_device_temperature_celsius", "Hottest device temperature sensor (NaN: none).", registry=r
        )
        self.battery_percent = Gauge(
            "edged_device_battery_percent", "Battery level (NaN: no battery).", registry=r
        )
        self.battery_charging = Gauge(
            "edged_device_battery_charging",
            "1 while on external power, 0 on battery (NaN: no battery).",
            registry=r,
        )
        self.queue_depth = Gauge("edged_engine_queue_depth", "Requests waiting for a slot.", registry=r)
        self.slots_busy = Gauge("edged_engine_slots_busy", "Engine slots decoding a request.", registry=r)
        self.slots = Gauge("edged_engine_slots", "Engine slots configured.", registry=r)

    def _define_state_series(self, r: CollectorRegistry) -> None:
        self.link_state = Enum(
            "edged_link_state", "State of the MQTT link to the cloud.", states=list(LINK_STATES), registry=r
        )
        self.link_rtt = Gauge(
            "edged_link_rtt_seconds", "Last measured broker round trip (NaN: unknown).", registry=r
        )
        self.profile_version = Gauge(
            "edged_profile_version",
            "Version of the applied fleet profile (the higher of its group and device layers; 0: none).",
            registry=r,
        )
        self.budget_remaining = Gauge(
            "edged_cloud_budget_remaining",
            "Cloud budget left in this window.",
            ["resource", "window"],
            registry=r,
        )
        self.build = Info("edged_build", "edged version and device id.", registry=r)

    # -- requests ------------------------------------------------------------------------------------------

    def record_answer(self, mode: Mode, answer: Answer) -> None:
        """A request answered (unary, or a stream's final chunk): count it, its tokens and its latencies."""
        route = answer.provenance.source.value.lower()
        self.requests.labels(mode.value.lower(), route, "ok").inc()
        self.tokens.labels(route, "prompt").inc(answer.usage.prompt_tokens)
        self.tokens.labels(route, "completion").inc(answer.usage.completion_tokens)
        self.queue_seconds.labels(route).observe(answer.timing.queue_ms / 1000)
        self.ttft_seconds.labels(route).observe(answer.timing.time_to_first_token_ms / 1000)
        self.request_seconds.labels(route).observe(answer.timing.total_ms / 1000)

    def record_failure(self, mode: Mode, error: BaseException, route: Source | None = None) -> None:
        """A request that ended with an error; route is None when it failed before it was routed."""
        route_label = NO_ROUTE if route is None else route.value.lower()
        self.requests.labels(mode.value.lower(), route_label, outcome_of(error)).inc()

    def record_escalation(self, reason: str) -> None:
        """A request goes to the cloud; reason is a code ("low_confidence") or "code: detail"."""
        self.escalations.labels(self._reasons.value(reason)).inc()

    def record_fallback(self, reason: str) -> None:
        """A request answered by the other side than asked (link down, deadline, budget spent)."""
        self.fallbacks.labels(self._fallback_reasons.value(reason)).inc()

    # -- sovereignty ---------------------------------------------------------------------------------------

    def record_detections(self, counts: Mapping[str, int]) -> None:
        """Sensitive values found in one request, by entity type (e.g. {"EMAIL_ADDRESS": 2})."""
        for entity_type, count in counts.items():
            if count > 0:
                self.detections.labels(self._entity_types.value(entity_type)).inc(count)

    def record_redaction(self) -> None:
        self.redactions.inc()

    def record_blocked_escalation(self, data_class: str) -> None:
        self.blocked_escalations.labels(self._data_classes.value(data_class)).inc()

    # -- state ---------------------------------------------------------------------------------------------

    def set_device_load(
        self,
        *,
        cpu_percent: float,
        load1: float,
        memory_available_bytes: int,
        temperature_celsius: float | None = None,
        battery_percent: float | None = None,
        battery_charging: bool | None = None,
        edged_cpu_percent: float = 0.0,
    ) -> None:
        """One device load sample; None means the device has no such sensor (exported as NaN)."""
        self.cpu_percent.set(cpu_percent)
        self.edged_cpu_percent.set(edged_cpu_percent)
        self.load1.set(load1)
        self.memory_available.set(memory_available_bytes)
        self.temperature.set(math.nan if temperature_celsius is None else temperature_celsius)
        self.battery_percent.set(math.nan if battery_percent is None else battery_percent)
        self.battery_charging.set(math.nan if battery_charging is None else float(battery_charging))

    def set_engine_load(self, *, queue_depth: int, slots_busy: int, slots: int) -> None:
        self.queue_depth.set(queue_depth)
        self.slots_busy.set(slots_busy)
        self.slots.set(slots)

    def set_link(self, state: str, rtt_s: float | None = None) -> None:
        """The MQTT link's state (one of LINK_STATES) and its last round trip."""
        if state not in LINK_STATES:
            raise ValueError(f"link state {state!r} is not one of {', '.join(LINK_STATES)}")
        self.link_state.state(state)
        self.link_rtt.set(math.nan if rtt_s is None else rtt_s)

    def set_profile_version(self, version: int) -> None:
        self.profile_version.set(version)

    def set_budget_remaining(self, resource: str, window: str, remaining: float) -> None:
        """Cloud budget left, e.g. ("requests", "hour", 12) or ("tokens", "day", 40_000)."""
        self.budget_remaining.labels(label_code(resource), label_code(window)).set(remaining)


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (`--metrics-port`), on loopback unless configured otherwise."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, registry: CollectorRegistry, settings: MetricsSettings) -> MetricsEndpoint | None:
        """The endpoint [metrics] asks for, or None when no port is set."""
        if settings.port is None:
            return None
        return cls(registry, settings.host, settings.port)

    @property
    def port(self) -> int:
        """The bound port (the chosen one when constructed with port 0); 0 before start()."""
        return 0 if self._server is None else int(self._server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Bind and serve in a daemon thread; a port in use or a bad address is a ConfigError naming it."""
        if not _is_loopback(self._host):
            logger.warning(
                "metrics endpoint on non-loopback address %s: anyone who can reach it can read it", self._host
            )
        try:
            self._server, self._thread = start_http_server(self._port, self._host, self._registry)
        except OSError as exc:
            in_use = exc.errno == errno.EADDRINUSE
            key, value = ("metrics.port", self._port) if in_use else ("metrics.host", self._host)
            reason = f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}"
            raise ConfigError("metrics endpoint", [(key, value, reason)]) from None
        logger.info("serving metrics on %s", self.url)

    def close(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._server = self._thread = None

    def __enter__(self) -> MetricsEndpoint:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
