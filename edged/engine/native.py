"""Thin wrappers over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

Everything here is owned by the engine thread: nothing else may call into these objects. llama.cpp errors
(NULL handles, negative return codes) are turned into edged errors where they enter.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

import llama_cpp as llama
import numpy as np
import numpy.typing as npt

from edged.errors import EngineError, ModelError

logger = logging.getLogger(__name__)
_llama_log = logging.getLogger("edged.engine.llama_cpp")

_backend_lock = threading.Lock()
_backend_ready = False
# ggml's log levels (ggml.h): 3 = WARN, 4 = ERROR; 5 = CONT continues the previous line (progress dots).
_GGML_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
# llama.cpp's grammar parser logs the whole grammar with its error (issue 17: 13, ~80 KB a request): a line is
# cut to this many characters and says how long it was.
MAX_LOG_CHARS = 1_000


@llama.llama_log_callback  # type: ignore[untyped-decorator]
def forward_llama_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    """llama.cpp's log lines go to Python logging: its warnings and errors as such, the rest at DEBUG."""
    message = text.decode("utf-8", errors="replace").rstrip()
    if len(message) > MAX_LOG_CHARS:
        message = f"{message[:MAX_LOG_CHARS]}... ({len(message)} characters, cut)"
    if message and message != ".":
        _llama_log.log(_GGML_LEVELS.get(level, logging.DEBUG), "%s", message)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its logging through ours."""
    global _backend_ready  # noqa: PLW0603 - process-wide native state, initialised exactly once
    with _backend_lock:
        if _backend_ready:
            return
        llama.llama_log_set(forward_llama_log, ctypes.c_void_p(0))
        llama.llama_backend_init()
        _backend_ready = True


def builtin_templates() -> list[str]:
    """The names of llama.cpp's built-in chat templates (chatml, gemma, llama3, phi3, ...), sorted."""
    count = int(llama.llama_chat_builtin_templates(None, 0))
    names = (ctypes.c_char_p * count)()
    llama.llama_chat_builtin_templates(names, count)
    return sorted(name.decode() for name in names if name)


def apply_builtin_template(name: str, messages: list[tuple[str, str]]) -> str:
    """Render a conversation with one of llama.cpp's built-in templates, the assistant's turn opened."""
    # The encoded strings must outlive the call: keep them in a list the structs point into.
    encoded = [(role.encode(), content.encode()) for role, content in messages]
    chat = (llama.llama_chat_message * len(encoded))(*[llama.llama_chat_message(r, c) for r, c in encoded])
    size = 2 * sum(len(r) + len(c) for r, c in encoded) + 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = int(llama.llama_chat_apply_template(name.encode(), chat, len(encoded), True, buf, size))
        if n < 0:
            raise ModelError(f"llama.cpp could not apply its built-in chat template {name!r}")
        if n <= size:
            return buf.raw[:n].decode("utf-8", errors="replace")
        size = n + 1


class NativeModel:
    """A loaded GGUF model and its vocabulary."""

    def __init__(self, path: Path, gpu_layers: int) -> None:
        init_backend()
        params = llama.llama_model_default_params()
        params.n_gpu_layers = gpu_layers
        self._model = llama.llama_model_load_from_file(str(path).encode(), params)
        if not self._model:
            raise ModelError(f"llama.cpp could not load {path} (not a GGUF model, or unsupported)")
        self.path = path
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.n_vocab: int = llama.llama_vocab_n_tokens(self._vocab)
        self.n_ctx_train: int = llama.llama_model_n_ctx_train(self._model)
        self.add_bos: bool = bool(llama.llama_vocab_get_add_bos(self._vocab))
        self._piece = ctypes.create_string_buffer(256)

    @property
    def handle(self) -> Any:
        return self._model

    @property
    def vocab(self) -> Any:
        return self._vocab

    def metadata(self, key: str) -> str | None:
        size = 1 << 16
        buf = ctypes.create_string_buffer(size)
        n = llama.llama_model_meta_val_str(self._model, key.encode(), buf, size)
        return None if n < 0 else buf.value.decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    @property
    def bos(self) -> int:
        return int(llama.llama_vocab_bos(self._vocab))

    @property
    def eos(self) -> int:
        return int(llama.llama_vocab_eos(self._vocab))

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            tokens = (llama.llama_token * capacity)()
            n = llama.llama_tokenize(self._vocab, data, len(data), tokens, capacity, add_special, True)
            if n >= 0:
                return list(tokens[:n])
            capacity = -n

    def piece(self, token: int, special: bool = False) -> bytes:
        n = llama.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, special)
        if n < 0:
            bigger = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self._vocab, token, bigger, len(bigger), 0, special)
            return bytes(bigger.raw[:n])
        return bytes(self._piece.raw[:n])

    def is_eog(self, token: int) -> bool:
        return bool(llama.llama_vocab_is_eog(self._vocab, token))

    def close(self) -> None:
        if self._model:
            llama.llama_model_free(self._model)
            self._model = None


