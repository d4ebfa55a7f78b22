"""Applying a profile to a running daemon: live changes, engine swaps, and rollback when the new engine fails."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edged.config import parse_profile
from edged.fleet.device import ApplyResult
from edged.models import ModelRegistry, sha256_file
from edged.v1 import inference_pb2 as pb
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
