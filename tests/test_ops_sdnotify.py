"""sd_notify against a test-owned datagram socket, both a filesystem path and an abstract '@' name."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.service.sdnotify import ServiceNotifier, parse_notify_address, watchdog_timeout


class NotifyListener:
    """What systemd does on its side: a bound datagram socket that collects NAME=VALUE assignments."""

    def __init__(self, env_value: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(parse_notify_address(env_value))
        self.sock.settimeout(5.0)  # only bounds a test that would otherwise hang; nothing asserts on it

    def receive(self) -> dict[str, str]:
        data = self.sock.recv(4096)
        lines = data.decode().split("\n")
        return dict(line.split("=", 1) for line in lines)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    env_value = (
        str(tmp_path / "notify.sock") if request.param == "path" else f"@edged-test-{uuid.uuid4().hex}"
    )
    listener = NotifyListener(env_value)
    yield listener
    listener.close()


@pytest.fixture
def notifier(listener: NotifyListener) -> Iterator[ServiceNotifier]:
    with ServiceNotifier.from_environment({"NOTIFY_SOCKET": listener.env_value}) as notifier:
        yield notifier


def test_ready_status_watchdog_stopping_arrive_in_order(
    notifier: ServiceNotifier, listener: NotifyListener
) -> None:
    assert notifier.enabled
    assert notifier.ready("serving smollm2 on /run/edged/edged.sock")
    assert notifier.status("2 of 4 slots busy")
    assert notifier.watchdog()
    assert notifier.stopping("draining 1 request")

    assert listener.receive() == {"READY": "1", "STATUS": "serving smollm2 on /run/edged/edged.sock"}
    assert listener.receive() == {"STATUS": "2 of 4 slots busy"}
    assert listener.receive() == {"WATCHDOG": "1"}
    assert listener.receive() == {"STOPPING": "1", "STATUS": "draining 1 request"}


def test_reloading_carries_the_monotonic_clock(notifier: ServiceNotifier, listener: NotifyListener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading("reloading /etc/edged/edged.toml")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    fields = listener.receive()
    assert fields["RELOADING"] == "1"
    assert fields["STATUS"] == "reloading /etc/edged/edged.toml"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_status_text_cannot_inject_another_assignment(
    notifier: ServiceNotifier, listener: NotifyListener
) -> None:
    assert notifier.status("bad model\nREADY=1\0STOPPING=1")
    fields = listener.receive()
    assert fields == {"STATUS": "bad model READY=1 STOPPING=1"}


def test_long_status_is_cut_to_one_bounded_line(notifier: ServiceNotifier, listener: NotifyListener) -> None:
    assert notifier.status("x" * 10_000)
    assert listener.receive()["STATUS"] == "x" * 512


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = ServiceNotifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready("ready")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None


@pytest.mark.parametrize("value", ["relative/notify.sock", "vsock:2:1234", "@"])
def test_an_unusable_notify_socket_disables_notifications_with_a_warning(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.service.sdnotify"):
        notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    assert not notifier.ready()
    assert repr(value) in caplog.text


def test_parse_notify_address_names_the_variable_and_value() -> None:
    with pytest.raises(ValueError, match=r"NOTIFY_SOCKET='tcp://x'.*absolute socket path"):
        parse_notify_address("tcp://x")
    assert parse_notify_address("@systemd/notify") == b"\0systemd/notify"
    assert parse_notify_address("/run/systemd/notify") == "/run/systemd/notify"


def test_a_vanished_receiver_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listener = NotifyListener(str(tmp_path / "gone.sock"))
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": listener.env_value})
    listener.close()
    (tmp_path / "gone.sock").unlink()

    with caplog.at_level(logging.DEBUG, logger="edged.service.sdnotify"):
        results = [notifier.watchdog() for _ in range(3)]
    assert results == [False, False, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()

    revived = NotifyListener(listener.env_value)
    try:
        with caplog.at_level(logging.INFO, logger="edged.service.sdnotify"):
            assert notifier.watchdog()
        assert revived.receive() == {"WATCHDOG": "1"}
        assert "works again" in caplog.text
    finally:
        revived.close()
        notifier.close()


def test_unset_environment_keeps_children_from_notifying(listener: NotifyListener) -> None:
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "30000000", "PATH": "/usr/bin"}
    with ServiceNotifier.from_environment(env, unset_environment=True) as notifier:
        assert env == {"PATH": "/usr/bin"}
        assert notifier.watchdog_interval() == 15.0
        assert notifier.watchdog()
        assert listener.receive() == {"WATCHDOG": "1"}


def test_watchdog_interval_is_half_the_timeout_for_this_process() -> None:
    pid = os.getpid()
    assert watchdog_timeout({"WATCHDOG_USEC": "20000000"}) == 20.0
    assert watchdog_timeout({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(pid)}) == 20.0
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": "/run/x.sock", "WATCHDOG_USEC": "3000000"})
    assert notifier.watchdog_timeout() == 3.0
    assert notifier.watchdog_interval() == 1.5


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"},  # meant for another process
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "soon"},
    ],
)
def test_watchdog_off_or_not_ours(environ: dict[str, str]) -> None:
    assert watchdog_timeout(environ, pid=4242) is None
