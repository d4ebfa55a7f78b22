#!/usr/bin/env python3
"""Follow one request through edged's modules and count how often its path re-enters a module it left.

Starts a daemon in this process on the bundled model (with a broker URL nobody listens on, so the privacy
gate, router and audit log are loaded and a request is gated, routed, answered locally and recorded), then
profiles the event-loop thread (sys.setprofile) while the pipeline answers one AUTO request, counting only
the request's own task. Each profile event is attributed to the innermost frame in an `edged` module; runs of
events in one module are a "stay"; a stay in a module the path already left is a re-entry. Work handed to
other threads (the gate's scan, the engine's decode) is one stay of the module that handed it over.
Calls are counted too: each call from one `edged` module into another (not a coroutine the event loop
resumes), each distinct call once (a per-token loop counts once); a repeat is a call into a module already
entered, a climb a call into a higher layer.

    PYTHONPATH=. .venv/bin/python scripts/trace_request_path.py [--max-tokens 8] [--path]

docs/architecture.md gives the figures of this script for the request path before and after issue 18.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from edged.api.convert import decode_request
from edged.config import parse_config
from edged.service.daemon import Daemon
from edged.v1 import inference_pb2 as pb

# The layers, top down: a call from a module into one of a higher layer is a climb (a callback, or a component
# reaching back into what built it). Within a layer, calls go sideways.
LAYERS = (
    ("edged.service", "edged.api", "edged.cli"),
    ("edged.pipeline",),
    (
        "edged.routing",
        "edged.sovereignty",
        "edged.engine",
        "edged.escalation",
        "edged.telemetry",
        "edged.fleet",
    ),
    ("edged.comms", "edged.models", "edged.config"),
    ("edged.domain", "edged.errors", "edged.files", "edged.schema_limits", "edged.v1"),
)


def layer(module: str) -> int:
    for depth, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return depth
    return 1  # the modules the request path lived in before issue 18: edged.pipeline, answers, local, ...


def _module(frame: FrameType | None) -> str | None:
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == "edged" or name.startswith("edged."):
            return str(name)
        frame = frame.f_back
    return None


async def _traced(daemon: Daemon, request: Any) -> tuple[list[str], list[str], Counter[tuple[str, str]]]:
    task = asyncio.current_task()
    stays: list[str] = []
    entries: list[str] = []
    climbs: Counter[tuple[str, str]] = Counter()

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event not in ("call", "return") or asyncio.current_task() is not task:
            return
        module = _module(frame if event == "call" else frame.f_back)
        if event == "call" and module is not None:
            caller = _module(frame.f_back)
            if caller is not None and layer(module) < layer(caller) and frame.f_code.co_name != "<genexpr>":
                climbs[(caller, f"{module}.{frame.f_code.co_name}")] += 1
            if caller is not None and caller != module and frame.f_code.co_name != "<genexpr>":
                entries.append(f"{caller} -> {module}.{frame.f_code.co_name}")
        if module is not None and (not stays or stays[-1] != module):
            stays.append(module)

    sys.setprofile(profile)
    try:
        await daemon.pipeline.answer_whole(request)
    finally:
        sys.setprofile(None)
    return stays, entries, climbs


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--path", action="store_true", help="print the sequence of stays")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(
            {
                "device_id": "trace",
                "state_dir": str(Path(tmp) / "state"),
                "api": {"socket": str(Path(tmp) / "edged.sock")},
                "engine": {"threads": 2, "slots": 2, "context_per_slot": 512},
                "broker": {"url": "mqtt://127.0.0.1:9", "reconnect_min_s": 5.0},
            }
        )
        daemon = Daemon(config)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(daemon.run(handle_signals=False),))
        thread.start()
        try:
            while daemon.status().state != "serving":
                time.sleep(0.05)
            message = pb.GenerateRequest(prompt="What is the capital of France?", max_tokens=args.max_tokens)
            request = decode_request(message, daemon.request_limits(), None)
            stays, entries, climbs = asyncio.run_coroutine_threadsafe(_traced(daemon, request), loop).result(
                120
            )
        finally:
            loop.call_soon_threadsafe(daemon.request_stop)
            thread.join(60)
    seen: set[str] = set()
    reentries: Counter[str] = Counter()
    for module in stays:
        if module in seen:
            reentries[module] += 1
        seen.add(module)
    if args.path:
        print("\n".join(stays))
    print(f"{len(stays)} stays in {len(seen)} modules, {sum(reentries.values())} re-entries")
    for module, count in reentries.most_common():
        print(f"  {count:3d}  {module}")
    calls = list(dict.fromkeys(entries))  # each distinct call once, in first-seen order: a loop counts once
    entered: Counter[str] = Counter(call.split(" -> ")[1].rsplit(".", 1)[0] for call in calls)
    print(
        f"{len(entries)} calls from one module into another, {len(calls)} distinct; entering "
        f"{len(entered)} modules, {sum(entered.values()) - len(entered)} times a module already entered"
    )
    if args.path:
        print("\n".join(calls))
    for module, count in entered.most_common():
        print(f"  {count:3d}  {module}")
    edges = Counter(itertools.pairwise(stays))
    print(f"{len(edges)} distinct moves between modules (a per-token loop counts once)")
    print(f"{sum(climbs.values())} climbs up the layers ({len(climbs)} distinct)")
    for (caller, callee), count in climbs.most_common():
        print(f"  {count:3d}  {caller} -> {callee}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
