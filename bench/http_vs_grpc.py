"""The OpenAI-compatible HTTP API against gRPC on one daemon: aggregate tok/s at N clients, TTFT, and the RSS
the HTTP API adds.

    .venv/bin/python bench/http_vs_grpc.py [--clients 8] [--requests 2] [--tokens 64] [--rounds 2]

One `edged serve` with `[http]` on loopback TCP answers both transports; rounds alternate gRPC and HTTP so drift
(thermal, other load) falls on both. Each client streams greedy requests back to back: gRPC GenerateStream via
edged.client, HTTP POST /v1/chat/completions with `stream: true` via httpx (SSE). Tokens are the usage each
answer reports; TTFT is the time from sending to the first text. A single-client pass (the same request a few
times on each) gives TTFT without queueing. RSS: a second daemon with the same config but no [http] is started,
warmed by one request, and read (with children) against the first, read after the same warm-up.
Goals (issue 16): HTTP tok/s within 5% of gRPC at 8 clients; TTFT within 5 ms.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.client import Client
from edged.domain import Answer, Delta
from edged.errors import Unavailable

PROMPTS = [
    "Explain how a bicycle stays upright.",
    "Write a short poem about the sea.",
    "List three uses of copper.",
    "Describe a sunrise over the mountains.",
    "What makes bread rise?",
    "Give advice for a first job interview.",
    "Why is the sky blue?",
    "Summarise the water cycle.",
]

One = Callable[[str], tuple[int, float]]  # prompt -> (completion tokens, seconds to first text)


@contextmanager
def daemon(workdir: Path, name: str, http: bool) -> Iterator[tuple[Client, str | None, psutil.Process]]:
    sock = workdir / f"{name}.sock"
    config = workdir / f"{name}.toml"
    http_section = f'[http]\nenabled = true\nsocket = "{workdir / name}-http.sock"\ntcp = "127.0.0.1:0"\n'
    config.write_text(
        f'device_id = "bench"\nstate_dir = "{workdir / "state"}"\nlog_level = "WARNING"\n'
        f'[api]\nsocket = "{sock}"\nmax_concurrent_rpcs = 256\n'
        f"[engine]\nthreads = 2\nslots = 8\ncontext_per_slot = 512\nqueue_size = 64\n"
        + (http_section if http else "")
    )
    proc = subprocess.Popen([sys.executable, "-m", "edged.cli.main", "serve", "--config", str(config)])
    client = Client(sock, timeout=600)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status = client.status(timeout=1)
                if status.state == "serving":
                    break
            except Unavailable:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("edged did not start")
            time.sleep(0.2)
        url = next((a for a in status.http_listeners if a.startswith("http://")), None)
        yield client, url, psutil.Process(proc.pid)
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def rss_mb(process: psutil.Process) -> float:
    total = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    return total / 1024 / 1024


def grpc_one(client: Client, tokens: int) -> One:
    def one(prompt: str) -> tuple[int, float]:
        start = time.perf_counter()
        ttft = 0.0
        count = 0
        for item in client.stream(prompt, max_tokens=tokens, temperature=0.0):
            if isinstance(item, Delta) and not ttft:
                ttft = time.perf_counter() - start
            elif isinstance(item, Answer):
                count = item.usage.completion_tokens
        return count, ttft

    return one


def http_one(url: str, tokens: int) -> One:
    http = httpx.Client(base_url=url, timeout=600)

    def one(prompt: str) -> tuple[int, float]:
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        ttft = 0.0
        count = 0
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    count = chunk["usage"]["completion_tokens"]
                elif chunk["choices"] and chunk["choices"][0].get("delta", {}).get("content") and not ttft:
                    ttft = time.perf_counter() - start
        return count, ttft

    return one


def concurrent(make: Callable[[], One], clients: int, per_client: int) -> tuple[float, list[float]]:
    """Aggregate tok/s and every request's TTFT."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    workers = [make() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def work(index: int) -> None:
        barrier.wait()
        for r in range(per_client):
            outcome = workers[index](PROMPTS[(index + r) % len(PROMPTS)])
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return sum(n for n, _ in results) / elapsed, [t for _, t in results]


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2, help="requests per client per round")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--single", type=int, default=5, help="single-client requests per transport")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as tmp:
        workdir = Path(tmp)
        with daemon(workdir, "plain", http=False) as (client, _, process):
            grpc_one(client, 8)(PROMPTS[0])
            rss_plain = rss_mb(process)
        with daemon(workdir, "http", http=True) as (client, url, process):
            assert url is not None
            grpc_one(client, 8)(PROMPTS[0])
            http_one(url, 8)(PROMPTS[0])
            rss_http = rss_mb(process)
            single: dict[str, list[float]] = {"grpc": [], "http": []}
            for _ in range(args.single):
                single["grpc"].append(grpc_one(client, 16)(PROMPTS[1])[1])
                single["http"].append(http_one(url, 16)(PROMPTS[1])[1])
            rates: dict[str, list[float]] = {"grpc": [], "http": []}
            ttfts: dict[str, list[float]] = {"grpc": [], "http": []}
            for _ in range(args.rounds):
                for name, make in (
                    ("grpc", lambda: grpc_one(client, args.tokens)),
                    ("http", lambda: http_one(url, args.tokens)),
                ):
                    rate, ttft = concurrent(make, args.clients, args.requests)
                    rates[name].append(rate)
                    ttfts[name].extend(ttft)
            rss_after = rss_mb(process)
    grpc_rate, http_rate = statistics.mean(rates["grpc"]), statistics.mean(rates["http"])
    print(
        f"{args.clients} clients x {args.requests} requests x {args.tokens} tokens, {args.rounds} rounds each"
    )
    print("| transport | tok/s (rounds) | TTFT p50 / p90 at N clients (ms) | TTFT p50 one client (ms) |")
    print("| --- | --- | --- | --- |")
    for name in ("grpc", "http"):
        rounds = ", ".join(f"{r:.1f}" for r in rates[name])
        print(
            f"| {name} | {statistics.mean(rates[name]):.1f} ({rounds}) | {ms(ttfts[name], 0.5):.0f} / "
            f"{ms(ttfts[name], 0.9):.0f} | {ms(single[name], 0.5):.1f} |"
        )
    print(f"HTTP/gRPC tok/s ratio: {http_rate / grpc_rate:.3f}")
    print(
        f"TTFT difference HTTP - gRPC, one client p50: {ms(single['http'], 0.5) - ms(single['grpc'], 0.5):+.1f} ms"
    )
    print(
        f"TTFT ratio HTTP/gRPC at {args.clients} clients p50: {ms(ttfts['http'], 0.5) / ms(ttfts['grpc'], 0.5):.3f}"
    )
    print(
        f"RSS after one request: {rss_plain:.0f} MB without [http], {rss_http:.0f} MB with it "
        f"(+{rss_http - rss_plain:.0f} MB); with it after the load: {rss_after:.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
