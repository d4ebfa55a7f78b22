"""The worker process's life under systemd (systemd/edged-cloud-bridge.service is Type=notify with a watchdog).

Start, in order: build the backend, load it and connect (BridgeWorker.start), wait for the first connect
(STATUS names the broker and the last error meanwhile), READY=1. WATCHDOG=1 goes out from the event loop
every half watchdog period while the backend is alive; a dead backend ends the process (exit 1) so systemd
restarts it. SIGHUP: RELOADING=1, re-read the file with the same flags on top, apply what can change live,
READY=1 (an invalid file keeps the running config and says why). SIGTERM/SIGINT: STOPPING=1, drain, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cloud_bridge.backends import Backend, create_backend
from cloud_bridge.config import BridgeConfig, load_bridge_config
from cloud_bridge.worker import BridgeWorker
from edged.errors import ConfigError, EngineError, ModelError, SubscriptionRefused
from edged.service.sdnotify import ServiceNotifier

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0  # how often STATUS is refreshed while waiting for the broker
HEALTH_EVERY_S = 1.0  # how often the backend is checked when systemd runs no watchdog


class BridgeService:
    def __init__(
        self,
        config: BridgeConfig,
        source: Path | None,
        overrides: Mapping[str, Any],
        notifier: ServiceNotifier | None = None,
    ) -> None:
        self._config = config
        self._source = source
        self._overrides = overrides
        self._notifier = notifier or ServiceNotifier.from_environment(unset_environment=True)
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._backend_dead = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        try:
            return await self._serve()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            self._notifier.close()

    async def _serve(self) -> int:
        config = self._config
        self._notifier.status(f"loading the {config.backend.type} backend")
        try:
            backend = create_backend(config.backend, config.state_dir)
            worker = BridgeWorker(config, backend)
            await worker.start()
        except (ConfigError, ModelError, EngineError, SubscriptionRefused) as exc:
            logger.error("cannot start: %s", exc)
            return 1
        health = asyncio.create_task(self._keep_alive(backend), name="bridge-watchdog")
        try:
            if await self._wait_connected(worker):
                self._notifier.ready(self._describe(worker))
                await self._serve_until_stopped(worker)
        finally:
            health.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health
            self._notifier.stopping(f"draining {worker.in_flight} requests")
            logger.info("stopping: draining %d in-flight requests", worker.in_flight)
            await worker.stop()
        if self._backend_dead.is_set():
            logger.error(
                "the %s backend died: exiting so the service manager restarts the worker", backend.kind
            )
            return 1
        return 0

    async def _wait_connected(self, worker: BridgeWorker) -> bool:
        """Until the first connect (True), or a stop or a dead backend first (False)."""
        while not await worker.link.wait_up(STATUS_EVERY_S):
            state = worker.link.state()
            self._notifier.status(f"waiting for {state.broker}: {state.last_error or state.phase.value}")
            if self._stop.is_set() or self._backend_dead.is_set():
                return False
        return not (self._stop.is_set() or self._backend_dead.is_set())

    async def _serve_until_stopped(self, worker: BridgeWorker) -> None:
        while True:
            waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, self._reload, self._backend_dead)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
            if self._stop.is_set() or self._backend_dead.is_set():
                return
            self._reload.clear()
            self._apply_reload(worker)

    def _apply_reload(self, worker: BridgeWorker) -> None:
        where = str(self._source) if self._source else "the flags"
        self._notifier.reloading(f"reloading {where}")
        try:
            config = load_bridge_config(self._source, self._overrides)
        except ConfigError as exc:
            logger.error("reload refused, the running config stays: %s", exc)
            self._notifier.ready(f"reload refused ({len(exc.problems)} problems); {self._describe(worker)}")
            return
        needs_restart = worker.reconfigure(config)
        logging.getLogger().setLevel(config.log_level)
        if needs_restart:
            logger.warning("reloaded; changes to %s take effect after a restart", ", ".join(needs_restart))
        else:
            logger.info("reloaded %s", where)
        self._notifier.ready(f"reloaded; {self._describe(worker)}")

    async def _keep_alive(self, backend: Backend) -> None:
        """WATCHDOG=1 from the event loop while the backend lives; a dead backend stops the service."""
        interval = self._notifier.watchdog_interval() or HEALTH_EVERY_S
        while True:
            if not backend.alive:
                self._backend_dead.set()
                return
            self._notifier.watchdog()
            await asyncio.sleep(interval)

    @staticmethod
    def _describe(worker: BridgeWorker) -> str:
        config = worker.config
        return (
            f"worker {config.worker_id} in group {config.group}: {config.backend.type} backend, "
            f"concurrency {config.concurrency}, {worker.in_flight} in flight"
        )
