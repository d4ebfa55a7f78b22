"""The daemon's lifecycle: one linear list of named startup steps, torn down in reverse.

    state directory -> profile -> metrics endpoint -> load sampler -> listeners (NOT_SERVING)
      -> HTTP API (OpenAI-compatible, with [http] enabled; 503 until serving)
      -> local model -> cloud link (router, privacy gate, audit, MQTT, escalation, fleet; with a broker only)
      -> serving (SERVING, READY=1)

SIGTERM and SIGINT set one stop event; teardown then drains (health NOT_SERVING, no new RPCs, in-flight requests
get `api.grace_period_s`, the rest are cancelled), disconnects MQTT, closes the engine and removes the socket. A
dead engine ends the process with exit code 1 so systemd restarts it (a hung one stops feeding the watchdog).
SIGHUP reloads the config file and the local profile: the fleet's layers stay on top, everything that can fail is
built before anything changes, and READY=1 follows whether the reload was taken or refused.
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
from typing import TYPE_CHECKING, Any

# comms, escalation and fleet are used through their packages, whose parts load on first use: a daemon
# without a broker or a fleet never loads paho or cryptography.
from edged import comms, escalation, fleet
from edged.api.convert import RequestLimits
from edged.api.server import ApiServer
from edged.api.servicer import InferenceServicer
from edged.config import DaemonConfig, DeviceProfile, effective_profile, load_config, load_profile
from edged.config.api import ApiSettings
from edged.config.loader import read_toml
from edged.engine.local_answerer import LocalAnswerer
from edged.errors import BackendCrashed, ConfigError, EdgedError
from edged.files import FileWriter
from edged.fleet.outcome import ApplyOutcome, ApplyResult, ProfileBase
from edged.models import ModelRegistry
from edged.pipeline.inference import InferencePipeline
from edged.pipeline.runtime import Runtime, RuntimeSlot
from edged.routing.budget import CloudBudget
from edged.routing.load import EngineLoad, LoadSampler, PsutilSource, SystemSource
from edged.service import report
from edged.service.apply import Commit, ProfileApplier, start_engine
from edged.service.loop_call import call_on_loop
from edged.service.report import budget_info, budget_remaining, load_info
from edged.service.runtime import CloudLink, RuntimeParts, build_runtime
from edged.service.sdnotify import ServiceNotifier
from edged.service.snapshot import DaemonStatus
from edged.sovereignty.audit import AuditLog
from edged.telemetry.logging import set_level
from edged.telemetry.metrics import EdgedMetrics, MetricsEndpoint

if TYPE_CHECKING:
    from edged.api.http import HttpApi

logger = logging.getLogger(__name__)

_SUPERVISE_INTERVAL_S = 1.0
_TELEMETRY_WAIT_S = 5.0  # the fleet thread waits this long for the loop to take the status
_HEARTBEAT_STALE_S = 10.0  # an engine thread silent this long is hung: stop feeding the watchdog
# What a reload keeps as it started (a restart applies it): identity, where state and models live, the broker,
# fleet membership, the metrics endpoint and the HTTP API; of [api] only these two change live.
_START_ONLY = ("device_id", "state_dir", "models_dir", "broker", "escalation", "fleet", "metrics", "http")
_LIVE_API = ("stream_interval_ms", "grace_period_s")


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
        load_source: SystemSource | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._overrides = overrides or {}
        self._notifier = notifier or ServiceNotifier.from_environment(unset_environment=True)
        self._stop = asyncio.Event()
        self._started_at = time.monotonic()
        self._state = "loading"
        self._exit_code = 0
        self._local_profiles: list[DeviceProfile] = []
        self.metrics = EdgedMetrics(config.device_id)
        # The audit's appends and the budget's fsynced saves go through one writer thread, never the event loop
        # (issue 17: 5); it is closed (drained) last at shutdown, so no record is lost.
        self.state_writer = FileWriter("edged-state-writer")
        self.budget = CloudBudget.open(DeviceProfile().budget, config.state_dir, self.state_writer)
        self._registry: ModelRegistry | None = None
        self._cloud_link: CloudLink | None = None
        # The composition root: every per-profile part is built by build_runtime and swapped in whole.
        self._runtime = RuntimeSlot(build_runtime(DeviceProfile(), self._parts()))
        self.local = LocalAnswerer({}, config.engine.model)
        self._sampler = LoadSampler(
            load_source or PsutilSource(),
            self._engine_load,
            interval_s=lambda: self.profile.limits.sample_interval_s,
        )
        self.pipeline = InferencePipeline(
            config.device_id, self.local, self._runtime, load=self._sampler.latest, metrics=self.metrics
        )
        self._applier: ProfileApplier | None = None
        self._metrics_endpoint: MetricsEndpoint | None = None
        self._sampler_started = False
        self._api: ApiServer | None = None
        self._http: HttpApi | None = None
        self._link: comms.MqttLink | None = None
        self._escalation: escalation.EscalationClient | None = None
        self._fleet: fleet.FleetAgent | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run()
        self._reloading = asyncio.Lock()  # SIGHUPs in a row reload one after the other
        self._reloads: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references to tasks

    @property
    def runtime(self) -> Runtime:
        """What requests are answered with now (the profile in effect and the parts built from it)."""
        return self._runtime.current

    @property
    def profile(self) -> DeviceProfile:
        return self._runtime.current.profile

    def _parts(self) -> RuntimeParts:
        config = self.config
        return RuntimeParts(
            device_id=config.device_id,
            models_dir=config.models_dir,
            metrics=self.metrics,
            budget=self.budget,
            stream_interval_s=config.api.stream_interval_ms / 1000.0,
            registry=self._registry,
            cloud=self._cloud_link,
        )

    # ------------------------------------------------------------------ the steps

    def steps(self) -> list[Step]:
        return [
            Step("state directory", self._open_state_dir, self._close_state_writer),
            Step("profile", self._resolve_profile),
            Step("metrics endpoint", self._start_metrics, self._stop_metrics),
            Step("load sampler", self._start_sampler, self._stop_sampler),
            Step("listeners", self._bind_listeners, self._close_listeners),
            Step("HTTP API", self._start_http, self._stop_http),
            Step("local model", self._load_model, self._close_model),
            Step("cloud link", self._connect_cloud, self._disconnect_cloud),
            Step("serving", self._start_serving, self._drain),
        ]

    async def _open_state_dir(self) -> None:
        self.config.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)

    async def _close_state_writer(self) -> None:
        await asyncio.to_thread(self.state_writer.close)

    async def _resolve_profile(self) -> None:
        """The local profile file, then the fleet's last good profile (a device booting offline runs it)."""
        self._local_profiles = [load_profile(self.config.profile)] if self.config.profile else []
        # last_good_profile checks fleet.enabled too; asking first keeps a daemon without a fleet from loading it
        replayed = (
            fleet.last_good_profile(self.config, self._local_profiles) if self.config.fleet.enabled else None
        )
        self._registry = ModelRegistry.from_dir(self.config.models_dir, self.config.state_dir / "models")
        self._prepare_profile(replayed or effective_profile(self.config, self._local_profiles))()
        if replayed is not None:
            logger.info("replaying the last good fleet profile %s", replayed.name)

    async def _start_metrics(self) -> None:
        self._metrics_endpoint = MetricsEndpoint.from_settings(self.metrics.registry, self.config.metrics)
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.start()
            logger.info("metrics on %s", self._metrics_endpoint.url)

    async def _stop_metrics(self) -> None:
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()

    async def _start_sampler(self) -> None:
        self._sampler.start()
        self._sampler_started = True

    async def _stop_sampler(self) -> None:
        self._sampler.stop()

    async def _bind_listeners(self) -> None:
        servicer = InferenceServicer(self.pipeline, self.request_limits, self.status)
        self._api = ApiServer(self.config.api, servicer)
        await self._api.start()

    async def _close_listeners(self) -> None:
        if self._api is not None:
            await self._api.stop(0)

    async def _start_http(self) -> None:
        if not self.config.http.enabled:
            return
        from edged.api.http import HttpApi  # noqa: PLC0415 - aiohttp is imported only when [http] is enabled

        self._http = HttpApi(
            self.config.http, self.config.api.socket_mode, self.pipeline, self.request_limits, self.status
        )
        await self._http.start()

    async def _stop_http(self) -> None:
        if self._http is not None:
            await self._http.stop()

    async def _load_model(self) -> None:
        settings = self.profile.engine
        self._notifier.status(f"loading model {settings.model}")
        assert self._registry is not None
        self._notifier.status(f"decode self-test of {settings.model}")
        engine = await asyncio.to_thread(start_engine, self._registry, settings, self.config.state_dir)
        self.local.replace_engines({engine.model_id: engine}, engine.model_id)
        self._applier = ProfileApplier(
            loop=asyncio.get_running_loop(),
            registry=self._registry,
            local=self.local,
            get_profile=lambda: self.profile,
            prepare=self._prepare_profile,
            drain_grace_s=self.config.api.grace_period_s,
            state_dir=self.config.state_dir,
        )

    async def _close_model(self) -> None:
        engines = self.local.engines()
        self.local.replace_engines({}, self.local.default_model)
        for engine in engines.values():
            await asyncio.to_thread(engine.close)

    async def _connect_cloud(self) -> None:
        """With a broker: the privacy gate and audit log, the MQTT link, escalation and the fleet agent."""
        config = self.config
        if config.broker.url is None:
            if config.fleet.enabled:
                raise ConfigError("fleet", [("broker.url", None, "fleet.group needs a broker")])
            return
        self._link = comms.MqttLink(
            config.broker, config.device_id, will=fleet.fleet_will(config) if config.fleet.enabled else None
        )
        self._escalation = escalation.EscalationClient(
            config.broker, config.device_id, escalation=config.escalation, link=self._link
        )
        self._cloud_link = CloudLink(
            self._escalation, AuditLog.open(config.state_dir, self.profile.privacy.audit, self.state_writer)
        )
        self._notifier.status("loading the router and the privacy gate")
        # Both only matter when there is somewhere to route to and something that could leave the device, so a
        # device without a broker does not pay their memory (onnxruntime, spaCy + Presidio).
        self._runtime.swap(await asyncio.to_thread(build_runtime, self.profile, self._parts(), self.runtime))
        await self._escalation.start()
        if config.fleet.enabled:
            assert self._applier is not None
            fleet_link = comms.ThreadLink.over(
                self._link, asyncio.get_running_loop(), fleet.fleet_will(config)
            )
            self._fleet = fleet.FleetAgent.from_config(
                config,
                fleet_link,
                self._applier,
                self._telemetry,
                self._local_profiles,
                on_change=self._show_profile_version,
            )
            self._show_profile_version()  # a profile replayed at start has its version already
            self._fleet.start()
        await self._link.start()
        # Bounded by one connect attempt: a broker that is down does not hold the start (the link goes on
        # trying), but one that refuses a subscription (its ACL) fails it with SubscriptionRefused.
        if not await self._link.wait_first_connect():
            logger.warning(
                "cloud link to %s not up yet: %s", self._link.broker, self._link.state().last_error
            )
        logger.info("cloud link to %s (device %s)", self._link.broker, config.device_id)

    async def _disconnect_cloud(self) -> None:
        if self._fleet is not None:
            await asyncio.to_thread(self._fleet.stop)
        if self._escalation is not None:
            await self._escalation.stop()
        if self._link is not None:
            await self._link.stop()

    async def _start_serving(self) -> None:
        assert self._api is not None
        await self._api.set_serving(True)
        if self._http is not None:
            self._http.serving = True
        self._state = "serving"
        self._notifier.ready(report.status_line(self.status()))
        logger.info("serving %s on %s", self.local.default_model, ", ".join(self._api.addresses))

    async def _drain(self) -> None:
        self._state = "draining"
        self._notifier.stopping("draining: finishing in-flight requests")
        if self._api is not None:
            grace = self.config.api.grace_period_s
            logger.info("draining: in-flight requests have %.1fs to finish", grace)
            http_drained = self._http.drain(grace) if self._http is not None else asyncio.sleep(0)
            await asyncio.gather(self._api.stop(grace), http_drained)

    # ------------------------------------------------------------------ running

    async def run(self, *, handle_signals: bool = True) -> int:
        """Start every step, serve until a stop signal (or a dead engine), then tear down in reverse.

        handle_signals=False leaves signals alone (an embedding program, or tests running it off the main thread).
        """
        loop = self._loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload_soon)
        started: list[Step] = []
        try:
            for step in self.steps():
                if self._stop.is_set():
                    break
                logger.debug("starting: %s", step.name)
                started.append(step)  # before start: a step that fails half way is torn down too
                await step.start()
            else:
                await self._supervise()
        except BackendCrashed as exc:
            # A restart would crash the same way: say so and exit with the code the unit does not restart on.
            logger.critical("startup failed, not restarting: %s", exc)
            self._notifier.status(f"failed: {exc}")
            self._exit_code = BackendCrashed.EXIT_CODE
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

    def reload_soon(self) -> None:
        """SIGHUP's handler: start a reload, held until it ends (an unreferenced task can be collected midway)."""
        task = asyncio.ensure_future(self.reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    def request_stop(self) -> None:
        logger.info("stop requested")
        self._stop.set()

    async def _supervise(self) -> None:
        """Feed the watchdog while the engine is alive and responsive; stop if it dies; refresh gauges."""
        interval = min(_SUPERVISE_INTERVAL_S, self._notifier.watchdog_interval() or _SUPERVISE_INTERVAL_S)
        while not self._stop.is_set():
            stats = [engine.stats() for engine in self.local.engines().values()]
            self._refresh_gauges()
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
                async with asyncio.timeout(interval):
                    await self._stop.wait()

    def _refresh_gauges(self) -> None:
        load = self._engine_load()
        self.metrics.set_engine_load(
            queue_depth=load.queue_depth, slots_busy=load.slots_busy, slots=load.slots_total
        )
        if self._sampler_started:
            system = self._sampler.latest().system
            self.metrics.set_device_load(
                cpu_percent=system.cpu_percent,
                edged_cpu_percent=system.edged_cpu_percent,
                load1=system.load_average_1m,
                memory_available_bytes=int(system.memory_available_mb * 1024 * 1024),
                temperature_celsius=system.temperature_c,
                battery_percent=system.battery_percent,
                battery_charging=system.charging,
            )
        link = report.link_info(self._escalation)
        self.metrics.set_link(link.state, link.rtt_ms / 1000 if link.rtt_ms else None)
        for resource, window, remaining in budget_remaining(self.runtime.budget.status()):
            self.metrics.set_budget_remaining(resource, window, remaining)

    async def reload(self) -> None:
        """SIGHUP: re-read the config file and the local profile; the fleet's layers stay on top of them.

        Everything that can fail is built before anything changes; on any failure the running configuration
        stays and the reason is logged. READY=1 follows RELOADING=1 either way, its STATUS saying a refusal.
        What only a restart changes (see _START_ONLY) is kept as it started."""
        if self._state != "serving":
            logger.warning("SIGHUP while %s: ignored (the files are read at start)", self._state)
            return
        async with self._reloading:
            self._notifier.reloading("reloading configuration")
            try:
                refused = await self._reload()
            except EdgedError as exc:
                refused = str(exc)
            except Exception as exc:  # whatever went wrong, systemd must get READY=1 and the old config runs
                logger.exception("reload failed")
                refused = f"{type(exc).__name__}: {exc}"
            status = report.status_line(self.status())
            if refused is None:
                logger.info("configuration reloaded")
                self._notifier.ready(status)
            else:
                logger.error("reload rejected, keeping the running configuration: %s", refused)
                self._notifier.ready(f"{status}; reload refused: {refused}")

    async def _reload(self) -> str | None:
        """Read, validate and apply the files; returns why they were refused, or None when they apply."""
        try:
            if self._config_path is not None and not read_toml(self._config_path):
                # a truncated file, or one caught while being written: never reset live settings to defaults
                return f"{self._config_path} holds no settings (empty); the running configuration stays"
            loaded = load_config(self._config_path, self._overrides)
            local = [load_profile(loaded.profile)] if loaded.profile else []
        except ConfigError as exc:
            return str(exc)
        config = self._reloadable(loaded)
        outcome = await asyncio.to_thread(self._apply_base, ProfileBase(config, tuple(local)))
        if outcome.result is not ApplyResult.APPLIED:
            return outcome.reason
        self.config = config
        self._local_profiles = local
        # the live [api] settings: the same parts, reused (nothing loads), with the new stream interval
        self._runtime.swap(build_runtime(self.profile, self._parts(), self.runtime))
        set_level(config.log_level)
        return None

    def _reloadable(self, loaded: DaemonConfig) -> DaemonConfig:
        """The reloaded config with the start-only settings of the running one; logs those the file changed."""
        running = self.config
        kept = [name for name in _START_ONLY if getattr(loaded, name) != getattr(running, name)]
        kept += [
            f"api.{key}"
            for key in ApiSettings.model_fields
            if key not in _LIVE_API and getattr(loaded.api, key) != getattr(running.api, key)
        ]
        if kept:
            logger.warning("changed in the config file, taking effect at the next start: %s", ", ".join(kept))
        api = running.api.model_copy(update={key: getattr(loaded.api, key) for key in _LIVE_API})
        return loaded.model_copy(
            update={**{name: getattr(running, name) for name in _START_ONLY}, "api": api}
        )

    def _apply_base(self, base: ProfileBase) -> ApplyOutcome:
        """On a worker thread: the new base with the fleet's layers on top (the agent merges and keeps the base
        for later pushes), or alone on a device outside a fleet."""
        if self._fleet is not None:
            return self._fleet.rebase(base)
        assert self._applier is not None  # serving: the model is loaded
        try:
            profile = base.merge({})
        except ConfigError as exc:
            return ApplyOutcome.rolled_back(str(exc))
        return self._applier(profile)

    def _prepare_profile(self, profile: DeviceProfile) -> Commit:
        """Build the runtime `profile` needs (a gate for changed privacy settings, a router for a changed
        routing.router_model or served model; both only with a broker). Raises EdgedError, leaving everything
        as it was; returns the commit that swaps it in, one reference (it cannot fail). Off the event loop:
        Presidio or a router loads for a while."""
        runtime = build_runtime(profile, self._parts(), self.runtime)
        return lambda: self._runtime.swap(runtime)

    def _show_profile_version(self) -> None:
        """The fleet profile's version on /metrics: after the agent's layers changed, and once it is built."""
        info = report.profile_info(self.profile, self._fleet, self.config.fleet.group)
        self.metrics.set_profile_version(info.version)

    # ------------------------------------------------------------------ what others ask

    def _engine_load(self) -> EngineLoad:
        stats = [engine.stats() for engine in self.local.engines().values()]
        return EngineLoad(
            queue_depth=sum(s.queue_depth for s in stats),
            slots_busy=sum(s.slots_busy for s in stats),
            slots_total=sum(s.slots_total for s in stats),
        )

    def _telemetry(self) -> dict[str, Any]:
        """The fleet agent's telemetry source. It runs on the fleet thread, and the status reads state the
        loop owns (the MQTT link, the escalation client's requests, the engines' map), so the status is
        taken on the loop and handed back (issue 17: 10)."""
        if self._loop is None:
            return report.telemetry(self.status())
        try:
            return call_on_loop(self._loop, lambda: report.telemetry(self.status()), _TELEMETRY_WAIT_S)
        except TimeoutError as exc:
            return {"error": str(exc)}

    def request_limits(self) -> RequestLimits:
        engine = self.profile.engine
        return RequestLimits(
            max_tokens_cap=engine.max_tokens_cap,
            default_max_tokens=engine.default_max_tokens,
            default_temperature=engine.default_temperature,
            models=frozenset(self.local.engines()),
        )

    def status(self) -> DaemonStatus:
        return report.daemon_status(
            device_id=self.config.device_id,
            state=self._state,
            started_at=self._started_at,
            models=report.model_infos(self._registry, self.local.engines(), self.local.default_model),
            link=report.link_info(self._escalation),
            load=load_info(self._sampler.latest(), self.profile.limits, time.monotonic())
            if self._sampler_started
            else None,
            budget=budget_info(self.runtime.budget.status()),
            profile=report.profile_info(self.profile, self._fleet, self.config.fleet.group),
            answered=(self.pipeline.answered_local, self.pipeline.answered_cloud),
            http_listeners=tuple(self._http.addresses) if self._http is not None else (),
        )
