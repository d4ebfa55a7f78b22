"""Local engine benchmark: edged vs llama.cpp's own C++ server (llama-server), in one run on one machine.

Everything runs in one go on the same machine, the same model file and the same thread count, and the table
prints ratios (absolute times on a shared 2-core machine are noise; ratios taken in the same run are not):

  1. aggregate tok/s and time to first token (TTFT) p50/p95 at 1, 4, 8, 16 concurrent streaming clients:
     edged over gRPC (confidence signals on, the default) vs `llama-server` (OpenAI API, streaming), built from
     the llama.cpp that the installed llama-cpp-python vendors (bench/llama_server.py; built once and cached)
     and started with continuous batching and as many slots as the largest client count
     (`-np 16 -c 16384 -cb`). Goals (issue 15): tok/s >= 1.0x at every level, TTFT p50 <= 1.2x at 1 and 8.
  2. confidence signals on vs off (a second edged daemon) at every level (goal <= 5% slower)
  3. single stream tok/s: edged vs a raw llama.cpp low-level decode loop in Python (goal >= 0.95x)

Every level is measured in interleaved rounds (edged, edged without signals, llama-server, in an order that
rotates each round), so a change in the machine's load hits every side alike. Each client keeps its own
connection (a gRPC channel, an HTTP client) for the whole run, connected before the clock starts.
`--reference` adds `python -m llama_cpp.server` (it serialises requests) and edged with a chunk per token.

    .venv/bin/python bench/engine.py [--threads 2] [--tokens 64] [--rounds 3] [--markdown FILE]
"""

from __future__ import annotations

import os

# Both sides with one OpenBLAS thread, as the daemon runs (set before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import llama_cpp as llama
import numpy as np
import psutil
from llama_server import ensure_built  # bench/llama_server.py (this script's directory is on sys.path)

from edged.domain import Message
from edged.engine.template import ChatTemplate
from edged.models import ModelRegistry
from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc

MODEL_ID = "smollm2-135m-instruct-q4_1"
START_TIMEOUT_S = 600  # a loaded shared machine takes minutes to start a server
CONTEXT_PER_SLOT = 1024  # both sides: llama-server -c slots x 1024, edged engine.context_per_slot
# llama-server's sampling set to edged's defaults (repeat_penalty 1.1 over the last 64 tokens), so both sides
# do the same work per token. Both keep their prompt cache on, as shipped (llama-server's cache_prompt, edged's
# engine.prompt_cache): a prompt this bench repeats is prefilled once per slot on both sides.
SERVER_SAMPLING: dict[str, object] = {"repeat_penalty": 1.1, "repeat_last_n": 64}
PROMPTS = [
    "Write a long story about a lighthouse keeper and a storm.",
    "Describe in detail how a steam engine works.",
    "Write a long letter to a friend about a trip to the mountains.",
    "Explain the history of the printing press at length.",
]


@dataclass
class Run:
    tokens: int
    seconds: float
    ttft: list[float]

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ----------------------------------------------------------------------------- raw llama.cpp loop


class RawLoop:
    """The floor: one sequence, greedy, straight llama_decode calls from Python, no server around it."""

    def __init__(self, path: Path, threads: int, prompt: str) -> None:
        llama.llama_backend_init()
        self.model = llama.llama_model_load_from_file(str(path).encode(), llama.llama_model_default_params())
        vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = llama.llama_vocab_n_tokens(vocab)
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_threads, params.n_threads_batch = 1024, 512, threads, threads
        self.ctx = llama.llama_init_from_model(self.model, params)
        # the same prompt tokens edged decodes: the GGUF's own chat template (SmolLM2's adds a system turn)
        meta = ctypes.create_string_buffer(1 << 16)
        llama.llama_model_meta_val_str(self.model, b"tokenizer.chat_template", meta, len(meta))
        text = ChatTemplate(meta.value.decode(), "", "").render((Message("user", prompt),)).encode()
        self.prompt = (llama.llama_token * 512)()
        self.n_prompt = llama.llama_tokenize(vocab, text, len(text), self.prompt, 512, False, True)
        self.batch = llama.llama_batch_init(512, 0, 1)

    def run(self, tokens: int) -> Run:
        batch, n_prompt = self.batch, self.n_prompt
        llama.llama_memory_clear(llama.llama_get_memory(self.ctx), True)
        start = time.perf_counter()
        batch.n_tokens = n_prompt
        for i in range(n_prompt):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = self.prompt[i], i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, i == n_prompt - 1
        llama.llama_decode(self.ctx, batch)
        first = time.perf_counter() - start
        pos = n_prompt
        for _ in range(tokens):
            logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,))
            batch.n_tokens = 1
            batch.token[0], batch.pos[0], batch.n_seq_id[0] = int(logits.argmax()), pos, 1
            batch.seq_id[0][0], batch.logits[0] = 0, True
            llama.llama_decode(self.ctx, batch)
            pos += 1
        return Run(tokens, time.perf_counter() - start, [first])

    def close(self) -> None:
        llama.llama_batch_free(self.batch)
        llama.llama_free(self.ctx)
        llama.llama_model_free(self.model)


