"""Applying a profile to a running daemon: live changes (privacy gate, audit, sampler, router included), engine
swaps, and rollback when the new engine or the new gate cannot be built."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edged.config import parse_profile
from edged.config.engine import EngineSettings
from edged.config.privacy import DataPolicy
from edged.engine.local_answerer import LocalAnswerer
from edged.fleet.outcome import ApplyResult
from edged.models import ModelRegistry, sha256_file
from edged.service.apply import ProfileApplier, start_engine
from edged.v1 import inference_pb2 as pb
from tests.brokers import free_port
from tests.daemon_harness import RunningDaemon, running_daemon

pytestmark = pytest.mark.slow


@pytest.fixture
def edged(tmp_path: Path) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path) as daemon:
        yield daemon


def apply(edged: RunningDaemon, document: dict[str, object]) -> tuple[ApplyResult, str]:
    applier = edged.daemon._applier
    assert applier is not None
    merged = edged.daemon.profile.model_dump()
    for section, values in document.items():
        if isinstance(values, dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    outcome = applier(parse_profile(merged))
    return outcome.result, outcome.reason


def test_live_setting_changes_without_a_new_engine(edged: RunningDaemon) -> None:
    engine_before = edged.daemon.local.engines()
    request = pb.GenerateRequest(prompt="Say hi.", max_tokens=300)
    with pytest.raises(grpc.RpcError):
        edged.stub.Generate(request, timeout=30)  # 300 > the cap of 256
    assert apply(edged, {"engine": {"max_tokens_cap": 400}}) == (ApplyResult.APPLIED, "")
    assert edged.daemon.local.engines() == engine_before
    assert edged.stub.Generate(pb.GenerateRequest(prompt="Say hi.", max_tokens=300), timeout=60).text


def test_slot_change_swaps_in_a_new_engine_that_serves(edged: RunningDaemon) -> None:
    running = edged.stub.GenerateStream(
        pb.GenerateRequest(prompt="Count to thirty.", max_tokens=60), timeout=60
    )
    next(running)
    assert apply(edged, {"name": "two-slots", "engine": {"slots": 2}}) == (ApplyResult.APPLIED, "")
    chunks = list(running)  # the stream that started on the old engine finishes there
    assert chunks[-1].done
    status = edged.status()
    assert status.slots_free + status.slots_busy == 2
    assert status.profile.name == "two-slots"
    assert edged.stub.Generate(pb.GenerateRequest(prompt="Say hi.", max_tokens=4), timeout=60).text


def test_broken_model_rolls_back_and_the_old_engine_keeps_serving(
    edged: RunningDaemon, tmp_path: Path
) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"GGUF but not really" * 100)
    result, reason = apply(edged, {"engine": {"model": "bogus", "model_path": str(bogus)}})
    assert result == ApplyResult.ROLLED_BACK
    assert "new engine failed" in reason
    assert edged.daemon.profile.engine.model == "smollm2-135m-instruct-q4_1"
    assert edged.stub.Generate(pb.GenerateRequest(prompt="Say hi.", max_tokens=4), timeout=60).text


def test_a_user_given_gguf_path_is_served_after_its_sha256_check(
    edged: RunningDaemon, tmp_path: Path
) -> None:
    original = ModelRegistry.from_dir().locate("smollm2-135m-instruct-q4_1")
    mine = tmp_path / "my-model.gguf"
    shutil.copyfile(original, mine)
    digest = sha256_file(mine)
    wrong = apply(edged, {"engine": {"model": "mine", "model_path": str(mine), "model_sha256": "0" * 64}})
    assert wrong[0] == ApplyResult.ROLLED_BACK
    assert "sha256" in wrong[1]
    right = apply(edged, {"engine": {"model": "mine", "model_path": str(mine), "model_sha256": digest}})
    assert right == (ApplyResult.APPLIED, "")
    response = edged.stub.Generate(
        pb.GenerateRequest(prompt="Say hi.", max_tokens=4, model="mine"), timeout=60
    )
    assert response.provenance.model == "mine"
    assert any(m.id == "mine" and m.loaded for m in edged.status().models)


@pytest.fixture
def edged_with_gate(tmp_path: Path) -> Iterator[RunningDaemon]:
    """A daemon with a broker configured (one that never answers), so it loads its router, gate and audit log."""
    broker = {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    with running_daemon(tmp_path, {"broker": broker}) as daemon:
        yield daemon


def test_privacy_audit_sampler_and_router_follow_a_new_profile(edged_with_gate: RunningDaemon) -> None:
    daemon = edged_with_gate.daemon
    before = daemon.runtime
    gate, router = before.gate, before.router
    assert gate is not None
    assert before.cloud is not None
    assert before.audit is not None
    assert router is not None  # the shipped router
    change = {
        "privacy": {"sensitive_policy": "REDACT", "audit": {"max_bytes": 131072, "keep_files": 2}},
        "limits": {"sample_interval_s": 0.5},
        "routing": {"router_model": "no-router-here"},
    }
    assert apply(edged_with_gate, change) == (ApplyResult.APPLIED, "")

    after = daemon.runtime
    assert after.gate is not gate
    assert after.gate is not None
    assert after.gate.settings.sensitive_policy == DataPolicy.REDACT
    assert after.cloud is not None
    assert after.cloud.gate is after.gate  # the cloud path releases and scans with the same gate
    assert after.audit is not None
    assert (after.audit.max_bytes, after.audit.keep_files) == (131072, 2)
    assert daemon._sampler.interval_s == 0.5
    assert after.router is None  # no manifest under that name: AUTO routes without a router, as at start

    assert apply(edged_with_gate, {"routing": {"router_model": "router"}}) == (ApplyResult.APPLIED, "")
    assert daemon.runtime.router is not None
    assert daemon.runtime.router is not router  # loaded again, sha256-checked


def test_a_gate_that_cannot_be_built_changes_nothing_not_even_the_engine(
    edged_with_gate: RunningDaemon,
) -> None:
    daemon = edged_with_gate.daemon
    engines, profile, gate = daemon.local.engines(), daemon.profile, daemon.runtime.gate
    change = {"privacy": {"detector": {"spacy_model": "no_such_pkg"}}, "engine": {"slots": 2}}
    result, reason = apply(edged_with_gate, change)
    assert result == ApplyResult.ROLLED_BACK
    assert "spacy_model = 'no_such_pkg'" in reason
    assert daemon.local.engines() == engines
    assert daemon.profile is profile
    assert daemon.runtime.gate is gate
    assert edged_with_gate.stub.Generate(
        pb.GenerateRequest(prompt="Say hi.", max_tokens=4, mode=pb.LOCAL_ONLY), timeout=60
    ).text


def test_a_swap_the_event_loop_never_ran_is_rolled_back_and_never_happens_later() -> None:
    """issue 17 (2): on the install timeout the fleet acked rolled_back while the swap could still run later
    (or the new engine leaked). Here the loop is stalled: the outcome is rolled_back, the new engine is closed,
    and when the loop runs again nothing is swapped in."""
    loop = asyncio.new_event_loop()  # never running while the apply waits: a stalled event loop
    registry = ModelRegistry.from_dir()
    old_settings = EngineSettings.model_validate({"threads": 1, "slots": 1, "context_per_slot": 256})
    old = start_engine(registry, old_settings)
    local = LocalAnswerer({old.model_id: old}, old.model_id)
    running = parse_profile({"name": "running", "engine": old_settings.model_dump(exclude_none=True)})
    committed: list[str] = []
    applier = ProfileApplier(
        loop=loop,
        registry=registry,
        local=local,
        get_profile=lambda: running,
        prepare=lambda profile: lambda: committed.append(profile.name),
        drain_grace_s=0.0,
        install_timeout_s=0.5,
    )
    try:
        two_slots = {**old_settings.model_dump(exclude_none=True), "slots": 2}
        outcome = applier(parse_profile({"name": "two-slots", "engine": two_slots}))
        assert outcome.result is ApplyResult.ROLLED_BACK
        assert "within 0.5 s" in outcome.reason
        loop.run_until_complete(asyncio.sleep(0.05))  # the loop runs again: the late swap must not happen
        assert committed == []
        assert local.engines() == {old.model_id: old}
        assert [t.name for t in threading.enumerate() if t.name.startswith("engine-")] == [
            f"engine-{old.model_id}"
        ]
    finally:
        old.close()
        loop.close()
