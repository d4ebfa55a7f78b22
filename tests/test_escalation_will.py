"""The shared link seen as the fleet agent's FleetLink: subscribe/publish/connect listener, and a Last Will
set through it that the broker publishes when the process dies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from edged.comms.fleet_link import SharedFleetLink
from edged.comms.link import MqttLink
from edged.fleet.link import FleetLink
from tests.brokers import MosquittoBroker
from tests.escalation_parts import WAIT_S, broker_settings, run_async, start_observer, until

pytestmark = [pytest.mark.mqtt]


@run_async
async def test_the_fleet_protocol_runs_on_the_shared_link(mosquitto: MosquittoBroker) -> None:
    link = MqttLink(broker_settings(mosquitto.url), client_id="dev-a")
    fleet: FleetLink = SharedFleetLink(link)
    received: list[tuple[str, bytes]] = []
    connects: list[int] = []
    fleet.subscribe("fleet/dev-a/#", lambda topic, payload: received.append((topic, payload)))
    fleet.add_connect_listener(lambda: connects.append(1))
    fleet.publish("fleet/dev-a/early", b"dropped")  # link not up yet: dropped with a warning, no exception
    await link.start()
    try:
        assert await link.wait_up(WAIT_S)
        fleet.publish("fleet/dev-a/status", b"ok")
        await until(lambda: received == [("fleet/dev-a/status", b"ok")], "the fleet message")
        mosquitto.restart()
        await until(lambda: len(connects) == 2, "the connect listener after the reconnect")
    finally:
        await link.stop()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from edged.comms.fleet_link import SharedFleetLink
    from edged.comms.link import MqttLink
    from edged.config.broker import BrokerSettings

    async def main() -> None:
        link = MqttLink(BrokerSettings(url=sys.argv[1]), client_id="doomed-agent")
        SharedFleetLink(link).set_will("fleet/doomed-agent/state", b"gone", qos=1, retain=False)
        await link.start()
        await link.wait_up(20)
        print("up", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@run_async
async def test_a_will_set_through_the_fleet_link_is_published_when_the_process_dies(
    mosquitto: MosquittoBroker,
) -> None:
    observer, inbox = await start_observer(mosquitto.url, "fleet/+/state")
    child = subprocess.Popen([sys.executable, "-c", CHILD, mosquitto.url], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), WAIT_S)
        assert line == b"up\n"
        child.kill()
        message = await asyncio.wait_for(inbox.get(), WAIT_S)
        assert message is not None
        assert (message.topic, message.payload) == ("fleet/doomed-agent/state", b"gone")
    finally:
        child.kill()
        child.wait(timeout=WAIT_S)
        if child.stdout is not None:
            child.stdout.close()
        await observer.stop()
