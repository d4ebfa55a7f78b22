"""The Grafana dashboard is built on exactly the series edged exports: none missing, none made up."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from edged.domain import Answer, Mode, Provenance, Source, Timing, Usage
from edged.telemetry.metrics import EdgedMetrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "edged-dashboard.json"
SERIES_IN_EXPR = re.compile(r"\b((?:edged|process)_[a-z0-9_]+)\b")
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_info", "_created")


def exported_sample_names() -> dict[str, str]:
    """Every sample name edged exports once each series has a value, mapped to its metric family."""
    metrics = EdgedMetrics(device_id="d")
    metrics.record_answer(
        Mode.AUTO,
        Answer("r", "t", "stop", Provenance(Source.LOCAL, "m"), Usage(1, 1), Timing(1.0, 2.0, 3.0)),
    )
    metrics.record_escalation("low_confidence")
    metrics.record_fallback("link_down")
    metrics.record_detections({"PERSON": 1})
    metrics.record_redaction()
    metrics.record_blocked_escalation("health")
    metrics.set_budget_remaining("requests", "hour", 1)
    names: dict[str, str] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            names[sample.name] = family.name
    return names


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_every_series_in_the_dashboard_is_exported() -> None:
    exported = exported_sample_names()
    used = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in SERIES_IN_EXPR.findall(expr)
    }
    assert used, "no PromQL expressions found"
    assert used - exported.keys() == set()


def test_every_edged_metric_family_is_on_the_dashboard() -> None:
    exported = exported_sample_names()
    used = {
        name
        for expr in expressions(json.loads(DASHBOARD.read_text()))
        for name in SERIES_IN_EXPR.findall(expr)
    }
    families_used = {exported[name] for name in used if name in exported}
    edged_families = {family for family in exported.values() if family.startswith("edged_")}
    assert edged_families - families_used == set()


def test_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "edged-overview"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "instance"}
    for expr in expressions(dashboard):
        assert expr.count("(") == expr.count(")"), expr
        selectors = re.findall(r"\{([^}]*)\}", expr)
        assert selectors, expr
        assert all('instance=~"$instance"' in selector for selector in selectors), expr  # the device picker
