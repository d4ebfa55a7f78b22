"""What `edged eval` and `edged calibrate` take from the daemon's config: the effective profile, the router
and the AUTO score's weights, exactly as the daemon would use them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edged.config import DaemonConfig, DeviceProfile, effective_profile, load_config, load_profile
from edged.config.routing import ScoreWeights
from edged.models.registry import default_models_dir
from edged.routing.router import MANIFEST_NAME, PromptRouter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EvalSetup:
    config: DaemonConfig
    profile: DeviceProfile
    router: PromptRouter | None
    weights: ScoreWeights


def load_router(models_dir: Path | None, name: str) -> PromptRouter | None:
    """The profile's router, sha256-checked; None (with a warning) when no manifest is installed."""
    directory = (models_dir or default_models_dir()) / name
    if not (directory / MANIFEST_NAME).is_file():
        logger.warning("no router manifest at %s: AUTO routes on confidence alone", directory)
        return None
    return PromptRouter.load(directory)


def effective_weights(profile: DeviceProfile, router: PromptRouter | None) -> ScoreWeights:
    """The profile's score_weights, else the router's trained ones, else the router score alone."""
    if profile.routing.score_weights is not None:
        return profile.routing.score_weights
    if router is not None:
        return router.manifest.score_weights
    return ScoreWeights()


def load_setup(config_path: Path | None, profile_paths: Sequence[Path]) -> EvalSetup:
    config = load_config(config_path)
    layers = [load_profile(p) for p in [*([config.profile] if config.profile else []), *profile_paths]]
    profile = effective_profile(config, layers)
    router = load_router(config.models_dir, profile.routing.router_model)
    return EvalSetup(config, profile, router, effective_weights(profile, router))
