"""The daemon's lifecycle: one linear list of named startup steps, torn down in reverse.

    state directory -> profile -> listeners (NOT_SERVING) -> local model -> serving (SERVING, READY=1)

SIGTERM and SIGINT set one stop event; teardown then drains (health NOT_SERVING, no new RPCs, in-flight requests
get `api.grace_period_s`, the rest are cancelled), closes the engine and removes the socket. A dead engine ends the
process with exit code 1 so systemd restarts it. SIGHUP reloads the config and profile (see `reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged import __version__
from edged.api.convert import RequestLimits
from edged.api.server import ApiServer
from edged.api.servicer import InferenceServicer
from edged.config import DaemonConfig, DeviceProfile, effective_profile, load_config, load_profile
from edged.errors import ConfigError, EdgedError
from edged.local import LocalAnswerer
from edged.models import ModelRegistry
from edged.pipeline import InferencePipeline
from edged.service.apply import ProfileApplier, start_engine
from edged.service.sdnotify import ServiceNotifier
from edged.status import DaemonStatus, ModelInfo, ProfileInfo
from edged.telemetry.logging import set_level
from edged.telemetry.metrics import EdgedMetrics, MetricsEndpoint

logger = logging.getLogger(__name__)

_SUPERVISE_INTERVAL_S = 1.0
_HEARTBEAT_STALE_S = 10.0  # an engine thread silent this long is hung: stop feeding the watchdog


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]] | None = None


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
        notifier: ServiceNotifier | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._overrides = overrides or {}
        self._notifier = notifier or ServiceNotifier.from_environment(unset_environment=True)
        self._stop = asyncio.Event()
        self._started_at = time.monotonic()
        self._state = "loading"
        self._exit_code = 0
        self.profile = DeviceProfile()
        self._registry: ModelRegistry | None = None
        self._applier: ProfileApplier | None = None
        self.metrics = EdgedMetrics(config.device_id)
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.local = LocalAnswerer({}, config.engine.model)
        self.pipeline = InferencePipeline(config.device_id, self.local, self.metrics)
        self._api: ApiServer | None = None

    # ------------------------------------------------------------------ the steps

    def steps(self) -> list[Step]:
        return [
            Step("state directory", self._open_state_dir),
            Step("profile", self._resolve_profile),
            Step("metrics endpoint", self._start_metrics, self._stop_metrics),
            Step("listeners", self._bind_listeners, self._close_listeners),
            Step("local model", self._load_model, self._close_model),
            Step("serving", self._start_serving, self._drain),
        ]

    async def _open_state_dir(self) -> None:
        self.config.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)

    async def _resolve_profile(self) -> None:
        layers = [load_profile(self.config.profile)] if self.config.profile else []
        self.profile = effective_profile(self.config, layers)
        self._registry = ModelRegistry.from_dir(self.config.models_dir, self.config.state_dir / "models")

    async def _start_metrics(self) -> None:
        self._metrics_endpoint = MetricsEndpoint.from_settings(self.metrics.registry, self.config.metrics)
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.start()
            logger.info("metrics on %s", self._metrics_endpoint.url)

    async def _stop_metrics(self) -> None:
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()

    async def _bind_listeners(self) -> None:
        servicer = InferenceServicer(self.pipeline, self.request_limits, self.status)
        self._api = ApiServer(self.config.api, servicer)
        await self._api.start()

    async def _close_listeners(self) -> None:
        if self._api is not None:
            await self._api.stop(0)

    async def _load_model(self) -> None:
        settings = self.profile.engine
        self._notifier.status(f"loading model {settings.model}")
        assert self._registry is not None
        engine = await asyncio.to_thread(start_engine, self._registry, settings)
        self.local.replace_engines({engine.model_id: engine}, engine.model_id)
        self._applier = ProfileApplier(
            loop=asyncio.get_running_loop(),
            registry=self._registry,
            local=self.local,
            get_profile=lambda: self.profile,
            set_profile=self._set_profile,
            drain_grace_s=self.config.api.grace_period_s,
        )

    async def _close_model(self) -> None:
        engines = self.local.engines()
        self.local.replace_engines({}, self.local.default_model)
        for engine in engines.values():
            await asyncio.to_thread(engine.close)

    def _set_profile(self, profile: DeviceProfile) -> None:
        self.profile = profile

    async def _start_serving(self) -> None:
        assert self._api is not None
        await self._api.set_serving(True)
        self._state = "serving"
        self._notifier.ready(self._status_line())
        logger.info("serving %s on %s", self.local.default_model, ", ".join(self._api.addresses))

    async def _drain(self) -> None:
        self._state = "draining"
        self._notifier.stopping("draining: finishing in-flight requests")
        if self._api is not None:
            grace = self.config.api.grace_period_s
            logger.info("draining: in-flight requests have %.1fs to finish", grace)
            await self._api.stop(grace)

    # ------------------------------------------------------------------ running

    async def run(self, *, handle_signals: bool = True) -> int:
        """Start every step, serve until a stop signal (or a dead engine), then tear down in reverse.

        handle_signals=False leaves signals alone (an embedding program, or tests running it off the main thread).
        """
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        started: list[Step] = []
        try:
            for step in self.steps():
                if self._stop.is_set():
                    break
                logger.debug("starting: %s", step.name)
                await step.start()
                started.append(step)
            else:
                await self._supervise()
        except EdgedError as exc:
            logger.error("startup failed: %s", exc)
            self._exit_code = 1
        finally:
            for step in reversed(started):
                if step.stop is not None:
                    logger.debug("stopping: %s", step.name)
                    await step.stop()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
        logger.info("stopped")
        return self._exit_code

    def request_stop(self) -> None:
        logger.info("stop requested")
        self._stop.set()

    async def _supervise(self) -> None:
        """Feed the watchdog while the engine is alive and responsive; stop if it dies."""
        interval = min(_SUPERVISE_INTERVAL_S, self._notifier.watchdog_interval() or _SUPERVISE_INTERVAL_S)
        while not self._stop.is_set():
            stats = [engine.stats() for engine in self.local.engines().values()]
            self.metrics.set_engine_load(
                queue_depth=sum(s.queue_depth for s in stats),
                slots_busy=sum(s.slots_busy for s in stats),
                slots=sum(s.slots_total for s in stats),
            )
            if any(not s.alive for s in stats):
                logger.error("the local engine died; exiting so the service manager restarts edged")
                self._exit_code = 1
                return
            if all(s.heartbeat_age_s < _HEARTBEAT_STALE_S for s in stats):
                self._notifier.watchdog()
            else:
                logger.warning(
                    "the engine thread has not reported for %.0fs", max(s.heartbeat_age_s for s in stats)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)

    async def reload(self) -> None:
        """SIGHUP: re-read the config file and profile; apply what can change live; keep the old on error."""
        self._notifier.reloading("reloading configuration")
        try:
            config = load_config(self._config_path, self._overrides)
            layers = [load_profile(config.profile)] if config.profile else []
            profile = effective_profile(config, layers)
        except ConfigError as exc:
            logger.error("reload rejected, keeping the running configuration: %s", exc)
            self._notifier.ready(self._status_line())
            return
        if self._applier is not None:
            outcome = await asyncio.to_thread(self._applier, profile)
            if outcome.reason:
                logger.error("reload rejected, keeping the running configuration: %s", outcome.reason)
                self._notifier.ready(self._status_line())
                return
        self.config = config
        self.profile = profile
        set_level(config.log_level)
        logger.info("configuration reloaded")
        self._notifier.ready(self._status_line())

    # ------------------------------------------------------------------ what the servicer asks

    def request_limits(self) -> RequestLimits:
        engine = self.profile.engine
        return RequestLimits(
            max_tokens_cap=engine.max_tokens_cap,
            default_max_tokens=engine.default_max_tokens,
            default_temperature=engine.default_temperature,
            models=frozenset(self.local.engines()),
        )

    def status(self) -> DaemonStatus:
        return DaemonStatus(
            device_id=self.config.device_id,
            version=__version__,
            state=self._state,
            models=tuple(self._model_infos()),
            profile=ProfileInfo(name=self.profile.name),
            uptime_s=time.monotonic() - self._started_at,
            requests_local=self.pipeline.answered_local,
            requests_cloud=self.pipeline.answered_cloud,
        )

    def _model_infos(self) -> list[ModelInfo]:
        infos = []
        registry_ids = self._registry.ids() if self._registry else []
        engines = self.local.engines()
        for model_id in sorted(set(registry_ids) | set(engines)):
            manifest = (
                self._registry.manifest(model_id) if model_id in registry_ids and self._registry else None
            )
            if manifest is not None and manifest.format != "gguf":
                continue
            engine = engines.get(model_id)
            stats = engine.stats() if engine else None
            infos.append(
                ModelInfo(
                    id=model_id,
                    quantization=manifest.quantization if manifest else "",
                    context_length=manifest.context_length if manifest else 0,
                    sha256=manifest.sha256 if manifest else "",
                    loaded=stats is not None and stats.loaded,
                    slots_total=stats.slots_total if stats else 0,
                    slots_busy=stats.slots_busy if stats else 0,
                    context_per_slot=stats.context_per_slot if stats else 0,
                    queue_depth=stats.queue_depth if stats else 0,
                    queue_capacity=stats.queue_capacity if stats else 0,
                    is_default=model_id == self.local.default_model,
                )
            )
        return infos

    def _status_line(self) -> str:
        stats = [engine.stats() for engine in self.local.engines().values()]
        busy = sum(s.slots_busy for s in stats)
        total = sum(s.slots_total for s in stats)
        return f"{self._state}: {self.local.default_model}, {busy}/{total} slots busy"
