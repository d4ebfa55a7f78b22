"""The metrics registry (every named series, recorded values, bounded labels) and its real HTTP endpoint."""

from __future__ import annotations

import logging
import math
import socket
import urllib.request
from collections.abc import Iterator

import pytest

from edged.config.metrics import MetricsSettings
from edged.domain import Answer, Mode, Provenance, Source, Timing, Usage
from edged.errors import CloudUnavailable, ConfigError, ModelIntegrityError, Overloaded
from edged.telemetry.metrics import EdgedMetrics, MetricsEndpoint, label_code, outcome_of

NAMED_SERIES = {
    "edged_requests_total",
    "edged_tokens_total",
    "edged_queue_seconds_bucket",
    "edged_time_to_first_token_seconds_bucket",
    "edged_request_duration_seconds_bucket",
    "edged_escalations_total",
    "edged_fallbacks_total",
    "edged_sensitive_detections_total",
    "edged_redactions_total",
    "edged_blocked_escalations_total",
    "edged_device_cpu_percent",
    "edged_process_cpu_percent",
    "edged_device_load1",
    "edged_device_memory_available_bytes",
    "edged_device_temperature_celsius",
    "edged_device_battery_percent",
    "edged_device_battery_charging",
    "edged_engine_queue_depth",
    "edged_engine_slots_busy",
    "edged_engine_slots",
    "edged_link_state",
    "edged_link_rtt_seconds",
    "edged_profile_version",
    "edged_build_info",
    "process_resident_memory_bytes",
}


def answer(source: Source = Source.LOCAL, prompt: int = 12, completion: int = 30) -> Answer:
    return Answer(
        request_id="r1",
        text="Paris.",
        finish_reason="stop",
        provenance=Provenance(source=source, model="smollm2-135m-instruct-q4_1"),
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        timing=Timing(queue_ms=4.0, time_to_first_token_ms=80.0, total_ms=420.0),
    )


@pytest.fixture
def metrics() -> EdgedMetrics:
    return EdgedMetrics(device_id="pi5-kitchen")


