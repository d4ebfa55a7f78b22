"""The daemon's state files are written by one writer thread, never on the event loop, in order, and nothing
handed over is lost at close (issue 17: 5)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from edged.config import parse_config
from edged.config.budget import BudgetSettings
from edged.config.privacy import PrivacySettings
from edged.domain import Message
from edged.files import FileWriter
from edged.routing.budget import BUDGET_FILE, BudgetFile, CloudBudget, FakeClock
from edged.service.daemon import Daemon
from edged.sovereignty.audit import LOG_NAME, AuditLog, AuditRoute
from edged.sovereignty.verdict import decide


@contextmanager
def held(writer: FileWriter) -> Iterator[threading.Event]:
    """The writer busy with a write that waits for the returned event (set on leaving)."""
    release = threading.Event()
    writer.submit(release.wait)
    try:
        yield release
    finally:
        release.set()


class ThreadNotingFile(BudgetFile):
    """A budget file that notes the thread of every save (a seam: the file the budget is given)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.save_threads: list[str] = []

    def save(self, ages: Mapping[str, Iterable[tuple[float, int]]]) -> None:
        self.save_threads.append(threading.current_thread().name)
        super().save(ages)


def note(seen: list[tuple[int, str]], index: int) -> None:
    seen.append((index, threading.current_thread().name))


def test_the_writer_runs_writes_in_order_on_its_own_thread_and_close_drains_them() -> None:
    writer = FileWriter("test-writer")
    seen: list[tuple[int, str]] = []
    with held(writer) as release:
        for index in range(50):
            writer.submit(functools.partial(note, seen, index))
        assert seen == []  # handed over, not run by the caller
        release.set()
        writer.close()
    assert seen == [(i, "test-writer") for i in range(50)]
    writer.submit(functools.partial(note, seen, 50))  # after close: at once
    assert seen[-1] == (50, threading.current_thread().name)


def test_a_failing_write_does_not_stop_the_writer() -> None:
    writer = FileWriter("test-writer")
    seen: list[int] = []

    def broken() -> None:
        raise OSError("disk full")

    writer.submit(broken)
    writer.submit(lambda: seen.append(1))
    writer.close()
    assert seen == [1]


def test_budget_charges_save_on_the_writer_thread_not_the_caller(tmp_path: Path) -> None:
    file = ThreadNotingFile(tmp_path / BUDGET_FILE)
    writer = FileWriter("test-writer")
    budget = CloudBudget(BudgetSettings(), FakeClock(), file, writer)
    with held(writer):
        budget.charge_request()
        budget.charge_tokens(40)
        budget.charge_tokens(2)
        assert not file.path.exists()  # the charges returned without touching the disk
    writer.close()
    assert file.save_threads == ["test-writer"]  # one save of the newest state for the three charges
    saved = json.loads(file.path.read_bytes())
    assert [amount for _, amount in saved["requests"]] == [1]
    assert [amount for _, amount in saved["tokens"]] == [42]


def test_audit_appends_happen_on_the_writer_thread_in_order(tmp_path: Path) -> None:
    writer = FileWriter("test-writer")
    log = AuditLog(tmp_path / "audit", clock=lambda: datetime(2026, 5, 1, tzinfo=UTC), writer=writer)
    verdict = decide(PrivacySettings(), [[]], sensitive=False, declared=())
    with held(writer):
        for index in range(5):
            log.record(
                request_id=f"req-{index}",
                route=AuditRoute.LOCAL,
                verdict=verdict,
                messages=[Message("user", "hi")],
            )
        assert not (tmp_path / "audit" / LOG_NAME).exists()
    writer.close()  # closing drains: every record handed over is written
    lines = (tmp_path / "audit" / LOG_NAME).read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"req-{i}" for i in range(5)]


def test_the_daemon_saves_its_budget_through_its_writer(tmp_path: Path) -> None:
    config = parse_config({"device_id": "d1", "state_dir": str(tmp_path / "state")})
    daemon = Daemon(config)
    (tmp_path / "state").mkdir()
    with held(daemon.state_writer):
        daemon.budget.charge_request()
        assert not (tmp_path / "state" / BUDGET_FILE).exists()
    daemon.state_writer.close()
    assert (tmp_path / "state" / BUDGET_FILE).exists()
