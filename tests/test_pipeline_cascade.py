"""The confidence cascade end to end: a real daemon, a real Mosquitto and a real cloud_bridge worker (echo backend).

A profile whose cascade threshold no answer can reach makes every local stream "collapse" after k tokens: the
caller must get the cloud's answer only, never local text glued to it. A threshold of 0 never collapses: the
local answer streams on. With the worker gone, the cut local answer is generated again, whole.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import spawn_worker, stop_process, wait_until, worker_config_file

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

PROMPT = "Tell me about the history of lighthouses."


@pytest.fixture
def worker(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    config = worker_config_file(tmp_path, "echo", {"type": "echo", "chunk_chars": 3})
    process = spawn_worker(mosquitto.url, "echo-1", tmp_path, "--config", str(config))
    yield process
    stop_process(process)


@contextmanager
def daemon(tmp: Path, url: str, cascade_threshold: float) -> Iterator[RunningDaemon]:
    config = {
        "broker": {"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "routing": {"router_threshold": 0.0, "cascade_tokens": 4, "cascade_threshold": cascade_threshold},
    }
    with running_daemon(tmp, config) as running:
        wait_until(lambda: running.status().link.state == "connected", "the daemon's link is up")
        cloud = running.daemon.runtime.cloud
        assert cloud is not None
        wait_until(lambda: cloud.client.workers_online() > 0, "a worker is online")
        yield running


def collect(edged: RunningDaemon, mode: int = pb.AUTO) -> list[pb.GenerateChunk]:
    request = pb.GenerateRequest(prompt=PROMPT, max_tokens=40, mode=mode)  # type: ignore[arg-type]
    return list(edged.stub.GenerateStream(request, timeout=120))


def test_a_collapsing_stream_is_answered_by_the_cloud_alone(
    mosquitto: MosquittoBroker, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with daemon(tmp_path / "d", mosquitto.url, cascade_threshold=1.0) as edged:
        chunks = collect(edged)
        last = chunks[-1]
        assert last.done
        assert last.provenance.source == pb.CLOUD
        assert last.provenance.model == "echo"
        text = "".join(c.delta for c in chunks)
        assert text == PROMPT  # the echo of the conversation, and not a word of the local answer
        assert any(
            r.startswith("confidence@4=") and "<threshold=1.00" in r for r in last.provenance.reasons
        ), list(last.provenance.reasons)
        assert last.provenance.reasons[-1] == "answered=cloud"
        assert edged.wait_idle().slots_busy == 0  # the local decode was stopped


def test_a_confident_stream_stays_local(
    mosquitto: MosquittoBroker, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with daemon(tmp_path / "d", mosquitto.url, cascade_threshold=0.0) as edged:
        chunks = collect(edged)
        last = chunks[-1]
        assert last.provenance.source == pb.LOCAL
        assert last.usage.completion_tokens > 4
        assert PROMPT not in "".join(c.delta for c in chunks)


def test_a_collapse_with_the_worker_gone_regenerates_the_local_answer_whole(
    mosquitto: MosquittoBroker, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    with daemon(tmp_path / "d", mosquitto.url, cascade_threshold=1.0) as edged:
        stop_process(worker)
        cloud = edged.daemon.runtime.cloud
        assert cloud is not None
        wait_until(lambda: cloud.client.workers_online() == 0, "the worker is gone")
        chunks = collect(edged)
        last = chunks[-1]
        assert last.provenance.source == pb.LOCAL
        assert last.provenance.degraded
        assert any(r.startswith("cloud_failed:") for r in last.provenance.reasons)
        assert "fallback=local" in last.provenance.reasons
        unary = edged.stub.Generate(
            pb.GenerateRequest(prompt=PROMPT, max_tokens=40, mode=pb.LOCAL_ONLY), timeout=120
        )
        assert (
            "".join(c.delta for c in chunks) == unary.text
        )  # the whole local answer, not its first k tokens


def test_a_looping_answer_is_judged_unsure_and_escalated(
    mosquitto: MosquittoBroker, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """With repetition control off, the README's question loops; the loop guard cuts it and AUTO escalates it,
    while an answer that does not loop stays local (no confidence threshold to cross: only the loop counts)."""
    config = {
        "broker": {"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "engine": {"repeat_penalty": 1.0, "loop_guard_tokens": 64},
        "routing": {"router_threshold": 0.0, "confidence_threshold": 0.0, "cascade": False},
    }
    with running_daemon(tmp_path / "d", config) as edged:
        wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")
        cloud = edged.daemon.runtime.cloud
        assert cloud is not None
        wait_until(lambda: cloud.client.workers_online() > 0, "a worker is online")
        looped = edged.stub.Generate(
            pb.GenerateRequest(prompt="What is the capital of France?", max_tokens=256, mode=pb.AUTO),
            timeout=120,
        )
        assert looped.provenance.source == pb.CLOUD, list(looped.provenance.reasons)
        assert "repetition" in looped.provenance.reasons
        plain = edged.stub.Generate(
            pb.GenerateRequest(prompt="What is 12 times 7?", max_tokens=64, mode=pb.AUTO), timeout=120
        )
        assert plain.provenance.source == pb.LOCAL, list(plain.provenance.reasons)
        assert "repetition" not in plain.provenance.reasons
        local = edged.stub.Generate(
            pb.GenerateRequest(prompt="What is the capital of France?", max_tokens=256, mode=pb.LOCAL_ONLY),
            timeout=120,
        )
        assert local.finish_reason == "repetition"
        assert "repetition" in local.provenance.reasons
        assert local.usage.completion_tokens < 128
