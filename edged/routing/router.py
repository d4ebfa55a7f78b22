"""The pre-generation router: a small learned model, served with onnxruntime, that predicts from the prompt
alone the probability that the local answer will be acceptable.

It lives in a models directory as `<name>/manifest.toml` beside its `.onnx` file:

    id = "router-smollm2-v2"          kind = "router"          file = "router.onnx"
    sha256 = "<64 hex>"               feature_version = 3      n_features = 4112
    [score_weights]                   AUTO score weights over the router score (RoutingSettings.score_weights)
    [answer]                          the answer model (optional): file, sha256, feature_version, n_features
    [answer.stack]                    a finished answer's AUTO score over the answer model's score, the
                                      confidence signals and the transfer cues (edged.routing.stack)
    [signal_weights]                  the confidence signals alone (the fallback below)
    [local_model]                     the local model the labels came from: id and its GGUF's sha256

The answer model scores a finished local answer from the prompt, the reply and its confidence summary
(edged.routing.answer_features); when the manifest has one, the AUTO score of a finished answer
(`finished_score`) stacks its score with the confidence signals and the cues by `[answer.stack]`. The
cascade, judging a partial answer, and a router without an answer model keep the router score and
`score_weights` (or the profile's).

A router belongs to the local model it was trained with. Loaded for a device serving another GGUF (its sha256
differs from `[local_model]`), it is signal-only: no router score (reason `router=other_local_model`), and
every AUTO score is the confidence signals alone, with the profile's `score_weights` (what `edged calibrate`
writes for that model) or else `[signal_weights]`.

Every file's sha256 is checked before onnxruntime sees a byte (the verified bytes are what it loads), and the
feature versions and input widths must match this edged: a stale or tampered model is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError

from edged.config.base import StrictModel, config_error
from edged.config.profile import DeviceProfile
from edged.config.routing import ScoreWeights
from edged.domain import ConfidenceSummary
from edged.errors import ConfigError, ModelError, ModelIntegrityError
from edged.models.registry import default_models_dir
from edged.routing.answer_features import ANSWER_FEATURE_VERSION, N_ANSWER_FEATURES, answer_features
from edged.routing.features import FEATURE_VERSION, N_FEATURES, prompt_features
from edged.routing.score import auto_score
from edged.routing.stack import StackWeights, stacked_score

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.toml"
MAX_MODEL_BYTES = 64 * 1024 * 1024


_OnnxFile = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.\-]+\.onnx$")]


class AnswerModelEntry(StrictModel):
    file: _OnnxFile = Field(description="The answer model's ONNX file, beside the manifest.")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(description="sha256 of the ONNX file.")
    feature_version: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="edged.routing.answer_features version."
    )
    n_features: Annotated[int, Field(ge=1, le=1_000_000)] = Field(description="Width of the model's input.")
    stack: StackWeights = Field(
        description="AUTO score of a finished answer, over logit(answer score), its signals and the cues."
    )


class LocalModelEntry(StrictModel):
    id: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="The local model's id (models/<id>.toml) the labels came from."
    )
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(description="sha256 of its GGUF file.")


class RouterManifest(StrictModel):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")] = Field(
        description="Router model id, shown in status."
    )
    kind: Literal["router"] = Field(description="Manifest kind.")
    file: _OnnxFile = Field(description="The ONNX file, beside the manifest.")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(description="sha256 of the ONNX file.")
    feature_version: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="edged.routing.features version."
    )
    n_features: Annotated[int, Field(ge=1, le=1_000_000)] = Field(description="Width of the model's input.")
    description: Annotated[str, Field(max_length=2000)] = Field(
        default="", description="What it was trained on."
    )
    score_weights: ScoreWeights = Field(description="AUTO score weights trained with this router.")
    signal_weights: ScoreWeights = Field(
        description="AUTO score weights over the confidence signals alone (another local model's fallback)."
    )
    local_model: LocalModelEntry = Field(description="The local model this router was trained for.")
    answer: AnswerModelEntry | None = Field(
        default=None, description="The answer model that scores a finished local answer; optional."
    )
    metrics: dict[str, float] = Field(default_factory=dict, description="Training-time metrics, informative.")


def load_manifest(path: Path) -> RouterManifest:
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ModelError(f"{path}: not valid TOML: {exc}") from None
    try:
        return RouterManifest.model_validate(raw)
    except ValidationError as exc:
        error: ConfigError = config_error(str(path), exc)
        raise ModelError(str(error)) from None


class _OnnxScorer:
    """One verified ONNX model: features [N, width] -> probability [N] (thread-safe: an onnxruntime session
    allows concurrent run() calls)."""

    def __init__(self, model_bytes: bytes, source: str, width: int, label: str) -> None:
        # Before onnxruntime is loaded: its Linux build carries a 1DS telemetry client (OneDsTelemetry) whose own
        # threads resolve mobile.events.data.microsoft.com while sessions run, even after
        # disable_telemetry_events() (seen by bench/faults.py under strace: getaddrinfo called from
        # onnxruntime_pybind11_state.so; onnxruntime 1.32). The environment switch is read when the library
        # loads and stops it (8 lookups in 60 s of scoring without it, none with it). The daemon reaches nothing
        # but its broker (tests/test_outbound_connections.py).
        os.environ["ORT_DISABLE_TELEMETRY"] = "1"
        import onnxruntime as ort  # noqa: PLC0415 - imported only when a router is configured

        ort.disable_telemetry_events()  # the in-process event sink as well, before any session exists
        self._label = label
        options = ort.SessionOptions()
        # One thread: the model is a few thousand multiply-adds; hand-offs would cost more than they save.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{source}: onnxruntime cannot load it: {exc}") from None
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        found = inputs[0].shape[-1]
        if len(inputs) != 1 or found != width:
            raise ModelError(f"{source}: input width {found} does not match n_features {width}")

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        try:
            (out,) = self._session.run(None, {self._input: batch})
        except Exception as exc:  # translate onnxruntime's errors where they enter
            raise ModelError(f"{self._label}: inference failed: {exc}") from None
        return np.asarray(out, dtype=np.float32).reshape(-1)


class PromptRouter:
    """Scores prompts (and, with an answer model, finished local answers) with the verified ONNX models."""

    def __init__(
        self,
        manifest: RouterManifest,
        model_bytes: bytes,
        source: str,
        answer: tuple[bytes, str] | None = None,
        served_sha256: str | None = None,
    ) -> None:
        self.manifest = manifest
        # Trained for another GGUF than the one served: signal-only (module docstring).
        self.signal_only = served_sha256 is not None and served_sha256 != manifest.local_model.sha256
        self._model = _OnnxScorer(model_bytes, source, manifest.n_features, f"router {manifest.id}")
        self._answer: _OnnxScorer | None = None
        if answer is not None and manifest.answer is not None:
            width = manifest.answer.n_features
            self._answer = _OnnxScorer(answer[0], answer[1], width, f"answer model {manifest.id}")

    @classmethod
    def load(cls, directory: Path, served_sha256: str | None = None) -> PromptRouter:
        """Read `directory/manifest.toml`, verify the model files' sha256 and open them. `served_sha256` is
        the served GGUF's sha256; another than the manifest's `[local_model]` makes the router signal-only."""
        manifest = load_manifest(directory / MANIFEST_NAME)
        if manifest.feature_version != FEATURE_VERSION or manifest.n_features != N_FEATURES:
            raise ModelError(
                f"{directory}: feature_version {manifest.feature_version} / n_features {manifest.n_features} "
                f"do not match this edged ({FEATURE_VERSION} / {N_FEATURES}); retrain the router"
            )
        path = directory / manifest.file
        data = _verified(path, manifest.sha256)
        answer = None
        if manifest.answer is not None:
            entry = manifest.answer
            if entry.feature_version != ANSWER_FEATURE_VERSION or entry.n_features != N_ANSWER_FEATURES:
                raise ModelError(
                    f"{directory}: answer feature_version {entry.feature_version} / n_features "
                    f"{entry.n_features} do not match this edged ({ANSWER_FEATURE_VERSION} / "
                    f"{N_ANSWER_FEATURES}); retrain the router"
                )
            answer_path = directory / entry.file
            answer = (_verified(answer_path, entry.sha256), str(answer_path))
        router = cls(manifest, data, str(path), answer, served_sha256)
        logger.info("router %s loaded from %s (answer model: %s)", manifest.id, path, answer is not None)
        if router.signal_only:
            logger.warning(
                "router %s was trained for local model %s (sha256 %s), the device serves sha256 %s: routing "
                "on the confidence signals alone until the router is retrained or `edged calibrate` is run",
                manifest.id,
                manifest.local_model.id,
                manifest.local_model.sha256,
                served_sha256,
            )
        return router

    @property
    def has_answer_model(self) -> bool:
        return self._answer is not None

    def score(self, prompt: str) -> float:
        """Probability that the local answer to `prompt` is acceptable (by this router's local model)."""
        return float(self._model.run(prompt_features(prompt)[np.newaxis, :])[0])

    def score_many(self, prompts: Sequence[str]) -> npt.NDArray[np.float64]:
        if not prompts:
            return np.zeros(0)
        batch = np.stack([prompt_features(p) for p in prompts])
        return self._model.run(batch).astype(np.float64)

    def _run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The router model alone on a feature batch (bench/router_latency.py times it)."""
        return self._model.run(batch)

    def score_answer(self, prompt: str, reply: str, confidence: ConfidenceSummary) -> float | None:
        """Probability that this finished local answer is acceptable, from the prompt, the reply and its
        confidence summary; None without an answer model."""
        if self._answer is None:
            return None
        return float(self._answer.run(answer_features(prompt, reply, confidence)[np.newaxis, :])[0])

    def finished_score(
        self,
        prompt: str,
        reply: str,
        router_score: float | None,
        confidence: ConfidenceSummary,
        weights: ScoreWeights,
    ) -> float:
        """The AUTO score of a finished local answer: the answer model's score stacked with the confidence
        signals and the transfer cues by the manifest's `[answer.stack]`; without an answer model,
        auto_score(router_score, confidence, weights) with the caller's (effective) weights; signal-only,
        auto_score(None, confidence, weights)."""
        if self.signal_only:
            return auto_score(None, confidence, weights)
        answer = self.score_answer(prompt, reply, confidence)
        if answer is None or self.manifest.answer is None:
            return auto_score(router_score, confidence, weights)
        return stacked_score(answer, prompt, reply, confidence, self.manifest.answer.stack)


def _verified(path: Path, sha256: str) -> bytes:
    data = _read_bounded(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelIntegrityError(f"{path}: sha256 {digest} does not match the manifest's {sha256}")
    return data


def _read_bounded(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: {size} bytes is larger than {MAX_MODEL_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read: {exc.strerror or exc}") from None


def load_router(models_dir: Path | None, name: str, served_sha256: str | None = None) -> PromptRouter | None:
    """The profile's router (`<models_dir>/<name>/manifest.toml`), sha256-checked; None, with a warning, when
    no manifest is installed (AUTO then routes on load and confidence alone). A tampered or stale model
    raises ModelError: a router that is present but wrong is a fault, not a missing feature."""
    directory = (models_dir or default_models_dir()) / name
    if not (directory / MANIFEST_NAME).is_file():
        logger.warning("no router manifest at %s: AUTO routes without a pre-generation router", directory)
        return None
    return PromptRouter.load(directory, served_sha256)


def effective_weights(profile: DeviceProfile, router: PromptRouter | None) -> ScoreWeights:
    """The AUTO score's weights: the profile's, else the router's trained ones (its `[signal_weights]` when
    it is signal-only), else the router score alone."""
    if profile.routing.score_weights is not None:
        return profile.routing.score_weights
    if router is not None and router.signal_only:
        return router.manifest.signal_weights
    if router is not None:
        return router.manifest.score_weights
    return ScoreWeights()
