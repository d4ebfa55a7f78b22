"""A SUBSCRIBE the broker refuses (SUBACK >= 0x80, e.g. its ACL) is an error naming the topic and the reason,
and the worker's and the daemon's start fail with it (issue 17: 9).

Mosquitto 2.0's acl_file (the shipped edged.acl) grants every SUBSCRIBE and filters deliveries instead, so these
tests use its dynamic-security plugin, which checks subscriptions as most hosted brokers do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_bridge.backends import create_backend
from cloud_bridge.worker import BridgeWorker
from edged.comms.link import MqttLink
from edged.comms.messages import LinkPhase
from edged.errors import SubscriptionRefused
from tests.brokers import MosquittoBroker, dynsec_broker, password_file
from tests.daemon_harness import running_daemon
from tests.escalation_parts import WAIT_S, bridge_config, broker_settings, run_async, until

pytestmark = [pytest.mark.mqtt]

# dev-a may subscribe to its own topics and to worker presence, nothing else
DEVICE_FILTERS = ("edged/v1/dev-a/#", "edged/v1/@workers/+")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    with dynsec_broker(tmp_path / "mq", {"dev-a": DEVICE_FILTERS}) as running:
        yield running


def login(tmp_path: Path) -> dict[str, str]:
    return {"username": "dev-a", "password_file": str(password_file(tmp_path / "auth", "dev-a"))}


@run_async
async def test_a_worker_whose_subscription_is_refused_fails_to_start_naming_it(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    config = bridge_config(broker.url, "w1", tmp_path, broker=login(tmp_path))
    worker = BridgeWorker(config, create_backend(config.backend, config.state_dir))
    with pytest.raises(SubscriptionRefused) as info:
        await worker.start()
    assert info.value.topic_filter == "$share/edged-workers/edged/v1/+/escalate"
    assert info.value.code == 0x87
    assert str(info.value) == (
        f"MQTT broker {broker.url} refused the subscription to '$share/edged-workers/edged/v1/+/escalate': "
        "Not authorized (reason code 0x87); check the broker's ACL for this client's user and "
        "broker.topic_prefix"
    )
    assert worker.link.state().phase is LinkPhase.STOPPED  # the failed start left nothing running


@run_async
async def test_granted_subscriptions_start_and_a_later_refusal_is_the_link_s_last_error(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    link = MqttLink(broker_settings(broker.url, **login(tmp_path)), client_id="dev-a")
    link.subscribe("edged/v1/dev-a/reply/+", lambda _m: None)
    await link.start()
    try:
        assert await link.wait_first_connect() is True
        assert link.state().last_error is None
        link.subscribe("edged/v1/dev-b/reply/+", lambda _m: None)  # while connected: not dev-a's to read
        await until(lambda: link.state().last_error is not None, "the SUBACK", WAIT_S)
        assert "refused the subscription to 'edged/v1/dev-b/reply/+': Not authorized" in str(
            link.state().last_error
        )
    finally:
        await link.stop()


def test_the_daemon_start_fails_with_the_refused_subscription(
    broker: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # logged in as dev-a but calling itself dev-b: its reply topic edged/v1/dev-b/reply/... is not dev-a's
    settings = {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **login(tmp_path)}
    with (
        pytest.raises(RuntimeError, match=r"exit code 1"),
        running_daemon(tmp_path, {"device_id": "dev-b", "broker": settings}),
    ):
        pass
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("startup failed")]
    assert len(failures) == 1, failures
    assert f"MQTT broker {broker.url} refused the subscription to 'edged/v1/dev-b/reply/" in failures[0]
    assert "Not authorized (reason code 0x87)" in failures[0]
