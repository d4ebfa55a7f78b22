"""Local engine benchmark: edged vs a raw llama.cpp decode loop and vs llama-cpp-python's own server.

Everything runs in one go on the same machine, the same model file and the same thread count, and the table
prints ratios (absolute times on a shared 2-core machine are noise; ratios taken in the same run are not):

  1. single stream tok/s: edged over gRPC vs a raw llama.cpp low-level decode loop (goal >= 0.95x), with the
     default stream chunking (api.stream_interval_ms = 20) and with a chunk per token (0)
  2. aggregate tok/s at 1, 4, 8, 16 concurrent streaming clients: edged vs `python -m llama_cpp.server`
     (OpenAI API, streaming) (goal >= 1.8x at 8 clients), with time to first token p50/p95 at 8 clients
  3. confidence signals on vs off, single stream and 8 clients, in interleaved rounds (goal <= 5% slower)

    .venv/bin/python bench/engine.py [--threads 2] [--tokens 64] [--requests-per-client 2] [--markdown FILE]
"""

from __future__ import annotations

import os

# Both sides with one OpenBLAS thread, as the daemon runs (set before numpy is imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import ctypes
import functools
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

from edged.domain import Message
from edged.engine.template import ChatTemplate
from edged.models import ModelRegistry
from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc

