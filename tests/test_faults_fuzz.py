"""The fault and fuzz suite's deterministic part (issue 17, "What to build" 2) against a real daemon.

Property-based: every GenerateRequest field that reaches the generation path, and JSON Schemas built to stress the
grammar converter (nesting, repetition counts, contradictory bounds, deep brackets), through a real daemon on the
bundled model; each answer is a finished answer within max_tokens or a refusal naming its field, and the daemon
serves on. Then malformed MQTT payloads on every topic the daemon and a real cloud_bridge worker subscribe to.

Hypothesis runs derandomized (the same examples on every run, no example database) with no per-example deadline:
a slow machine makes it slower, never flaky. Spoofed and replayed replies, SIGHUP with broken and empty configs and
the profile attacks have their tests beside the code they exercise (test_escalation_client, test_ops_daemon,
test_fleet_agent, test_fleet_envelope); bench/faults.py counts all areas in one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.fleet.envelope import Target
from edged.fleet.topics import FleetTopics
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import spawn_worker, stop_process, wait_until, worker_config_file
from tests.fleet_support import make_signer
from tests.fuzz_parts import (
    RawClient,
    Verdict,
    call,
    garbage_payloads,
    generate_requests,
    json_schemas,
    judge_answer,
    judge_schema,
)

pytestmark = pytest.mark.slow

SERVING = health_pb2.HealthCheckResponse.SERVING
RPC_TIMEOUT_S = 120.0  # generous: a call that runs into it is a hang, reported as such
FUZZ = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def edged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    config = {"engine": {"default_max_tokens": 4, "max_tokens_cap": 64}}
    with running_daemon(tmp_path_factory.mktemp("fuzz"), config) as running:
        yield running


def still_serving(edged: RunningDaemon) -> None:
    assert edged.thread.is_alive(), f"the daemon stopped (exit code {edged.exit_code})"
    assert edged.health() == SERVING
    idle = edged.wait_idle()
    assert (idle.slots_busy, idle.queue_depth) == (0, 0), idle


def plain_answer(edged: RunningDaemon) -> None:
    answer = edged.stub.Generate(
        pb.GenerateRequest(prompt="Say OK.", max_tokens=1, temperature=0.0, mode=pb.Mode.LOCAL_ONLY),
        timeout=RPC_TIMEOUT_S,
    )
    assert answer.usage.completion_tokens >= 1, answer


class Refusal(grpc.RpcError):
    """A gRPC error as the client sees one, for the judges' controls."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_the_judges_pass_only_what_the_rules_allow() -> None:
    """Positive and negative controls: a judge that passes everything would make the fuzz tests unable to fail."""
    request = pb.GenerateRequest(prompt="Hi", max_tokens=2)
    code = grpc.StatusCode
    assert judge_answer(request, None, Refusal(code.INVALID_ARGUMENT, "max_tokens: 0 is outside 1..64")).ok
    assert judge_answer(request, None, Refusal(code.INVALID_ARGUMENT, "messages[3].role: 'x' is not")).ok
    assert not judge_answer(request, None, Refusal(code.INVALID_ARGUMENT, "something went wrong")).ok
    assert not judge_answer(request, None, Refusal(code.INTERNAL, "RecursionError")).ok
    assert not judge_answer(request, None, Refusal(code.UNKNOWN, "Exception calling application")).ok
    assert not judge_answer(
        request, None, Refusal(code.NOT_FOUND, "model: unknown model ''")
    ).ok  # none named
    assert not judge_answer(request, None, Refusal(code.FAILED_PRECONDITION, "no broker")).ok  # mode AUTO
    answer = pb.GenerateResponse(finish_reason="length")
    answer.usage.completion_tokens = 2
    assert judge_answer(request, answer, None).ok
    answer.usage.completion_tokens = 3
    assert not judge_answer(request, answer, None).ok
    assert not judge_answer(request, pb.GenerateResponse(finish_reason=""), None).ok
    assert judge_schema(None, Refusal(code.INVALID_ARGUMENT, "json_schema: nests 40 levels")).ok
    assert not judge_schema(None, Refusal(code.INVALID_ARGUMENT, "max_tokens: 3 is outside")).ok
    assert not judge_schema(None, Refusal(code.UNKNOWN, "RecursionError")).ok


