"""`--cloud live`: eval items escalate through a real Mosquitto to a real cloud_bridge worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.config.routing import ScoreWeights
from edged.errors import CloudUnavailable
from edged.evaluation.cloud import LiveCloud
from edged.evaluation.items import EvalItem
from edged.evaluation.local import LocalAnswer, ScriptedAnswerer
from edged.evaluation.runner import report, run_items
from tests.brokers import MosquittoBroker
from tests.escalation_parts import broker_settings, spawn_worker, stop_process

ITEMS = [
    EvalItem("five", "What is 2 + 3?", "5", "number"),
    EvalItem("six", "What is 3 + 3?", "6", "number"),
]


@pytest.mark.slow
@pytest.mark.mqtt
def test_live_cloud_answers_are_graded(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    config = tmp_path / "bridge.toml"
    config.write_text('[backend]\ntype = "sleep"\ndelay_s = 0.0\ntext = "The answer is 5"\n')
    worker = spawn_worker(mosquitto.url, "eval-worker", tmp_path, "--config", str(config))
    try:
        cloud = LiveCloud(broker_settings(mosquitto.url), "eval-device")
        try:
            assert cloud.answer("What is 2 + 3?", 16) == "The answer is 5"
            local = ScriptedAnswerer({i.prompt: LocalAnswer("I think 7.") for i in ITEMS})
            results = run_items(ITEMS, local, router=None, weights=ScoreWeights(), cloud=cloud, max_tokens=16)
        finally:
            cloud.close()
    finally:
        stop_process(worker)
    assert [r.cloud_correct for r in results] == [True, False]
    assert report(results)["cloud_accuracy"] == 0.5


@pytest.mark.mqtt
def test_live_cloud_without_a_worker_says_so(mosquitto: MosquittoBroker) -> None:
    with pytest.raises(CloudUnavailable, match="no cloud worker is online"):
        LiveCloud(broker_settings(mosquitto.url), "eval-device", connect_timeout_s=1.0)
