"""ProfileApplier: puts a validated DeviceProfile into effect atomically, or keeps the running one.

Everything that can fail is built first, while the running profile serves on:

    1. prepare(profile)   the daemon's part: a privacy gate for new privacy settings, a router for a new
                          routing.router_model; returns a commit that only swaps references
    2. a new engine       only when the settings the llama.cpp context is built from changed (model, threads,
                          slots, context, ...): loaded beside the running one and health-checked with a one-token
                          generation

Then, in one step on the event loop (where requests read them), the new engine (if any) and the commit go in.
Requests already running finish on the old engine, which is closed once idle (or after the grace period). If
anything fails before that step, nothing changes and the outcome says why (a fleet ack "rolled_back", a reload
refused).

Called from worker threads (the fleet agent's, or a reload's) — it blocks while a model loads.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edged.config.engine import EngineSettings
from edged.config.profile import DeviceProfile
from edged.domain import Message, SamplingParams
from edged.engine import EngineEvent, ErrorEvent, FinishEvent, GenerationJob, LlamaEngine
from edged.engine.local_answerer import LocalAnswerer
from edged.engine.selftest import ensure_decodes
from edged.errors import EdgedError, ModelError
from edged.fleet.outcome import ApplyOutcome
from edged.models import ModelRegistry
from edged.models.registry import verify_sha256

logger = logging.getLogger(__name__)

# Request-level defaults: they change what requests may ask for, not how the context is built.
_LIVE_ENGINE_KEYS = frozenset({"max_tokens_cap", "default_max_tokens", "default_temperature"})
_HEALTH_CHECK_TIMEOUT_S = 60.0
_INSTALL_TIMEOUT_S = 10.0  # the event loop only has to run two reference swaps

Commit = Callable[[], None]  # puts a prepared profile in effect; swaps references only, never fails
Prepare = Callable[[DeviceProfile], Commit]  # builds what a profile needs; raises EdgedError


def needs_new_engine(old: EngineSettings, new: EngineSettings) -> bool:
    return any(
        getattr(old, key) != getattr(new, key)
        for key in EngineSettings.model_fields
        if key not in _LIVE_ENGINE_KEYS
    )


def start_engine(
    registry: ModelRegistry, settings: EngineSettings, state_dir: Path | None = None
) -> LlamaEngine:
    """Locate, verify, self-test (in a child process) and load the model the settings name (blocking).

    The self-test's pass is remembered in `state_dir` for this library, CPU and model file (see
    edged.engine.selftest); without a state directory it runs every time."""
    manifest_template = "gguf"
    if settings.model_path is not None:
        path: Path = settings.model_path
        if settings.model_sha256 is not None:
            verify_sha256(path, settings.model_sha256, settings.model)
        stat = path.stat() if path.exists() else None
        identity = (
            settings.model_sha256 or f"{path.resolve()}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}"
        )
    else:
        resolved = registry.resolve(settings.model)
        path, identity = resolved.path, resolved.manifest.sha256
        manifest_template = resolved.manifest.chat_template
    ensure_decodes(
        path, model_id=settings.model, model_sha256=identity, threads=settings.threads, state_dir=state_dir
    )
    engine = LlamaEngine(settings.model, path, settings, manifest_template=manifest_template)
    engine.start()
    return engine


def health_check(engine: LlamaEngine, timeout: float = _HEALTH_CHECK_TIMEOUT_S) -> None:
    """One tiny greedy generation must finish; raises ModelError otherwise."""
    events: queue.Queue[EngineEvent] = queue.Queue()
    job = GenerationJob(
        request_id="health-check",
        messages=(Message("user", "Hi"),),
        params=SamplingParams(max_tokens=1),
        emit=events.put,
        deadline=time.monotonic() + timeout,
    )
    engine.submit(job)
    while True:
        try:
            event = events.get(timeout=timeout)
        except queue.Empty:
            raise ModelError(
                f"model {engine.model_id} did not answer a health check in {timeout:.0f}s"
            ) from None
        if isinstance(event, FinishEvent):
            return
        if isinstance(event, ErrorEvent):
            raise ModelError(f"model {engine.model_id} failed its health check: {event.error}")


class ProfileApplier:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        registry: ModelRegistry,
        local: LocalAnswerer,
        get_profile: Callable[[], DeviceProfile],
        prepare: Prepare,
        drain_grace_s: float,
        state_dir: Path | None = None,
        install_timeout_s: float = _INSTALL_TIMEOUT_S,
    ) -> None:
        self._loop = loop
        self._state_dir = state_dir
        self._install_timeout_s = install_timeout_s
        self._registry = registry
        self._local = local
        self._get_profile = get_profile
        self._prepare = prepare
        self._drain_grace_s = drain_grace_s
        self._lock = threading.Lock()  # one apply at a time (fleet and SIGHUP may race)

    def __call__(self, profile: DeviceProfile) -> ApplyOutcome:
        with self._lock:
            old = self._get_profile()
            try:
                commit = self._prepare(profile)
            except EdgedError as exc:
                logger.warning("profile %s not applied, the running one stays: %s", profile.name, exc)
                return ApplyOutcome.rolled_back(str(exc))
            engine = None
            if needs_new_engine(old.engine, profile.engine):
                try:
                    engine = self._new_engine(profile.engine)
                except EdgedError as exc:
                    logger.warning("profile %s not applied, the running one stays: %s", profile.name, exc)
                    return ApplyOutcome.rolled_back(f"new engine failed: {exc}")
            try:
                replaced = self._install(engine, commit)
            except ModelError as exc:
                if engine is not None:
                    engine.close()  # it never went in, and never will
                logger.warning("profile %s not applied, the running one stays: %s", profile.name, exc)
                return ApplyOutcome.rolled_back(str(exc))
            for retired in replaced:
                self._retire(retired)
            logger.info("profile %s applied", profile.name)
            return ApplyOutcome.applied()

    def _new_engine(self, settings: EngineSettings) -> LlamaEngine:
        engine = start_engine(self._registry, settings, self._state_dir)
        try:
            health_check(engine)
        except EdgedError:
            engine.close()
            raise
        return engine

    def _install(self, engine: LlamaEngine | None, commit: Commit) -> list[LlamaEngine]:
        """The new engine (if any) and the profile go in together on the event loop; returns the replaced
        engines."""
        replaced = list(self._local.engines().values()) if engine is not None else []
        # Decided under this lock, once: either the loop swaps, or this thread abandons the swap on timeout (a
        # swap that ran late would install a profile already acked as rolled back). The loop holds it only for
        # the two reference swaps.
        decided = threading.Lock()
        state = {"abandoned": False, "swapped": False}

        async def swap() -> None:
            with decided:
                if state["abandoned"]:
                    return
                if engine is not None:
                    self._local.replace_engines({engine.model_id: engine}, engine.model_id)
                commit()
                state["swapped"] = True

        future = asyncio.run_coroutine_threadsafe(swap(), self._loop)
        try:
            future.result(timeout=self._install_timeout_s)
        except TimeoutError:
            with decided:
                state["abandoned"] = not state["swapped"]
            if state["abandoned"]:
                raise ModelError(
                    f"the event loop did not take the new profile within {self._install_timeout_s:g} s"
                ) from None
            future.result()
        return replaced

    def _retire(self, engine: LlamaEngine) -> None:
        """Close an engine once its running requests have finished (bounded by the grace period)."""
        deadline = time.monotonic() + self._drain_grace_s
        while time.monotonic() < deadline:
            stats = engine.stats()
            if stats.slots_busy == 0 and stats.queue_depth == 0:
                break
            time.sleep(0.05)
        engine.close()
        logger.info("previous engine for %s closed", engine.model_id)
