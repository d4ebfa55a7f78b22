"""`edged calibrate`: choose the AUTO policy's weights and thresholds to hit a target on a labelled set.

The policy is the daemon's: an item goes to the cloud when its router score is below `router_threshold`
(before generation) or its AUTO score is below `confidence_threshold` (after). Calibration fits the AUTO
score's weights on the set (logistic regression over the router score and confidence signals), then searches
both thresholds on a grid of score quantiles. With a router that has an answer model the daemon scores a
finished answer with that model and its own weights, so the confidence threshold is searched on those
scores, and the fitted weights serve the cascade (which judges partial answers by the router score):

    --target-cloud-share X   the best quality whose cloud share is at most X
    --target-quality Q       the smallest cloud share whose quality is at least Q x always-cloud quality
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.config.loader import parse_profile, read_toml
from edged.config.routing import ScoreWeights
from edged.evaluation.fit import fit_auto_weights
from edged.evaluation.runner import ItemResult
from edged.routing.score import auto_score

logger = logging.getLogger(__name__)

GRID = 60


@dataclass(frozen=True, slots=True)
class Calibration:
    router_threshold: float
    confidence_threshold: float
    weights: ScoreWeights
    cloud_share: float
    quality: float
    cloud_quality: float
    local_quality: float
    target_met: bool


def _candidates(scores: npt.NDArray[np.float64]) -> list[float]:
    """0 (never) plus score quantiles: thresholds that split the set at distinct places."""
    quantiles = np.quantile(scores, np.linspace(0.0, 1.0, GRID + 1)) if scores.size else np.zeros(0)
    values = {0.0, *(round(float(q), 6) for q in quantiles), 1.0}
    return sorted(v for v in values if 0.0 <= v <= 1.0)


def outcome(
    router: npt.NDArray[np.float64],
    auto: npt.NDArray[np.float64],
    local: npt.NDArray[np.float64],
    cloud: npt.NDArray[np.float64],
    router_threshold: float,
    confidence_threshold: float,
) -> tuple[float, float]:
    """(cloud share, quality) of the two-stage policy at these thresholds."""
    to_cloud = (router < router_threshold) | (auto < confidence_threshold)
    quality = np.where(to_cloud, cloud, local).mean()
    return float(to_cloud.mean()), float(quality)


def calibrate(
    results: Sequence[ItemResult],
    *,
    target_cloud_share: float | None = None,
    target_quality: float | None = None,
) -> Calibration:
    if (target_cloud_share is None) == (target_quality is None):
        raise ValueError("give exactly one of target_cloud_share and target_quality")
    has_router = all(r.router_score is not None for r in results)
    router_scores = [r.router_score if has_router else None for r in results]
    weights = fit_auto_weights(
        router_scores, [r.confidence for r in results], [r.local_correct for r in results]
    )
    router = np.array([r.router_score if has_router and r.router_score is not None else 1.0 for r in results])
    auto = np.array(
        [auto_score(s, r.confidence, weights) for s, r in zip(router_scores, results, strict=True)]
    )
    if all(r.answer_score is not None for r in results):
        # A router with an answer model: the daemon judges finished answers by the answer model's AUTO score
        # (its own trained weights), so the thresholds are searched on that; the fitted weights still serve
        # the cascade.
        auto = np.array([r.auto_score for r in results])
    local = np.array([float(r.local_correct) for r in results])
    cloud = np.array([float(r.cloud_correct) for r in results])
    grid = [
        (rt, ct, *outcome(router, auto, local, cloud, rt, ct))
        for rt in (_candidates(router) if has_router else [0.0])
        for ct in _candidates(auto)
    ]
    if target_cloud_share is not None:
        feasible = [g for g in grid if g[2] <= target_cloud_share + 1e-9]
        met = bool(feasible)
        pool = feasible or [min(grid, key=lambda g: g[2])]
        best = max(pool, key=lambda g: (g[3], -g[2]))
    else:
        goal = (target_quality or 0.0) * float(cloud.mean())
        feasible = [g for g in grid if g[3] >= goal - 1e-9]
        met = bool(feasible)
        best = min(feasible, key=lambda g: (g[2], -g[3])) if feasible else max(grid, key=lambda g: g[3])
    return Calibration(
        router_threshold=best[0],
        confidence_threshold=best[1],
        weights=weights,
        cloud_share=best[2],
        quality=best[3],
        cloud_quality=float(cloud.mean()),
        local_quality=float(local.mean()),
        target_met=met,
    )


def _toml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_scalar(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} {value!r} to TOML")


def to_toml(document: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML rendering of a profile document (scalars and lists first, then sub-tables)."""
    scalars = [f"{k} = {_toml_scalar(v)}" for k, v in document.items() if not isinstance(v, Mapping)]
    lines = [*scalars]
    for key, value in document.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{key}" if prefix else key
            body = to_toml(value, name)
            lines += ["", f"[{name}]", body] if body else ["", f"[{name}]"]
    return "\n".join(line for line in lines).strip("\n")


def write_profile(path: Path, calibration: Calibration) -> None:
    """Set [routing] thresholds and score_weights in the profile file (created if missing), keeping the rest;
    the result is validated as a DeviceProfile before the file is atomically replaced."""
    document: dict[str, Any] = read_toml(path) if path.exists() else {}
    routing = dict(document.get("routing", {}))
    routing["router_threshold"] = round(calibration.router_threshold, 6)
    routing["confidence_threshold"] = round(calibration.confidence_threshold, 6)
    routing["score_weights"] = calibration.weights.model_dump()
    document["routing"] = routing
    parse_profile(document, str(path))
    text = "# routing thresholds and weights written by `edged calibrate`\n" + to_toml(document) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    Path(temporary).replace(path)