MODEL_ID = "smollm2-135m-instruct-q4_1"
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
) -> Iterator[str]:
    name = f"edged-{slots}-{int(confidence)}-{stream_interval_ms}"
    sock = workdir / f"{name}.sock"
    config = workdir / f"{name}.toml"
    interval = f"stream_interval_ms = {stream_interval_ms}\n" if stream_interval_ms is not None else ""
    config.write_text(
        f'device_id = "bench"\nstate_dir = "{workdir / "state"}"\nlog_level = "WARNING"\n'
        f'[api]\nsocket = "{sock}"\nmax_concurrent_rpcs = 256\n{interval}'
        f"[engine]\nthreads = {threads}\nslots = {slots}\ncontext_per_slot = 512\nqueue_size = 64\n"
        f"confidence = {'true' if confidence else 'false'}\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "edged.cli.main", "serve", "--config", str(config)])
    target = f"unix:{sock}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with grpc.insecure_channel(target) as channel:
                    stub = inference_pb2_grpc.InferenceStub(channel)
                    if stub.GetStatus(pb.GetStatusRequest(), timeout=1).state == "serving":
                        break
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("edged did not start")
            time.sleep(0.2)
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


@contextmanager
def llama_cpp_server(path: Path, threads: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(path),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            "2048",
            "--interrupt_requests",  # queue concurrent requests instead of aborting the running one
            "False",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


# ----------------------------------------------------------------------------- clients


def edged_client(target: str, tokens: int) -> Callable[[str], tuple[int, float]]:  # a Client
    channel = grpc.insecure_channel(target)
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


def openai_client(url: str, tokens: int) -> Callable[[str], tuple[int, float]]:
    client = httpx.Client(base_url=url, timeout=600)

    def one(prompt: str) -> tuple[int, float]:
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": tokens,
            "temperature": 0.0,
            "stream": True,
        }
        start = time.perf_counter()
        ttft = 0.0
        count = 0
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
                if delta:
                    count += 1  # the server sends one chunk per generated token
                    if not ttft:
                        ttft = time.perf_counter() - start
        return count, ttft

    return one


Client = Callable[[str], tuple[int, float]]


def concurrent(
    make_client: Callable[[], Callable[[str], tuple[int, float]]], clients: int, per_client: int
) -> Run:
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    workers = [make_client() for _ in range(clients)]
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
    return Run(sum(n for n, _ in results), elapsed, [t for _, t in results])


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--clients", default="1,4,8,16")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved single-stream rounds")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args()
    path = ModelRegistry.from_dir().resolve(MODEL_ID).path
    levels = [int(c) for c in args.clients.split(",")]
    rows: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results: dict[str, dict[int, Run]] = {
            "edged": {},
            "edged-conf": {},
            "edged-noconf": {},
            "llama_cpp.server": {},
        }
        raw_loop = RawLoop(path, args.threads, PROMPTS[0])
        with (
            edged_server(args.threads, max(levels), True, work) as target,
            edged_server(args.threads, max(levels), False, work) as target_off,
            edged_server(args.threads, max(levels), True, work, stream_interval_ms=0) as target_per_token,
        ):
            on = functools.partial(edged_client, target, args.tokens)
            off = functools.partial(edged_client, target_off, args.tokens)
            per_token = functools.partial(edged_client, target_per_token, args.tokens)
            for warm in (on, off, per_token):
                warm()(PROMPTS[0])
            # Interleaved rounds, so drifts of a shared machine hit every side alike.
            log(
                f"single stream: raw loop, edged, edged without confidence, edged with a chunk per token, "
                f"{args.rounds} rounds ..."
            )
            raw_runs, on_runs, off_runs, per_token_runs = [], [], [], []
            for _ in range(args.rounds):
                raw_runs.append(raw_loop.run(args.tokens))
                on_runs.append(concurrent(on, 1, 1))
                off_runs.append(concurrent(off, 1, 1))
                per_token_runs.append(concurrent(per_token, 1, 1))
            raw, single, single_off = total(raw_runs), total(on_runs), total(off_runs)
            single_per_token = total(per_token_runs)
            for n in levels:
                log(f"edged, {n} clients ...")
                results["edged"][n] = concurrent(on, n, args.requests_per_client)
            log("confidence signals on and off, 8 clients, interleaved rounds ...")
            conf_on, conf_off = [], []
            for _ in range(max(3, args.requests_per_client)):
                conf_on.append(concurrent(on, 8, 1))
                conf_off.append(concurrent(off, 8, 1))
            results["edged-conf"][8], results["edged-noconf"][8] = total(conf_on), total(conf_off)
        raw_loop.close()
        with llama_cpp_server(path, args.threads) as url:
            openai_client(url, 8)(PROMPTS[0])
            for n in levels:
                log(f"llama_cpp.server, {n} clients ...")
                results["llama_cpp.server"][n] = concurrent(
                    functools.partial(openai_client, url, args.tokens), n, args.requests_per_client
                )

    rows.append(
        (
            "single stream tok/s: edged (gRPC) vs raw llama.cpp loop",
            f"{single.tok_s:.1f}",
            f"{raw.tok_s:.1f}",
            f"{single.tok_s / raw.tok_s:.2f}x (goal >= 0.95x)",
        )
    )
    rows.append(
        (
            "single stream tok/s, a chunk per token (stream_interval_ms = 0) vs raw loop",
            f"{single_per_token.tok_s:.1f}",
            f"{raw.tok_s:.1f}",
            f"{single_per_token.tok_s / raw.tok_s:.2f}x",
        )
    )
    for n in levels:
        e, s = results["edged"][n], results["llama_cpp.server"][n]
        goal = " (goal >= 1.8x)" if n == 8 else ""
        rows.append(
            (
                f"aggregate tok/s, {n} clients: edged vs llama_cpp.server",
                f"{e.tok_s:.1f}",
                f"{s.tok_s:.1f}",
                f"{e.tok_s / s.tok_s:.2f}x{goal}",
            )
        )
    if 8 in results["edged"]:
        e, s = results["edged"][8], results["llama_cpp.server"][8]
        rows.append(
            (
                "TTFT p50 ms, 8 clients: edged vs llama_cpp.server",
                f"{pct(e.ttft, 50):.0f}",
                f"{pct(s.ttft, 50):.0f}",
                f"{pct(s.ttft, 50) / pct(e.ttft, 50):.2f}x faster",
            )
        )
        rows.append(
            (
                "TTFT p95 ms, 8 clients: edged vs llama_cpp.server",
                f"{pct(e.ttft, 95):.0f}",
                f"{pct(s.ttft, 95):.0f}",
                f"{pct(s.ttft, 95) / pct(e.ttft, 95):.2f}x faster",
            )
        )
        conf, no_conf = results["edged-conf"][8], results["edged-noconf"][8]
        rows.append(
            (
                "confidence on vs off, 8 clients tok/s",
                f"{conf.tok_s:.1f}",
                f"{no_conf.tok_s:.1f}",
                f"{(1 - conf.tok_s / no_conf.tok_s) * 100:+.1f}% slower (goal <= 5%)",
            )
        )
    rows.append(
        (
            "confidence on vs off, single stream tok/s",
            f"{single.tok_s:.1f}",
            f"{single_off.tok_s:.1f}",
            f"{(1 - single.tok_s / single_off.tok_s) * 100:+.1f}% slower (goal <= 5%)",
        )
    )

    header = ("measure", "edged", "competitor", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    print(
        f"model {MODEL_ID}, {args.threads} threads, {args.tokens} tokens per request, "
        f"{args.requests_per_client} requests per client"
    )
    print("\n".join(lines))
    if args.markdown:
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * 4]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        args.markdown.write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
