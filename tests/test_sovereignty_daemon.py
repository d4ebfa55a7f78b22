"""Control fields and declared classes through a real daemon, proven from the wire.

Stop strings and the JSON schema travel to the cloud beside the messages, so the privacy gate scans them too.
They are never redacted (a placeholder would change what they mean): a request whose stop string or schema holds
a value the policy would redact, or a LOCAL_ONLY value, stays on the device. A real daemon (bundled model,
privacy gate with the default classes, audit log), a real Mosquitto, a real cloud_bridge worker (echo backend)
and a wire tap subscribed to `#` show that such a request never reaches the broker, while a clean one goes out
with its stop strings and schema as written.

The provenance of a request names the classes the caller declared, with "sensitive" for the flag, the same on a
daemon with a cloud link as on one without.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from cloud_bridge.config import parse_bridge_config
from edged.sovereignty.audit import AuditReader, AuditRecord, AuditRoute, load_salt, value_hash
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.sovereignty_parts import WAIT_S, WireMessage, leaks, wire_haystacks, wire_tap, worker_thread

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

RPC_TIMEOUT_S = 180.0  # a deadline for a loaded 2-core machine; it never measures speed
NAME, EMAIL, CARD = "Maria Garcia", "maria.garcia@gmail.com", "4111 1111 1111 1111"
CLEAN_STOP = "\n\nUser:"
CLEAN_SCHEMA = '{"type": "object", "properties": {"answer": {"type": "string"}}}'
NAMED_SCHEMA = f'{{"type": "object", "properties": {{"to": {{"const": "{NAME}"}}}}}}'
EMAIL_SCHEMA = f'{{"type": "string", "description": "a reply to {EMAIL}"}}'
FIELDS_NOTE = "stop strings and json_schema are never redacted"


def ask(request_id: str, mode: pb.Mode.ValueType, prompt: str, **extra: Any) -> pb.GenerateRequest:
    fields: dict[str, Any] = {"max_tokens": 3, "temperature": 0.0, **extra}
    return pb.GenerateRequest(request_id=request_id, prompt=prompt, mode=mode, **fields)


# Every request the linked daemon is asked, by id. Only "clean" may escalate.
REQUESTS = {
    "clean": ask(
        "clean",
        pb.CLOUD_ONLY,
        f"I'm {NAME}; write one line.",
        stop=[CLEAN_STOP],
        json_schema=CLEAN_SCHEMA,
        max_tokens=64,
    ),
    "stop-name": ask("stop-name", pb.CLOUD_ONLY, "Draft a note to my landlord.", stop=[f"Regards, {NAME}"]),
    "stop-card": ask(
        "stop-card", pb.AUTO, "Is this a valid number?", stop=["###", CARD], router_threshold=1.0
    ),
    "schema-email": ask(
        "schema-email", pb.CLOUD_ONLY, f"I'm {NAME}; reply briefly.", json_schema=EMAIL_SCHEMA
    ),
    "schema-name": ask("schema-name", pb.PREFER_CLOUD, "Fill in the recipient.", json_schema=NAMED_SCHEMA),
    "declared": ask("declared", pb.AUTO, "Tell me a joke.", sensitive=True, data_classes=["identity"]),
}


@dataclass
class Outcome:
    response: pb.GenerateResponse | None = None
    code: grpc.StatusCode | None = None
    details: str = ""


def call(daemon: RunningDaemon, request: pb.GenerateRequest) -> Outcome:
    try:
        return Outcome(response=daemon.stub.Generate(request, timeout=RPC_TIMEOUT_S))
    except grpc.RpcError as exc:
        return Outcome(code=exc.code(), details=exc.details() or "")


@dataclass
class LinkedRun:
    outcomes: dict[str, Outcome]
    wire: list[WireMessage]
    audit: dict[str, AuditRecord]
    salt: bytes


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory) -> LinkedRun:
    """One run of every request in REQUESTS, recorded (answers, the wire, the audit log) for the tests to judge."""
    tmp = tmp_path_factory.mktemp("linked")
    with MosquittoBroker(workdir=tmp / "mosquitto") as broker:
        worker = parse_bridge_config(
            {
                "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
                "worker_id": "echo-fields",
                "state_dir": str(tmp / "worker"),
                "backend": {"type": "echo", "chunk_chars": 5},
            },
            "test",
        )
        config = {
            "device_id": "dev-fields",
            "engine": {"threads": 1},
            "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        }
        with (
            wire_tap(broker.url) as tap,
            worker_thread(worker),
            running_daemon(tmp / "daemon", config) as daemon,
        ):
            deadline = time.monotonic() + WAIT_S
            while daemon.status().link.state != "connected":
                assert time.monotonic() < deadline, "the daemon's link did not connect"
                time.sleep(0.02)
            outcomes = {request_id: call(daemon, request) for request_id, request in REQUESTS.items()}
            wire = tap.barrier()
            daemon.daemon.state_writer.flush()  # the audit is written on the state writer's thread
            audit_dir = daemon.daemon.config.state_dir / "audit"
            audit = {r.request_id: r for r in AuditReader(audit_dir)}
            salt = load_salt(audit_dir)
    return LinkedRun(outcomes, wire, audit, salt)


# ---- the wire ------------------------------------------------------------------------------------------------


def test_only_the_clean_request_reaches_the_broker_with_its_fields_as_written(linked: LinkedRun) -> None:
    sent = [m.escalation() for m in linked.wire if m.kind == "escalate"]
    assert [r.request_id for r in sent] == ["clean"]
    (clean,) = sent
    assert list(clean.stop) == [CLEAN_STOP]  # the tap sees control fields: the search below is not blind
    assert clean.json_schema == CLEAN_SCHEMA
    assert "<PERSON_1>" in clean.messages[0].content


def test_no_value_from_a_stop_string_or_schema_is_on_the_wire(linked: LinkedRun) -> None:
    assert any(m.kind == "presence" and m.payload for m in linked.wire), "the worker's presence was not seen"
    assert leaks([NAME, EMAIL, CARD, "Garcia"], wire_haystacks(linked.wire)) == []


# ---- what the callers got ------------------------------------------------------------------------------------


def test_the_clean_request_is_answered_by_the_cloud_and_restored(linked: LinkedRun) -> None:
    response = linked.outcomes["clean"].response
    assert response is not None, linked.outcomes["clean"]
    p = response.provenance
    assert (p.source, p.redacted, list(p.data_classes)) == (pb.CLOUD, True, ["identity"])
    assert response.text == f"I'm {NAME}; write one line."


@pytest.mark.parametrize(
    ("request_id", "data_class", "where"),
    [
        ("stop-name", "identity", "PERSON in stop[0]"),
        ("schema-email", "contact", "EMAIL_ADDRESS in json_schema"),
    ],
)
def test_cloud_only_with_a_value_to_redact_in_a_control_field_is_permission_denied(
    linked: LinkedRun, request_id: str, data_class: str, where: str
) -> None:
    outcome = linked.outcomes[request_id]
    assert outcome.code == grpc.StatusCode.PERMISSION_DENIED, outcome
    assert f"data class '{data_class}' (detected {where}) stays LOCAL_ONLY: {FIELDS_NOTE}" in outcome.details
    assert NAME not in outcome.details
    assert EMAIL not in outcome.details


@pytest.mark.parametrize(
    ("request_id", "mode", "data_classes", "degraded"),
    [("stop-card", "AUTO", ["financial"], False), ("schema-name", "PREFER_CLOUD", ["identity"], True)],
)
def test_other_modes_answer_such_a_request_on_the_device(
    linked: LinkedRun, request_id: str, mode: str, data_classes: list[str], degraded: bool
) -> None:
    response = linked.outcomes[request_id].response
    assert response is not None, linked.outcomes[request_id]
    p = response.provenance
    assert p.source == pb.LOCAL
    assert list(p.reasons)[:2] == [f"mode={mode}", "privacy=local_only"]
    assert list(p.reasons)[-1] == "answered=local"
    assert (list(p.data_classes), p.degraded, p.redacted) == (data_classes, degraded, False)


def test_the_audit_hashes_values_found_in_control_fields(linked: LinkedRun) -> None:
    expected = {
        "stop-name": (AuditRoute.DENIED, "PERSON", NAME),
        "stop-card": (AuditRoute.LOCAL, "CREDIT_CARD", CARD),
        "schema-email": (AuditRoute.DENIED, "EMAIL_ADDRESS", EMAIL),
    }
    for request_id, (route, entity, value) in expected.items():
        record = linked.audit[request_id]
        assert record.route is route, request_id
        assert value_hash(linked.salt, value) in record.value_hashes[entity], request_id


# ---- declared classes, with a cloud link and without ---------------------------------------------------------


@pytest.fixture(scope="module")
def unlinked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path_factory.mktemp("unlinked"), {"engine": {"threads": 1}}) as daemon:
        yield daemon


def test_provenance_names_the_declared_classes_and_the_sensitive_flag_with_a_link(linked: LinkedRun) -> None:
    response = linked.outcomes["declared"].response
    assert response is not None, linked.outcomes["declared"]
    p = response.provenance
    assert (p.source, list(p.data_classes)) == (pb.LOCAL, ["identity", "sensitive"])


def test_provenance_names_the_declared_classes_and_the_sensitive_flag_without_a_link(
    unlinked: RunningDaemon,
) -> None:
    for mode in (pb.AUTO, pb.LOCAL_ONLY):
        request = ask("declared", mode, "Tell me a joke.", sensitive=True, data_classes=["identity"])
        p = unlinked.stub.Generate(request, timeout=RPC_TIMEOUT_S).provenance
        assert (p.source, list(p.data_classes)) == (pb.LOCAL, ["identity", "sensitive"])
    flagged = unlinked.stub.Generate(ask("flag", pb.AUTO, "Hi.", sensitive=True), timeout=RPC_TIMEOUT_S)
    assert list(flagged.provenance.data_classes) == ["sensitive"]
    plain = unlinked.stub.Generate(ask("plain", pb.AUTO, "Hi."), timeout=RPC_TIMEOUT_S)
    assert list(plain.provenance.data_classes) == []


def test_an_unknown_declared_class_is_invalid_without_a_link_too(unlinked: RunningDaemon) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        unlinked.stub.Generate(ask("x", pb.AUTO, "Hi.", data_classes=["horoscope"]), timeout=RPC_TIMEOUT_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown data class 'horoscope'" in (caught.value.details() or "")
