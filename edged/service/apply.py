"""ProfileApplier: puts a validated DeviceProfile into effect atomically, or keeps the running one.

Live settings (routing thresholds, limits, privacy policy, budget, telemetry, request defaults) change by swapping
one immutable profile reference. Settings the llama.cpp context is built from (model, threads, slots, context, ...)
need a new engine: it is loaded beside the running one, health-checked with a one-token generation, then swapped
in; requests already running finish on the old engine, which is closed once idle (or after the grace period).
If loading or the health check fails, nothing changes and the outcome says why (a fleet ack "rolled_back").

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
from edged.errors import EdgedError, ModelError
from edged.fleet.device import ApplyOutcome
from edged.local import LocalAnswerer
from edged.models import ModelRegistry
from edged.models.registry import verify_sha256

logger = logging.getLogger(__name__)

# Request-level defaults: they change what requests may ask for, not how the context is built.
_LIVE_ENGINE_KEYS = frozenset({"max_tokens_cap", "default_max_tokens", "default_temperature"})
_HEALTH_CHECK_TIMEOUT_S = 60.0


def needs_new_engine(old: EngineSettings, new: EngineSettings) -> bool:
    return any(
        getattr(old, key) != getattr(new, key)
        for key in EngineSettings.model_fields
        if key not in _LIVE_ENGINE_KEYS
    )


def start_engine(registry: ModelRegistry, settings: EngineSettings) -> LlamaEngine:
    """Locate, verify and load the model the settings name (blocking)."""
    if settings.model_path is not None:
        path: Path = settings.model_path
        if settings.model_sha256 is not None:
            verify_sha256(path, settings.model_sha256, settings.model)
    else:
        path = registry.resolve(settings.model).path
    engine = LlamaEngine(settings.model, path, settings)
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
        set_profile: Callable[[DeviceProfile], None],
        drain_grace_s: float,
    ) -> None:
        self._loop = loop
        self._registry = registry
        self._local = local
        self._get_profile = get_profile
        self._set_profile = set_profile
        self._drain_grace_s = drain_grace_s
        self._lock = threading.Lock()  # one apply at a time (fleet and SIGHUP may race)

    def __call__(self, profile: DeviceProfile) -> ApplyOutcome:
        with self._lock:
            old = self._get_profile()
            if needs_new_engine(old.engine, profile.engine):
                try:
                    self._swap_engine(profile.engine)
                except EdgedError as exc:
                    logger.warning("profile %s not applied, the running one stays: %s", profile.name, exc)
                    return ApplyOutcome.rolled_back(f"new engine failed: {exc}")
            self._set_profile(profile)
            logger.info("profile %s applied", profile.name)
            return ApplyOutcome.applied()

    def _swap_engine(self, settings: EngineSettings) -> None:
        engine = start_engine(self._registry, settings)
        try:
            health_check(engine)
        except EdgedError:
            engine.close()
            raise
        old_engines = self._local.engines()
        swapped = asyncio.run_coroutine_threadsafe(self._install(engine), self._loop)
        swapped.result(timeout=10)
        for old in old_engines.values():
            self._retire(old)

    async def _install(self, engine: LlamaEngine) -> None:
        self._local.replace_engines({engine.model_id: engine}, engine.model_id)

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
