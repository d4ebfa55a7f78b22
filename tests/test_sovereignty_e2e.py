"""Data sovereignty end to end, proven from the wire: a real daemon (bundled model, privacy gate, audit log), a
real Mosquitto, a real cloud_bridge worker with the echo backend (it answers with the conversation it received,
so a restored answer proves every placeholder came back), and a wire tap subscribed to `#`.

The PII corpus sample (every entity type, single- and multi-turn) runs through AUTO (its router threshold set
to 1.0, so routing alone would send it to the cloud), PREFER_CLOUD (streamed) and CLOUD_ONLY, on one daemon
whose data classes are all LOCAL_ONLY and one whose classes are all REDACT. Each daemon's run is recorded once
(answers, errors, the wire, the audit log, log records at INFO and above) and the tests below judge it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from cloud_bridge.backends.base import BackendJob
from cloud_bridge.backends.echo import EchoBackend
from cloud_bridge.config import EchoBackendSettings, parse_bridge_config
from edged.config.privacy import DEFAULT_DATA_CLASSES
from edged.domain import Message, SamplingParams
from edged.sovereignty.audit import AuditReader, AuditRecord, AuditRoute, load_salt, value_hash
from edged.v1 import inference_pb2 as pb
from edged.v1 import inference_pb2_grpc
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import run_async
from tests.ops_support import small_engine_config, toml_document
from tests.sovereignty_parts import (
    HOOKED_SERVE,
    WAIT_S,
    CorpusCase,
    WireMessage,
    corpus_entity_types,
    leaks,
    load_sample,
    read_events,
    wire_haystacks,
    wire_tap,
    worker_thread,
)

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

RPC_TIMEOUT_S = 180.0  # a deadline for a loaded 2-core machine; it never measures speed
# REDACT: the echo answers 5-character deltas, 40 leave room for the longest sampled conversation (173 chars).
# LOCAL_ONLY: the local model answers; what it says does not matter here, and a 2-core machine is slow.
MAX_TOKENS = {"REDACT": 40, "LOCAL_ONLY": 3}
ECHO_CHUNK_CHARS = 5  # odd-sized deltas split placeholders (`<PERS` + `ON_1>`) as a model's tokens do
# On this shared 2-core machine llama.cpp's two threads wait on each other when other jobs run: one thread
# answered a short prompt ~3x faster (0.3 s against 1.0 s) at a load average of 5.
ENGINE_THREADS = 1
MODES = {"AUTO": pb.AUTO, "PREFER_CLOUD": pb.PREFER_CLOUD, "CLOUD_ONLY": pb.CLOUD_ONLY}
CLASS_OF = {entity: c.name for c in DEFAULT_DATA_CLASSES.values() for entity in c.entities}
CASES = load_sample()


def classes_of(case: CorpusCase) -> list[str]:
    return sorted({CLASS_OF[entity] for entity, _value in case.values})


def raw_values() -> list[str]:
    """Every personal value of the sample, as the caller wrote it."""
    return sorted({value for case in CASES for _entity, value in case.values})


@dataclass
class Outcome:
    """What the caller got for one request: an answer, or a gRPC error."""

    case: CorpusCase
    mode: str
    request_id: str
    text: str = ""
    provenance: pb.Provenance | None = None
    code: grpc.StatusCode | None = None
    details: str = ""


@dataclass
class PolicyRun:
    policy: str
    outcomes: list[Outcome]
    wire: list[WireMessage]
    audit: list[AuditRecord]
    audit_files: dict[str, bytes]
    salt: bytes
    logs: list[str] = field(default_factory=list)

    def outcome(self, mode: str, case: CorpusCase) -> Outcome:
        return next(o for o in self.outcomes if o.mode == mode and o.case is case)


class _LogRecorder(logging.Handler):
    """Every record at INFO and above, formatted, from any logger of this process (daemon and worker)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname}: {record.getMessage()}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """The same real Mosquitto as the `mosquitto` fixture, shared by both policy runs of this module."""
    with MosquittoBroker(workdir=tmp_path_factory.mktemp("mosquitto")) as started:
        yield started


