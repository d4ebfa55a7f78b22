"""`edged calibrate`'s search and profile writing, on results built by hand."""

from __future__ import annotations

import argparse
import json
import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest

from edged.cli import calibrate as calibrate_cli
from edged.cli.eval import write_records
from edged.cli.main import main
from edged.config import effective_profile, load_config, load_profile
from edged.config.routing import RoutingSettings, ScoreWeights
from edged.domain import ConfidenceSummary, TokenSignals
from edged.errors import ConfigError
from edged.evaluation.calibration import (
    Calibration,
    calibrate,
    outcome,
    profile_routing,
    to_toml,
    write_profile,
)
from edged.evaluation.items import EvalItem
from edged.evaluation.local import LocalAnswer, ScriptedAnswerer
from edged.evaluation.runner import ItemResult, ReferenceCloud, run_items
from edged.evaluation.setup import EvalSetup
from edged.routing.cascade import CascadeMonitor
from edged.routing.score import auto_score


def _results(n: int = 200, seed: int = 1) -> list[ItemResult]:
    """Local answers that are right more often when the router score and the mean logprob are high."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        router = float(rng.uniform(0.02, 0.98))
        logprob = float(rng.uniform(-3.0, -0.05))
        correct = bool(rng.random() < 0.8 * router + 0.2 * (1 + logprob / 3))
        confidence = ConfidenceSummary.of([TokenSignals(logprob, 1.0, 1.0)] * 4)
        out.append(ItemResult(f"i{i}", "t", "", correct, True, router, confidence, 0.0))
    return out


def test_outcome_counts_either_stage() -> None:
    router = np.array([0.1, 0.9, 0.9, 0.9])
    auto = np.array([0.9, 0.1, 0.9, 0.9])
    local = np.array([0.0, 0.0, 1.0, 0.0])
    cloud = np.ones(4)
    assert outcome(router, auto, local, cloud, 0.5, 0.5) == (0.5, 0.75)
    assert outcome(router, auto, local, cloud, 0.0, 0.0) == (0.0, 0.25)


def test_target_cloud_share_is_respected_and_quality_beats_random() -> None:
    results = _results()
    cal = calibrate(results, target_cloud_share=0.4)
    assert cal.target_met
    assert cal.cloud_share <= 0.4
    random_quality = cal.local_quality + 0.4 * (cal.cloud_quality - cal.local_quality)
    assert cal.quality > random_quality
    assert cal.weights.router_logit > 0  # a higher router score means a likelier right local answer
    assert cal.weights.mean_logprob > 0


def test_target_quality_takes_the_smallest_share() -> None:
    results = _results()
    cal = calibrate(results, target_quality=0.9)
    assert cal.target_met
    assert cal.quality >= 0.9 * cal.cloud_quality
    looser = calibrate(results, target_quality=0.8)
    assert looser.cloud_share <= cal.cloud_share


def test_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(_results(10))


def test_profile_is_written_validated_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text('name = "kiosk"\n[limits]\ncpu_percent_max = 75.0\n[routing]\ncascade_tokens = 6\n')
    cal = calibrate(_results(), target_cloud_share=0.3)
    write_profile(path, cal)
    profile = load_profile(path)
    assert profile.name == "kiosk"
    assert profile.limits.cpu_percent_max == 75.0
    assert profile.routing.cascade_tokens == 6
    assert profile.routing.router_threshold == pytest.approx(cal.router_threshold, abs=1e-6)
    assert profile.routing.confidence_threshold == pytest.approx(cal.confidence_threshold, abs=1e-6)
    assert profile.routing.score_weights == cal.weights


def test_an_invalid_existing_profile_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "profile.toml"
    path.write_text("[routing]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"routing\.bogus"):
        write_profile(path, calibrate(_results(), target_cloud_share=0.3))
    assert path.read_text() == "[routing]\nbogus = 1\n"


def test_to_toml_round_trips() -> None:
    document = {"name": "a", "tags": ["x", "y"], "routing": {"on": True, "w": {"bias": -1.5}}}
    assert tomllib.loads(to_toml(document)) == document


# ---------------------------------------------------------------- the streaming cascade in the modelled policy

CASCADE = RoutingSettings(cascade_tokens=4)  # threshold 0.15, the default


def _streamed_results(n: int = 300, seed: int = 1, collapse_share: float = 0.25) -> list[ItemResult]:
    """Like _results, with 12-token answers and their per-token signals; in a quarter of them the first 4
    tokens collapse (logprob -6) and the answer recovers afterwards, so the cascade stops answers that the
    finished-answer score alone would keep."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        router = float(rng.uniform(0.02, 0.98))
        level = float(rng.uniform(-3.0, -0.05))
        collapse = bool(rng.random() < collapse_share)
        correct = bool(rng.random() < 0.8 * router + 0.2 * (1 + level / 3))
        head = [TokenSignals(-6.0 if collapse else level, 1.0, 1.0)] * 4
        signals = (*head, *[TokenSignals(level, 1.0, 1.0)] * 8)
        confidence = ConfidenceSummary.of(list(signals))
        out.append(ItemResult(f"i{i}", "t", "", correct, True, router, confidence, 0.0, signals=signals))
    return out


