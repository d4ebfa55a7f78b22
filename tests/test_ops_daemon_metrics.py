"""`/metrics` of a real `edged serve --metrics-port N` after a few requests: the named series, sane values.

One daemon for the module; the workload is fixed (two AUTO answers, a LOCAL_ONLY answer and a LOCAL_ONLY
stream, one request refused for its max_tokens), so every count below is exact. The fleet profile's version
gauge has a daemon of its own, in a fleet on a real Mosquitto.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client.metrics_core import Metric

from edged import __version__
from edged.fleet.envelope import Target
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.escalation_parts import wait_until
from tests.fleet_support import fleet_kit, profile_doc
from tests.ops_support import free_port, sample, scrape, served_daemon, small_engine_config

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"
HISTOGRAMS = ("edged_queue_seconds", "edged_time_to_first_token_seconds", "edged_request_duration_seconds")


@dataclass
class Scraped:
    families: dict[str, Metric]
    usages: list[pb.Usage]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    tmp = tmp_path_factory.mktemp("metrics")
    port = free_port()
    with served_daemon(tmp, small_engine_config(tmp), args=("--metrics-port", str(port))) as edged:
        edged.wait_ready()
        usages = [edged.generate(prompt=QUESTION, max_tokens=8).usage for _ in range(2)]
        usages.append(edged.generate(prompt=QUESTION, max_tokens=8, mode=pb.LOCAL_ONLY).usage)
        *_, last = edged.stream(prompt=QUESTION, max_tokens=8, mode=pb.LOCAL_ONLY)
        assert last.done
        usages.append(last.usage)
        with pytest.raises(grpc.RpcError) as refused:
            edged.generate(prompt=QUESTION, max_tokens=100_000)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as late:  # edged ends the call at its deadline, mid-answer
            list(
                edged.stub.GenerateStream(
                    pb.GenerateRequest(
                        prompt="Write a long essay about rivers.", max_tokens=256, mode=pb.PREFER_LOCAL
                    ),
                    timeout=1.0,
                )
            )
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        yield Scraped(scrape(port), usages)


def test_requests_are_counted_by_mode_route_and_outcome(scraped: Scraped) -> None:
    families = scraped.families
    assert sample(families, "edged_requests_total", mode="auto", route="local", outcome="ok") == 2
    assert sample(families, "edged_requests_total", mode="local_only", route="local", outcome="ok") == 2


def test_a_refused_request_is_counted_with_its_outcome(scraped: Scraped) -> None:
    """Operators see clients sending bad requests: outcome invalid_request, route none (never routed)."""
    families = scraped.families
    assert sample(families, "edged_requests_total", mode="auto", route="none", outcome="invalid_request") == 1


def test_a_request_cut_off_at_its_deadline_is_counted_as_deadline_exceeded(scraped: Scraped) -> None:
    """Not as `cancelled`: edged itself ended the call at the caller's deadline."""
    families = scraped.families
    labels = {"mode": "prefer_local", "route": "local"}
    assert sample(families, "edged_requests_total", outcome="deadline_exceeded", **labels) == 1
    counted = [
        s.labels["outcome"] for s in families["edged_requests"].samples if s.name == "edged_requests_total"
    ]
    assert "cancelled" not in counted


def test_tokens_add_up_to_the_answers_usage(scraped: Scraped) -> None:
    prompt = sum(u.prompt_tokens for u in scraped.usages)
    completion = sum(u.completion_tokens for u in scraped.usages)
    assert prompt > 0
    assert completion > 0
    assert sample(scraped.families, "edged_tokens_total", route="local", kind="prompt") == prompt
    assert sample(scraped.families, "edged_tokens_total", route="local", kind="completion") == completion


@pytest.mark.parametrize("name", HISTOGRAMS)
def test_latency_histograms_count_every_answer(scraped: Scraped, name: str) -> None:
    families = scraped.families
    assert sample(families, f"{name}_count", route="local") == len(scraped.usages)
    assert sample(families, f"{name}_bucket", route="local", le="+Inf") == len(scraped.usages)
    assert sample(families, f"{name}_sum", route="local") >= 0


def test_latency_sums_are_ordered(scraped: Scraped) -> None:
    """Each answer's first token comes after its queue wait and before its end."""
    total = sample(scraped.families, "edged_request_duration_seconds_sum", route="local")
    ttft = sample(scraped.families, "edged_time_to_first_token_seconds_sum", route="local")
    queue = sample(scraped.families, "edged_queue_seconds_sum", route="local")
    assert total >= ttft >= queue >= 0
    assert total > 0


def test_engine_gauges_show_the_configured_slots(scraped: Scraped) -> None:
    families = scraped.families
    assert sample(families, "edged_engine_slots") == 2
    assert 0 <= sample(families, "edged_engine_slots_busy") <= 2
    assert 0 <= sample(families, "edged_engine_queue_depth") <= 32


def test_build_link_and_process_series(scraped: Scraped) -> None:
    families = scraped.families
    assert sample(families, "edged_build_info", version=__version__, device_id="ops-test") == 1
    assert sample(families, "edged_link_state", edged_link_state="disabled") == 1
    assert sample(families, "edged_link_state", edged_link_state="connected") == 0
    assert sample(families, "process_resident_memory_bytes") > 50 * 2**20  # the model is mapped in


@pytest.mark.mqtt
def test_profile_version_shows_each_applied_push_and_the_profile_replayed_at_start(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    group = Target("group", "pi5")
    port = free_port()
    args = ("--metrics-port", str(port))
    with fleet_kit(tmp_path / "fleet", mosquitto) as kit:
        config = small_engine_config(
            tmp_path,
            broker={"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            fleet={"group": "pi5", "key": str(kit.public_key)},
        )
        with served_daemon(tmp_path, config, args=args) as edged:
            edged.wait_ready()
            assert sample(scrape(port), "edged_profile_version") == 0
            wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")
            for version in (1, 2):
                since = kit.mark()
                kit.push(group, profile_doc(f"pi5-v{version}", routing={"router_threshold": 0.3}), version)
                assert kit.ack("ops-test", group, version, since=since).outcome == "applied"
                # The ack comes after the apply: the gauge shows this version, not the one before.
                assert sample(scrape(port), "edged_profile_version") == version
            edged.send(signal.SIGTERM)
            assert edged.wait_exit() == 0, edged.describe()

    # The next start cannot reach a broker: the replayed profile's version is there from READY=1 on.
    config["broker"]["url"] = f"mqtt://127.0.0.1:{free_port()}"
    again = tmp_path / "again"
    again.mkdir()
    with served_daemon(again, config, args=args) as edged:
        edged.wait_ready()
        assert edged.status().profile.name == "pi5-v2"
        assert sample(scrape(port), "edged_profile_version") == 2
