"""What `edged eval` and `edged calibrate` take from the daemon's config: the effective profile, the router
and the AUTO score's weights, exactly as the daemon would use them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edged.config import DaemonConfig, DeviceProfile, effective_profile, load_config, load_profile
from edged.config.routing import ScoreWeights
from edged.models.registry import ModelRegistry, served_sha256
from edged.routing.router import PromptRouter, effective_weights, load_router


@dataclass(frozen=True, slots=True)
class EvalSetup:
    config: DaemonConfig
    profile: DeviceProfile
    router: PromptRouter | None
    weights: ScoreWeights


def load_setup(config_path: Path | None, profile_paths: Sequence[Path]) -> EvalSetup:
    config = load_config(config_path)
    layers = [load_profile(p) for p in [*([config.profile] if config.profile else []), *profile_paths]]
    profile = effective_profile(config, layers)
    registry = ModelRegistry.from_dir(config.models_dir)
    served = served_sha256(registry, profile.engine)
    router = load_router(config.models_dir, profile.routing.router_model, served)
    return EvalSetup(config, profile, router, effective_weights(profile, router))
