"""`edged serve` as systemd runs it: a real subprocess, a test-owned $NOTIFY_SOCKET, signals, a real gRPC client.

Each test starts the daemon on the bundled model with a small engine (2 slots x 512 tokens, 2 threads) and a
socket and state directory under tmp_path. The long answer comes from a greedy story prompt that SmolLM2 keeps
writing past 400 tokens, so "a stream longer than the grace period" does not depend on sampling.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from edged.v1 import inference_pb2 as pb
from tests.ops_support import (
    START_TIMEOUT_S,
    ServedDaemon,
    free_port,
    served_daemon,
    small_engine_config,
    toml_document,
)

pytestmark = pytest.mark.slow

STORY = "Write a long story about a dragon."  # greedy: runs on past 400 tokens (finish_reason "length")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def observe_until_ready(edged: ServedDaemon) -> list[tuple[int, str, bool]]:
    """Poll health and GetStatus on the daemon's socket until READY=1: (health, state, default model loaded)."""
    seen: list[tuple[int, str, bool]] = []
    deadline = time.monotonic() + START_TIMEOUT_S
    while edged.notify.find("READY", "1") is None and edged.proc.poll() is None:
        assert time.monotonic() < deadline, f"no READY=1: {edged.describe()}"
        if not edged.socket_path.exists():
            time.sleep(0.01)
            continue
        try:
            health = edged.health()
            status = edged.status()
        except grpc.RpcError:
            time.sleep(0.01)  # the socket file exists a moment before the server accepts
            continue
        seen.append((health, status.state, any(m.loaded for m in status.models if m.is_default)))
    return seen


@pytest.mark.parametrize("abstract", [False, True], ids=["path-socket", "abstract-socket"])
def test_ready_after_model_and_listeners_then_watchdog_then_stopping(tmp_path: Path, abstract: bool) -> None:
    config = small_engine_config(tmp_path)
    with served_daemon(tmp_path, config, abstract_notify=abstract, watchdog_usec=2_000_000) as edged:
        during_start = observe_until_ready(edged)
        ready = edged.wait_ready()

        # Right after READY=1 the socket answers and the model is loaded.
        status = edged.status()
        assert status.state == "serving"
        assert [(m.loaded, m.slots_total) for m in status.models if m.is_default] == [(True, 2)]
        assert edged.health() == SERVING
        # Before it, the listeners were up but not serving: NOT_SERVING while the model loaded.
        assert during_start, f"the socket never answered before READY=1: {edged.describe()}"
        assert during_start[0] == (NOT_SERVING, "loading", False), during_start
        assert all(loaded for health, _, loaded in during_start if health == SERVING), during_start

        messages = edged.notify.messages
        loading = edged.notify.find("STATUS")
        assert loading is not None, messages
        assert loading < ready, messages
        assert messages[loading]["STATUS"].startswith("loading model smollm2"), messages
        assert messages[ready]["STATUS"].startswith("serving: smollm2"), messages

        # WATCHDOG_USEC=2s: WATCHDOG=1 every second from the serving loop.
        assert edged.notify.wait_until(lambda: edged.notify.count("WATCHDOG", "1", after=ready) >= 3, 60), (
            f"fewer than 3 WATCHDOG=1 after READY: {edged.describe()}"
        )

        edged.send(signal.SIGTERM)
        stopping = edged.wait_notification("STOPPING", "1", after=ready)
        assert edged.notify.messages[stopping]["STATUS"].startswith("draining"), edged.notify.messages
        assert edged.wait_exit() == 0, edged.describe()
        assert not edged.socket_path.exists(), "the socket file outlived the daemon"


def refused_max_tokens(edged: ServedDaemon, max_tokens: int) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        edged.generate(prompt=STORY, max_tokens=max_tokens, temperature=0.0)
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "max_tokens" in str(error.details()), error.details()
    return error


def reload_with(edged: ServedDaemon, config_text: str, after: int) -> int:
    """Write the config file, SIGHUP, and wait for RELOADING=1 then READY=1; returns READY's index."""
    edged.config_path.write_text(config_text)
    edged.send(signal.SIGHUP)
    reloading = edged.wait_notification("RELOADING", "1", after=after + 1)
    assert "MONOTONIC_USEC" in edged.notify.messages[reloading], edged.notify.messages[reloading]
    return edged.wait_ready(after=reloading + 1)


