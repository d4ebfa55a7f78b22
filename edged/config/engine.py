"""[engine]: the local llama.cpp runtime (also settable per device by a profile)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edged.config.base import KeyRuleError, StrictModel

DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"


class EngineSettings(StrictModel):
    model: str = Field(
        default=DEFAULT_MODEL_ID, description="Id of the model to serve (a manifest in the models directory)."
    )
    model_path: Path | None = Field(
        default=None,
        description="A user-given GGUF file served instead of the manifest's source (its sha256 is checked "
        "against model_sha256 when that is set).",
    )
    model_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="Expected sha256 of model_path (needs model_path)."
    )
    threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default_factory=lambda: max(1, os.cpu_count() or 1),
        description="CPU threads llama.cpp decodes with.",
    )
    gpu_layers: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=0, description="Layers offloaded to a GPU (0 on CPU-only boards)."
    )
    slots: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4,
        description="Requests decoded together as sequences of one llama.cpp context (at most batch_tokens).",
    )
    context_per_slot: Annotated[int, Field(ge=128, le=131_072)] = Field(
        default=1024, description="Context tokens (prompt + answer) available to each slot."
    )
    batch_tokens: Annotated[int, Field(ge=32, le=8192)] = Field(
        default=512,
        description="Most tokens decoded in one llama.cpp step (running tokens + prompt chunks); at least "
        "slots and prefill_chunk.",
    )
    prefill_chunk: Annotated[int, Field(ge=16, le=8192)] = Field(
        default=256,
        description="Most prompt tokens of waiting requests prefilled per step, so long prompts "
        "do not stall running streams (at most batch_tokens).",
    )
    queue_size: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=32,
        description="Requests that may wait for a slot; beyond it requests get RESOURCE_EXHAUSTED.",
    )
    max_tokens_cap: Annotated[int, Field(ge=1, le=131_072)] = Field(
        default=512, description="Largest max_tokens a request may ask for."
    )
    default_max_tokens: Annotated[int, Field(ge=1, le=131_072)] = Field(
        default=256, description="max_tokens when a request leaves it unset (at most max_tokens_cap)."
    )
    default_temperature: Annotated[float, Field(ge=0.0, le=2.0)] = Field(
        default=0.0, description="Temperature when a request leaves it unset (0 = greedy)."
    )
    kv_unified: bool = Field(
        default=False,
        description="Share one pool of KV cells among slots (llama.cpp kv_unified). Off by default: with a "
        "KV stream per slot, greedy answers are bit-identical whatever else is batched with them.",
    )
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        default="f16",
        description="Element type of the KV cache: q8_0 halves its memory (with flash attention) at a "
        "negligible quality cost.",
    )
    prompt_cache: bool = Field(
        default=True,
        description="Keep a finished request's KV cells in its slot and prefill the next request placed there "
        "only after their common prefix (the system prompt, an earlier turn), as llama-server's cache_prompt; "
        "off = every prompt is prefilled from its first token.",
    )
    confidence: bool = Field(
        default=True, description="Compute per-token confidence signals (logprob, top-2 margin, entropy)."
    )
    repeat_penalty: Annotated[float, Field(ge=1.0, le=2.0)] = Field(
        default=1.1,
        description="Penalty on tokens already among the last repeat_last_n generated ones, as llama.cpp's "
        "and Ollama's repeat_penalty (a positive logit is divided by it, a negative one multiplied); 1.0 = off.",
    )
    repeat_last_n: Annotated[int, Field(ge=0, le=4096)] = Field(
        default=64, description="How many of the last generated tokens repeat_penalty looks at (0 = off)."
    )
    loop_guard_tokens: Annotated[int, Field(ge=0, le=4096)] = Field(
        default=64,
        description="Stop an answer whose last loop_guard_tokens tokens (and at least three whole cycles) "
        "repeat one span over and over: finish_reason 'repetition', judged unsure (AUTO escalates it where "
        "a cloud link exists); 0 = off.",
    )
    chat_template: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        description="Chat template for models whose GGUF has none (or to replace it): 'gguf' (the file's "
        "own) or the name of a llama.cpp built-in template (chatml, gemma, llama3, phi3, mistral-v7, ...). "
        "Default: the model manifest's chat_template.",
    )
    chat_template_file: Path | None = Field(
        default=None,
        description="A Jinja chat template file (Hugging Face's format) to render prompts with; takes "
        "precedence over chat_template.",
    )

    @model_validator(mode="after")
    def _tokens_within_cap(self) -> EngineSettings:
        if self.default_max_tokens > self.max_tokens_cap:
            raise KeyRuleError(
                "default_max_tokens",
                self.default_max_tokens,
                f"default_max_tokens {self.default_max_tokens} exceeds max_tokens_cap {self.max_tokens_cap}",
            )
        return self

    @model_validator(mode="after")
    def _sha256_needs_a_path(self) -> EngineSettings:
        if self.model_sha256 is not None and self.model_path is None:
            raise KeyRuleError("model_sha256", self.model_sha256, "model_sha256 is set but model_path is not")
        return self

    @model_validator(mode="after")
    def _fits_one_batch(self) -> EngineSettings:
        # Every decode step holds one token per running slot plus a prompt chunk, in a batch of batch_tokens.
        if self.slots > self.batch_tokens:
            raise KeyRuleError(
                "slots",
                self.slots,
                f"slots {self.slots} exceeds batch_tokens {self.batch_tokens}: a decode step holds one token "
                "per running slot, so slots must be <= batch_tokens",
            )
        if self.prefill_chunk > self.batch_tokens:
            raise KeyRuleError(
                "prefill_chunk",
                self.prefill_chunk,
                f"prefill_chunk {self.prefill_chunk} exceeds batch_tokens {self.batch_tokens}",
            )
        return self
