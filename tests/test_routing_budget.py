"""The cloud budget: rolling hour and day windows for requests and tokens, on a clock the test moves, kept in a
file across restarts."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from edged.cli.status import render
from edged.config.budget import BudgetSettings
from edged.errors import BudgetExhausted, InvalidRequest
from edged.routing.budget import (
    BUDGET_FILE,
    MAX_FILE_BYTES,
    BudgetFile,
    CloudBudget,
    FakeClock,
    estimated_tokens,
)
from edged.service.report import budget_info, budget_remaining
from edged.v1 import inference_pb2 as pb


def test_unlimited_by_default() -> None:
    budget = CloudBudget(BudgetSettings(), FakeClock())
    for _ in range(1000):
        budget.charge_request()
        budget.charge_tokens(10_000)
    assert budget.exhausted() is None
    assert budget.status().requests_today == 1000


def test_requests_per_hour_rolls_off_after_an_hour() -> None:
    clock = FakeClock()
    budget = CloudBudget(BudgetSettings(requests_per_hour=2), clock)
    budget.charge_request()
    clock.advance(1800)
    budget.charge_request()
    assert budget.exhausted() == "requests_per_hour"
    with pytest.raises(BudgetExhausted, match="requests_per_hour = 2"):
        budget.charge_request()
    clock.advance(1800)  # the first request is now an hour old
    assert budget.exhausted() is None
    budget.charge_request()
    status = budget.status()
    assert (status.requests_this_hour, status.requests_today) == (2, 3)


def test_tokens_per_day_and_status() -> None:
    clock = FakeClock()
    budget = CloudBudget(BudgetSettings(tokens_per_hour=1000, tokens_per_day=1500), clock)
    budget.charge_request()
    budget.charge_tokens(900)
    assert budget.exhausted() is None
    budget.charge_tokens(200)
    assert budget.exhausted() == "tokens_per_hour"
    clock.advance(3600)
    assert budget.exhausted() is None
    budget.charge_tokens(400)
    status = budget.status()
    assert status.exhausted == "tokens_per_day"
    assert (status.tokens_this_hour, status.tokens_today) == (400, 1500)
    assert status.limits.tokens_per_day == 1500
    clock.advance(86400 - 3600)
    assert budget.status().tokens_today == 400


def test_new_limits_keep_use_so_far() -> None:
    clock = FakeClock()
    budget = CloudBudget(BudgetSettings(), clock)
    for _ in range(3):
        budget.charge_request()
    limited = budget.reconfigured(BudgetSettings(requests_per_day=3))
    assert limited.exhausted() == "requests_per_day"
    assert budget.exhausted() is None  # the old limits stay with the old budget, the use is shared
    budget.charge_tokens(10)
    assert limited.status().tokens_today == 10


def test_negative_tokens_are_refused_by_name() -> None:
    with pytest.raises(InvalidRequest, match="tokens: -5 is negative"):
        CloudBudget(BudgetSettings(), FakeClock()).charge_tokens(-5)


def test_budget_as_status_and_metrics() -> None:
    budget = CloudBudget(BudgetSettings(requests_per_hour=10, tokens_per_day=1000), FakeClock())
    budget.charge_request()
    budget.charge_tokens(250)
    info = budget_info(budget.status())
    assert (info.requests_this_hour, info.tokens_today, info.requests_per_hour_limit) == (1, 250, 10)
    assert not info.exhausted
    inf = float("inf")  # an unlimited window: the series is there (issue 17: 22), never "No data"
    assert budget_remaining(budget.status()) == [
        ("requests", "hour", 9.0),
        ("requests", "day", inf),
        ("tokens", "hour", inf),
        ("tokens", "day", 750.0),
    ]
    unlimited = CloudBudget(BudgetSettings(), FakeClock()).status()
    assert [remaining for _, _, remaining in budget_remaining(unlimited)] == [inf] * 4


def test_the_status_command_shows_the_budget_with_no_limit_set() -> None:
    status = pb.StatusResponse()
    status.budget.requests_this_hour = 3
    status.budget.tokens_today = 120
    assert "cloud budget: 3/- req/h, 120/- tok/day (no limit set)" in render(status)
    status.budget.requests_per_hour_limit = 10
    assert "cloud budget: 3/10 req/h, 120/- tok/day\n" in render(status) + "\n"


# ---- kept across restarts ------------------------------------------------------------------------------------


def saved_budget(path: Path, settings: BudgetSettings, clock: FakeClock, wall: FakeClock) -> CloudBudget:
    """A budget saved in `path`: `clock` is its monotonic clock, `wall` the file's wall clock."""
    return CloudBudget(settings, clock, BudgetFile(path, wall))


def test_a_restart_keeps_the_spent_windows(tmp_path: Path) -> None:
    path = tmp_path / BUDGET_FILE
    limits = BudgetSettings(requests_per_hour=2, tokens_per_day=1000)
    clock, wall = FakeClock(500.0), FakeClock(1_800_000_000.0)
    before = saved_budget(path, limits, clock, wall)
    before.charge_request()
    before.charge_tokens(300)
    clock.advance(600)
    wall.advance(600)
    before.charge_request()
    before.charge_tokens(700)
    assert before.exhausted() == "requests_per_hour"
    # the process ends; a new one starts 30 minutes later on a fresh monotonic clock
    wall.advance(1800)
    after = saved_budget(path, limits, FakeClock(10.0), wall)
    status = after.status()
    assert (status.requests_this_hour, status.requests_today) == (2, 2)
    assert (status.tokens_this_hour, status.tokens_today) == (1000, 1000)
    assert status.exhausted == "requests_per_hour"
    with pytest.raises(BudgetExhausted, match="requests_per_hour = 2"):
        after.charge_request()


