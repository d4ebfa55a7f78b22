"""The shipped broker setup (cloud_bridge/deploy: mosquitto.conf, edged.acl, make-passwords) confines devices.

Checked by delivery, not by acks: a message the ACL lets through would reach a subscriber before a later
message routed the same way, so once that later message arrives, anything forbidden would already be there.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.comms.dispatch import BoundedInbox
from edged.comms.link import MqttLink
from edged.config.daemon import RESERVED_DEVICE_IDS
from edged.config.loader import parse_config
from edged.errors import ConfigError
from edged.escalation.client import EscalationClient
from tests.escalation_parts import (
    DEPLOY,
    WAIT_S,
    ShippedBroker,
    bridge_config,
    broker_settings,
    make_passwords,
    make_tls,
    request,
    run_async,
    start_worker,
    until,
)

pytestmark = [pytest.mark.mqtt]


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[ShippedBroker]:
    secrets = make_passwords(tmp_path / "auth", "dev-a", "dev-b")
    broker = ShippedBroker(workdir=tmp_path / "mq", secrets=secrets.parent, tls=make_tls(tmp_path / "tls"))
    with broker:
        yield broker


def _device_settings(broker: ShippedBroker, device: str) -> dict[str, object]:
    assert broker.tls is not None
    return {
        "username": device,
        "password_file": broker.secrets / "secrets" / f"{device}.password",
        "tls_ca_file": broker.tls.ca,
    }


async def _device_link(broker: ShippedBroker, device: str, client_id: str) -> MqttLink:
    link = MqttLink(broker_settings(broker.tls_url, **_device_settings(broker, device)), client_id=client_id)
    await link.start()
    assert await link.wait_up(WAIT_S), link.state()
    return link


@run_async
async def test_device_b_can_neither_read_a_replies_nor_write_a_escalate(
    shipped: ShippedBroker, tmp_path: Path
) -> None:
    worker_auth = {
        "username": "bridge",
        "password_file": str(shipped.secrets / "secrets" / "bridge.password"),
    }
    worker = await start_worker(bridge_config(shipped.url, "w1", tmp_path, broker=worker_auth))
    a_link = await _device_link(shipped, "dev-a", "dev-a")
    b_link = await _device_link(shipped, "dev-b", "dev-b")
    a = EscalationClient(a_link.settings, "dev-a", link=a_link)
    b = EscalationClient(b_link.settings, "dev-b", link=b_link)
    spied = BoundedInbox(1000, "spy")
    for topic_filter in ("edged/v1/dev-a/reply/+", "edged/v1/+/reply/+", "edged/v1/+/escalate", "#"):
        b_link.subscribe(topic_filter, spied.put)
    try:
        await a.start()
        await b.start()
        # b's subscriptions are in place once a message b may read has come back through them
        assert (await b.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"

        # dev-a escalates over TLS through the shipped ACL and gets its answer
        assert (await a.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"

        # dev-b forges a request on dev-a's topic, answered (if it got through) to dev-b's reply topic
        forged = request()
        forged.request_id = "forged"
        forged.deadline_unix_ms = int((time.time() + 30) * 1000)
        ack = b_link.publish(
            "edged/v1/dev-a/escalate",
            forged.SerializeToString(),
            correlation_data=b"forged",
            response_topic=b.reply_topic,
        )
        await ack  # the broker has routed (or dropped) it before it acknowledges

        # later traffic on the same paths: dev-a's second answer, then dev-b's own
        assert (await a.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"
        assert (await b.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"

        assert "forged" not in worker.stats.taken_ids
        assert worker.stats.received == 4
        delivered_to_b = []
        spied.close()
        async for message in spied:
            delivered_to_b.append(message.topic)
        assert delivered_to_b, "b's own replies should have come through its subscriptions"
        assert not [topic for topic in delivered_to_b if "dev-a" in topic], delivered_to_b
        allowed = ("edged/v1/dev-b/reply/", "edged/v1/@workers/")  # its own replies and worker presence
        assert all(topic.startswith(allowed) for topic in delivered_to_b), delivered_to_b
        assert a.stats.answered == 2
    finally:
        await a.stop()
        await b.stop()
        await a_link.stop()
        await b_link.stop()
        await worker.stop()


@run_async
async def test_workers_cannot_publish_outside_reply_topics(shipped: ShippedBroker, tmp_path: Path) -> None:
    worker_auth = {
        "username": "bridge",
        "password_file": str(shipped.secrets / "secrets" / "bridge.password"),
    }
    worker = await start_worker(bridge_config(shipped.url, "w1", tmp_path, broker=worker_auth))
    a_link = await _device_link(shipped, "dev-a", "dev-a")
    a = EscalationClient(a_link.settings, "dev-a", link=a_link)
    try:
        await a.start()
        # a worker forging a device request (it would take it itself if the broker let it through)
        forged = request()
        forged.request_id = "from-a-worker"
        forged.deadline_unix_ms = int((time.time() + 30) * 1000)
        await worker.link.publish(
            "edged/v1/dev-a/escalate",
            forged.SerializeToString(),
            correlation_data=b"w",
            response_topic=a.reply_topic,
        )
        assert (await a.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"
        assert "from-a-worker" not in worker.stats.taken_ids
        assert worker.stats.received == 1
    finally:
        await a.stop()
        await a_link.stop()
        await worker.stop()


@run_async
async def test_anonymous_clients_are_refused(shipped: ShippedBroker) -> None:
    assert shipped.tls is not None
    link = MqttLink(broker_settings(shipped.tls_url, tls_ca_file=shipped.tls.ca), client_id="nobody")
    await link.start()
    try:
        await until(lambda: link.state().failed_attempts >= 1, "the refused login")
        assert "refused the connection" in (link.state().last_error or "")
        assert not link.is_up()
    finally:
        await link.stop()


def _acl_users() -> list[str]:
    """The users edged.acl gives rights of their own (`user NAME` sections)."""
    lines = (DEPLOY / "edged.acl").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("user ")]


def test_every_acl_user_is_reserved_as_a_device_id() -> None:
    assert _acl_users() == ["bridge"]
    assert sorted(RESERVED_DEVICE_IDS) == sorted(_acl_users())


@pytest.mark.parametrize("name", ["bridge", "Bridge"])
def test_make_passwords_refuses_a_reserved_device_id_before_writing_anything(
    name: str, tmp_path: Path
) -> None:
    out = tmp_path / "auth"
    result = subprocess.run(
        [str(DEPLOY / "make-passwords"), str(out), "dev-a", name], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"invalid device id '{name}': 'bridge' is reserved" in result.stderr
    assert not out.exists()  # not even dev-a: every id is checked first


@pytest.mark.parametrize("name", ["bridge", "BRIDGE"])
def test_edged_refuses_a_reserved_device_id_or_user_name(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": name}, "edged.toml")
    ((key, value, reason),) = info.value.problems
    assert (key, value) == ("device_id", name)
    assert (
        "'bridge' is reserved: the broker ACL gives user 'bridge' the cloud_bridge workers' rights" in reason
    )
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": "dev-a", "broker": {"url": "mqtt://h", "username": name}}, "edged.toml")
    ((key, value, reason),) = info.value.problems
    assert (key, value) == ("broker.username", name)
    assert "'bridge' is reserved" in reason
    assert parse_config({"device_id": "bridge-2"}).device_id == "bridge-2"  # only the exact name
