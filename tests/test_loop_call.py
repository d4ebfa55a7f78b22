"""Another thread reads loop-owned state on the loop (call_on_loop), and the MQTT link publishes an immutable
snapshot for threads that must not wait (issue 17: 10)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edged.comms.link import MqttLink
from edged.comms.messages import LinkPhase
from edged.service.loop_call import call_on_loop
from tests.brokers import MosquittoBroker
from tests.daemon_harness import running_daemon
from tests.escalation_parts import WAIT_S, broker_settings, run_async


@contextmanager
def loop_thread() -> Iterator[tuple[asyncio.AbstractEventLoop, threading.Thread]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()
    try:
        yield loop, thread
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


def test_the_read_runs_on_the_loop_thread_and_its_result_comes_back() -> None:
    with loop_thread() as (loop, _thread):
        assert call_on_loop(loop, threading.current_thread, WAIT_S).name == "test-loop"


def test_the_read_s_exception_reaches_the_caller() -> None:
    def broken() -> int:
        raise ValueError("no such state")

    with loop_thread() as (loop, _thread), pytest.raises(ValueError, match="no such state"):
        call_on_loop(loop, broken, WAIT_S)


def test_a_busy_loop_gives_timeout_error_and_the_read_never_runs() -> None:
    ran: list[bool] = []
    release = threading.Event()
    with loop_thread() as (loop, _thread):
        loop.call_soon_threadsafe(release.wait)  # the loop is stuck until released
        with pytest.raises(TimeoutError, match=r"within 0\.05s"):
            call_on_loop(loop, lambda: ran.append(True), 0.05)
        release.set()
        assert call_on_loop(loop, lambda: "after", WAIT_S) == "after"
    assert ran == []


@run_async
async def test_on_the_loop_itself_the_read_runs_at_once() -> None:
    loop = asyncio.get_running_loop()
    assert call_on_loop(loop, threading.current_thread, WAIT_S) is threading.current_thread()


@pytest.mark.mqtt
@run_async
async def test_the_link_snapshot_is_immutable_and_follows_every_phase_change(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with MosquittoBroker(workdir=tmp_path_factory.mktemp("broker")) as broker:
        link = MqttLink(broker_settings(broker.url), client_id="snap")
        assert link.snapshot().phase is LinkPhase.STOPPED
        await link.start()
        assert await link.wait_up(WAIT_S)
        snapshot = link.snapshot()
        assert snapshot.connected
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.phase = LinkPhase.STOPPED  # type: ignore[misc]
        seen: list[bool] = []
        reader = threading.Thread(target=lambda: seen.append(link.snapshot().connected))
        reader.start()
        reader.join(WAIT_S)
        assert seen == [True]
        await link.stop()
        assert link.snapshot().phase is LinkPhase.STOPPED
        assert snapshot.connected  # the old snapshot was replaced, not changed


def test_the_daemon_s_fleet_telemetry_is_taken_on_its_loop(tmp_path: Path) -> None:
    """The fleet thread's telemetry source reads the status on the daemon's loop: while the loop is stuck it
    gets no half-read status, but a bounded error (and the status once the loop runs again)."""
    with running_daemon(tmp_path) as running:
        assert running.daemon._telemetry()["state"] == "serving"
        release = threading.Event()
        running.loop.call_soon_threadsafe(release.wait)
        try:
            stuck = running.daemon._telemetry()
        finally:
            release.set()
        assert stuck == {"error": "the event loop did not run the read within 5.0s"}
        assert running.daemon._telemetry()["state"] == "serving"
