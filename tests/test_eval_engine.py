"""The evaluation's engine loads a model the way the daemon does (issue 17: 11): a model_path with a
model_sha256 that does not match is refused before llama.cpp reads a byte."""

from __future__ import annotations

import pytest

from edged.config.engine import EngineSettings
from edged.errors import ModelIntegrityError
from edged.evaluation.engine import EngineAnswerer
from edged.models import ModelRegistry

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"


def test_a_model_path_with_a_wrong_sha256_is_refused() -> None:
    path = ModelRegistry.from_dir().resolve(MODEL).path
    settings = EngineSettings.model_validate(
        {"threads": 1, "slots": 1, "context_per_slot": 256, "model_path": str(path), "model_sha256": "0" * 64}
    )
    with pytest.raises(ModelIntegrityError):
        EngineAnswerer.start(MODEL, settings)