def total(runs: list[Run]) -> Run:
    return Run(sum(r.tokens for r in runs), sum(r.seconds for r in runs), [t for r in runs for t in r.ttft])


# ----------------------------------------------------------------------------- servers


@contextmanager
def edged_server(
    threads: int, slots: int, confidence: bool, workdir: Path, stream_interval_ms: float | None = None
) -> Iterator[tuple[str, int]]:
    """`edged serve` with `slots` slots of CONTEXT_PER_SLOT tokens, serving; yields (gRPC target, pid)."""
    name = f"edged-{slots}-{int(confidence)}-{stream_interval_ms}"
    sock = workdir / f"{name}.sock"
    config = workdir / f"{name}.toml"
    interval = f"stream_interval_ms = {stream_interval_ms}\n" if stream_interval_ms is not None else ""
    config.write_text(
        f'device_id = "bench"\nstate_dir = "{workdir / "state"}"\nlog_level = "WARNING"\n'
        f'[api]\nsocket = "{sock}"\nmax_concurrent_rpcs = 256\n{interval}'
        f"[engine]\nthreads = {threads}\nslots = {slots}\ncontext_per_slot = {CONTEXT_PER_SLOT}\nqueue_size = 64\n"
        f"confidence = {'true' if confidence else 'false'}\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "edged.cli.main", "serve", "--config", str(config)])
    target = f"unix:{sock}"
    try:
        wait_ready(lambda: _grpc_serving(target), proc, "edged")
        yield target, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _grpc_serving(target: str) -> bool:
    try:
        with grpc.insecure_channel(target) as channel:
            stub = inference_pb2_grpc.InferenceStub(channel)
            return bool(stub.GetStatus(pb.GetStatusRequest(), timeout=1).state == "serving")
    except grpc.RpcError:
        return False


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    """Poll `ready` until it holds; fail naming the exit status if the process ends or START_TIMEOUT_S passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit status {proc.poll()})")
        time.sleep(0.2)


@contextmanager
def serving(argv: list[str], base: str, ready_path: str, what: str) -> Iterator[tuple[str, int]]:
    """A server subprocess, ready (GET `base + ready_path` answers 200); yields (base URL, pid)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(lambda: _http_ok(base + ready_path), proc, what)
        yield base, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@contextmanager
def llama_server(binary: Path, path: Path, threads: int, slots: int) -> Iterator[tuple[str, int]]:
    """llama.cpp's C++ server: continuous batching, `slots` slots of CONTEXT_PER_SLOT, the GGUF's Jinja template."""
    port = free_port()
    argv = [str(binary), "-m", str(path), "-t", str(threads), "-tb", str(threads), "-np", str(slots)]
    argv += [
        "-c",
        str(slots * CONTEXT_PER_SLOT),
        "-cb",
        "--jinja",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with serving(argv, f"http://127.0.0.1:{port}", "/health", "llama-server") as served:
        yield served


@contextmanager
def llama_cpp_server(path: Path, threads: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--n_threads", str(threads)]
    argv += ["--n_threads_batch", str(threads), "--n_ctx", "2048", "--host", "127.0.0.1", "--port", str(port)]
    # queue concurrent requests instead of aborting the running one
    argv += ["--interrupt_requests", "False"]
    with serving(argv, f"http://127.0.0.1:{port}", "/v1/models", "llama_cpp.server") as served:
        yield served


# ----------------------------------------------------------------------------- clients

Client = Callable[[str], tuple[int, float]]  # prompt -> (completion tokens, seconds to the first text)


def edged_client(target: str, tokens: int) -> Client:
    channel = grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=30)  # connected before the clock starts
    stub = inference_pb2_grpc.InferenceStub(channel)

    def one(prompt: str) -> tuple[int, float]:
        start = time.perf_counter()
        ttft = 0.0
        count = 0
        for chunk in stub.GenerateStream(
            pb.GenerateRequest(prompt=prompt, max_tokens=tokens, temperature=0.0)
        ):
            if chunk.delta and not ttft:
                ttft = time.perf_counter() - start
            if chunk.done:
                count = chunk.usage.completion_tokens
        return count, ttft

    return one


def openai_client(url: str, tokens: int, extra: dict[str, object] | None = None) -> Client:
    # llama-server (cpp-httplib) closes a connection idle for 5 s: drop idle ones first rather than reuse a dead one
    client = httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(keepalive_expiry=1.0))

    def one(prompt: str) -> tuple[int, float]:
        body: dict[str, object] = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **(extra or {}),
        }
        request = client.build_request("POST", "/v1/chat/completions", json=body)
        start = time.perf_counter()
        ttft = 0.0
        chunks = 0
        usage = 0
        try:
            response = client.send(request, stream=True)
        except httpx.RemoteProtocolError:
            # The server closed a kept-alive connection as the request went out (cpp-httplib closes one after
            # a few requests or an idle spell) and sent no response: send it once more, on a new connection.
            response = client.send(request, stream=True)
        try:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if data.get("usage"):
                    usage = int(data["usage"].get("completion_tokens") or 0)
                choices = data.get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    chunks += 1  # both servers send one chunk per generated token
                    if not ttft:
                        ttft = time.perf_counter() - start
        finally:
            response.close()
        return usage or chunks, ttft

    return one


