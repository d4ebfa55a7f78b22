"""cloud_bridge scale-out: throughput with 1, 2 and 4 worker processes sharing one `$share/` group.

Each worker fronts a backend that sleeps a fixed time per request and takes one request at a time
(concurrency 1, like one GPU slot), so the broker's shared subscription is the only thing that can spread the
load. The device side keeps enough requests in flight to fill every worker. Goal: 4 workers >= 3.5x one.

    .venv/bin/python bench/bridge_scaling.py [--delay-ms 50] [--requests 200] [--in-flight 32] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.config.broker import BrokerSettings
from edged.config.escalation import EscalationSettings
from edged.escalation.client import EscalationClient
from edged.v1.escalation_pb2 import EscalationRequest
from edged.v1.inference_pb2 import ChatMessage
from tests.brokers import MosquittoBroker

WORKER_COUNTS = (1, 2, 4)


@contextlib.contextmanager
def workers(url: str, workdir: Path, count: int, delay_s: float) -> Iterator[None]:
    config = workdir / "bridge.toml"
    config.write_text(f'concurrency = 1\nbacklog = 1000\n[backend]\ntype = "sleep"\ndelay_s = {delay_s}\n')
    script = Path(sys.executable).with_name("edged-cloud-bridge")
    processes = []
    for index in range(count):
        argv = [
            str(script),
            "--config",
            str(config),
            "--broker",
            url,
            "--worker-id",
            f"scale-{count}-{index}",
        ]
        argv += ["--state-dir", str(workdir / f"state-{index}"), "--log-level", "WARNING"]
        processes.append(subprocess.Popen(argv))
    try:
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


async def drive(
    url: str, count: int, requests: int, in_flight: int
) -> tuple[float, list[float], Counter[str]]:
    """Requests per second, per-request latencies (ms) and answers per worker."""
    client = EscalationClient(
        BrokerSettings(url=url),
        "bench-device",
        escalation=EscalationSettings(max_escalations=max(64, in_flight)),
    )
    await client.start()
    try:
        if not await client.link.wait_up(20):
            raise RuntimeError("the client did not connect")
        deadline = time.monotonic() + 30
        while client.workers_online() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {client.workers_online()} of {count} workers came up")
            await asyncio.sleep(0.05)
        ask = EscalationRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=4)
        gate = asyncio.Semaphore(in_flight)
        latencies: list[float] = []
        by_worker: Counter[str] = Counter()

        async def one() -> None:
            async with gate:
                started = time.perf_counter()
                answer = await client.complete(ask, time.monotonic() + 120)
                latencies.append((time.perf_counter() - started) * 1000.0)
                by_worker[answer.result.worker_id] += 1

        await asyncio.gather(*(one() for _ in range(in_flight)))  # warm-up: every worker answers once
        latencies.clear()
        by_worker.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        elapsed = time.perf_counter() - started
        return requests / elapsed, latencies, by_worker
    finally:
        await client.stop()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0, help="the backend's fixed time per request")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=32, help="requests the device keeps outstanding")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="bridge-scaling-") as tmp,
        MosquittoBroker(workdir=Path(tmp) / "mq") as mq,
    ):
        for count in WORKER_COUNTS:
            workdir = Path(tmp) / f"w{count}"
            workdir.mkdir()
            with workers(mq.url, workdir, count, args.delay_ms / 1000.0):
                rows.append((count, *asyncio.run(drive(mq.url, count, args.requests, args.in_flight))))
    base = rows[0][1]
    ideal = 1000.0 / args.delay_ms
    lines = [
        f"sleep backend {args.delay_ms:g} ms, 1 request at a time per worker (ideal {ideal:.0f} req/s per worker); "
        f"{args.requests} requests, {args.in_flight} in flight",
        "",
        "| workers | req/s | vs 1 worker | latency p50 ms | latency p95 ms | answers per worker |",
        "|---|---|---|---|---|---|",
    ]
    for count, rate, latencies, by_worker in rows:
        split = " / ".join(str(n) for _worker, n in sorted(by_worker.items()))
        lines.append(
            f"| {count} | {rate:.1f} | {rate / base:.2f}x | {percentile(latencies, 0.5):.1f} | "
            f"{percentile(latencies, 0.95):.1f} | {split} |"
        )
    four = rows[-1][1] / base
    lines += ["", f"goal: 4 workers >= 3.5x -> {four:.2f}x: {'met' if four >= 3.5 else 'NOT met'}"]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
