"""`edged serve` as a real subprocess, watched through a test-owned $NOTIFY_SOCKET.

NotifyListener is the systemd side of sd_notify(3): a datagram socket (a path, or an abstract "@name") that
collects every notification in arrival order. ServedDaemon starts `python -m edged.cli.main serve --config FILE`
with $NOTIFY_SOCKET (and optionally $WATCHDOG_USEC) pointing at it, its stderr in a log file, and gives the test
a gRPC stub on the daemon's socket. Every wait is bounded and fails with what was received and the log's tail.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc

START_TIMEOUT_S = 180.0  # model load on a busy 2-core machine; a healthy idle start takes a few seconds
RPC_TIMEOUT_S = 180.0
EXIT_TIMEOUT_S = 60.0

Notification = dict[str, str]


def toml_document(doc: Mapping[str, Any]) -> str:
    """A TOML file for a config of scalars and one level of [sections] (JSON string escapes are valid TOML)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in doc.items() if not isinstance(value, Mapping)]
    for section, table in doc.items():
        if isinstance(table, Mapping):
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def small_engine_config(tmp: Path, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """The config the daemon tests run: a small engine on the bundled model, socket and state under `tmp`."""
    doc: dict[str, Any] = {
        "device_id": "ops-test",
        "state_dir": str(tmp / "state"),
        "api": {"socket": str(tmp / "run" / "edged.sock"), "grace_period_s": 30.0},
        "engine": {"slots": 2, "context_per_slot": 512, "threads": 2, "max_tokens_cap": 400},
    }
    for name, values in sections.items():
        doc[name] = {**doc.get(name, {}), **values}
    return doc


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NotifyListener:
    """A datagram socket standing in for systemd's notification socket; collects NAME=VALUE messages."""

    def __init__(self, tmp: Path, *, abstract: bool = False) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edged-test-notify-{secrets.token_hex(8)}"
            self._sock.bind(b"\0" + name.encode())
            self.env_value = "@" + name
        else:
            path = tmp / "notify.sock"
            self._sock.bind(str(path))
            self.env_value = str(path)
        self._sock.settimeout(0.2)
        self._messages: list[Notification] = []
        self._arrived: list[float] = []  # time.monotonic() at receipt, by message index
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="notify-listener", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._changed:
                self._messages.append(fields)
                self._arrived.append(time.monotonic())
                self._changed.notify_all()

    @property
    def messages(self) -> list[Notification]:
        with self._changed:
            return list(self._messages)

    def arrived_at(self, index: int) -> float:
        """When message `index` was received (time.monotonic()), for ordering against other events."""
        with self._changed:
            return self._arrived[index]

    def find(self, name: str, value: str | None = None, *, after: int = 0) -> int | None:
        """Index of the first message at or after `after` that sets `name` (to `value`, when given)."""
        for index, message in enumerate(self.messages[after:], start=after):
            if name in message and (value is None or message[name] == value):
                return index
        return None

    def count(self, name: str, value: str, *, after: int = 0) -> int:
        return sum(1 for message in self.messages[after:] if message.get(name) == value)

    def wait_until(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()


class ServedDaemon:
    """One `edged serve` process with a notification listener, a log file and a gRPC channel on its socket."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        notify: NotifyListener,
        config_path: Path,
        socket_path: Path,
        log: Path,
    ) -> None:
        self.proc = proc
        self.config_path = config_path
        self.notify = notify
        self.socket_path = socket_path
        self.log_path = log
        self.channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.stub: Any = inference_pb2_grpc.InferenceStub(self.channel)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        """What a failed wait shows: exit status, notifications received and the end of the log."""
        tail = "\n".join(self.log().splitlines()[-40:])
        return f"exit status {self.proc.poll()}; notifications {self.notify.messages}\nlog tail:\n{tail}"

    def wait_notification(self, name: str, value: str | None = None, *, after: int = 0) -> int:
        """Index of the first `name`(=`value`) notification at or after `after`; fails if the daemon exits."""
        found: list[int] = []

        def arrived() -> bool:
            index = self.notify.find(name, value, after=after)
            if index is not None:
                found.append(index)
            return index is not None or self.proc.poll() is not None

        self.notify.wait_until(arrived, START_TIMEOUT_S)
        if not found:
            raise AssertionError(f"no {name}={value or '*'} notification after #{after}: {self.describe()}")
        return found[0]

    def wait_ready(self, *, after: int = 0) -> int:
        return self.wait_notification("READY", "1", after=after)

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"edged serve still running {timeout:.0f}s later: {self.describe()}"
            ) from None

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
        status: int = response.status
        return status

    def status(self) -> pb.StatusResponse:
        response: pb.StatusResponse = self.stub.GetStatus(pb.GetStatusRequest(), timeout=RPC_TIMEOUT_S)
        return response

    def generate(self, **fields: Any) -> pb.GenerateResponse:
        response: pb.GenerateResponse = self.stub.Generate(
            pb.GenerateRequest(**fields), timeout=RPC_TIMEOUT_S
        )
        return response

    def stream(self, **fields: Any) -> Iterator[pb.GenerateChunk]:
        chunks: Iterator[pb.GenerateChunk] = self.stub.GenerateStream(
            pb.GenerateRequest(**fields), timeout=RPC_TIMEOUT_S
        )
        return chunks


@contextmanager
def served_daemon(
    tmp: Path,
    config: Mapping[str, Any],
    *,
    args: tuple[str, ...] = (),
    abstract_notify: bool = False,
    watchdog_usec: int | None = None,
    wrapper: tuple[str, ...] = (),
) -> Iterator[ServedDaemon]:
    """Write `config` to tmp/edged.toml and run `edged serve --config` on it (under `wrapper`, e.g. strace);
    killed afterwards if still alive."""
    config_path = tmp / "edged.toml"
    config_path.write_text(toml_document(config))
    notify = NotifyListener(tmp, abstract=abstract_notify)
    env = {
        k: v for k, v in os.environ.items() if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
    }
    env["NOTIFY_SOCKET"] = notify.env_value
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    log = tmp / "edged.log"
    argv = [*wrapper, sys.executable, "-m", "edged.cli.main", "serve", "--config", str(config_path), *args]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
    daemon = ServedDaemon(proc, notify, config_path, Path(config["api"]["socket"]), log)
    try:
        yield daemon
    finally:
        daemon.channel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        notify.close()


def scrape(port: int) -> dict[str, Metric]:
    """GET /metrics on loopback and parse it: metric families by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: Mapping[str, Metric], name: str, **labels: str) -> float:
    """The value of the one sample called `name` whose labels include `labels`; fails listing what exists."""
    samples = [s for family in families.values() for s in family.samples if s.name == name]
    matches = [s.value for s in samples if labels.items() <= s.labels.items()]
    if len(matches) != 1:
        present = [s.labels for s in samples] if samples else sorted(families)
        raise AssertionError(f"{len(matches)} samples match {name}{labels}; present: {present}")
    return float(matches[0])
