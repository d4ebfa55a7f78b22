"""Escalation hop overhead: EscalationClient -> broker -> worker -> backend -> back, minus a direct backend call.

What is timed is the MQTT hop alone: EscalationClient.complete() called in this process (no edged daemon, no
gRPC, no privacy gate, restoration, budget or routing), from the call until the whole answer is in. What a gRPC
caller of `edged serve` sees on top of it (the gRPC hop, the privacy gate's scan of the prompt and of the reply)
is not measured here.

One run, same machine, side by side:
  1. the backend called directly in process (SleepBackend, fixed delay): the baseline
  2. the same backend behind a real `edged-cloud-bridge` process, through a real Mosquitto
     (set_tcp_nodelay true), asked by EscalationClient: unary and streamed
  3. the same, but the broker without set_tcp_nodelay (what the shipped config avoids)
Added latency at p50 is the goal (<= 2 ms). Ratios are to the direct call.

    .venv/bin/python bench/escalation_hop.py [--requests 400] [--delay-ms 0] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_bridge.backends.base import BackendDone, BackendJob
from cloud_bridge.backends.sleep import SleepBackend
from cloud_bridge.config import SleepBackendSettings
from edged.config.broker import BrokerSettings
from edged.domain import Message, SamplingParams
from edged.escalation.client import EscalationClient
from edged.v1.escalation_pb2 import EscalationRequest
from edged.v1.inference_pb2 import ChatMessage
from tests.brokers import MosquittoBroker

TEXT = "the answer is four words"
WARMUP = 50


class NagleBroker(MosquittoBroker):
    """The same broker without `set_tcp_nodelay true`."""

    def write_config(self) -> None:
        super().write_config()
        text = self.config_path.read_text().replace("set_tcp_nodelay true\n", "")
        self.config_path.write_text(text)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(call: Callable[[], Awaitable[object]], requests: int) -> list[float]:
    for _ in range(WARMUP):
        await call()
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000.0)
    return samples


async def direct_samples(delay_s: float, requests: int) -> list[float]:
    backend = SleepBackend(SleepBackendSettings(delay_s=delay_s, text=TEXT))
    job = BackendJob("b", (Message("user", "What is 2+2?"),), SamplingParams(max_tokens=16), None, 1e18)

    async def call() -> None:
        async for event in backend.stream(job):
            if isinstance(event, BackendDone):
                return

    return await measure(call, requests)


@contextlib.contextmanager
def worker_process(url: str, workdir: Path, delay_s: float) -> Iterator[None]:
    config = workdir / "bridge.toml"
    config.write_text(f'[backend]\ntype = "sleep"\ndelay_s = {delay_s}\ntext = "{TEXT}"\n')
    script = Path(sys.executable).with_name("edged-cloud-bridge")
    argv = [str(script), "--config", str(config), "--broker", url, "--worker-id", "bench-w1"]
    argv += ["--state-dir", str(workdir / "state"), "--log-level", "WARNING"]
    process = subprocess.Popen(argv)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


async def escalation_samples(url: str, requests: int, stream: bool) -> list[float]:
    client = EscalationClient(BrokerSettings(url=url), "bench-device")
    await client.start()
    try:
        if not await client.link.wait_up(20):
            raise RuntimeError("the client did not connect")
        deadline = time.monotonic() + 30
        while client.workers_online() < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not come up")
            await asyncio.sleep(0.05)
        ask = EscalationRequest(messages=[ChatMessage(role="user", content="What is 2+2?")], max_tokens=16)
        ask.stream = stream

        async def call() -> None:
            answer = await client.complete(ask, time.monotonic() + 30)
            if answer.text != TEXT:
                raise RuntimeError(f"unexpected answer {answer.text!r}")

        return await measure(call, requests)
    finally:
        await client.stop()


def run(requests: int, delay_s: float) -> list[tuple[str, list[float]]]:
    rows = [("direct backend call (in process)", asyncio.run(direct_samples(delay_s, requests)))]
    with tempfile.TemporaryDirectory(prefix="escalation-hop-") as tmp:
        for label, broker_type in (("", MosquittoBroker), (", broker without TCP_NODELAY", NagleBroker)):
            workdir = Path(tmp) / broker_type.__name__
            with broker_type(workdir=workdir / "mq") as broker, worker_process(broker.url, workdir, delay_s):
                unary = asyncio.run(escalation_samples(broker.url, requests, stream=False))
                rows.append((f"escalated, unary{label}", unary))
                if not label:
                    streamed = asyncio.run(escalation_samples(broker.url, requests, stream=True))
                    rows.append(("escalated, streamed (5 chunks + taken)", streamed))
    return rows


def table(rows: list[tuple[str, list[float]]], delay_ms: float, requests: int) -> str:
    base50 = percentile(rows[0][1], 0.5)
    base95 = percentile(rows[0][1], 0.95)
    lines = [
        f"backend: sleep {delay_ms:g} ms; {requests} sequential requests after {WARMUP} warm-up; loopback",
        "timed: EscalationClient.complete() in this process -> Mosquitto -> worker process -> back "
        "(no edged daemon, gRPC or privacy gate)",
        "",
        "| path | p50 ms | p95 ms | mean ms | added p50 ms | added p95 ms | p50 ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, samples in rows:
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        lines.append(
            f"| {name} | {p50:.3f} | {p95:.3f} | {statistics.fmean(samples):.3f} | {p50 - base50:.3f} | "
            f"{p95 - base95:.3f} | {p50 / base50:.1f}x |"
        )
    added = percentile(rows[1][1], 0.5) - base50
    verdict = "met" if added <= 2.0 else "NOT met"
    lines += ["", f"goal: MQTT hop adds <= 2 ms at p50 -> {added:.3f} ms: {verdict}"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="the backend's fixed time per request")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    rows = run(args.requests, args.delay_ms / 1000.0)
    text = table(rows, args.delay_ms, args.requests)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
