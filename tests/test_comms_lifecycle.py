"""The one MQTT client's lifecycle seams (issue 18: 1): `async with MqttLink`, a subscribe that waits for the
broker's SUBACK, and ThreadLink, through which synchronous code (edged-fleet, the observer, the simulator)
uses the same link. Against a real Mosquitto; the dynamic-security broker refuses subscriptions by ACL."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.comms import MqttLink, ThreadLink
from edged.comms.messages import LinkPhase
from edged.config.broker import BrokerSettings
from edged.errors import CloudUnavailable, ConfigError, SubscriptionRefused
from tests.brokers import MosquittoBroker, dynsec_broker, free_port, password_file
from tests.escalation_parts import WAIT_S, broker_settings, run_async

pytestmark = [pytest.mark.mqtt]

DEVICE_FILTERS = ("edged/v1/dev-a/#",)  # dev-a may subscribe to its own topics, nothing else


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with dynsec_broker(tmp_path / "mq", {"dev-a": DEVICE_FILTERS}) as running:
        yield running


def dev_a(broker: MosquittoBroker, tmp_path: Path) -> BrokerSettings:
    return broker_settings(
        broker.url, username="dev-a", password_file=str(password_file(tmp_path / "auth", "dev-a"))
    )


@run_async
async def test_async_with_connects_and_a_waited_subscription_is_granted_or_refused(
    secured: MosquittoBroker, tmp_path: Path
) -> None:
    async with MqttLink(dev_a(secured, tmp_path), "dev-a") as link:
        assert link.is_up()
        await link.subscribe_and_wait("edged/v1/dev-a/reply/+", lambda _m: None)
        with pytest.raises(SubscriptionRefused) as refused:
            await link.subscribe_and_wait("edged/v1/dev-b/reply/+", lambda _m: None)
        assert refused.value.topic_filter == "edged/v1/dev-b/reply/+"
        assert refused.value.code == 0x87
    assert link.state().phase is LinkPhase.STOPPED


@run_async
async def test_async_with_fails_with_a_subscription_refused_on_connect(
    secured: MosquittoBroker, tmp_path: Path
) -> None:
    link = MqttLink(dev_a(secured, tmp_path), "dev-a")
    link.subscribe("edged/v1/dev-b/#", lambda _m: None)
    with pytest.raises(SubscriptionRefused, match="'edged/v1/dev-b/#'"):
        async with link:
            pytest.fail("the body must not run")
    assert link.state().phase is LinkPhase.STOPPED


@run_async
async def test_async_with_fails_naming_the_broker_when_nobody_listens() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    link = MqttLink(broker_settings(url), "dev-a")
    with pytest.raises(CloudUnavailable, match=f"MQTT broker {url} not reachable: connect to 127.0.0.1"):
        async with link:
            pytest.fail("the body must not run")
    assert link.state().phase is LinkPhase.STOPPED


@run_async
async def test_subscribe_and_wait_on_a_link_that_is_down_is_cloud_unavailable() -> None:
    link = MqttLink(broker_settings(f"mqtt://127.0.0.1:{free_port()}"), "dev-a")
    with pytest.raises(CloudUnavailable, match="is down"):
        await link.subscribe_and_wait("edged/v1/dev-a/#", lambda _m: None)


def test_thread_link_round_trip_from_synchronous_code(mosquitto: MosquittoBroker) -> None:
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    connects: queue.Queue[None] = queue.Queue()
    link = ThreadLink.own(broker_settings(mosquitto.url), "sync-user")
    link.subscribe("edged/v1/+/hello", lambda topic, payload: received.put((topic, payload)))
    link.add_connect_listener(lambda: connects.put(None))
    link.start()
    try:
        link.wait_connected(WAIT_S)
        assert link.connected
        connects.get(timeout=WAIT_S)
        link.publish_and_wait("edged/v1/dev-a/hello", b"hi", WAIT_S)
        assert received.get(timeout=WAIT_S) == ("edged/v1/dev-a/hello", b"hi")
        link.publish("edged/v1/dev-b/hello", b"again")  # fire and forget, from this thread
        assert received.get(timeout=WAIT_S) == ("edged/v1/dev-b/hello", b"again")
    finally:
        link.stop()
    assert not link.connected


def test_thread_link_takes_a_password_it_is_given(secured: MosquittoBroker) -> None:
    link = ThreadLink.own(broker_settings(secured.url, username="dev-a"), "dev-a", password="dev-a")
    link.start()
    try:
        link.wait_connected(WAIT_S)
    finally:
        link.stop()


def test_thread_link_wait_connected_names_the_broker_and_the_error() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    link = ThreadLink.own(broker_settings(url), "sync-user")
    link.start()
    try:
        with pytest.raises(CloudUnavailable, match=f"broker {url} not reachable within 0.5 s: connect to"):
            link.wait_connected(0.5)
    finally:
        link.stop()


def test_thread_link_delivers_to_the_link_s_handler_type(mosquitto: MosquittoBroker) -> None:
    """The handler ThreadLink registers is an ordinary MqttLink handler: one per filter, the last one wins."""
    got: queue.Queue[str] = queue.Queue()
    link = ThreadLink.own(broker_settings(mosquitto.url), "sync-user")
    link.subscribe("edged/v1/x", lambda _t, _p: got.put("first"))
    link.subscribe("edged/v1/x", lambda _t, _p: got.put("second"))
    link.start()
    try:
        link.wait_connected(WAIT_S)
        link.publish_and_wait("edged/v1/x", b"", WAIT_S)
        assert got.get(timeout=WAIT_S) == "second"
        link.publish_and_wait("edged/v1/x", b"", WAIT_S)
        assert got.get(timeout=WAIT_S) == "second"
    finally:
        link.stop()


def test_thread_link_start_with_a_bad_password_file_names_it_and_leaves_nothing_running(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such.password"
    link = ThreadLink.own(
        broker_settings(mosquitto.url, username="dev-a", password_file=str(missing)), "dev-a"
    )
    with pytest.raises(ConfigError, match=r"broker\.password_file = '.*no-such\.password': No such file"):
        link.start()
    assert not any(thread.name == "edged-mqtt" for thread in threading.enumerate())
    link.stop()  # nothing to stop: a no-op