@FUZZ
@given(request=generate_requests(), streamed=st.booleans())
def test_any_request_is_answered_or_refused_naming_its_field(
    edged: RunningDaemon, request: pb.GenerateRequest, streamed: bool
) -> None:
    verdict = judge_answer(request, *call(edged.stub, request, streamed, RPC_TIMEOUT_S))
    assert verdict.ok, f"{verdict.problem} for {request}"
    still_serving(edged)


@FUZZ
@given(schema=json_schemas())
def test_any_json_schema_works_or_is_refused_naming_json_schema(edged: RunningDaemon, schema: str) -> None:
    request = pb.GenerateRequest(
        prompt="Answer in JSON.", max_tokens=1, temperature=0.0, mode=pb.Mode.LOCAL_ONLY, json_schema=schema
    )
    verdict: Verdict = judge_schema(*call(edged.stub, request, False, RPC_TIMEOUT_S))
    assert verdict.ok, f"{verdict.problem} for {schema[:300]!r}"
    still_serving(edged)
    plain_answer(edged)


# ---- malformed MQTT payloads on every subscribed topic ------------------------------------------------------

DEVICE = "fuzz-device"
GROUP = "pi5"
PREFIX = "edged/v1"


def subscribed_topics(edged: RunningDaemon) -> list[str]:
    """Every topic the daemon (escalation replies and presence, fleet keys and profiles) and a worker (the shared
    escalate filter, every device's cancel) receive messages on, named concretely."""
    cloud = edged.daemon.runtime.cloud
    assert cloud is not None
    fleet = FleetTopics(PREFIX)
    targets = [Target("group", GROUP), Target("device", DEVICE)]
    return [
        cloud.client.reply_topic,
        f"{PREFIX}/@workers/w-stranger",
        *(fleet.inbound(kind, target) for kind in ("keys", "profile") for target in targets),
        f"{PREFIX}/{DEVICE}/escalate",
        f"{PREFIX}/other-device/escalate",
        f"{PREFIX}/{DEVICE}/cancel",
    ]


@pytest.mark.mqtt
def test_malformed_payloads_on_every_subscribed_topic_leave_daemon_and_worker_serving(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    _, public_key = make_signer(tmp_path / "keys", "fleet.key")
    config = {
        "device_id": DEVICE,
        "broker": {"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "fleet": {"group": GROUP, "key": str(public_key)},
        "engine": {"default_max_tokens": 4},
    }
    worker_config = worker_config_file(tmp_path, "w1", {"type": "sleep", "delay_s": 0.0, "text": "cloud ok"})
    with running_daemon(tmp_path / "edged", config) as edged:
        cloud = edged.daemon.runtime.cloud
        assert cloud is not None
        worker = spawn_worker(mosquitto.url, "w1", tmp_path, "--config", str(worker_config))
        publisher = RawClient(mosquitto.port)
        try:
            wait_until(lambda: cloud.client.workers_online() == 1, "the worker's presence")
            for topic in subscribed_topics(edged):
                for payload in garbage_payloads():
                    publisher.publish(topic, payload)
                    publisher.publish(
                        topic, payload, correlation=b"\x01" * 4096, reply_to=f"{PREFIX}/x/reply/1"
                    )
                    publisher.publish(topic, payload, correlation=b"c", reply_to=cloud.client.reply_topic)
            assert worker.poll() is None, (tmp_path / "w1.log").read_text()
            still_serving(edged)
            plain_answer(edged)
            answer = edged.stub.Generate(
                pb.GenerateRequest(prompt="Hi", max_tokens=4, mode=pb.Mode.CLOUD_ONLY), timeout=RPC_TIMEOUT_S
            )
            assert (answer.text, answer.provenance.source) == ("cloud ok", pb.Source.CLOUD), answer
            assert worker.poll() is None, (tmp_path / "w1.log").read_text()
        finally:
            publisher.close()
            stop_process(worker)