def _daemon_config(url: str, policy: str) -> dict[str, Any]:
    return {
        "device_id": f"dev-{policy.lower().replace('_', '-')}",
        "engine": {"threads": ENGINE_THREADS},
        "broker": {"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "privacy": {"data_classes": {name: {"policy": policy} for name in DEFAULT_DATA_CLASSES}},
    }


def _request(case: CorpusCase, mode: str, policy: str, request_id: str) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role=role, content=content) for role, content in case.messages],
        mode=MODES[mode],
        max_tokens=MAX_TOKENS[policy],
        temperature=0.0,
        seed=7,
        request_id=request_id,
    )
    if mode == "AUTO":
        request.router_threshold = 1.0  # routing wants the cloud for every AUTO request
    return request


def _ask(daemon: RunningDaemon, case: CorpusCase, mode: str, policy: str) -> Outcome:
    outcome = Outcome(case, mode, f"{policy}.{mode}.{case.id}")
    request = _request(case, mode, policy, outcome.request_id)
    try:
        if mode == "PREFER_CLOUD":
            chunks = list(daemon.stub.GenerateStream(request, timeout=RPC_TIMEOUT_S))
            outcome.text = "".join(chunk.delta for chunk in chunks)
            outcome.provenance = chunks[-1].provenance
        else:
            response = daemon.stub.Generate(request, timeout=RPC_TIMEOUT_S)
            outcome.text = response.text
            outcome.provenance = response.provenance
    except grpc.RpcError as exc:
        outcome.code = exc.code()
        outcome.details = exc.details() or ""
    return outcome


def _wait_connected(daemon: RunningDaemon) -> None:
    deadline = time.monotonic() + WAIT_S
    while daemon.status().link.state != "connected":
        if time.monotonic() > deadline:
            raise AssertionError(f"the daemon's link did not connect: {daemon.status().link}")
        time.sleep(0.02)


def _policy_run(policy: str, broker: MosquittoBroker, tmp: Path) -> PolicyRun:
    recorder = _LogRecorder()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(recorder)
    root.setLevel(logging.INFO)
    worker_config = parse_bridge_config(
        {
            "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "worker_id": f"echo-{policy.lower().replace('_', '-')}",
            "state_dir": str(tmp / "worker"),
            "backend": {"type": "echo", "chunk_chars": ECHO_CHUNK_CHARS},
        },
        "test",
    )
    try:
        with (
            wire_tap(broker.url) as tap,
            worker_thread(worker_config),
            running_daemon(tmp / "daemon", _daemon_config(broker.url, policy)) as daemon,
        ):
            _wait_connected(daemon)
            outcomes = [_ask(daemon, case, mode, policy) for mode in MODES for case in CASES]
            wire = tap.barrier()
            daemon.daemon.state_writer.flush()  # the audit is written on the state writer's thread
            audit_dir = daemon.daemon.config.state_dir / "audit"
            records = list(AuditReader(audit_dir))
            files = {p.name: p.read_bytes() for p in sorted(audit_dir.iterdir()) if p.name != "audit.salt"}
            salt = load_salt(audit_dir)
    finally:
        root.removeHandler(recorder)
        root.setLevel(old_level)
    return PolicyRun(policy, outcomes, wire, records, files, salt, recorder.lines)


