"""MqttLink against a real Mosquitto: phases, reconnect with backoff, re-subscription, passwords, TLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edged.comms.dispatch import BoundedInbox
from edged.comms.link import MqttLink
from edged.comms.messages import LinkPhase, LinkState
from edged.errors import CloudUnavailable, ConfigError, NoCloudLink
from tests.brokers import MosquittoBroker, free_port
from tests.escalation_parts import WAIT_S, broker_settings, make_tls, run_async, until

pytestmark = [pytest.mark.mqtt]


def _phases(link: MqttLink) -> list[LinkPhase]:
    seen: list[LinkPhase] = []

    def note(state: LinkState) -> None:
        seen.append(state.phase)

    link.add_state_listener(note)
    return seen


@run_async
async def test_link_reports_its_phases_and_round_trip(mosquitto: MosquittoBroker) -> None:
    link = MqttLink(broker_settings(mosquitto.url), client_id="probe")
    phases = _phases(link)
    link.subscribe("t/#", lambda _m: None)
    assert link.state().phase is LinkPhase.STOPPED
    await link.start()
    assert await link.wait_up(WAIT_S)
    await until(lambda: link.state().rtt_ms is not None, "a round trip sample (SUBACK)")
    state = link.state()
    assert state.connected
    assert state.broker == mosquitto.url
    assert (state.last_error, state.failed_attempts, state.next_retry_s) == (None, 0, None)
    await link.stop()
    assert link.state().phase is LinkPhase.STOPPED
    await until(lambda: phases[-1:] == [LinkPhase.STOPPED], "the STOPPED notification")
    assert phases == [LinkPhase.CONNECTING, LinkPhase.CONNECTED, LinkPhase.STOPPED]


@run_async
async def test_link_retries_with_backoff_until_the_broker_comes(tmp_path: Path) -> None:
    port = free_port()
    link = MqttLink(broker_settings(f"mqtt://127.0.0.1:{port}"), client_id="patient")
    inbox = BoundedInbox(10)
    link.subscribe("t/#", inbox.put)
    await link.start()
    try:
        await until(lambda: link.state().failed_attempts >= 2, "two failed attempts")
        state = link.state()
        assert not state.connected
        assert "Connection refused" in (state.last_error or "")
        with pytest.raises(CloudUnavailable, match="is down"):
            link.publish("t/x", b"1")
        with MosquittoBroker(workdir=tmp_path / "late", port=port):
            assert await link.wait_up(WAIT_S)
            assert (link.state().failed_attempts, link.state().last_error) == (0, None)
            link.publish("t/x", b"made it")
            message = await inbox.get()
            assert message is not None
            assert message.payload == b"made it"
    finally:
        await link.stop()


@run_async
async def test_subscriptions_are_remade_after_a_broker_restart(mosquitto: MosquittoBroker) -> None:
    reader = MqttLink(broker_settings(mosquitto.url), client_id="reader")
    writer = MqttLink(broker_settings(mosquitto.url), client_id="writer")
    phases = _phases(reader)
    inbox = BoundedInbox(10)
    reader.subscribe("t/#", inbox.put)
    for link in (reader, writer):
        await link.start()
        assert await link.wait_up(WAIT_S)
    try:
        mosquitto.restart()
        await until(lambda: phases.count(LinkPhase.CONNECTED) == 2, "the reader to reconnect")
        await until(writer.is_up, "the writer to reconnect")
        assert LinkPhase.DISCONNECTED in phases[phases.index(LinkPhase.CONNECTED) :]
        assert await writer.publish("t/after", b"x") == 0  # PUBACK success: someone is subscribed again
        message = await inbox.get()
        assert message is not None
        assert message.topic == "t/after"
    finally:
        await reader.stop()
        await writer.stop()


def test_a_link_needs_a_broker_url() -> None:
    with pytest.raises(NoCloudLink, match=r"broker\.url is not set"):
        MqttLink(broker_settings(None), client_id="x")  # type: ignore[arg-type]


def _password_broker(tmp_path: Path) -> MosquittoBroker:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "dev-a", "right"], check=True)
    return MosquittoBroker(
        workdir=tmp_path / "mq", allow_anonymous=False, extra_config=(f"password_file {passwd}",)
    )


@run_async
async def test_password_login_and_a_refused_password(tmp_path: Path) -> None:
    (tmp_path / "good").write_text("right\n")
    (tmp_path / "bad").write_text("wrong\n")
    with _password_broker(tmp_path) as broker:
        good = MqttLink(
            broker_settings(broker.url, username="dev-a", password_file=tmp_path / "good"), "dev-a"
        )
        bad = MqttLink(broker_settings(broker.url, username="dev-a", password_file=tmp_path / "bad"), "dev-b")
        await good.start()
        await bad.start()
        try:
            assert await good.wait_up(WAIT_S)
            await until(lambda: bad.state().failed_attempts >= 1, "the refused login")
            assert "refused the connection" in (bad.state().last_error or "")
            assert not bad.is_up()
        finally:
            await good.stop()
            await bad.stop()


@run_async
async def test_a_missing_password_file_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    settings = broker_settings("mqtt://127.0.0.1:1", username="dev-a", password_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match=r"broker\.password_file = '.*nope': No such file"):
        await MqttLink(settings, "dev-a").start()


def _tls_broker(tmp_path: Path, *, mutual: bool) -> tuple[MosquittoBroker, Path]:
    tls = make_tls(tmp_path / "tls")
    lines = [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
    if mutual:
        lines += ["require_certificate true", "use_identity_as_username true"]
    return MosquittoBroker(workdir=tmp_path / "mq", extra_config=tuple(lines)), tls.ca


@run_async
async def test_mutual_tls_connects_with_a_client_certificate(tmp_path: Path) -> None:
    broker, ca = _tls_broker(tmp_path, mutual=True)
    tls = tmp_path / "tls"
    with broker:
        url = f"mqtts://127.0.0.1:{broker.port}"
        settings = broker_settings(
            url, tls_ca_file=ca, tls_cert_file=tls / "client.crt", tls_key_file=tls / "client.key"
        )
        link = MqttLink(settings, "dev-a")
        inbox = BoundedInbox(10)
        link.subscribe("t/#", inbox.put)
        without_cert = MqttLink(broker_settings(url, tls_ca_file=ca), "dev-b")
        await link.start()
        await without_cert.start()
        try:
            assert await link.wait_up(WAIT_S)
            link.publish("t/tls", b"over TLS")
            message = await inbox.get()
            assert message is not None
            assert message.payload == b"over TLS"
            await until(lambda: without_cert.state().failed_attempts >= 1, "the refused handshake")
            assert not without_cert.is_up()
        finally:
            await link.stop()
            await without_cert.stop()


# paho leaves the socket of a failed TLS handshake to the garbage collector (it never becomes the client's
# socket); the cycle is freed at the next collection, which pytest reports as an unraisable ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@run_async
async def test_tls_refuses_a_broker_certificate_from_an_unknown_ca(tmp_path: Path) -> None:
    broker, _ca = _tls_broker(tmp_path, mutual=False)
    with broker:
        link = MqttLink(broker_settings(f"mqtts://127.0.0.1:{broker.port}"), "dev-a")  # system CAs only
        await link.start()
        try:
            await until(lambda: link.state().failed_attempts >= 1, "the failed handshake")
            assert "CERTIFICATE_VERIFY_FAILED" in (link.state().last_error or "")
        finally:
            await link.stop()
