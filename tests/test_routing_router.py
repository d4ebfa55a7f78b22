"""The learned pre-generation router: the shipped ONNX model loads through onnxruntime, is sha256-checked
(a tampered file is refused), matches the feature version, and scores prompts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edged.errors import ModelError, ModelIntegrityError
from edged.routing.features import N_FEATURES, prompt_features
from edged.routing.router import MANIFEST_NAME, PromptRouter, load_router

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "router"


@pytest.fixture
def router_copy(tmp_path: Path) -> Path:
    target = tmp_path / "router"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("*.jsonl"))
    return target


def test_shipped_router_loads_and_scores() -> None:
    router = PromptRouter.load(SHIPPED)
    assert router.manifest.n_features == N_FEATURES
    score = router.score("What is 17 + 25? Answer with just the number.")
    assert 0.0 < score < 1.0
    batch = router.score_many(["What is 17 + 25?", "How many letters are in the word 'banana'?"])
    assert batch.shape == (2,)
    assert batch[0] == pytest.approx(router.score("What is 17 + 25?"), abs=1e-6)


def test_router_learned_that_big_multiplications_are_hard() -> None:
    router = PromptRouter.load(SHIPPED)
    easy = router.score("What is 3 + 4? Answer with just the number.")
    hard = router.score("What is 7384 × 2917? Answer with just the number.")
    assert easy > hard


def test_long_and_empty_prompts_are_scored() -> None:
    router = PromptRouter.load(SHIPPED)
    assert 0.0 < router.score("") < 1.0
    assert 0.0 < router.score("word " * 20_000) < 1.0
    assert prompt_features("x" * 100_000).shape == (N_FEATURES,)


def test_a_tampered_model_is_refused(router_copy: Path) -> None:
    model = router_copy / "router.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match the manifest"):
        PromptRouter.load(router_copy)


def test_a_stale_feature_version_is_refused(router_copy: Path) -> None:
    manifest = router_copy / MANIFEST_NAME
    text = manifest.read_text()
    manifest.write_text(text.replace("feature_version = ", "feature_version = 9", 1))
    with pytest.raises(ModelError, match="retrain the router"):
        PromptRouter.load(router_copy)


def test_a_bad_manifest_names_the_key(router_copy: Path) -> None:
    manifest = router_copy / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace('kind = "router"', 'kind = "llm"'))
    with pytest.raises(ModelError, match="kind"):
        PromptRouter.load(router_copy)


def test_missing_model_file_is_a_model_error(router_copy: Path) -> None:
    (router_copy / "router.onnx").unlink()
    with pytest.raises(ModelError, match="cannot be read"):
        PromptRouter.load(router_copy)


def test_no_manifest_means_no_router(tmp_path: Path) -> None:
    assert load_router(tmp_path, "router") is None
    assert load_router(SHIPPED.parent, "router") is not None


PROBE = """
import importlib.abc, os, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "onnxruntime":
            seen.append(os.environ.get("ORT_DISABLE_TELEMETRY"))
        return None
sys.meta_path.insert(0, Watch())
from pathlib import Path
from edged.routing.router import PromptRouter
PromptRouter.load(Path(sys.argv[1])).score("What is 2 + 2?")
print(seen)
"""


def test_onnxruntime_is_loaded_with_its_telemetry_switched_off() -> None:
    """issue 17 (15): onnxruntime's 1DS telemetry threads resolved mobile.events.data.microsoft.com while the
    router scored (bench/faults.py, strace); the switch is read when the library loads, so it must be set before
    the import, in a fresh interpreter whose environment does not already have it."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(SHIPPED)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['1']", done.stdout


def test_served_sha256_names_the_gguf_the_engine_serves(tmp_path: Path) -> None:
    """The registry manifest's sha256 for a registered model; a configured file's own (read) otherwise."""
    from edged.config.engine import EngineSettings  # noqa: PLC0415 - only this test builds settings
    from edged.models.registry import ModelRegistry, served_sha256, sha256_file  # noqa: PLC0415

    registry = ModelRegistry.from_dir()
    default = EngineSettings()
    assert served_sha256(registry, default) == registry.manifest(default.model).sha256
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"not the router's model")
    other = EngineSettings(model="other", model_path=gguf)
    assert served_sha256(registry, other) == sha256_file(gguf)
    assert served_sha256(registry, other) != registry.manifest(default.model).sha256
