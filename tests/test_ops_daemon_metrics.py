"""`/metrics` of a real `edged serve --metrics-port N` after a few requests: the named series, sane values.

One daemon for the module; the workload is fixed (two AUTO answers, a LOCAL_ONLY answer and a LOCAL_ONLY
stream, one request refused for its max_tokens), so every count below is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client.metrics_core import Metric

from edged import __version__
from edged.v1 import inference_pb2 as pb
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
        yield Scraped(scrape(port), usages)


def test_requests_are_counted_by_mode_route_and_outcome(scraped: Scraped) -> None:
    families = scraped.families
    assert sample(families, "edged_requests_total", mode="auto", route="local", outcome="ok") == 2
    assert sample(families, "edged_requests_total", mode="local_only", route="local", outcome="ok") == 2


def test_a_refused_request_is_counted_with_its_outcome(scraped: Scraped) -> None:
    """Operators see clients sending bad requests: outcome invalid_request, route none (never routed)."""
    families = scraped.families
    assert sample(families, "edged_requests_total", mode="auto", route="none", outcome="invalid_request") == 1


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
