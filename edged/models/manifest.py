"""The manifest schema (one TOML file per model in models/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from edged.config.base import StrictModel, config_error
from edged.config.loader import read_toml
from edged.errors import ConfigError

ModelId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class PackageSource(StrictModel):
    kind: Literal["package"]
    package: str = Field(description="Installed distribution that carries the file (PyPI name).")
    resource: str = Field(description="Path of the file inside the distribution's installed files.")


class AssembledSource(StrictModel):
    kind: Literal["assembled"]
    package: str = Field(description="Installed distribution (PyPI name).")
    module: str = Field(description="Importable module with assemble(output_path) -> Path.")


class PathSource(StrictModel):
    kind: Literal["path"]
    path: Path = Field(description="A model file the user provides.")


class ModelManifest(StrictModel):
    id: ModelId = Field(description="Id used in requests and configs.")
    name: str = Field(default="", description="Human-readable name.")
    format: Literal["gguf", "onnx"] = Field(description="gguf (llama.cpp) or onnx (onnxruntime).")
    quantization: str = Field(default="", description="Quantisation, e.g. Q4_1.")
    context_length: Annotated[int, Field(ge=0, le=10_000_000)] = Field(
        default=0, description="Context length the model was trained for (0 for non-LLMs)."
    )
    chat_template: str = Field(
        default="gguf",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="'gguf' = the template embedded in the file; else a llama.cpp built-in template name "
        "(chatml, gemma, llama3, phi3, ...), for a GGUF that has none.",
    )
    chat_template_file: Path | None = Field(
        default=None,
        description="A Jinja chat template file (relative to the manifest's directory), instead of chat_template.",
    )
    license: str = Field(default="", description="Licence of the weights.")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(description="sha256 of the model file.")
    source: PackageSource | AssembledSource | PathSource = Field(discriminator="kind")


def load_manifest(path: Path) -> ModelManifest:
    try:
        return ModelManifest.model_validate(read_toml(path))
    except ValidationError as exc:
        raise config_error(str(path), exc) from None


def load_manifests(directory: Path) -> dict[str, ModelManifest]:
    """Every *.toml manifest in `directory`, by id; a duplicate id is a ConfigError."""
    manifests: dict[str, ModelManifest] = {}
    for path in sorted(directory.glob("*.toml")):
        manifest = load_manifest(path)
        if manifest.id in manifests:
            raise ConfigError(str(path), [("id", manifest.id, "duplicate model id")])
        manifests[manifest.id] = manifest
    return manifests
