"""A real edged daemon in this process: its asyncio loop on a background thread, a gRPC client on its socket."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edged.config import parse_config
from edged.config.profile import deep_merge
from edged.routing.load import FakeSystemSource
from edged.service.daemon import Daemon
from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc


class RunningDaemon:
    def __init__(self, daemon: Daemon, thread: threading.Thread, loop: asyncio.AbstractEventLoop) -> None:
        self.daemon = daemon
        self.thread = thread
        self.loop = loop
        self.socket = daemon.config.api.socket
        self.channel = grpc.insecure_channel(f"unix:{self.socket}")
        self.stub: Any = inference_pb2_grpc.InferenceStub(self.channel)
        self.exit_code: int | None = None

    def openai_base_url(self) -> str:
        """The HTTP API's TCP listener as an OpenAI base URL (http://HOST:PORT/v1; [http] tcp must be set)."""
        tcp = [a for a in self.status().http_listeners if a.startswith("http://")]
        return tcp[0] + "/v1"

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        status: int = response.status
        return status

    def status(self) -> pb.StatusResponse:
        response: pb.StatusResponse = self.stub.GetStatus(pb.GetStatusRequest(), timeout=5)
        return response

    def wait_idle(self, timeout: float = 10.0) -> pb.StatusResponse:
        """Poll until no slot is busy and nothing is queued (bounded); returns the last status.

        Right after cancelling, the server may still count the cancelled RPCs against max_concurrent_rpcs, so a
        RESOURCE_EXHAUSTED answer to the poll itself is retried."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                status = self.status()
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                continue
            if not (status.slots_busy or status.queue_depth) or time.monotonic() > deadline:
                return status
            time.sleep(0.02)

    def stop(self) -> None:
        self.channel.close()
        self.loop.call_soon_threadsafe(self.daemon.request_stop)
        self.thread.join(60)


@contextmanager
def running_daemon(
    tmp: Path, config: dict[str, Any] | None = None, load: FakeSystemSource | None = None
) -> Iterator[RunningDaemon]:
    """Start a daemon on a socket under `tmp` with the bundled model; stop it afterwards.

    The device load it sees comes from `load` (a calm device by default), not from this busy test machine, so
    load-aware routing happens only where a test asks for it."""
    base = {
        "device_id": "test-device",
        "state_dir": str(tmp / "state"),
        "api": {"socket": str(tmp / "edged.sock")},
        "engine": {"threads": 2, "slots": 4, "context_per_slot": 512, "max_tokens_cap": 256},
    }
    daemon = Daemon(parse_config(deep_merge(base, config or {})), load_source=load or FakeSystemSource())
    loop = asyncio.new_event_loop()
    result: dict[str, int] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        result["code"] = loop.run_until_complete(daemon.run(handle_signals=False))
        loop.close()

    thread = threading.Thread(target=serve, name="test-daemon", daemon=True)
    thread.start()
    running = RunningDaemon(daemon, thread, loop)
    deadline = time.monotonic() + 120
    while daemon.status().state != "serving":
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not start (exit code {result.get('code')})")
        time.sleep(0.05)
    try:
        yield running
    finally:
        running.stop()
        running.exit_code = result.get("code")
