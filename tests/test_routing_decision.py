"""The routing decision table: every mode x sensitive x link x load x budget gives the documented route and
reasons (the tables in docs/routing.md are the specification), plus the rules spelled out one by one."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from edged.config.limits import LoadLimits
from edged.domain import Mode
from edged.errors import BudgetExhausted, CloudUnavailable, NoCloudLink, SensitiveDataBlocked
from edged.pipeline.answers import escalation_reason
from edged.routing.decision import Link, Route, RouteDecision, RouteInputs, decide
from edged.routing.load import EngineLoad, LoadSnapshot, SystemReading

DOCS = Path(__file__).resolve().parents[1] / "docs" / "routing.md"
LOW = LoadSnapshot(
    SystemReading(cpu_percent=20.0, cpu_count=2, memory_available_mb=4096.0), EngineLoad(), 0.0
)
HIGH = LoadSnapshot(
    SystemReading(cpu_percent=97.0, cpu_count=2, memory_available_mb=4096.0), EngineLoad(), 0.0
)
LINKS = {"up": Link.UP, "down": Link.DOWN, "disabled": Link.DISABLED}


def _inputs(**overrides: object) -> RouteInputs:
    values: dict[str, object] = {
        "mode": Mode.AUTO,
        "cloud_allowed": True,
        "load": LOW,
        "limits": LoadLimits(),
        "link": Link.UP,
        "budget_exhausted": None,
        "router_score": 0.9,
        "router_threshold": 0.5,
    }
    values.update(overrides)
    return RouteInputs(**values)  # type: ignore[arg-type]


def _row(decision: RouteDecision) -> tuple[str, str, str]:
    route = decision.route.value
    if decision.refusal is not None:
        route += f" ({decision.refusal.__name__})"
    return route, "yes" if decision.degraded else "no", " ".join(decision.reasons)


def _documented(table: str) -> list[list[str]]:
    """Rows of the markdown table between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in the docs."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- table:{table} -->(.*?)<!-- /table:{table} -->", text, re.DOTALL)
    assert match is not None, f"docs/routing.md has no table {table}"
    lines = [line for line in match.group(1).strip().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_decision_table_matches_the_documented_one() -> None:
    rows = _documented("decision")
    assert len(rows) == 5 * 2 * 2 * 2 * 2
    generated = []
    for mode, sensitive, link, load, budget in itertools.product(
        Mode, ("no", "yes"), ("up", "down"), ("low", "high"), ("left", "spent")
    ):
        decision = decide(
            _inputs(
                mode=mode,
                cloud_allowed=sensitive == "no",
                link=LINKS[link],
                load=LOW if load == "low" else HIGH,
                budget_exhausted=None if budget == "left" else "requests_per_hour",
            )
        )
        generated.append([mode.value, sensitive, link, load, budget, *_row(decision)])
    assert sorted(generated) == sorted(rows)


def test_score_table_matches_the_documented_one() -> None:
    rows = _documented("scores")
    generated = []
    for row in rows:
        mode, stage, router, confidence, link = row[:5]
        decision = decide(
            _inputs(
                mode=Mode(mode),
                router_score=float(router),
                link=LINKS[link],
                confidence=None if stage == "before" else float(confidence),
                confidence_threshold=0.5,
            )
        )
        generated.append([*row[:5], *_row(decision)])
    assert generated == rows
    assert {r[5] for r in rows} == {"LOCAL", "CLOUD"}


@pytest.mark.parametrize("link", list(Link))
@pytest.mark.parametrize("confidence", [None, 0.0])
def test_local_only_never_leaves_whatever_else_holds(link: Link, confidence: float | None) -> None:
    decision = decide(
        _inputs(mode=Mode.LOCAL_ONLY, load=HIGH, router_score=0.0, link=link, confidence=confidence)
    )
    assert decision.route is Route.LOCAL
    assert decision.reasons == ("mode=LOCAL_ONLY",)


def test_auto_offloads_each_limit_by_name() -> None:
    system = SystemReading(
        cpu_percent=95.0,
        load_average_1m=20.0,
        cpu_count=2,
        memory_available_mb=10.0,
        temperature_c=91.0,
        battery_percent=5.0,
        charging=False,
    )
    load = LoadSnapshot(system, EngineLoad(queue_depth=9, slots_busy=8, slots_total=8), 0.0)
    decision = decide(_inputs(load=load))
    assert decision.route is Route.CLOUD
    assert decision.reasons == (
        "mode=AUTO",
        "over_limit:cpu_percent",
        "over_limit:load_average",
        "over_limit:memory_available_mb",
        "over_limit:temperature_c",
        "over_limit:battery_percent",
        "over_limit:queue_depth",
        "router_score=0.90>=threshold=0.50",
    )


def test_a_charging_battery_is_not_a_limit() -> None:
    system = SystemReading(cpu_count=2, memory_available_mb=4096.0, battery_percent=5.0, charging=True)
    decision = decide(_inputs(load=LoadSnapshot(system, EngineLoad(), 0.0)))
    assert decision.route is Route.LOCAL


def test_per_request_threshold_moves_the_router_cut() -> None:
    assert decide(_inputs(router_score=0.6, router_threshold=0.7)).route is Route.CLOUD
    assert decide(_inputs(router_score=0.6, router_threshold=0.5)).route is Route.LOCAL
    assert (
        "router_score=0.60<threshold=0.70" in decide(_inputs(router_score=0.6, router_threshold=0.7)).reasons
    )


def test_without_a_router_auto_stays_local_and_says_so() -> None:
    decision = decide(_inputs(router_score=None))
    assert decision.route is Route.LOCAL
    assert decision.reasons == ("mode=AUTO", "router=unavailable")


def test_without_a_broker_the_missing_router_is_named_by_its_cause() -> None:
    """No broker, no router is loaded (nothing to route to): the reason says why, not that one is broken."""
    decision = decide(_inputs(router_score=None, link=Link.DISABLED))
    assert decision.route is Route.LOCAL
    assert decision.reasons == ("mode=AUTO", "router=no_cloud_link")


def test_a_signal_only_router_says_so() -> None:
    """A router trained for another local model gives no score; the reasons name why, before and after."""
    before = decide(_inputs(router_score=None, router_signal_only=True))
    assert before.route is Route.LOCAL
    assert before.reasons == ("mode=AUTO", "router=other_local_model")
    after = decide(_inputs(router_score=None, router_signal_only=True, confidence=0.2))
    assert after.route is Route.CLOUD
    assert after.reasons == ("mode=AUTO", "router=other_local_model", "confidence=0.20<threshold=0.50")


def test_cascade_verdict_names_the_tokens_judged() -> None:
    decision = decide(_inputs(confidence=0.05, confidence_threshold=0.15, cascade_tokens=8))
    assert decision.route is Route.CLOUD
    assert decision.reasons[-1] == "confidence@8=0.05<threshold=0.15"


def test_budget_names_the_spent_window_and_link_wins_over_budget() -> None:
    spent = decide(_inputs(mode=Mode.PREFER_CLOUD, budget_exhausted="tokens_per_hour"))
    assert spent.reasons == ("mode=PREFER_CLOUD", "budget_exhausted:tokens_per_hour")
    both = decide(_inputs(mode=Mode.PREFER_CLOUD, budget_exhausted="tokens_per_hour", link=Link.DOWN))
    assert both.reasons == ("mode=PREFER_CLOUD", "link_down")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"cloud_allowed": False}, SensitiveDataBlocked),
        ({"link": Link.DISABLED}, NoCloudLink),
        ({"link": Link.DOWN}, CloudUnavailable),
        ({"budget_exhausted": "requests_per_day"}, BudgetExhausted),
    ],
)
def test_cloud_only_refusals_map_to_domain_errors(
    overrides: dict[str, object], error: type[Exception]
) -> None:
    decision = decide(_inputs(mode=Mode.CLOUD_ONLY, **overrides))
    assert decision.route is Route.REFUSE
    raised = decision.error()
    assert isinstance(raised, error)
    assert "mode=CLOUD_ONLY" in str(raised)


def test_only_refusals_have_an_error() -> None:
    with pytest.raises(ValueError, match="not a refusal"):
        decide(_inputs()).error()


@pytest.mark.parametrize(
    ("overrides", "label"),
    [
        # issue 17 (22): over the CPU limit with a router that votes local was counted as "router_score"
        ({"load": HIGH, "router_score": 0.9}, "over_limit"),
        ({"load": HIGH, "router_score": 0.1}, "over_limit"),  # the first rule that sent it
        ({"router_score": 0.1}, "router_score"),
        ({"mode": Mode.CLOUD_ONLY}, "mode=CLOUD_ONLY"),
        ({"mode": Mode.PREFER_CLOUD, "router_score": 0.9}, "mode=PREFER_CLOUD"),
        ({"confidence": 0.1, "confidence_threshold": 0.5, "router_score": 0.9}, "confidence"),
    ],
)
def test_the_escalation_label_is_the_rule_that_sent_the_request(
    overrides: dict[str, object], label: str
) -> None:
    decision = decide(_inputs(**overrides))
    assert decision.route is Route.CLOUD, decision
    assert escalation_reason(decision.reasons) == label
