"""`edged calibrate`'s search and profile writing, on results built by hand."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from edged.config import load_profile
from edged.domain import ConfidenceSummary, TokenSignals
from edged.errors import ConfigError
from edged.evaluation.calibration import calibrate, outcome, to_toml, write_profile
from edged.evaluation.runner import ItemResult


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
