"""LlamaEngine: continuous batching of every active request on one model as sequences of one llama.cpp context.

One engine thread owns the model, the context and the samplers. Each step it
  1. takes new jobs and cancellations from the inbox (other threads only ever touch the inbox, under a lock),
  2. retires cancelled and expired sequences at once and frees their KV cells,
  3. admits waiting jobs into free slots (FIFO),
  4. builds one batch of at most `batch_tokens`: one token for every decoding sequence, plus up to
     `prefill_chunk` prompt tokens of sequences still prefilling (no more than the batch has room for), so a
     long prompt never stalls running streams for more than a chunk,
  5. calls llama_decode once, then samples every output row and computes its confidence signals.

Callers see a bounded queue: beyond `slots + queue_size` outstanding jobs (cancelled and expired ones not counted),
submit() raises Overloaded at once; a job already past its deadline is refused with DeadlineExceeded.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.config.engine import EngineSettings
from edged.domain import ConfidenceSummary, TokenSignals
from edged.engine.confidence import SignalComputer
from edged.engine.jobs import EngineStats, ErrorEvent, FinishEvent, GenerationJob, TokenEvent
from edged.engine.native import NativeContext, NativeModel, NativeSampler
from edged.engine.repetition import LoopGuard, RecentTokens
from edged.engine.template import PromptTemplate, choose_template
from edged.engine.text import StopMatcher, Utf8Stream
from edged.errors import (
    Cancelled,
    DeadlineExceeded,
    EdgedError,
    EngineError,
    InvalidRequest,
    ModelError,
    Overloaded,
    ShuttingDown,
)

logger = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.5  # the engine thread wakes at least this often, so its heartbeat stays fresh when idle


@dataclass(slots=True)
class _Sequence:
    """A job occupying a slot (its llama.cpp sequence id is the slot number)."""

    slot: int
    job: GenerationJob
    prompt: list[int]
    sampler: NativeSampler | None  # None: greedy without grammar, taken from the argmax we compute anyway
    admitted_at: float
    prefilled: int = 0
    reused: int = 0  # prompt tokens found in the slot's kept KV cells (engine.prompt_cache)
    n_past: int = 0  # KV cells held: prompt[:prefilled] + decoded
    decoded: list[int] = field(default_factory=list)  # generated tokens already in the KV cache
    generated: int = 0
    last_token: int = -1
    signals: list[TokenSignals] = field(default_factory=list)
    utf8: Utf8Stream = field(default_factory=Utf8Stream)
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    recent: RecentTokens = field(default_factory=lambda: RecentTokens(0, 1.0))
    loop: LoopGuard = field(default_factory=lambda: LoopGuard(0))

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.prompt)


class LlamaEngine:
    """The local runtime for one GGUF model: load (and warm up), submit, cancel, stats, close."""

    def __init__(
        self, model_id: str, path: Path, settings: EngineSettings, *, manifest_template: str = "gguf"
    ) -> None:
        self.model_id = model_id
        self._path = path
        self._manifest_template = manifest_template
        self._settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._inbox: deque[GenerationJob] = deque()
        self._cancelled: set[int] = set()
        # job id -> deadline of every job submitted and not yet finished (inbox + waiting + running)
        self._deadlines: dict[int, float | None] = {}
        self._busy = 0
        self._waiting_count = 0
        self._state = "new"  # new -> loading -> running -> stopping -> stopped | dead
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self._heartbeat = time.monotonic()
        self._thread: threading.Thread | None = None
        # Engine-thread state (never touched by other threads):
        self._model: NativeModel | None = None
        self._ctx: NativeContext | None = None
        self._template: PromptTemplate | None = None
        self._signals = SignalComputer()
        self._waiting: deque[GenerationJob] = deque()
        self._slots: list[_Sequence | None] = [None] * settings.slots
        # The tokens whose KV cells a free slot still holds (its last request's prompt and answer), so the next
        # request in that slot prefills only what follows their common prefix (engine.prompt_cache).
        self._kept: list[list[int]] = [[] for _ in range(settings.slots)]

    # ----------------------------------------------------------------- lifecycle (any thread)

    def start(self, timeout: float = 120.0) -> None:
        """Load the model on the engine thread, warm it up, and return once it can take jobs."""
        with self._lock:
            if self._state != "new":
                raise EngineError(f"engine for {self.model_id} already started")
            self._state = "loading"
        self._thread = threading.Thread(target=self._run, name=f"engine-{self.model_id}", daemon=True)
        self._thread.start()
        if not self._loaded.wait(timeout):
            raise ModelError(f"model {self.model_id} did not load within {timeout:.0f}s")
        if self._load_error is not None:
            raise self._load_error

    def close(self, timeout: float = 30.0) -> None:
        """Fail whatever is still queued or running with ShuttingDown, free llama.cpp objects, join the thread."""
        with self._lock:
            if self._state in ("running", "loading"):
                self._state = "stopping"
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ----------------------------------------------------------------- callers (any thread)

    def submit(self, job: GenerationJob) -> None:
        """Queue a job; its events arrive through job.emit on the engine thread. Raises Overloaded when full."""
        with self._lock:
            if self._state != "running":
                raise ShuttingDown(f"the engine for {self.model_id} is {self._state}")
            now = time.monotonic()
            if job.deadline is not None and job.deadline <= now:
                raise DeadlineExceeded("the deadline passed before the request reached the engine")
            capacity = self._settings.slots + self._settings.queue_size
            if len(self._deadlines) >= capacity and self._live(now) >= capacity:
                raise Overloaded(
                    f"all {self._settings.slots} slots are busy and the queue of {self._settings.queue_size} "
                    "is full; retry later"
                )
            self._deadlines[job.job_id] = job.deadline
            self._inbox.append(job)
            self._wake.notify()

    def _live(self, now: float) -> int:
        """Outstanding jobs neither cancelled nor expired (lock held): those the engine retires at its next step
        must not refuse a live request meanwhile (a burst of 1 ms requests filled the queue)."""
        return sum(
            1
            for job_id, deadline in self._deadlines.items()
            if job_id not in self._cancelled and (deadline is None or deadline > now)
        )

    def cancel(self, job: GenerationJob) -> None:
        """Stop a job within one step (its slot and KV cells are freed); a finished job is ignored."""
        with self._lock:
            self._cancelled.add(job.job_id)
            self._wake.notify()

    def stats(self) -> EngineStats:
        with self._lock:
            return EngineStats(
                model_id=self.model_id,
                loaded=self._state == "running",
                slots_total=self._settings.slots,
                slots_busy=self._busy,
                queue_depth=self._waiting_count + len(self._inbox),
                queue_capacity=self._settings.queue_size,
                context_per_slot=self._settings.context_per_slot,
                heartbeat_age_s=time.monotonic() - self._heartbeat,
                alive=self._state in ("loading", "running"),
            )

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    # ----------------------------------------------------------------- engine thread

    def _run(self) -> None:
        try:
            self._load()
        except BaseException as exc:
            self._load_error = exc if isinstance(exc, EdgedError) else ModelError(f"loading failed: {exc}")
            with self._lock:
                self._state = "dead"
            self._loaded.set()
            return
        with self._lock:
            if self._state == "loading":
                self._state = "running"
        self._loaded.set()
        try:
            self._serve()
        except Exception as exc:
            logger.exception("engine %s died", self.model_id)
            self._fail_all(EngineError(f"the local engine failed: {exc}"))
            with self._lock:
                self._state = "dead"
        finally:
            self._release()

    def _load(self) -> None:
        settings = self._settings
        started = time.monotonic()
        if settings.slots > settings.batch_tokens:
            # llama.cpp sizes its output buffer for n_batch rows and aborts the process (GGML_ASSERT) on the
            # first decode of a context with more sequences than that. Config validation refuses it too.
            raise ModelError(
                f"engine.slots {settings.slots} exceeds engine.batch_tokens {settings.batch_tokens}: "
                "a decode step holds one token per slot"
            )
        model = NativeModel(self._path, settings.gpu_layers)
        self._model = model
        if settings.context_per_slot > model.n_ctx_train > 0:
            raise ModelError(
                f"engine.context_per_slot {settings.context_per_slot} exceeds the model's trained context "
                f"{model.n_ctx_train}"
            )
        self._template = choose_template(model, settings, self._manifest_template)
        self._ctx = NativeContext(
            model,
            n_seq=settings.slots,
            n_ctx=settings.slots * settings.context_per_slot,
            n_batch=settings.batch_tokens,
            threads=settings.threads,
            kv_unified=settings.kv_unified,
            kv_cache_type=settings.kv_cache_type,
        )
        self._warm_up()
        logger.info(
            "model %s loaded in %.2fs (%d slots x %d tokens, %d threads)",
            self.model_id,
            time.monotonic() - started,
            settings.slots,
            settings.context_per_slot,
            settings.threads,
        )

    def _warm_up(self) -> None:
        """One tiny decode so the first request does not pay for graph allocation."""
        assert self._ctx is not None
        assert self._model is not None
        self._ctx.clear_batch()
        self._ctx.add(self._model.bos, 0, 0, want_logits=True)
        if self._ctx.decode() != 0:
            raise ModelError("warm-up decode failed")
        self._ctx.reset()

    def _serve(self) -> None:
        while True:
            new_jobs, cancelled, stopping = self._take_inbox()
            if stopping:
                self._fail_all(ShuttingDown("the daemon is shutting down"))
                return
            for job in new_jobs:
                self._waiting.append(job)
            self._retire_cancelled(cancelled)
            self._retire_expired(time.monotonic())
            self._admit()
            if not self._step():
                self._idle()

    def _take_inbox(self) -> tuple[list[GenerationJob], set[int], bool]:
        with self._lock:
            self._heartbeat = time.monotonic()
            jobs = list(self._inbox)
            self._inbox.clear()
            cancelled, self._cancelled = self._cancelled, set()
            self._waiting_count = len(self._waiting) + len(jobs)
            return jobs, cancelled, self._state == "stopping"

    def _idle(self) -> None:
        with self._lock:
            if not self._inbox and not self._cancelled and self._state == "running":
                self._wake.wait(_IDLE_WAIT_S)

    # -- retiring

    def _retire_cancelled(self, cancelled: set[int]) -> None:
        if not cancelled:
            return
        for job in [j for j in self._waiting if j.job_id in cancelled]:
            self._waiting.remove(job)
            self._finish_job(job, ErrorEvent(Cancelled("cancelled by the caller")))
        for seq in self._active():
            if seq.job.job_id in cancelled:
                self._retire(seq, ErrorEvent(Cancelled("cancelled by the caller")))

    def _retire_expired(self, now: float) -> None:
        for job in [j for j in self._waiting if j.deadline is not None and j.deadline <= now]:
            self._waiting.remove(job)
            self._finish_job(
                job, ErrorEvent(DeadlineExceeded("the deadline passed while waiting for a slot"))
            )
        for seq in self._active():
            if seq.job.deadline is not None and seq.job.deadline <= now:
                self._retire(seq, ErrorEvent(DeadlineExceeded("the deadline passed during generation")))

    def _retire(self, seq: _Sequence, event: FinishEvent | ErrorEvent) -> None:
        """Free the slot (a finished answer's KV cells stay for the next prompt there, engine.prompt_cache; an
        ended one's are freed at once), then tell the caller."""
        assert self._ctx is not None
        if self._settings.prompt_cache and isinstance(event, FinishEvent):
            self._kept[seq.slot] = [*seq.prompt[: seq.prefilled], *seq.decoded]
        else:  # an error may have left cells of a batch that did not decode: nothing of it is trusted
            self._ctx.forget(seq.slot)
            self._kept[seq.slot] = []
        if seq.sampler is not None:
            seq.sampler.close()
        self._slots[seq.slot] = None
        with self._lock:
            self._busy -= 1
        self._finish_job(seq.job, event)

    def _finish_job(self, job: GenerationJob, event: FinishEvent | ErrorEvent) -> None:
        with self._lock:
            self._deadlines.pop(job.job_id, None)
        self._emit(job, event)

    def _fail_all(self, error: EdgedError) -> None:
        for seq in self._active():
            self._retire(seq, ErrorEvent(error))
        while self._waiting:
            self._finish_job(self._waiting.popleft(), ErrorEvent(error))
        with self._lock:
            pending = list(self._inbox)
            self._inbox.clear()
        for job in pending:
            self._finish_job(job, ErrorEvent(error))

    def _release(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
        if self._model is not None:
            self._model.close()
        with self._lock:
            if self._state != "dead":
                self._state = "stopped"

    # -- admission

    def _active(self) -> list[_Sequence]:
        return [seq for seq in self._slots if seq is not None]

    def _admit(self) -> None:
        while self._waiting and None in self._slots:
            job = self._waiting.popleft()
            try:
                seq = self._prepare(job)
            except EdgedError as exc:
                self._finish_job(job, ErrorEvent(exc))
                continue
            except Exception as exc:  # e.g. a model's Jinja template raising ZeroDivisionError: this job only
                logger.exception("request %s: preparing it failed", job.request_id)
                self._finish_job(job, ErrorEvent(EngineError(f"preparing the request failed: {_named(exc)}")))
                continue
            self._place(seq)
            with self._lock:
                self._busy += 1
        with self._lock:
            self._waiting_count = len(self._waiting)  # stats() then shows no job that was refused or admitted

    def _place(self, seq: _Sequence) -> None:
        """Put a sequence in a free slot (`_destination`) and start its prefill after the longest prefix of its
        prompt that slot or another one holds (at least the prompt's last token is decoded: its logits are
        needed)."""
        assert self._ctx is not None
        free = [slot for slot, occupant in enumerate(self._slots) if occupant is None]
        shared = {slot: _common_prefix(self._kept[slot], seq.prompt) for slot in free}
        slot = self._destination(free, shared)
        reuse = min(shared[slot], len(seq.prompt) - 1)
        source, longer = self._longest_prefix_elsewhere(seq.prompt, slot)
        longer = min(longer, len(seq.prompt) - 1)
        if longer >= reuse + _MIN_COPIED_TOKENS:
            # another slot (running, or keeping its last request) holds more of this prompt; a memory that
            # cannot be cut at a position (recurrent) leaves the slot empty instead
            reuse = longer if self._ctx.copy_prefix(source, slot, longer) else 0
        elif reuse < len(self._kept[slot]) and not self._ctx.truncate(slot, reuse):
            # a model whose memory cannot be cut at a position (recurrent): start afresh
            self._ctx.forget(slot)
            reuse = 0
        self._kept[slot] = []
        seq.slot = slot
        seq.prefilled = seq.n_past = seq.reused = reuse
        self._slots[slot] = seq

    def _destination(self, free: list[int], shared: dict[int, int]) -> int:
        """The free slot to take: among those keeping too little past the prompt's shared prefix to be worth
        keeping, the one sharing most; else the one keeping least past it. What a slot kept for another prompt
        (a repeated question, an earlier turn) stays for it, and a prefix held elsewhere is copied."""
        loss = {slot: len(self._kept[slot]) - shared[slot] for slot in free}
        cheap = [slot for slot in free if loss[slot] < _MIN_COPIED_TOKENS]
        if cheap:
            return max(cheap, key=lambda s: (shared[s], -loss[s]))
        return min(free, key=lambda s: (loss[s], -shared[s]))

    def _longest_prefix_elsewhere(self, prompt: list[int], slot: int) -> tuple[int, int]:
        """The other slot whose KV cells share the longest prefix with `prompt`, and that prefix's length: a
        running sequence's cells hold its prompt so far and the tokens it decoded, a free slot's what it kept
        (engine.prompt_cache; (slot, 0) when the cache is off)."""
        if not self._settings.prompt_cache:
            return slot, 0
        best, longest = slot, 0
        for other, occupant in enumerate(self._slots):
            if other == slot:
                continue
            held = (
                self._kept[other]
                if occupant is None
                else [*occupant.prompt[: occupant.prefilled], *occupant.decoded]
            )
            shared = _common_prefix(held, prompt)
            if shared > longest:
                best, longest = other, shared
        return best, longest

    def _prepare(self, job: GenerationJob) -> _Sequence:
        """Render, tokenize and check a job against a slot's context; build its sampler (its slot is chosen
        by _place)."""
        assert self._model is not None
        assert self._template is not None
        model = self._model
        text = self._template.render(job.messages)
        add_special = model.add_bos and not text.startswith(self._template.bos_token or "\0")
        prompt = model.tokenize(text, add_special=add_special)
        limit = self._settings.context_per_slot
        if len(prompt) + job.params.max_tokens > limit:
            raise InvalidRequest(
                "max_tokens",
                f"the prompt is {len(prompt)} tokens and max_tokens is {job.params.max_tokens}: "
                f"{len(prompt) + job.params.max_tokens} exceeds the context of {limit} tokens per slot",
            )
        params = job.params
        sampler = None
        if params.temperature > 0.0 or job.grammar is not None:
            seed = params.seed if params.seed is not None else random.getrandbits(32)
            try:
                sampler = NativeSampler(model, params.temperature, params.top_p, seed, job.grammar)
            except ValueError as exc:
                raise InvalidRequest("json_schema", str(exc)) from None
        seq = _Sequence(slot=-1, job=job, prompt=prompt, sampler=sampler, admitted_at=time.monotonic())
        seq.stops = StopMatcher(params.stop)
        seq.recent = RecentTokens(self._settings.repeat_last_n, self._settings.repeat_penalty)
        seq.loop = LoopGuard(self._settings.loop_guard_tokens)
        return seq

    # -- one decode step

    def _step(self) -> bool:
        """Decode one batch; False when there was nothing to decode.

        The batch never exceeds ctx.n_batch: a slot adds at most one decoding token, slots <= n_batch (checked at
        load), and prompt tokens take only the room left. NativeContext.add refuses a token beyond n_batch."""
        ctx = self._ctx
        assert ctx is not None
        ctx.clear_batch()
        outputs: list[tuple[_Sequence, int]] = []
        active = self._active()
        for seq in active:
            if not seq.prefilling and seq.last_token >= 0:
                outputs.append((seq, ctx.add(seq.last_token, seq.n_past, seq.slot, want_logits=True)))
                seq.n_past += 1
                seq.decoded.append(seq.last_token)
        budget = min(self._settings.prefill_chunk, ctx.n_batch - ctx.n_tokens)
        for seq in sorted((s for s in active if s.prefilling), key=lambda s: s.admitted_at):
            if budget <= 0:
                break
            take = min(budget, len(seq.prompt) - seq.prefilled)
            for offset in range(take):
                index = seq.prefilled + offset
                last = index == len(seq.prompt) - 1
                batch_index = ctx.add(seq.prompt[index], index, seq.slot, want_logits=last)
                if last:
                    outputs.append((seq, batch_index))
            seq.prefilled += take
            seq.n_past = seq.prefilled
            budget -= take
        if ctx.n_tokens == 0:
            return False
        code = ctx.decode()
        if code != 0:
            raise EngineError(f"llama_decode returned {code} for a batch of {ctx.n_tokens} tokens")
        self._sample(outputs)
        return True

    def _sample(self, outputs: list[tuple[_Sequence, int]]) -> None:
        ctx = self._ctx
        assert ctx is not None
        logits = ctx.output_logits()
        greedy = self._signals.argmax(logits)
        chosen = [
            self._choose(ctx, seq, batch_index, logits[row], int(greedy[row]))
            for row, (seq, batch_index) in enumerate(outputs)
        ]
        signals = self._signals.signals(logits, chosen, greedy) if self._settings.confidence else None
        for row, (seq, _) in enumerate(outputs):
            self._advance(seq, chosen[row], signals[row] if signals is not None else None)

    @staticmethod
    def _choose(
        ctx: NativeContext, seq: _Sequence, batch_index: int, row: npt.NDArray[np.float32], greedy: int
    ) -> int:
        """The next token: the sampler chain's, or the argmax; with the repeat penalty on recent tokens.

        The penalty is applied to llama.cpp's logits row in place and undone right after, so the confidence
        signals see the model's own distribution. Greedy without a recent token on top needs no penalty at all:
        the penalty only lowers recent tokens, so the argmax stays where it is."""
        recent = seq.recent
        if seq.sampler is None and (not recent.active or greedy not in recent):
            return greedy
        if not recent.active:
            assert seq.sampler is not None
            return seq.sampler.sample(ctx, batch_index)
        recent.penalize(row)
        try:
            return int(row.argmax()) if seq.sampler is None else seq.sampler.sample(ctx, batch_index)
        finally:
            recent.restore(row)

    def _advance(self, seq: _Sequence, token: int, signals: TokenSignals | None) -> None:
        """Take one generated token: end of turn, stop string, length, monitor — or emit its text."""
        assert self._model is not None
        if self._model.is_eog(token):
            self._complete(seq, "stop")
            return
        seq.generated += 1
        seq.last_token = token
        seq.recent.push(token)
        looping = seq.loop.push(token)
        if signals is not None:
            seq.signals.append(signals)
        text, stopped = seq.stops.push(seq.utf8.feed(self._model.piece(token)))
        # The monitor sees the token before the caller does, so its verdict is in place when the text arrives.
        try:
            low = (
                seq.job.monitor is not None
                and signals is not None
                and seq.job.monitor(signals, seq.generated - 1)
            )
        except Exception as exc:  # a broken hook fails its own request, never the engine thread
            logger.exception("request %s: the confidence monitor failed", seq.job.request_id)
            self._retire(seq, ErrorEvent(EngineError(f"the confidence monitor failed: {_named(exc)}")))
            return
        self._emit(seq.job, TokenEvent(text=text, index=seq.generated - 1, signals=signals, token=token))
        if stopped:
            self._complete(seq, "stop", flush=False)
        elif looping:
            self._complete(seq, "repetition")
        elif low:
            self._complete(seq, "low_confidence", flush=False)
        elif seq.generated >= seq.job.params.max_tokens:
            self._complete(seq, "length")

    def _complete(self, seq: _Sequence, reason: str, flush: bool = True) -> None:
        if flush:
            tail = seq.stops.push(seq.utf8.flush())[0] + seq.stops.flush()
            if tail:
                self._emit(seq.job, TokenEvent(text=tail, index=seq.generated, signals=None))
        event = FinishEvent(
            finish_reason=reason,
            prompt_tokens=len(seq.prompt),
            completion_tokens=seq.generated,
            confidence=ConfidenceSummary.of(seq.signals),
            queue_ms=(seq.admitted_at - seq.job.submitted_at) * 1000.0,
            cached_tokens=seq.reused,
        )
        self._retire(seq, event)

    @staticmethod
    def _emit(job: GenerationJob, event: TokenEvent | FinishEvent | ErrorEvent) -> None:
        try:
            job.emit(event)
        except Exception:
            # A caller's sink must never take the engine down; the caller is gone or broken.
            logger.exception("request %s: delivering an engine event failed", job.request_id)


# Copying another slot's cells is worth it from this many prompt tokens on: a copy moves a whole KV stream
# (24 MB for SmolLM2-135M's 1,024-cell slot, a few milliseconds) where prefill costs 1-5 ms a token on 2 cores.
_MIN_COPIED_TOKENS = 8


def _common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens two token lists share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _named(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
