"""Load- and budget-aware routing through a real daemon: gRPC in, MQTT out to a real cloud_bridge worker (sleep
backend, on its own event loop thread) through a real Mosquitto, and back.

The device load the daemon sees is injected at the SystemSource seam (FakeSystemSource), never this busy test
machine's. No assertion measures time: waits for state are bounded and fail by naming what they waited for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from edged.routing.load import FakeSystemSource, SystemReading
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import MODEL_WAIT_S, bridge_config, wait_until
from tests.sovereignty_parts import worker_thread

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

CLOUD_TEXT = "hello from the cloud"  # what bridge_config's sleep backend answers
PROMPT = "How do tides work?"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(workdir=tmp_path_factory.mktemp("broker")) as running:
        yield running


def daemon_config(broker: MosquittoBroker, device: str, **sections: Any) -> dict[str, Any]:
    return {
        "device_id": device,
        "engine": {"threads": 1},
        "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        **sections,
    }


def ask(mode: pb.Mode.ValueType, **extra: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(prompt=PROMPT, mode=mode, max_tokens=4, temperature=0.0, **extra)


def refused(daemon: RunningDaemon, request: pb.GenerateRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        daemon.stub.Generate(request, timeout=MODEL_WAIT_S)
    error: grpc.RpcError = caught.value
    return error


def workers_online(daemon: RunningDaemon) -> int:
    cloud = daemon.daemon.runtime.cloud
    assert cloud is not None, "the daemon has no cloud link"
    return cloud.client.workers_online()


def wait_for_worker(daemon: RunningDaemon) -> None:
    wait_until(lambda: workers_online(daemon) >= 1, "the daemon to see the worker's presence")


def wait_connected(daemon: RunningDaemon) -> None:
    wait_until(lambda: daemon.status().link.state == "connected", "the daemon's link to connect")


# ---- device load -----------------------------------------------------------------------------------------


def test_high_device_load_sends_auto_to_the_cloud_and_status_shows_it(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    load = FakeSystemSource(SystemReading(cpu_count=2, memory_available_mb=4096.0, cpu_percent=97.0))
    worker = bridge_config(broker.url, "busy-worker", tmp_path)
    with (
        worker_thread(worker),
        running_daemon(tmp_path / "edged", daemon_config(broker, "busy-device"), load=load) as daemon,
    ):
        wait_for_worker(daemon)
        shown = daemon.status().load
        assert (shown.cpu_percent, list(shown.over_limits)) == (97.0, ["cpu_percent"])
        # a low router threshold: only the load can send this request to the cloud before generating
        response = daemon.stub.Generate(ask(pb.AUTO, router_threshold=0.0), timeout=MODEL_WAIT_S)
        p = response.provenance
        assert (p.source, response.text, p.degraded) == (pb.CLOUD, CLOUD_TEXT, False)
        reasons = list(p.reasons)
        assert reasons[:2] == ["mode=AUTO", "over_limit:cpu_percent"]
        assert reasons[-1] == "answered=cloud"

        load.set(cpu_percent=12.0)
        wait_until(lambda: not daemon.status().load.over_limits, "the calm sample to reach GetStatus")
        assert daemon.status().load.cpu_percent == 12.0
        calm = daemon.stub.Generate(ask(pb.AUTO, router_threshold=0.0), timeout=MODEL_WAIT_S)
        assert not [r for r in calm.provenance.reasons if r.startswith("over_limit")], calm.provenance


# ---- the cloud budget ------------------------------------------------------------------------------------


def test_a_spent_budget_refuses_cloud_only_degrades_prefer_cloud_and_survives_a_restart(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    config = daemon_config(broker, "thrifty-device", budget={"requests_per_hour": 2})
    worker = bridge_config(broker.url, "thrifty-worker", tmp_path)
    with running_daemon(tmp_path / "edged", config) as daemon:
        wait_connected(daemon)
        # no worker yet: the escalation fails, and what was sent still counts
        error = refused(daemon, ask(pb.CLOUD_ONLY))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        budget = daemon.status().budget
        assert (budget.requests_this_hour, budget.exhausted) == (1, False)
        assert budget.tokens_this_hour > 0
        failed_tokens = budget.tokens_this_hour

        with worker_thread(worker):
            wait_for_worker(daemon)
            answered = daemon.stub.Generate(ask(pb.CLOUD_ONLY), timeout=MODEL_WAIT_S)
            assert (answered.provenance.source, answered.text) == (pb.CLOUD, CLOUD_TEXT)
            used = answered.usage.prompt_tokens + answered.usage.completion_tokens
            assert used > 0

            budget = daemon.status().budget
            assert (budget.requests_this_hour, budget.requests_per_hour_limit) == (2, 2)
            assert budget.tokens_this_hour == failed_tokens + used
            assert budget.exhausted

            error = refused(daemon, ask(pb.CLOUD_ONLY))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the cloud budget is spent" in (error.details() or "")
            assert "budget_exhausted:requests_per_hour" in (error.details() or "")

            local = daemon.stub.Generate(ask(pb.PREFER_CLOUD), timeout=MODEL_WAIT_S)
            p = local.provenance
            assert (p.source, p.degraded) == (pb.LOCAL, True)
            assert list(p.reasons) == [
                "mode=PREFER_CLOUD",
                "budget_exhausted:requests_per_hour",
                "answered=local",
            ]
            assert daemon.status().budget.requests_this_hour == 2  # a refusal charges nothing

    # a new process on the same state directory: the spent hour is still spent
    with worker_thread(worker), running_daemon(tmp_path / "edged", config) as restarted:
        budget = restarted.status().budget
        assert (budget.requests_this_hour, budget.requests_today) == (2, 2)
        assert budget.tokens_this_hour == failed_tokens + used
        assert budget.exhausted
        wait_for_worker(restarted)
        error = refused(restarted, ask(pb.CLOUD_ONLY))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "budget_exhausted:requests_per_hour" in (error.details() or "")