def value(metrics: EdgedMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_a_recorded_answer_counts_request_tokens_and_latencies(metrics: EdgedMetrics) -> None:
    metrics.record_answer(Mode.AUTO, answer())
    metrics.record_answer(Mode.AUTO, answer(prompt=8, completion=2))
    metrics.record_answer(Mode.CLOUD_ONLY, answer(Source.CLOUD))

    assert value(metrics, "edged_requests_total", mode="auto", route="local", outcome="ok") == 2
    assert value(metrics, "edged_requests_total", mode="cloud_only", route="cloud", outcome="ok") == 1
    assert value(metrics, "edged_tokens_total", route="local", kind="prompt") == 20
    assert value(metrics, "edged_tokens_total", route="local", kind="completion") == 32
    assert value(metrics, "edged_queue_seconds_count", route="local") == 2
    assert value(metrics, "edged_queue_seconds_sum", route="local") == pytest.approx(0.008)
    assert value(metrics, "edged_time_to_first_token_seconds_bucket", route="local", le="0.1") == 2
    assert value(metrics, "edged_time_to_first_token_seconds_bucket", route="local", le="0.05") == 0
    assert value(metrics, "edged_request_duration_seconds_sum", route="cloud") == pytest.approx(0.42)


def test_failures_are_counted_by_error_class(metrics: EdgedMetrics) -> None:
    metrics.record_failure(Mode.AUTO, Overloaded("all 4 slots busy"))
    metrics.record_failure(Mode.CLOUD_ONLY, CloudUnavailable("link down"), route=Source.CLOUD)
    metrics.record_failure(Mode.LOCAL_ONLY, RuntimeError("bug"), route=Source.LOCAL)

    assert value(metrics, "edged_requests_total", mode="auto", route="none", outcome="overloaded") == 1
    assert (
        value(metrics, "edged_requests_total", mode="cloud_only", route="cloud", outcome="cloud_unavailable")
        == 1
    )
    assert (
        value(metrics, "edged_requests_total", mode="local_only", route="local", outcome="internal_error")
        == 1
    )


def test_outcome_and_label_codes() -> None:
    assert outcome_of(ModelIntegrityError("sha256 mismatch")) == "model_integrity_error"
    assert outcome_of(KeyError("x")) == "internal_error"
    assert label_code("low_confidence: mean logprob -2.3 < -1.5") == "low_confidence"
    assert label_code("Device Load") == "device_load"
    assert label_code("EMAIL_ADDRESS") == "email_address"
    assert label_code("   ") == "unknown"


def test_routing_and_privacy_counters(metrics: EdgedMetrics) -> None:
    metrics.record_escalation("low_confidence: first-token margin 0.02 < 0.1")
    metrics.record_escalation("low_confidence: mean logprob -3.1 < -1.5")
    metrics.record_fallback("link_down")
    metrics.record_detections({"EMAIL_ADDRESS": 2, "PERSON": 1, "IBAN_CODE": 0})
    metrics.record_redaction()
    metrics.record_blocked_escalation("health")

    assert value(metrics, "edged_escalations_total", reason="low_confidence") == 2
    assert value(metrics, "edged_fallbacks_total", reason="link_down") == 1
    assert value(metrics, "edged_sensitive_detections_total", entity_type="email_address") == 2
    assert value(metrics, "edged_sensitive_detections_total", entity_type="person") == 1
    assert value(metrics, "edged_sensitive_detections_total", entity_type="iban_code") is None
    assert value(metrics, "edged_redactions_total") == 1
    assert value(metrics, "edged_blocked_escalations_total", data_class="health") == 1


def test_free_text_labels_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    metrics = EdgedMetrics(max_label_values=3)
    with caplog.at_level(logging.WARNING, logger="edged.telemetry.metrics"):
        for n in range(6):
            metrics.record_escalation(f"reason {n}")
    assert value(metrics, "edged_escalations_total", reason="reason_2") == 1
    assert value(metrics, "edged_escalations_total", reason="reason_3") is None
    assert value(metrics, "edged_escalations_total", reason="other") == 3
    assert len([r for r in caplog.records if "counting new ones" in r.getMessage()]) == 1


def test_load_link_profile_and_budget_gauges(metrics: EdgedMetrics) -> None:
    assert math.isnan(value(metrics, "edged_device_battery_percent") or 0.0)
    assert value(metrics, "edged_link_state", edged_link_state="disabled") == 1

    metrics.set_device_load(
        cpu_percent=37.5, load1=1.25, memory_available_bytes=3 << 30, temperature_celsius=61.0
    )
    metrics.set_engine_load(queue_depth=2, slots_busy=4, slots=4)
    metrics.set_link("connected", rtt_s=0.0007)
    metrics.set_profile_version(17)
    metrics.set_budget_remaining("requests", "hour", 42)

    assert value(metrics, "edged_device_cpu_percent") == 37.5
    assert value(metrics, "edged_device_memory_available_bytes") == 3 << 30
    assert value(metrics, "edged_device_temperature_celsius") == 61.0
    assert math.isnan(value(metrics, "edged_device_battery_charging") or 0.0)
    assert value(metrics, "edged_engine_slots_busy") == 4
    assert value(metrics, "edged_link_state", edged_link_state="connected") == 1
    assert value(metrics, "edged_link_state", edged_link_state="disabled") == 0
    assert value(metrics, "edged_link_rtt_seconds") == 0.0007
    assert value(metrics, "edged_profile_version") == 17
    assert value(metrics, "edged_cloud_budget_remaining", resource="requests", window="hour") == 42
    assert value(metrics, "edged_build_info", version="0.1.0", device_id="pi5-kitchen") == 1

    with pytest.raises(ValueError, match="'up' is not one of disabled, connecting, connected, disconnected"):
        metrics.set_link("up")


def test_each_daemon_owns_its_registry() -> None:
    first, second = EdgedMetrics(), EdgedMetrics()
    first.record_redaction()
    assert first.registry.get_sample_value("edged_redactions_total") == 1
    assert second.registry.get_sample_value("edged_redactions_total") == 0


@pytest.fixture
def endpoint(metrics: EdgedMetrics) -> Iterator[MetricsEndpoint]:
    with MetricsEndpoint(metrics.registry, "127.0.0.1", 0) as endpoint:
        yield endpoint


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def test_the_endpoint_serves_every_named_series(metrics: EdgedMetrics, endpoint: MetricsEndpoint) -> None:
    metrics.record_answer(Mode.AUTO, answer())
    metrics.record_failure(Mode.AUTO, Overloaded("full"))
    metrics.record_escalation("low_confidence")
    metrics.record_fallback("deadline")
    metrics.record_detections({"PERSON": 1})
    metrics.record_redaction()
    metrics.record_blocked_escalation("health")

    assert endpoint.port > 0
    text = scrape(endpoint.url)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert names >= NAMED_SERIES
    assert 'edged_requests_total{mode="auto",outcome="ok",route="local"} 1.0' in text
    assert 'edged_requests_total{mode="auto",outcome="overloaded",route="none"} 1.0' in text


def test_endpoint_stops_serving_when_closed(metrics: EdgedMetrics) -> None:
    endpoint = MetricsEndpoint(metrics.registry)
    endpoint.start()
    port = endpoint.port
    scrape(endpoint.url)
    endpoint.close()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_a_port_in_use_is_a_config_error_naming_the_key(
    metrics: EdgedMetrics, endpoint: MetricsEndpoint
) -> None:
    second = MetricsEndpoint(metrics.registry, "127.0.0.1", endpoint.port)
    with pytest.raises(ConfigError, match=rf"metrics.port = {endpoint.port}: cannot listen on 127.0.0.1"):
        second.start()


def test_an_address_not_on_this_host_is_a_config_error_and_warned_about(
    metrics: EdgedMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = MetricsEndpoint(metrics.registry, "192.0.2.1", 0)  # TEST-NET-1: never assigned here
    with (
        caplog.at_level(logging.WARNING, logger="edged.telemetry.metrics"),
        pytest.raises(ConfigError, match=r"metrics.host = '192.0.2.1'"),
    ):
        endpoint.start()
    assert "non-loopback" in caplog.text


def test_endpoint_from_settings(metrics: EdgedMetrics) -> None:
    assert MetricsEndpoint.from_settings(metrics.registry, MetricsSettings()) is None
    endpoint = MetricsEndpoint.from_settings(metrics.registry, MetricsSettings(port=9464, host="::1"))
    assert endpoint is not None
    assert endpoint.port == 0  # not started
    assert endpoint.url == "http://[::1]:0/metrics"