class NativeContext:
    """One llama.cpp context holding `n_seq` sequences, and the batch fed to it."""

    def __init__(
        self,
        model: NativeModel,
        n_seq: int,
        n_ctx: int,
        n_batch: int,
        threads: int,
        kv_unified: bool,
        kv_cache_type: str = "f16",
    ) -> None:
        params = llama.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_seq_max = n_seq
        # Unified: all sequences share one pool of KV cells. Split (the default): each sequence has its own KV
        # stream, so its attention is computed exactly as if it ran alone and greedy outputs do not depend on
        # what else is batched with it (with the unified pool they can differ in the last bits and diverge).
        params.kv_unified = kv_unified
        if kv_cache_type == "q8_0":  # a quantised V cache needs llama.cpp's flash attention
            params.type_k = params.type_v = llama.GGML_TYPE_Q8_0
            params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        self._ctx = llama.llama_init_from_model(model.handle, params)
        if not self._ctx:
            raise ModelError(f"llama.cpp could not create a context (n_ctx={n_ctx}, sequences={n_seq})")
        self._memory = llama.llama_get_memory(self._ctx)
        self._batch = llama.llama_batch_init(n_batch, 0, 1)
        self.n_batch = n_batch
        self.n_vocab = model.n_vocab
        self.n_tokens = 0
        self.n_outputs = 0
        self._views: dict[tuple[int, int], npt.NDArray[np.float32]] = {}

    @property
    def handle(self) -> Any:
        return self._ctx

    def clear_batch(self) -> None:
        self.n_tokens = 0
        self.n_outputs = 0

    def add(self, token: int, pos: int, seq: int, want_logits: bool) -> int:
        """Append a token to the batch; returns its batch index. A full batch is an EngineError, never a write
        past the end of llama.cpp's buffer."""
        i = self.n_tokens
        if i >= self.n_batch:
            raise EngineError(f"the batch is full: {self.n_batch} tokens (engine.batch_tokens)")
        batch = self._batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = want_logits
        self.n_tokens = i + 1
        self.n_outputs += int(want_logits)
        return i

    def decode(self) -> int:
        """Decode the batch; returns llama_decode's code (0 = ok, 1 = no KV room, other = failure)."""
        self._batch.n_tokens = self.n_tokens
        return int(llama.llama_decode(self._ctx, self._batch))

    def output_logits(self) -> npt.NDArray[np.float32]:
        """The logits of this step's outputs (rows in batch order), as a view of llama.cpp's buffer."""
        address = ctypes.cast(llama.llama_get_logits(self._ctx), ctypes.c_void_p).value
        if not address:
            raise EngineError("llama.cpp returned no logits")
        # llama.cpp keeps its output buffer across decodes (it grows it only for more outputs), so the view of a
        # given address and row count is built once: building it costs as much as the rest of a token's sampling.
        key = (address, self.n_outputs)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 64:
                self._views.clear()
            size = self.n_outputs * self.n_vocab
            buffer = (ctypes.c_float * size).from_address(address)
            view = np.ctypeslib.as_array(buffer).reshape(self.n_outputs, self.n_vocab)
            self._views[key] = view
        return view

    def forget(self, seq: int) -> None:
        """Free every KV cell of a sequence."""
        llama.llama_memory_seq_rm(self._memory, seq, -1, -1)

    def truncate(self, seq: int, keep: int) -> bool:
        """Free a sequence's KV cells from position `keep` on; False when the model's memory cannot do that
        (a recurrent model keeps no per-position cells), leaving the cells as they were."""
        return bool(llama.llama_memory_seq_rm(self._memory, seq, keep, -1))

    def copy_prefix(self, src: int, dst: int, keep: int) -> bool:
        """Give sequence `dst` the KV cells of `src`'s positions before `keep` (dst's own are freed first);
        False, with dst holding nothing, when the model's memory cannot be cut at a position. With a KV stream
        per sequence llama.cpp copies src's whole stream before the next decode (a stream's bytes: context per
        slot x layers x 2 x KV width x element size) and the cells from `keep` on are then freed; with the
        unified pool the cells are shared, nothing is copied."""
        llama.llama_memory_seq_rm(self._memory, dst, -1, -1)
        llama.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
        if llama.llama_memory_seq_rm(self._memory, dst, keep, -1):
            return True
        llama.llama_memory_seq_rm(self._memory, dst, -1, -1)
        return False

    def reset(self) -> None:
        llama.llama_memory_clear(self._memory, True)

    def close(self) -> None:
        if self._ctx:
            llama.llama_batch_free(self._batch)
            llama.llama_free(self._ctx)
            self._ctx = None


class NativeSampler:
    """A llama.cpp sampler chain for one sequence: optional grammar, then greedy or top-p/temperature/seed."""

    def __init__(
        self, model: NativeModel, temperature: float, top_p: float, seed: int, grammar: str | None
    ) -> None:
        self._chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        if grammar is not None:
            grammar_sampler = llama.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
            if not grammar_sampler:
                llama.llama_sampler_free(self._chain)
                raise ValueError("llama.cpp rejected the grammar derived from json_schema")
            llama.llama_sampler_chain_add(self._chain, grammar_sampler)
        if temperature <= 0.0:
            llama.llama_sampler_chain_add(self._chain, llama.llama_sampler_init_greedy())
        else:
            llama.llama_sampler_chain_add(self._chain, llama.llama_sampler_init_top_p(top_p, 1))
            llama.llama_sampler_chain_add(self._chain, llama.llama_sampler_init_temp(temperature))
            llama.llama_sampler_chain_add(self._chain, llama.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def sample(self, ctx: NativeContext, batch_index: int) -> int:
        """Sample from the logits of the given batch position and accept the token into the chain's state."""
        return int(llama.llama_sampler_sample(self._chain, ctx.handle, batch_index))

    def close(self) -> None:
        if self._chain:
            llama.llama_sampler_free(self._chain)
            self._chain = None
