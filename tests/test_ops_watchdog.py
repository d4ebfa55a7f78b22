"""The watchdog and the engine: a hung engine thread stops WATCHDOG=1 (systemd then kills and restarts edged), a
dead one ends the daemon with exit code 1 (Restart=on-failure restarts it).

A real daemon runs in this process on the bundled model, its notifier pointed at a test-owned socket with a 2 s
watchdog (WATCHDOG=1 every second while healthy). The engine is made to hang the way a stuck native call would
look from outside: a job whose event sink blocks holds the real engine thread (a sink must never block, see
GenerationJob), so its heartbeat stops. Waits follow the daemon's own log lines, never a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edged.config import parse_config
from edged.domain import Message, SamplingParams
from edged.engine import EngineEvent, GenerationJob, LlamaEngine
from edged.routing.load import FakeSystemSource
from edged.service.daemon import Daemon
from edged.service.sdnotify import ServiceNotifier
from tests.escalation_parts import wait_until
from tests.ops_support import START_TIMEOUT_S, NotifyListener

pytestmark = pytest.mark.slow

HUNG_WARNING = "the engine thread has not reported"
DIED_ERROR = "the local engine died"


@dataclass
class WatchedDaemon:
    daemon: Daemon
    notify: NotifyListener
    exit_code: Future[int]

    def wait_ready(self) -> int:
        assert self.notify.wait_until(lambda: self.notify.find("READY", "1") is not None, START_TIMEOUT_S), (
            f"no READY=1: {self.notify.messages}"
        )
        ready = self.notify.find("READY", "1")
        assert ready is not None
        return ready

    def watchdogs(self, after: int) -> int:
        return self.notify.count("WATCHDOG", "1", after=after)

    def engine(self) -> LlamaEngine:
        (engine,) = self.daemon.local.engines().values()
        return engine


@contextmanager
def watched_daemon(tmp: Path) -> Iterator[WatchedDaemon]:
    """A daemon on its own loop thread whose notifier reports to a NotifyListener with WATCHDOG_USEC=2s."""
    notify = NotifyListener(tmp)
    notifier = ServiceNotifier(notify.env_value, watchdog_timeout_s=2.0)
    config = parse_config(
        {
            "device_id": "watchdog-test",
            "state_dir": str(tmp / "state"),
            "api": {"socket": str(tmp / "edged.sock")},
            "engine": {"threads": 2, "slots": 2, "context_per_slot": 512},
        }
    )
    daemon = Daemon(config, notifier=notifier, load_source=FakeSystemSource())
    loop = asyncio.new_event_loop()
    exit_code: Future[int] = Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            exit_code.set_result(loop.run_until_complete(daemon.run(handle_signals=False)))
        except BaseException as exc:
            exit_code.set_exception(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="watched-daemon", daemon=True)
    thread.start()
    try:
        yield WatchedDaemon(daemon, notify, exit_code)
    finally:
        if not exit_code.done():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: the daemon ended by itself
                loop.call_soon_threadsafe(daemon.request_stop)
        thread.join(60)
        notify.close()
        notifier.close()


def log_count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for record in list(caplog.records) if text in record.getMessage())


def test_a_hung_engine_thread_stops_the_watchdog_until_it_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edged.service.daemon")
    with watched_daemon(tmp_path) as edged:
        ready = edged.wait_ready()
        assert edged.notify.wait_until(lambda: edged.watchdogs(ready) >= 2, START_TIMEOUT_S), (
            f"no WATCHDOG=1 from a healthy daemon: {edged.notify.messages}"
        )

        entered, release = threading.Event(), threading.Event()

        def stuck_sink(event: EngineEvent) -> None:  # runs on the engine thread and holds it
            entered.set()
            release.wait(START_TIMEOUT_S)  # bounded: a failing test must not leave the thread stuck for good

        job = GenerationJob("hang", (Message("user", "Hi"),), SamplingParams(max_tokens=4), emit=stuck_sink)
        edged.engine().submit(job)
        try:
            assert entered.wait(START_TIMEOUT_S), "the engine never delivered an event"
            # The serving loop notices the silent engine (after _HEARTBEAT_STALE_S) and says so each round.
            wait_until(
                lambda: log_count(caplog, HUNG_WARNING) >= 2, "the hung engine noticed", START_TIMEOUT_S
            )
            pings = edged.watchdogs(ready)
            wait_until(lambda: log_count(caplog, HUNG_WARNING) >= 4, "two more rounds", START_TIMEOUT_S)
            assert edged.watchdogs(ready) == pings, "WATCHDOG=1 went on while the engine thread hung"
            assert (
                edged.daemon.status().state == "serving"
            )  # not restarted by itself: systemd's watchdog does
        finally:
            release.set()

        # The engine thread runs again: so do the pings.
        assert edged.notify.wait_until(lambda: edged.watchdogs(ready) > pings, START_TIMEOUT_S), (
            f"no WATCHDOG=1 after the engine recovered: {edged.notify.messages}"
        )
    assert edged.exit_code.result(timeout=0) == 0


def test_a_dead_engine_ends_the_daemon_with_exit_code_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="edged.service.daemon")
    with watched_daemon(tmp_path) as edged:
        ready = edged.wait_ready()
        # The engine thread ends under the daemon (closed from outside, as a crash would leave it: not alive).
        edged.engine().close()
        assert edged.exit_code.result(timeout=START_TIMEOUT_S) == 1
        assert log_count(caplog, DIED_ERROR) == 1
        assert edged.notify.find("STOPPING", "1", after=ready) is not None, edged.notify.messages
