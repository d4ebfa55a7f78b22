"""Model manifests: where each model file comes from, what it is, and the sha256 it must have."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.models.manifest import ModelManifest as ModelManifest
    from edged.models.manifest import load_manifests as load_manifests
    from edged.models.registry import ModelRegistry as ModelRegistry
    from edged.models.registry import ResolvedModel as ResolvedModel
    from edged.models.registry import default_models_dir as default_models_dir
    from edged.models.registry import served_sha256 as served_sha256
    from edged.models.registry import sha256_file as sha256_file
    from edged.models.registry import verify_sha256 as verify_sha256

EXPORTS = {
    "default_models_dir": "registry",
    "load_manifests": "manifest",
    "ModelManifest": "manifest",
    "ModelRegistry": "registry",
    "ResolvedModel": "registry",
    "served_sha256": "registry",
    "sha256_file": "registry",
    "verify_sha256": "registry",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