def concurrent(clients: list[Client], per_client: int) -> Run:
    """Every client sends `per_client` requests one after another, all clients at once."""
    results: list[tuple[int, float]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients) + 1)

    def work(index: int) -> None:
        barrier.wait()
        for r in range(per_client):
            try:
                outcome = clients[index](PROMPTS[(index + r) % len(PROMPTS)])
            except Exception as exc:  # a failed request would otherwise only shrink the figure, silently
                with lock:
                    failures.append(exc)
                return
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(
            f"{len(failures)} of {len(clients) * per_client} requests failed, so this level has no figure: "
            f"{failures[0]!r}"
        )
    return Run(sum(n for n, _ in results), elapsed, [t for _, t in results])


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def rss_mib(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


# ----------------------------------------------------------------------------- main

EDGED, NOCONF, SERVER = "edged", "edged, confidence off", "llama-server"


@dataclass
class Sides:
    """The client pools of every side, and the measurements."""

    pools: dict[str, list[Client]]
    runs: dict[str, dict[int, list[Run]]]

    def measure(
        self, levels: list[int], rounds: int, per_client: int, raw: RawLoop, tokens: int
    ) -> list[Run]:
        """Interleaved rounds over every level and side; returns the raw loop's single-stream runs."""
        names = list(self.pools)
        raw_runs: list[Run] = []
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            log(f"round {r + 1}/{rounds}: {', '.join(order)} at {levels} clients ...")
            raw_runs.append(raw.run(tokens))
            for n in levels:
                for name in order:
                    self.runs[name].setdefault(n, []).append(concurrent(self.pools[name][:n], per_client))
        return raw_runs

    def total(self, name: str, n: int) -> Run:
        return total(self.runs[name][n])


def level_rows(sides: Sides, levels: list[int]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for n in levels:
        e, s = sides.total(EDGED, n), sides.total(SERVER, n)
        ratio = f"{e.tok_s / s.tok_s:.2f}x (goal >= 1.0x)"
        rows.append((f"aggregate tok/s, {n} clients", f"{e.tok_s:.1f}", f"{s.tok_s:.1f}", ratio))
    for q in (50, 95):
        for n in levels:
            e, s = sides.total(EDGED, n), sides.total(SERVER, n)
            goal = " (goal <= 1.2x)" if q == 50 and n in (1, 8) else ""
            rows.append(
                (
                    f"TTFT p{q} ms, {n} clients",
                    f"{pct(e.ttft, q):.0f}",
                    f"{pct(s.ttft, q):.0f}",
                    f"{pct(e.ttft, q) / pct(s.ttft, q):.2f}x{goal}",
                )
            )
    return rows


def confidence_rows(sides: Sides, levels: list[int]) -> list[tuple[str, str, str, str]]:
    rows = []
    for n in levels:
        on, off = sides.total(EDGED, n), sides.total(NOCONF, n)
        rows.append(
            (
                f"edged tok/s, {n} clients: confidence on vs off",
                f"{on.tok_s:.1f}",
                f"{off.tok_s:.1f}",
                f"{(1 - on.tok_s / off.tok_s) * 100:+.1f}% slower (goal <= 5%)",
            )
        )
    return rows


def reference_rows(
    args: argparse.Namespace, path: Path, work: Path, levels: list[int]
) -> list[tuple[str, str, str, str]]:
    """llama_cpp.server and edged with a chunk per token, measured after the main rounds (not interleaved)."""
    rows = []
    with edged_server(args.threads, max(levels), True, work, stream_interval_ms=0) as (target, _pid):
        per_token = [edged_client(target, args.tokens)]
        per_token[0](PROMPTS[0])
        single = concurrent(per_token, args.requests_per_client)
    with llama_cpp_server(path, args.threads) as (url, _pid):
        pool = [openai_client(url, args.tokens) for _ in range(max(levels))]
        pool[0](PROMPTS[0])
        for n in levels:
            log(f"llama_cpp.server, {n} clients ...")
            run = concurrent(pool[:n], args.requests_per_client)
            rows.append((f"reference: llama_cpp.server tok/s, {n} clients", "", f"{run.tok_s:.1f}", ""))
    rows.append(("reference: edged tok/s, a chunk per token, 1 client", f"{single.tok_s:.1f}", "", ""))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens of every request")
    parser.add_argument("--requests-per-client", type=int, default=2, help="per level and round")
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over every level")
    parser.add_argument("--reference", action="store_true", help="also llama_cpp.server, a chunk per token")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    began = time.monotonic()
    path = ModelRegistry.from_dir().resolve(MODEL_ID).path
    levels = [int(c) for c in args.clients.split(",")]
    binary = ensure_built()
    rows: list[tuple[str, str, str, str]] = []
    memory: dict[str, float] = {}

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw_loop = RawLoop(path, args.threads, PROMPTS[0])
        slots = max(levels)
        with (
            edged_server(args.threads, slots, True, work) as (target, edged_pid),
            edged_server(args.threads, slots, False, work) as (target_off, _),
            llama_server(binary, path, args.threads, slots) as (url, server_pid),
        ):
            sides = Sides(
                pools={
                    EDGED: [edged_client(target, args.tokens) for _ in range(slots)],
                    NOCONF: [edged_client(target_off, args.tokens) for _ in range(slots)],
                    SERVER: [openai_client(url, args.tokens, SERVER_SAMPLING) for _ in range(slots)],
                },
                runs={EDGED: {}, NOCONF: {}, SERVER: {}},
            )
            for pool in sides.pools.values():
                pool[0](PROMPTS[0])  # warm-up
            raw_runs = sides.measure(levels, args.rounds, args.requests_per_client, raw_loop, args.tokens)
            memory = {EDGED: rss_mib(edged_pid), SERVER: rss_mib(server_pid)}
        raw_loop.close()
        rows += level_rows(sides, levels)
        rows += confidence_rows(sides, levels)
        if 1 in levels:
            single, raw = sides.total(EDGED, 1), total(raw_runs)
            rows.append(
                (
                    "single stream tok/s: edged (gRPC) vs a raw llama.cpp loop",
                    f"{single.tok_s:.1f}",
                    f"{raw.tok_s:.1f}",
                    f"{single.tok_s / raw.tok_s:.2f}x (goal >= 0.95x)",
                )
            )
        rows.append(
            (
                f"RSS MiB after the run ({slots} slots)",
                f"{memory[EDGED]:.0f}",
                f"{memory[SERVER]:.0f}",
                f"{memory[EDGED] / memory[SERVER]:.2f}x",
            )
        )
        if args.reference:
            rows += reference_rows(args, path, work, levels)

    header = ("measure", "edged", "llama-server", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    title = (
        f"model {MODEL_ID}, {args.threads} threads, {args.tokens} tokens per request, "
        f"{args.requests_per_client} requests per client per level, {args.rounds} interleaved rounds, "
        f"{time.monotonic() - began:.0f} s"
    )
    print(title)
    print("\n".join(lines))
    if args.markdown:
        md = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * 4]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
