"""Locating model files offline and checking their sha256 before anything loads them."""

from __future__ import annotations

import hashlib
import importlib
import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from edged.errors import ModelError, ModelIntegrityError, ModelNotFound
from edged.models.manifest import ModelManifest, load_manifests

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_INSTALLED_PARTS = ("share", "edged", "models")  # where a wheel's data files put models/ (see pyproject.toml)


def default_models_dir() -> Path:
    """models/ of the source checkout (a dev tree or an editable install), else the copy a wheel installed.

    A wheel installs models/ as data files under its install prefix: sys.prefix in a venv, ~/.local with
    --user. The installed RECORD says which, so the lookup does not guess the prefix."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    return _installed_models_dir() or Path(sys.prefix).joinpath(*_INSTALLED_PARTS)


def _installed_models_dir() -> Path | None:
    """The share/edged/models directory listed in the installed distribution's RECORD, if any."""
    try:
        files = metadata.distribution("edged").files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.parts[-4:-1] == _INSTALLED_PARTS:
            return Path(str(file.locate())).resolve().parent
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


if TYPE_CHECKING:
    from edged.config.engine import EngineSettings


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model file that exists on disk and matched its sha256."""

    manifest: ModelManifest
    path: Path


class ModelRegistry:
    """The manifests this device knows, and where their files are."""

    def __init__(self, manifests: dict[str, ModelManifest], cache_dir: Path | None = None) -> None:
        self._manifests = manifests
        self._cache_dir = cache_dir

    @classmethod
    def from_dir(cls, directory: Path | None = None, cache_dir: Path | None = None) -> ModelRegistry:
        directory = directory or default_models_dir()
        if not directory.is_dir():
            raise ModelError(
                f"models directory {directory} does not exist (install edged from its wheel or source tree, "
                "or set models_dir)"
            )
        return cls(load_manifests(directory), cache_dir)

    def ids(self) -> list[str]:
        return sorted(self._manifests)

    def manifest(self, model_id: str) -> ModelManifest:
        try:
            return self._manifests[model_id]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise ModelNotFound(f"unknown model {model_id!r} (known: {known})") from None

    def locate(self, model_id: str) -> Path:
        """Where the model's file is, without checking it. Raises ModelError if it cannot be found."""
        manifest = self.manifest(model_id)
        source = manifest.source
        if source.kind == "path":
            path = source.path
        elif source.kind == "package":
            path = _package_file(source.package, source.resource)
        else:
            path = self._assemble(source.module)
        if not path.is_file():
            raise ModelError(f"model {model_id!r}: file {path} does not exist")
        return path

    def resolve(self, model_id: str) -> ResolvedModel:
        """Locate the file and check its sha256 against the manifest."""
        manifest = self.manifest(model_id)
        path = self.locate(model_id)
        verify_sha256(path, manifest.sha256, model_id)
        return ResolvedModel(manifest, path)

    def _assemble(self, module_name: str) -> Path:
        module = importlib.import_module(module_name)
        target_dir = self._cache_dir or Path.home() / ".cache" / "edged" / "models"
        target_dir.mkdir(parents=True, exist_ok=True)
        try:
            path: Path = module.assemble(target_dir / f"{module_name}.gguf")
        except (OSError, ValueError) as exc:
            raise ModelError(f"{module_name}.assemble() failed: {exc}") from exc
        return path


def verify_sha256(path: Path, expected: str, label: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"model {label!r}: {path} has sha256 {actual}, manifest expects {expected}; refusing to load it"
        )
    logger.debug("model %s: sha256 verified (%s)", label, path)


def _package_file(distribution: str, resource: str) -> Path:
    """A file inside an installed distribution, found through its metadata (the package is not imported)."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise ModelError(f"package {distribution!r} is not installed (pip install {distribution})") from None
    return Path(str(dist.locate_file(resource)))


def served_sha256(registry: ModelRegistry, settings: EngineSettings) -> str:
    """The sha256 of the GGUF the settings serve (the router checks it names its own local model): the
    configured model_sha256, else the registry manifest's (verified when the engine loaded), else read."""
    if settings.model_path is None:
        return registry.manifest(settings.model).sha256
    return settings.model_sha256 or sha256_file(settings.model_path)