def _as_the_daemon(
    results: list[ItemResult], cal: Calibration, routing: RoutingSettings
) -> tuple[float, float, float]:
    """(cloud share, quality, share stopped by the cascade) of AUTO requests with the written profile: the
    router threshold, then the daemon's own CascadeMonitor fed the tokens one by one, then the finished
    answer's AUTO score."""
    to_cloud, stopped = [], []
    for r in results:
        assert r.router_score is not None
        collapsed = False
        if r.router_score >= cal.router_threshold and routing.cascade:
            monitor = CascadeMonitor(
                k=routing.cascade_tokens,
                threshold=routing.cascade_threshold,
                weights=cal.weights,
                router_score=r.router_score,
            )
            hook = monitor.engine_hook()
            collapsed = any(hook(signals, index) for index, signals in enumerate(r.signals))
        cloud = (
            r.router_score < cal.router_threshold
            or collapsed
            or auto_score(r.router_score, r.confidence, cal.weights) < cal.confidence_threshold
        )
        to_cloud.append(cloud)
        stopped.append(collapsed)
    quality = [r.cloud_correct if c else r.local_correct for r, c in zip(results, to_cloud, strict=True)]
    return float(np.mean(to_cloud)), float(np.mean(quality)), float(np.mean(stopped))


def test_outcome_counts_the_cascade_between_the_stages() -> None:
    router = np.array([0.1, 0.9, 0.9, 0.9, 0.9])
    auto = np.array([0.9, 0.1, 0.9, 0.9, 0.9])
    local = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    cloud = np.ones(5)
    cascade = np.array([True, True, False, True, False])
    assert outcome(router, auto, local, cloud, 0.5, 0.5) == (0.4, 0.6)
    assert outcome(router, auto, local, cloud, 0.5, 0.5, cascade) == (0.6, 0.8)
    assert outcome(router, auto, local, cloud, 0.0, 0.0, cascade) == (0.6, 0.8)


@pytest.mark.parametrize("target", [{"target_cloud_share": 0.4}, {"target_quality": 0.8}])
def test_reported_share_includes_the_cascade_and_is_what_the_daemon_does(target: dict[str, float]) -> None:
    results = _streamed_results()
    cal = calibrate(results, routing=CASCADE, **target)
    assert cal.target_met
    assert cal.cascade_note == "k=4, threshold=0.15"
    assert cal.cascade_share is not None
    assert cal.cascade_share > 0.05
    share, quality, stopped = _as_the_daemon(results, cal, CASCADE)
    assert cal.cloud_share == pytest.approx(share)
    assert cal.quality == pytest.approx(quality)
    assert cal.cascade_share == pytest.approx(stopped)
    if "target_cloud_share" in target:
        assert share <= 0.4
    else:
        assert quality >= 0.8 * cal.cloud_quality


def test_without_the_cascade_in_the_model_the_daemon_overshoots_the_target() -> None:
    """The audit's case: thresholds chosen for the two-stage policy, run by a daemon with the cascade on."""
    results = _streamed_results()
    blind = calibrate(results, target_cloud_share=0.4, routing=RoutingSettings(cascade=False))
    assert blind.cascade_share is None
    assert "off" in blind.cascade_note
    assert blind.cloud_share <= 0.4
    assert _as_the_daemon(results, blind, CASCADE)[0] > 0.45
    aware = calibrate(results, target_cloud_share=0.4, routing=CASCADE)
    assert _as_the_daemon(results, aware, CASCADE)[0] <= 0.4


