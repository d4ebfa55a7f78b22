"""The fleet agent over the daemon's shared asyncio MQTT link (edged.comms) through ThreadLink."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.comms import MqttLink, ThreadLink
from edged.config.broker import BrokerSettings
from edged.errors import ConfigError
from edged.fleet.agent import FleetAgent, fleet_will
from edged.fleet.envelope import Target
from edged.fleet.simulation import SimulatedApplier
from tests.brokers import MosquittoBroker
from tests.fleet_support import WAIT_S, FleetKit, fleet_kit, profile_doc

pytestmark = [pytest.mark.mqtt]

GROUP = Target("group", "pi5")


@pytest.fixture
def kit(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[FleetKit]:
    with fleet_kit(tmp_path, mosquitto) as kit:
        yield kit


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on its own thread, as the daemon's main loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def _run(loop: asyncio.AbstractEventLoop, coroutine: object) -> object:
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result(WAIT_S)  # type: ignore[arg-type]


def test_agent_applies_and_reports_over_the_comms_link(
    kit: FleetKit, loop: asyncio.AbstractEventLoop
) -> None:
    config = kit.config("pi-comms")
    config = config.model_copy(update={"broker": BrokerSettings(url=kit.broker.url)})
    will = fleet_will(config)
    link = MqttLink(config.broker, config.device_id, will=will)
    applier = SimulatedApplier()
    agent = FleetAgent.from_config(config, ThreadLink.over(link, loop, will), applier, dict)
    agent.start()
    _run(loop, link.start())
    try:
        assert _run(loop, link.wait_up(WAIT_S)) is True
        assert kit.observer.wait(lambda: "pi-comms" in kit.observer.statuses, WAIT_S)
        kit.push(GROUP, profile_doc("via-comms", engine={"threads": 2}), version=1)
        assert kit.ack("pi-comms", GROUP, 1).outcome == "applied"
        assert agent.profile.name == "via-comms"
        assert kit.observer.statuses["pi-comms"]["state"] == "online"
    finally:
        agent.stop()
        _run(loop, link.stop())


def test_a_comms_link_built_without_the_fleet_will_is_refused(
    kit: FleetKit, loop: asyncio.AbstractEventLoop
) -> None:
    config = kit.config("pi-nowill").model_copy(update={"broker": BrokerSettings(url=kit.broker.url)})
    link = MqttLink(config.broker, config.device_id)
    agent = FleetAgent.from_config(config, ThreadLink.over(link, loop, None), SimulatedApplier(), dict)
    with pytest.raises(ConfigError, match="fleet_will"):
        agent.start()
