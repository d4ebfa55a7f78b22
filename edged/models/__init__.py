"""Model manifests: where each model file comes from, what it is, and the sha256 it must have."""

from edged.models.manifest import ModelManifest, load_manifests
from edged.models.registry import ModelRegistry, ResolvedModel, sha256_file

__all__ = ["ModelManifest", "ModelRegistry", "ResolvedModel", "load_manifests", "sha256_file"]