def test_the_cascade_uses_the_profiles_k_and_only_answers_that_reach_it() -> None:
    results = _streamed_results()
    late = calibrate(results, target_cloud_share=0.4, routing=RoutingSettings(cascade_tokens=13))
    assert late.cascade_share == 0.0  # 12-token answers never reach a verdict at 13 tokens
    assert late.cascade_note == "k=13, threshold=0.15"


def test_results_without_signals_calibrate_without_the_cascade_and_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.evaluation.calibration"):
        cal = calibrate(_results(), target_cloud_share=0.4, routing=CASCADE)
    assert cal.target_met
    assert cal.cloud_share <= 0.4
    assert cal.cascade_share is None
    assert "200 of 200 results have no per-token signals" in cal.cascade_note
    assert "cascade not modelled" in caplog.text
    assert "200 of 200 results have no per-token signals" in caplog.text


def test_run_items_keeps_the_signals_and_records_carry_them(tmp_path: Path) -> None:
    item = EvalItem("a", "What is 2 + 2?", "4", "number")
    signals = (TokenSignals(-0.12345, 2.5, 0.5), TokenSignals(-1.0, 0.25, 1.75))
    answerer = ScriptedAnswerer({item.prompt: LocalAnswer("4", signals)})
    weights = ScoreWeights()
    [result] = run_items([item], answerer, router=None, weights=weights, cloud=ReferenceCloud(), max_tokens=8)
    assert result.signals == signals
    assert result.has_signals
    assert ItemResult("b", "t", "", True, True, None, result.confidence, 0.5).has_signals is False
    write_records(tmp_path / "records.jsonl", [result])
    record = json.loads((tmp_path / "records.jsonl").read_text())
    assert record["signals"] == [[-0.1235, 2.5, 0.5], [-1.0, 0.25, 1.75]]
    assert record["confidence"]["tokens"] == 2


def test_cascade_settings_come_from_the_profile_being_written(tmp_path: Path) -> None:
    config = load_config(None)
    base = effective_profile(config, [])
    path = tmp_path / "profile.toml"
    assert profile_routing(base, path) == base.routing  # no file yet: the effective profile's (defaults)
    path.write_text('name = "kiosk"\n[routing]\ncascade_tokens = 4\ncascade_threshold = 0.2\n')
    routing = profile_routing(base, path)
    assert (routing.cascade, routing.cascade_tokens, routing.cascade_threshold) == (True, 4, 0.2)
    path.write_text("[routing]\ncascade = false\n")
    assert profile_routing(base, path).cascade is False


def _cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, results: list[ItemResult], profile_text: str
) -> tuple[int, Path]:
    config = load_config(None)
    setup = EvalSetup(config, effective_profile(config, []), None, ScoreWeights())

    def prepare(args: argparse.Namespace) -> tuple[EvalSetup, list[EvalItem]]:
        return setup, []

    def evaluate(*args: object, **kwargs: object) -> list[ItemResult]:
        return results

    monkeypatch.setattr(calibrate_cli, "prepare", prepare)
    monkeypatch.setattr(calibrate_cli, "evaluate", evaluate)
    path = tmp_path / "profile.toml"
    path.write_text(profile_text)
    code = main(["calibrate", "set.jsonl", "--target-cloud-share", "0.4", "--write", str(path)])
    return code, path


def test_cli_models_the_written_profiles_cascade_and_reports_its_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _streamed_results()
    code, path = _cli(tmp_path, monkeypatch, results, "[routing]\ncascade_tokens = 4\n")
    out = capsys.readouterr().out
    assert code == 0, out
    cal = calibrate(results, target_cloud_share=0.4, routing=CASCADE)
    assert f"cloud share {cal.cloud_share:.3f}" in out
    assert f"cascade (k=4, threshold=0.15): escalates {cal.cascade_share:.3f} of requests after 4" in out
    written = load_profile(path).routing
    assert written.cascade_tokens == 4
    assert written.score_weights == cal.weights


def test_cli_says_when_the_cascade_is_not_modelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _cli(tmp_path, monkeypatch, _results(), "")
    assert code == 0
    out = capsys.readouterr().out
    assert "cascade not modelled: 200 of 200 results have no per-token signals" in out
