"""`edged calibrate`: choose the AUTO policy's weights and thresholds to hit a target on a labelled set.

The policy is the daemon's AUTO policy: an item goes to the cloud when its router score is below
`router_threshold` (before generation), or the streaming cascade stops it (with `routing.cascade` on: an
answer of at least `cascade_tokens` = k tokens whose AUTO score over its first k tokens, with the fitted
weights, is below `cascade_threshold`), or its AUTO score is below `confidence_threshold` (after).
Calibration fits the AUTO score's weights on the set (logistic regression over the router score and
confidence signals), then searches the router and confidence thresholds on a grid of score quantiles; the
cascade's k and threshold stay as the profile sets them, but its verdicts move with the fitted weights, so
they are replayed from each answer's per-token signals and counted in the cloud share. With a router that
has an answer model the daemon scores a finished answer with that model and its own weights, so the
confidence threshold is searched on those scores, and the fitted weights serve the cascade (which judges
partial answers by the router score):

    --target-cloud-share X   the best quality whose cloud share is at most X
    --target-quality Q       the smallest cloud share whose quality is at least Q x always-cloud quality
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.config import DeviceProfile
from edged.config.loader import load_profile, parse_profile, read_toml
from edged.config.profile import deep_merge
from edged.config.routing import RoutingSettings, ScoreWeights
from edged.domain import ConfidenceSummary
from edged.evaluation.fit import fit_auto_weights
from edged.evaluation.runner import ItemResult
from edged.files import write_atomic
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
    # Share of all items the streaming cascade escalates at the chosen thresholds (already counted in
    # cloud_share); None when the cascade was not modelled, `cascade_note` says why (or how it was).
    cascade_share: float | None = None
    cascade_note: str = "not modelled"


def _candidates(scores: npt.NDArray[np.float64]) -> list[float]:
    """0 (never) plus score quantiles: thresholds that split the set at distinct places."""
    quantiles = np.quantile(scores, np.linspace(0.0, 1.0, GRID + 1)) if scores.size else np.zeros(0)
    values = {0.0, *(round(float(q), 6) for q in quantiles), 1.0}
    return sorted(v for v in values if 0.0 <= v <= 1.0)


Mask = npt.NDArray[np.bool_]


def stages(
    router: npt.NDArray[np.float64],
    auto: npt.NDArray[np.float64],
    cascade: Mask | None,
    router_threshold: float,
    confidence_threshold: float,
) -> tuple[Mask, Mask, Mask]:
    """Which items go to the cloud at each stage, in the daemon's order (disjoint): before generation (router
    score), at the cascade's verdict after k tokens (`cascade`: the items it would stop), after generation
    (AUTO score)."""
    before = router < router_threshold
    early = ~before & cascade if cascade is not None else np.zeros_like(before)
    after = ~before & ~early & (auto < confidence_threshold)
    return before, early, after


def outcome(
    router: npt.NDArray[np.float64],
    auto: npt.NDArray[np.float64],
    local: npt.NDArray[np.float64],
    cloud: npt.NDArray[np.float64],
    router_threshold: float,
    confidence_threshold: float,
    cascade: Mask | None = None,
) -> tuple[float, float]:
    """(cloud share, quality) of the AUTO policy at these thresholds (with the cascade's verdicts, if given)."""
    before, early, after = stages(router, auto, cascade, router_threshold, confidence_threshold)
    to_cloud = before | early | after
    quality = np.where(to_cloud, cloud, local).mean()
    return float(to_cloud.mean()), float(quality)


def profile_routing(profile: DeviceProfile, path: Path) -> RoutingSettings:
    """The [routing] settings the daemon would run with: `profile` (the effective profile of the config and
    --profile layers) with the profile file being calibrated layered on top when it exists already."""
    if not path.exists():
        return profile.routing
    layer = load_profile(path)
    merged = deep_merge(profile.model_dump(), layer.model_dump(exclude_unset=True))
    return parse_profile(merged, str(path)).routing


def cascade_verdicts(
    results: Sequence[ItemResult],
    router_scores: Sequence[float | None],
    weights: ScoreWeights,
    routing: RoutingSettings,
) -> tuple[Mask | None, str]:
    """The items the streaming cascade would stop (AUTO score over the first k tokens below its threshold,
    with these weights), and a note on how it was modelled; (None, why) when it cannot be or is off."""
    if not routing.cascade:
        return None, "off in the profile (routing.cascade = false)"
    missing = sum(not r.has_signals for r in results)
    if missing:
        note = (
            f"{missing} of {len(results)} results have no per-token signals, so the cascade "
            f"(k={routing.cascade_tokens}, threshold={routing.cascade_threshold:g}) cannot be replayed; "
            "the daemon's cloud share can be higher than reported"
        )
        logger.warning("calibrate: cascade not modelled: %s", note)
        return None, note
    k, threshold = routing.cascade_tokens, routing.cascade_threshold
    stopped = [
        len(r.signals) >= k
        and auto_score(score, ConfidenceSummary.of(list(r.signals[:k])), weights) < threshold
        for r, score in zip(results, router_scores, strict=True)
    ]
    return np.array(stopped, dtype=bool), f"k={k}, threshold={threshold:g}"


def calibrate(
    results: Sequence[ItemResult],
    *,
    target_cloud_share: float | None = None,
    target_quality: float | None = None,
    routing: RoutingSettings | None = None,
) -> Calibration:
    """Fit the weights and search the thresholds; `routing` gives the cascade settings (default: the
    defaults, cascade on)."""
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
    cascade, cascade_note = cascade_verdicts(results, router_scores, weights, routing or RoutingSettings())
    local = np.array([float(r.local_correct) for r in results])
    cloud = np.array([float(r.cloud_correct) for r in results])
    grid = [
        (rt, ct, *outcome(router, auto, local, cloud, rt, ct, cascade))
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
    cascade_share = None
    if cascade is not None:
        cascade_share = float(stages(router, auto, cascade, best[0], best[1])[1].mean())
    return Calibration(
        router_threshold=best[0],
        confidence_threshold=best[1],
        weights=weights,
        cloud_share=best[2],
        quality=best[3],
        cloud_quality=float(cloud.mean()),
        local_quality=float(local.mean()),
        target_met=met,
        cascade_share=cascade_share,
        cascade_note=cascade_note,
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
    write_atomic(path, text.encode("utf-8"))
