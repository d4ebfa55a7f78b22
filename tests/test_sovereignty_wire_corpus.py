"""The generated PII corpus (bench/pii_corpus.py, Faker in 11 locales: the development slice) through a real
daemon with the DEFAULT privacy policy, in every cloud-leaning mode, with a wire tap on the broker: no raw
personal value reaches the wire, and clean prompts still go to the cloud.

AUTO sets `router_threshold` 1.0 (routing alone would send every request to the cloud), PREFER_CLOUD is
streamed, CLOUD_ONLY is unary; the worker is a cloud_bridge echo worker. What the answer says does not matter
here (tests/test_sovereignty_e2e.py checks restored answers), so every request asks for one token: a request
the gate keeps local costs one decode step. The held-back slice is not used: it is reported by
bench/pii_scan.py and never tuned on.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from edged.config.privacy import DEFAULT_DATA_CLASSES
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import bridge_config
from tests.sovereignty_parts import (
    WireMessage,
    generated_corpus,
    leaks,
    wire_haystacks,
    wire_tap,
    worker_thread,
)

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

RPC_TIMEOUT_S = 180.0  # a deadline for a loaded 2-core machine; it never measures speed
MODES = {"AUTO": pb.AUTO, "PREFER_CLOUD": pb.PREFER_CLOUD, "CLOUD_ONLY": pb.CLOUD_ONLY}
LOCAL_ONLY = {e for c in DEFAULT_DATA_CLASSES.values() if c.policy == "LOCAL_ONLY" for e in c.entities}
SHORT_VALUE_CHARS = 6
CALLERS = 4  # requests in flight together: the engine's slots and the MQTT round trips overlap
CLEAN_ESCALATED_AT_LEAST = 0.9  # issue 13: clean prompts kept local or redacted needlessly <= 10%


ENTRIES = generated_corpus("dev")
PERSONAL = [e for e in ENTRIES if e["entities"]]
CLEAN = [e for e in ENTRIES if not e["entities"]]


@dataclass
class Outcome:
    entry: dict[str, Any]
    mode: str
    source: int | None = None
    redacted: bool = False
    code: grpc.StatusCode | None = None
    details: str = ""


@dataclass
class CorpusRun:
    outcomes: list[Outcome]
    wire: list[WireMessage]


def _request(entry: dict[str, Any], mode: str) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role=m["role"], content=m["content"]) for m in entry["messages"]],
        mode=MODES[mode],
        max_tokens=1,
        temperature=0.0,
    )
    if mode == "AUTO":
        request.router_threshold = 1.0
    return request


def _ask(daemon: RunningDaemon, entry: dict[str, Any], mode: str) -> Outcome:
    outcome = Outcome(entry, mode)
    try:
        if mode == "PREFER_CLOUD":
            chunks = list(daemon.stub.GenerateStream(_request(entry, mode), timeout=RPC_TIMEOUT_S))
            provenance = chunks[-1].provenance
        else:
            provenance = daemon.stub.Generate(_request(entry, mode), timeout=RPC_TIMEOUT_S).provenance
        outcome.source, outcome.redacted = provenance.source, provenance.redacted
    except grpc.RpcError as exc:
        outcome.code = exc.code()
        outcome.details = exc.details() or ""
    return outcome


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CorpusRun]:
    tmp = tmp_path_factory.mktemp("wire-corpus")
    with MosquittoBroker(workdir=tmp / "broker") as broker:
        worker = bridge_config(broker.url, "echo-corpus", tmp, backend={"type": "echo", "chunk_chars": 8})
        config = {
            "device_id": "dev-corpus",
            # one llama.cpp thread: on a shared 2-core machine two wait on each other (10x slower at load 15)
            "engine": {"threads": 1, "context_per_slot": 1024},
            "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        }
        with (
            wire_tap(broker.url) as tap,
            worker_thread(worker),
            running_daemon(tmp / "daemon", config) as daemon,
            ThreadPoolExecutor(CALLERS) as pool,
        ):
            jobs = [(e, m) for m in MODES for e in PERSONAL] + [(e, "PREFER_CLOUD") for e in CLEAN]
            outcomes = list(pool.map(lambda job: _ask(daemon, *job), jobs))
            yield CorpusRun(outcomes, tap.barrier())


def test_the_slice_is_large_and_varied() -> None:
    assert len(PERSONAL) >= 150
    assert len(CLEAN) >= 50
    assert len({e["locale"] for e in PERSONAL}) >= 10
    assert any(len(e["messages"]) > 1 for e in PERSONAL)


def test_no_raw_personal_value_reaches_the_wire_in_any_cloud_leaning_mode(corpus_run: CorpusRun) -> None:
    escalated = [m for m in corpus_run.wire if m.kind == "escalate"]
    assert escalated, "nothing was escalated: the test would prove nothing"
    values = {v["value"] for e in PERSONAL for v in e["entities"]}
    # A value of a few characters (a 4-digit PIN) turns up by chance in random ids and decimal timestamps:
    # those are looked for in the text that was sent, longer ones in every byte on the wire.
    short = {v for v in values if len(v) < SHORT_VALUE_CHARS}
    sent = [
        (f"#{i} {m.topic} messages", "\n".join(t.content for t in m.escalation().messages))
        for i, m in enumerate(escalated)
    ]
    assert leaks(sorted(values - short), wire_haystacks(corpus_run.wire)) == []
    assert leaks(sorted(short), sent) == []


def test_every_request_is_answered_or_refused_for_its_data(corpus_run: CorpusRun) -> None:
    """A LOCAL_ONLY value keeps AUTO and PREFER_CLOUD on the device and refuses CLOUD_ONLY; nothing else fails."""
    for outcome in corpus_run.outcomes:
        local_only = any(v["type"] in LOCAL_ONLY for v in outcome.entry["entities"])
        where = (outcome.entry["id"], outcome.mode, outcome.details)
        if outcome.mode == "CLOUD_ONLY" and local_only:
            assert outcome.code == grpc.StatusCode.PERMISSION_DENIED, where
            continue
        assert outcome.code is None, where
        if local_only:
            assert outcome.source == pb.LOCAL, where


def test_clean_prompts_still_go_to_the_cloud_unredacted(corpus_run: CorpusRun) -> None:
    clean = [o for o in corpus_run.outcomes if not o.entry["entities"]]
    needless = [o.entry["id"] for o in clean if o.source != pb.CLOUD or o.redacted]
    assert len(clean) == len(CLEAN)
    assert len(needless) <= (1 - CLEAN_ESCALATED_AT_LEAST) * len(clean), needless
