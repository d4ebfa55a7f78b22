"""`edged-cloud-bridge` as a real process: killed mid-request, drained by SIGTERM, bad config, bad backend."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edged.errors import CloudUnavailable
from tests.brokers import MosquittoBroker
from tests.escalation_parts import (
    WAIT_S,
    next_chunk,
    request,
    run_async,
    spawn_worker,
    start_client,
    start_observer,
    stop_process,
    until,
)

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]
BRIDGE = str(Path(sys.executable).with_name("edged-cloud-bridge"))


def _sleep_config(tmp_path: Path, delay_s: float) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'concurrency = 2\n[backend]\ntype = "sleep"\ndelay_s = {delay_s}\ntext = "from a process"\n'
    )
    return path


@run_async
async def test_a_worker_killed_mid_request_fails_it_long_before_the_deadline(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    client = await start_client(mosquitto.url)
    observer, replies = await start_observer(mosquitto.url, client.reply_topic)
    process = spawn_worker(mosquitto.url, "doomed", tmp_path, "--config", str(_sleep_config(tmp_path, 60)))
    try:
        await until(lambda: client.workers_online() == 1, "the worker's presence")
        pending = asyncio.ensure_future(client.complete(request(), time.monotonic() + 3600))
        _key, taken = await next_chunk(replies)
        assert (taken.seq, taken.worker_id) == (0, "doomed")
        process.kill()  # no DISCONNECT: the broker publishes the worker's Last Will
        with pytest.raises(CloudUnavailable, match="worker doomed went offline while answering"):
            await pending
        assert client.workers_online() == 0
    finally:
        stop_process(process, signal.SIGKILL)
        await observer.stop()
        await client.stop()


@run_async
async def test_sigterm_drains_the_request_in_flight_then_exits_0(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    client = await start_client(mosquitto.url)
    observer, replies = await start_observer(mosquitto.url, client.reply_topic)
    process = spawn_worker(mosquitto.url, "graceful", tmp_path, "--config", str(_sleep_config(tmp_path, 1.0)))
    try:
        await until(lambda: client.workers_online() == 1, "the worker's presence")
        pending = asyncio.ensure_future(client.complete(request(), time.monotonic() + WAIT_S))
        await next_chunk(replies)  # taken
        process.send_signal(signal.SIGTERM)
        answer = await pending
        assert (answer.text, answer.result.worker_id) == ("from a process", "graceful")
        assert await asyncio.to_thread(process.wait, WAIT_S) == 0
        await until(lambda: client.workers_online() == 0, "the presence to be cleared")
        log = (tmp_path / "graceful.log").read_text()
        assert "draining 1 in-flight requests" in log
        assert "What is MQTT" not in log  # never the prompt
        assert "from a process" not in log  # never the answer
    finally:
        stop_process(process, signal.SIGKILL)
        await observer.stop()
        await client.stop()


def test_a_bad_flag_value_exits_1_naming_key_value_and_limit() -> None:
    result = subprocess.run(
        [BRIDGE, "--broker", "mqtt://127.0.0.1:1883", "--concurrency", "0", "--check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "concurrency = 0: Input should be greater than or equal to 1" in result.stderr


def test_model_alone_and_a_file_without_backend_type_serve_gguf(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    config = tmp_path / "bridge.toml"
    config.write_text(f'[backend]\nmodel_path = "{model}"\n')
    for flags in (["--model", str(model)], ["--config", str(config)]):
        result = subprocess.run(
            [BRIDGE, "--broker", "mqtt://127.0.0.1:1883", *flags, "--check-config"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (result.returncode, result.stderr) == (0, ""), flags
        assert "backend gguf" in result.stdout


def test_a_missing_config_file_exits_1(tmp_path: Path) -> None:
    result = subprocess.run(
        [BRIDGE, "--config", str(tmp_path / "absent.toml"), "--check-config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "absent.toml" in result.stderr
    assert "No such file" in result.stderr


def test_a_backend_that_cannot_start_exits_1(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model.gguf"
    process = spawn_worker(mosquitto.url, "broken", tmp_path, "--backend", "gguf", "--model", str(missing))
    assert process.wait(timeout=WAIT_S) == 1
    log = (tmp_path / "broken.log").read_text()
    assert f"backend.model_path '{missing}': no such file" in log


def _datagrams(sock: socket.socket, until: str, seen: list[str]) -> str:
    """Read notifications until one contains `until`; all of them are kept in `seen`."""
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if until in message:
            return message


def test_under_systemd_it_notifies_and_reloads(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(WAIT_S)
    config = _sleep_config(tmp_path, 0.01)
    env = {"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "400000"}
    process = spawn_worker(mosquitto.url, "unit", tmp_path, "--config", str(config), env=env)
    seen: list[str] = []
    try:
        ready = _datagrams(sock, "READY=1", seen)
        assert "worker unit in group edged-workers: sleep backend, concurrency 2" in ready
        _datagrams(sock, "WATCHDOG=1", seen)

        config.write_text(config.read_text().replace("concurrency = 2", "concurrency = 3"))
        process.send_signal(signal.SIGHUP)
        _datagrams(sock, "RELOADING=1", seen)
        assert "concurrency 3" in _datagrams(sock, "READY=1", seen)

        config.write_text("concurrency = 0\n")
        process.send_signal(signal.SIGHUP)
        refused = _datagrams(sock, "READY=1", seen)
        assert "reload refused (1 problems)" in refused
        assert "concurrency 3" in refused  # the running config stays
        assert process.poll() is None

        process.send_signal(signal.SIGTERM)
        _datagrams(sock, "STOPPING=1", seen)
        assert process.wait(timeout=WAIT_S) == 0
        log = (tmp_path / "unit.log").read_text()
        assert "reload refused, the running config stays" in log
        assert "concurrency = 0" in log
    finally:
        stop_process(process, signal.SIGKILL)
        sock.close()