@pytest.fixture(scope="module")
def local_only(broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> PolicyRun:
    return _policy_run("LOCAL_ONLY", broker, tmp_path_factory.mktemp("local-only"))


@pytest.fixture(scope="module")
def redact(broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> PolicyRun:
    return _policy_run("REDACT", broker, tmp_path_factory.mktemp("redact"))


@pytest.fixture(params=["LOCAL_ONLY", "REDACT"])
def run(request: pytest.FixtureRequest) -> PolicyRun:
    policy_run: PolicyRun = request.getfixturevalue(request.param.lower())
    return policy_run


# ---- the sample ---------------------------------------------------------------------------------------------


def test_sample_covers_every_entity_type_single_and_multi_turn() -> None:
    sampled = {entity for case in CASES for entity, _ in case.values}
    assert sampled == corpus_entity_types()
    assert sampled >= {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"}
    assert sampled >= {"STREET_ADDRESS", "API_KEY", "PRIVATE_KEY", "MAC_ADDRESS", "IMEI"}
    assert sum(case.multi_turn for case in CASES) == 10  # every multi-turn conversation of the corpus
    assert any(not case.multi_turn for case in CASES)


# ---- the wire -----------------------------------------------------------------------------------------------


def test_no_raw_value_in_any_payload_on_any_topic(run: PolicyRun) -> None:
    assert run.wire, "the tap recorded nothing"
    assert {m.kind for m in run.wire} <= {"escalate", "reply", "presence"}, {m.topic for m in run.wire}
    assert any(m.kind == "presence" and m.payload for m in run.wire), "the worker's presence was not recorded"
    assert leaks(raw_values(), wire_haystacks(run.wire)) == []


def test_redact_sends_placeholders_once_per_request_and_the_reply_carries_them(redact: PolicyRun) -> None:
    requests = [m.escalation() for m in redact.wire if m.kind == "escalate"]
    by_id = {r.request_id: r for r in requests}
    assert len(requests) == len(by_id) == len(redact.outcomes)  # each escalated exactly once
    chunks = [m.chunk() for m in redact.wire if m.kind == "reply"]
    for outcome in redact.outcomes:
        sent = by_id[outcome.request_id]
        assert [m.role for m in sent.messages] == [role for role, _ in outcome.case.messages]
        wire_text = "\n".join(m.content for m in sent.messages)
        for entity, _value in outcome.case.values:
            assert f"<{entity}_" in wire_text, (outcome.request_id, entity)
        reply = [c for c in chunks if c.request_id == outcome.request_id]
        assert "".join(c.delta for c in reply) == wire_text  # the echo of what was sent
        assert reply[-1].done
        assert not reply[-1].HasField("error")
    # the echo's 5-character deltas cut placeholders in two; the answers test shows each was still restored
    assert any(re.search(r"<[A-Z][A-Z0-9_]*$", c.delta) for c in chunks), "no placeholder was split"


def test_local_only_sends_no_request_to_the_cloud(local_only: PolicyRun) -> None:
    assert [m.topic for m in local_only.wire if m.kind in ("escalate", "reply")] == []


# ---- answers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_redact_answers_come_back_from_the_cloud_with_the_values_restored(
    redact: PolicyRun, mode: str
) -> None:
    for case in CASES:
        outcome = redact.outcome(mode, case)
        assert outcome.code is None, (outcome.request_id, outcome.code, outcome.details)
        assert outcome.provenance is not None
        assert outcome.provenance.source == pb.CLOUD, (outcome.request_id, list(outcome.provenance.reasons))
        assert outcome.provenance.model == "echo"
        assert outcome.provenance.redacted
        assert sorted(outcome.provenance.data_classes) == classes_of(case)
        assert outcome.provenance.reasons[-1] == "answered=cloud"
        assert outcome.text == case.echoed(), outcome.request_id


def test_local_only_cloud_only_is_permission_denied_naming_the_class(local_only: PolicyRun) -> None:
    for case in CASES:
        outcome = local_only.outcome("CLOUD_ONLY", case)
        assert outcome.code == grpc.StatusCode.PERMISSION_DENIED, (outcome.request_id, outcome.code)
        # all classes are LOCAL_ONLY: the alphabetically first present class names the verdict
        named = classes_of(case)[0]
        assert f"data class '{named}'" in outcome.details, (outcome.request_id, outcome.details)
        assert outcome.text == ""


@pytest.mark.parametrize("mode", ["AUTO", "PREFER_CLOUD"])
def test_local_only_auto_and_prefer_cloud_are_answered_on_the_device(
    local_only: PolicyRun, mode: str
) -> None:
    for case in CASES:
        outcome = local_only.outcome(mode, case)
        assert outcome.code is None, (outcome.request_id, outcome.code, outcome.details)
        assert outcome.provenance is not None
        reasons = list(outcome.provenance.reasons)
        assert outcome.provenance.source == pb.LOCAL, (outcome.request_id, reasons)
        assert reasons[:2] == [f"mode={mode}", "privacy=local_only"]
        assert reasons[-1] == "answered=local"
        assert outcome.provenance.degraded == (mode == "PREFER_CLOUD")  # it preferred the cloud
        assert not outcome.provenance.redacted
        assert sorted(outcome.provenance.data_classes) == classes_of(case)
        assert outcome.text.strip(), outcome.request_id


# ---- audit and logs -------------------------------------------------------------------------------------


EXPECTED_ROUTE = {
    ("REDACT", "AUTO"): AuditRoute.CLOUD_REDACTED,
    ("REDACT", "PREFER_CLOUD"): AuditRoute.CLOUD_REDACTED,
    ("REDACT", "CLOUD_ONLY"): AuditRoute.CLOUD_REDACTED,
    ("LOCAL_ONLY", "AUTO"): AuditRoute.LOCAL,
    ("LOCAL_ONLY", "PREFER_CLOUD"): AuditRoute.LOCAL,
    ("LOCAL_ONLY", "CLOUD_ONLY"): AuditRoute.DENIED,
}


def test_audit_has_one_record_per_request_with_hashes_not_values(run: PolicyRun) -> None:
    assert sorted(r.request_id for r in run.audit) == sorted(o.request_id for o in run.outcomes)
    records = {r.request_id: r for r in run.audit}
    for outcome in run.outcomes:
        record = records[outcome.request_id]
        assert record.route is EXPECTED_ROUTE[run.policy, outcome.mode], outcome.request_id
        assert record.policy == run.policy
        assert list(record.data_classes) == classes_of(outcome.case)
        for entity, value in outcome.case.values:
            assert record.entities.get(entity, 0) >= 1, (outcome.request_id, entity)
            # the exact value was found, and an auditor holding it can match the record (edged audit --match)
            assert value_hash(run.salt, value) in record.value_hashes[entity], (outcome.request_id, entity)
        if record.route is AuditRoute.CLOUD_REDACTED:
            assert record.redacted_values >= len(outcome.case.values)
    assert run.audit_files, "no audit file"
    assert leaks(raw_values(), list(run.audit_files.items())) == []


def test_no_raw_value_in_any_log_record_at_info_or_above(run: PolicyRun) -> None:
    assert any(line.startswith("edged.") for line in run.logs), "no daemon log record was captured"
    assert leaks(raw_values(), [(line[:60], line) for line in run.logs]) == []


# ---- the echo backend itself ---------------------------------------------------------------------------


@run_async
async def test_echo_backend_streams_the_conversation_in_chunks_and_honours_max_tokens() -> None:
    backend = EchoBackend(EchoBackendSettings(chunk_chars=4))
    messages = (Message("system", "be brief"), Message("user", "<PERSON_1> says hi"))

    async def answer(max_tokens: int) -> list[object]:
        job = BackendJob("r", messages, SamplingParams(max_tokens=max_tokens), None, deadline=0.0)
        return [event async for event in backend.stream(job)]

    whole = await answer(100)
    assert "".join(e for e in whole if isinstance(e, str)) == "be brief\n<PERSON_1> says hi"
    assert all(len(e) <= 4 for e in whole if isinstance(e, str))
    done = whole[-1]
    assert getattr(done, "finish_reason", None) == "stop"
    cut = await answer(2)
    assert [e for e in cut if isinstance(e, str)] == ["be b", "rief"]
    assert getattr(cut[-1], "finish_reason", None) == "length"


# ---- no outbound connection but the broker ------------------------------------------------------------------

NAME, EMAIL, CARD = "Maria Garcia", "maria.garcia@gmail.com", "4111 1111 1111 1111"


def _serve_hooked(tmp: Path, url: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`edged serve` in a fresh interpreter under HOOKED_SERVE's audit hook, with the default privacy policy."""
    config = small_engine_config(
        tmp,
        broker={"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        engine={"threads": ENGINE_THREADS},
    )
    config_path = tmp / "edged.toml"
    config_path.write_text(toml_document(config))
    events, log = tmp / "events.jsonl", tmp / "edged.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TLDEXTRACT", "NOTIFY_", "WATCHDOG_"))}
    env.update(HOME=str(tmp), XDG_CACHE_HOME=str(tmp / "cache"), OPENBLAS_NUM_THREADS="1")
    argv = [sys.executable, "-c", HOOKED_SERVE, str(events), "serve", "--config", str(config_path)]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return process, Path(config["api"]["socket"]), log


def _wait_serving(stub: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + RPC_TIMEOUT_S
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                f"edged serve is not serving (exit {process.poll()}):\n{log.read_text()[-3000:]}"
            )
        with contextlib.suppress(grpc.RpcError):
            status = stub.GetStatus(pb.GetStatusRequest(), timeout=5)
            if status.state == "serving" and status.link.state == "connected":
                return
        time.sleep(0.1)


def _inet_peers(pid: int) -> set[tuple[str, int]]:
    """Remote ends of the inet sockets the process (and any child) holds now, native libraries' included."""
    process = psutil.Process(pid)
    peers = set()
    for each in [process, *process.children(recursive=True)]:
        for connection in each.net_connections(kind="inet"):
            if connection.raddr:
                peers.add((connection.raddr.ip, connection.raddr.port))
    return peers


def test_served_daemon_connects_to_nothing_but_the_broker(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    broker = ("127.0.0.1", mosquitto.port)
    worker_config = parse_bridge_config(
        {
            "broker": {"url": mosquitto.url},
            "worker_id": "echo-hooked",
            "state_dir": str(tmp_path / "worker"),
            "backend": {"type": "echo"},
        },
        "test",
    )
    with worker_thread(worker_config):
        process, socket_path, log = _serve_hooked(tmp_path, mosquitto.url)
        channel = grpc.insecure_channel(f"unix:{socket_path}")
        stub: Any = inference_pb2_grpc.InferenceStub(channel)
        try:
            _wait_serving(stub, process, log)
            prompt = f"I'm {NAME}; write to {EMAIL} that the parcel arrived."
            redacted = stub.Generate(
                pb.GenerateRequest(prompt=prompt, mode=pb.CLOUD_ONLY, max_tokens=64), timeout=RPC_TIMEOUT_S
            )
            with pytest.raises(grpc.RpcError) as denied:
                stub.Generate(
                    pb.GenerateRequest(prompt=f"Is card {CARD} valid?", mode=pb.CLOUD_ONLY),
                    timeout=RPC_TIMEOUT_S,
                )
            local = stub.Generate(
                pb.GenerateRequest(prompt=f"Say hello to {NAME}.", mode=pb.LOCAL_ONLY, max_tokens=4),
                timeout=RPC_TIMEOUT_S,
            )
            peers = _inet_peers(process.pid)
            process.send_signal(signal.SIGTERM)
            assert process.wait(RPC_TIMEOUT_S) == 0, log.read_text()[-3000:]
        finally:
            channel.close()
            if process.poll() is None:
                process.kill()
                process.wait(30)
    # it scanned and served: a redacted escalation restored, a refusal, a local answer
    assert (redacted.provenance.source, redacted.provenance.redacted, redacted.text) == (
        pb.CLOUD,
        True,
        prompt,
    )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "financial" in (denied.value.details() or "")
    assert local.provenance.source == pb.LOCAL
    assert peers == {broker}  # held while serving, native sockets included
    events = read_events(tmp_path / "events.jsonl")
    connects = [e for e in events if e["event"] in ("socket.connect", "socket.sendto", "socket.sendmsg")]
    inet = {(e["host"], e["port"]) for e in connects if e["family"] in ("AF_INET", "AF_INET6")}
    assert inet == {broker}, events  # and the hook did see the broker connection
    assert [e for e in connects if e["family"] not in ("AF_INET", "AF_INET6", "AF_UNIX")] == []
    lookups = {(e["host"], e["port"]) for e in events if e["event"].startswith("socket.get")}
    assert lookups <= {broker}, lookups
    # no HTTP, and no child process but the decode self-test's (python -m edged.engine.selftest MODEL: it loads
    # the model file and decodes, before the model is loaded in the daemon)
    others = [e for e in events if not e["event"].startswith("socket.")]
    assert [e for e in others if "'-m', 'edged.engine.selftest'" not in e.get("detail", "")] == [], others
    assert len(others) <= 1, others
