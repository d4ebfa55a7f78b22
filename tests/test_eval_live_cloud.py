"""`--cloud live`: eval items escalate through a real Mosquitto to a real cloud_bridge worker process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edged.comms.link import MqttLink
from edged.comms.messages import LinkPhase, LinkState
from edged.config.routing import ScoreWeights
from edged.errors import CloudUnavailable
from edged.evaluation.cloud import LiveCloud
from edged.evaluation.items import EvalItem
from edged.evaluation.local import LocalAnswer, ScriptedAnswerer
from edged.evaluation.runner import report, run_items
from tests.brokers import MosquittoBroker
from tests.escalation_parts import (
    WAIT_S,
    ShippedBroker,
    bridge_config,
    broker_settings,
    make_passwords,
    make_tls,
    run_async,
    spawn_worker,
    start_worker,
    stop_process,
)

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


@pytest.mark.mqtt
@run_async
async def test_live_eval_beside_the_daemon_keeps_its_connection(tmp_path: Path) -> None:
    """The daemon connects as its device id; a live eval on the same device must not take that client id (the
    broker would disconnect the daemon), and still passes the shipped ACL, which confines by user name."""
    secrets = make_passwords(tmp_path / "auth", "dev-a")
    tls = make_tls(tmp_path / "tls")
    shipped = ShippedBroker(workdir=tmp_path / "mq", secrets=secrets.parent, tls=tls)
    with shipped:
        device = broker_settings(
            shipped.tls_url, username="dev-a", password_file=secrets / "dev-a.password", tls_ca_file=tls.ca
        )
        worker_auth = {"username": "bridge", "password_file": str(secrets / "bridge.password")}
        worker = await start_worker(bridge_config(shipped.url, "w1", tmp_path, broker=worker_auth))
        daemon_link = MqttLink(device, client_id="dev-a")  # what `edged serve` connects as
        phases: list[LinkPhase] = []

        def record(state: LinkState) -> None:
            phases.append(state.phase)

        daemon_link.add_state_listener(record)
        await daemon_link.start()
        try:
            assert await daemon_link.wait_up(WAIT_S)
            cloud = await asyncio.to_thread(LiveCloud, device, "dev-a")
            try:
                assert cloud.client_id.startswith("dev-a-eval-")
                assert await asyncio.to_thread(cloud.answer, "What is 2 + 3?", 16) == "hello from the cloud"
            finally:
                await asyncio.to_thread(cloud.close)
            # a takeover would have shown as a disconnect before the eval's answer came back
            assert daemon_link.is_up()
            assert LinkPhase.DISCONNECTED not in phases, phases
            assert worker.stats.answered == 1
        finally:
            await daemon_link.stop()
            await worker.stop()
