"""The cloud budget: rolling hour and day windows for requests and tokens, on a clock the test moves."""

from __future__ import annotations

import pytest

from edged.config.budget import BudgetSettings
from edged.errors import BudgetExhausted, InvalidRequest
from edged.routing.budget import CloudBudget, FakeClock
from edged.routing.report import budget_info, budget_remaining


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
    budget.update(BudgetSettings(requests_per_day=3))
    assert budget.exhausted() == "requests_per_day"


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
    assert budget_remaining(budget.status()) == [("requests", "hour", 9.0), ("tokens", "day", 750.0)]