def test_restored_use_leaves_its_windows_at_its_own_age(tmp_path: Path) -> None:
    path = tmp_path / BUDGET_FILE
    wall = FakeClock(1_800_000_000.0)
    first = saved_budget(path, BudgetSettings(), FakeClock(), wall)
    first.charge_request()
    first.charge_tokens(50)
    wall.advance(2 * 3600)  # two hours later: out of the hour windows, still in the day windows
    clock = FakeClock(0.0)
    second = saved_budget(path, BudgetSettings(), clock, wall)
    status = second.status()
    assert (status.requests_this_hour, status.requests_today, status.tokens_today) == (0, 1, 50)
    clock.advance(22 * 3600)  # 24 hours after the charge: gone from the day windows too
    assert second.status().requests_today == 0
    wall.advance(22 * 3600)
    assert saved_budget(path, BudgetSettings(), FakeClock(), wall).status().requests_today == 0


def test_a_clock_that_went_back_counts_saved_use_as_now(tmp_path: Path) -> None:
    path = tmp_path / BUDGET_FILE
    wall = FakeClock(1_800_000_000.0)
    saved_budget(path, BudgetSettings(), FakeClock(), wall).charge_request()
    wall.advance(-7200)  # the saved charge now looks two hours in the future
    status = saved_budget(path, BudgetSettings(), FakeClock(), wall).status()
    assert (status.requests_this_hour, status.requests_today) == (1, 1)


def test_the_file_is_private_and_written_whole(tmp_path: Path) -> None:
    path = tmp_path / BUDGET_FILE
    budget = CloudBudget.open(BudgetSettings(), tmp_path)
    budget.charge_request()
    budget.charge_tokens(12)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [BUDGET_FILE]  # no temporary file left behind
    document = json.loads(path.read_text())
    assert document["format"] == 1
    assert [amount for _stamp, amount in document["requests"]] == [1]
    assert [amount for _stamp, amount in document["tokens"]] == [12]


def test_the_file_stays_bounded_however_many_charges(tmp_path: Path) -> None:
    path = tmp_path / BUDGET_FILE
    clock, wall = FakeClock(), FakeClock(1_800_000_000.0)
    budget = saved_budget(path, BudgetSettings(), clock, wall)
    for _ in range(3 * 24 * 60):  # one request every 20 seconds for a day
        budget.charge_request()
        clock.advance(20)
        wall.advance(20)
    buckets = json.loads(path.read_text())["requests"]
    assert len(buckets) <= 24 * 60 + 2
    assert path.stat().st_size < MAX_FILE_BYTES
    # nothing is lost by the buckets: the last day's requests are all counted, after a restart too
    assert budget.status().requests_today == 3 * 24 * 60
    restored = saved_budget(path, BudgetSettings(), FakeClock(), wall).status()
    assert restored.requests_today == 3 * 24 * 60


def test_concurrent_charges_leave_the_newest_state_on_disk(tmp_path: Path) -> None:
    budget = CloudBudget.open(BudgetSettings(), tmp_path)

    def charge() -> None:
        for _ in range(25):
            budget.charge_request()
            budget.charge_tokens(2)

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    restored = CloudBudget.open(BudgetSettings(), tmp_path).status()
    assert (restored.requests_today, restored.tokens_today) == (200, 400)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b'{"format": 2, "requests": [], "tokens": []}',
        b'{"format": 1, "requests": [[1800000000.0, -3]], "tokens": []}',
        b'{"format": 1, "requests": [["yesterday", 1]], "tokens": []}',
        b'{"format": 1, "requests": [[1800000000.0, 1]]}',
        b"[" * 100_000,
        b" " * (MAX_FILE_BYTES + 1),
    ],
    ids=["not-json", "not-utf8", "format", "negative", "stamp", "missing-kind", "deep", "oversized"],
)
def test_a_corrupt_file_means_a_fresh_budget_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / BUDGET_FILE
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="edged.routing.budget"):
        budget = CloudBudget.open(BudgetSettings(requests_per_day=5), tmp_path)
    assert budget.status().requests_today == 0
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "starting with a fresh budget" in caplog.records[0].getMessage()
    budget.charge_request()  # and the next charge writes a good file over it
    assert CloudBudget.open(BudgetSettings(), tmp_path).status().requests_today == 1


def test_a_missing_file_is_a_first_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="edged.routing.budget"):
        budget = CloudBudget.open(BudgetSettings(), tmp_path / "not-yet")
    assert budget.status().requests_today == 0
    assert [r.levelname for r in caplog.records] == ["INFO"]


def test_a_failed_save_keeps_the_budget_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    budget = CloudBudget.open(BudgetSettings(requests_per_hour=1), tmp_path / "missing-directory")
    with caplog.at_level(logging.ERROR, logger="edged.routing.budget"):
        budget.charge_request()
        budget.charge_tokens(5)
    assert budget.exhausted() == "requests_per_hour"
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1  # once per failure streak


def test_estimated_tokens_round_up() -> None:
    assert [estimated_tokens(n) for n in (0, 1, 4, 5, 400)] == [0, 1, 1, 2, 100]