def test_sighup_applies_a_raised_token_cap(tmp_path: Path) -> None:
    config = small_engine_config(tmp_path, engine={"max_tokens_cap": 16, "default_max_tokens": 16})
    with served_daemon(tmp_path, config) as edged:
        ready = edged.wait_ready()
        assert "1..16" in str(refused_max_tokens(edged, 24).details())

        config["engine"]["max_tokens_cap"] = 32
        reload_with(edged, toml_document(config), after=ready)

        answer = edged.generate(prompt=STORY, max_tokens=24, temperature=0.0)
        assert (answer.finish_reason, answer.usage.completion_tokens) == ("length", 24)
        assert "configuration reloaded" in edged.log()
        assert "taking effect at the next start" not in edged.log()
        assert "1..32" in str(refused_max_tokens(edged, 40).details())


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ("[engine\nmax_tokens_cap = 8\n", "Expected ']'"),
        ("[engine]\nmax_tokens_cap = 8\ndefault_max_tokens = 8\nslots = 0\n", "engine.slots = 0"),
        # issue 17 (19): an empty file (truncated, or being written) silently reset live settings to defaults
        ("", "holds no settings"),
        ("# nothing but a comment\n\n", "holds no settings"),
    ],
    ids=["syntax-error", "out-of-bounds", "empty", "comment-only"],
)
def test_sighup_with_a_broken_file_keeps_serving_the_running_settings(
    tmp_path: Path, broken: str, named: str
) -> None:
    config = small_engine_config(tmp_path, engine={"max_tokens_cap": 32, "default_max_tokens": 16})
    with served_daemon(tmp_path, config) as edged:
        ready = edged.wait_ready()
        reloaded = reload_with(edged, broken, after=ready)

        rejected = [line for line in edged.log().splitlines() if "reload rejected" in line]
        assert len(rejected) == 1, edged.describe()
        assert named in rejected[0], rejected
        assert edged.notify.messages[reloaded]["STATUS"].startswith("serving"), edged.notify.messages
        # Still the old cap (32), not the broken file's 8.
        answer = edged.generate(prompt=STORY, max_tokens=24, temperature=0.0)
        assert (answer.finish_reason, answer.usage.completion_tokens) == ("length", 24)
        assert "1..32" in str(refused_max_tokens(edged, 40).details())
        assert edged.health() == SERVING
        assert edged.proc.poll() is None


def test_sigterm_lets_a_running_stream_finish_within_the_grace(tmp_path: Path) -> None:
    config = small_engine_config(tmp_path, api={"grace_period_s": 300.0})
    with served_daemon(tmp_path, config) as edged:
        ready = edged.wait_ready()
        chunks = edged.stream(prompt=STORY, max_tokens=48, temperature=0.0)
        received: list[tuple[float, pb.GenerateChunk]] = [(time.monotonic(), next(chunks))]
        edged.send(signal.SIGTERM)
        received += [(time.monotonic(), chunk) for chunk in chunks]

        stopping = edged.wait_notification("STOPPING", "1", after=ready)
        last_at, last = received[-1]
        assert last.done, f"the stream ended without its last chunk: {edged.describe()}"
        assert (last.finish_reason, last.usage.completion_tokens) == ("length", 48)
        assert not any(chunk.done for _, chunk in received[:-1])
        # The answer was still being produced when the drain began: its last chunk came after STOPPING=1.
        assert last_at > edged.notify.arrived_at(stopping), "the stream was over before the daemon drained"
        assert edged.wait_exit() == 0, edged.describe()
        assert "draining: in-flight requests have 300.0s" in edged.log()


def test_sigterm_cancels_a_stream_longer_than_the_grace(tmp_path: Path) -> None:
    grace_s = 0.5
    config = small_engine_config(tmp_path, api={"grace_period_s": grace_s})
    with served_daemon(tmp_path, config) as edged:
        edged.wait_ready()
        chunks = edged.stream(prompt=STORY, max_tokens=400, temperature=0.0)
        received = [next(chunks)]
        edged.send(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as cut:
            received += list(chunks)

        # edged's own status and words, not gRPC's CANCELLED "Cancelling all calls" (issue 17: 23)
        assert cut.value.code() == grpc.StatusCode.UNAVAILABLE, cut.value
        assert cut.value.details() == (
            "edged is shutting down: the request did not finish within api.grace_period_s = 0.5s"
        )
        assert not any(chunk.done for chunk in received)
        # Bounded wait: the grace period plus a margin for tearing down the engine on a busy machine.
        assert edged.wait_exit(timeout=grace_s + 20) == 0, edged.describe()


def test_sighup_whose_privacy_gate_cannot_be_built_is_refused_with_ready_and_nothing_changes(
    tmp_path: Path,
) -> None:
    """`edged check-config` cannot load spaCy packages, so a file naming a missing one passes it; the reload must
    still be refused whole: no new engine for the slots change beside it, the old token cap, READY=1 saying so."""
    unreachable = {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    config = small_engine_config(tmp_path, engine={"max_tokens_cap": 32, "default_max_tokens": 16})
    config["broker"] = unreachable  # with a broker the daemon loads its privacy gate
    with served_daemon(tmp_path, config) as edged:
        ready = edged.wait_ready()
        config["engine"] |= {"slots": 1, "max_tokens_cap": 48}
        broken = toml_document(config) + '[privacy.detector]\nspacy_model = "no_such_pkg"\n'
        reloaded = reload_with(edged, broken, after=ready)

        status = edged.notify.messages[reloaded]["STATUS"]
        assert status.startswith("serving"), edged.notify.messages
        assert "reload refused" in status, status
        assert "spacy_model" in status, status
        assert [m.slots_total for m in edged.status().models if m.is_default] == [2]
        assert "1..32" in str(refused_max_tokens(edged, 40).details())
        assert edged.health() == SERVING

        # The file fixed: the same reload goes through, the new engine included; a listener setting it also
        # changes waits for the next start, and the log says so.
        config["api"]["max_concurrent_rpcs"] = 8
        reloaded = reload_with(edged, toml_document(config), after=reloaded)
        assert "reload refused" not in edged.notify.messages[reloaded]["STATUS"], edged.notify.messages
        kept = [line for line in edged.log().splitlines() if "taking effect at the next start" in line]
        assert len(kept) == 1, edged.describe()
        assert kept[0].endswith("api.max_concurrent_rpcs"), kept
        assert [m.slots_total for m in edged.status().models if m.is_default] == [1]
        assert "1..48" in str(refused_max_tokens(edged, 50).details())
