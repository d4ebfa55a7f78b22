"""Last Will on the shared link (what the fleet's presence relies on): set at build time or with set_will, the
broker publishes it when the process dies without a DISCONNECT."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from tests.brokers import MosquittoBroker
from tests.escalation_parts import WAIT_S, run_async, start_observer

pytestmark = [pytest.mark.mqtt]


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from edged.comms import MqttLink, Will
    from edged.config.broker import BrokerSettings

    async def main() -> None:
        first = Will("fleet/doomed-agent/state", b"built-in", qos=1, retain=False)
        link = MqttLink(BrokerSettings(url=sys.argv[1]), client_id="doomed-agent", will=first)
        link.set_will(Will("fleet/doomed-agent/state", b"gone", qos=1, retain=False))
        await link.start()
        await link.wait_up(20)
        print("up", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


@run_async
async def test_the_last_will_is_published_when_the_process_dies(
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
