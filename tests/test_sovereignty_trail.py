"""One audit record per request, whatever its end, through a real daemon, proven from the wire.

A real daemon (bundled model, privacy gate with the default classes, audit log, a cloud budget of three requests
an hour), a real Mosquitto, a wire tap on `#` and real cloud_bridge workers (sleep backend) answer, one after
the other:

- `cancel`: a CLOUD_ONLY request with a name and an e-mail address, whose caller goes away once the wire tap has
  seen it on the broker (the worker takes a minute to answer). It was sent redacted, so its record must say
  CLOUD_REDACTED although no answer came back, and the metrics must count it on the cloud route;
- `fallback`: a PREFER_CLOUD request the worker refuses (max_tokens over its cap) and the device then answers: one
  record, CLOUD_REDACTED (it left the device), answered on the device;
- `invented`: a streamed CLOUD_ONLY request whose worker answers with e-mail placeholders the request never had:
  the caller sees neutral markers, never the placeholders, and provenance and audit count them;
- `budget`: a CLOUD_ONLY request once the budget is spent: refused, and recorded as REFUSED (nothing left the
  device, and not for privacy), never with DENIED, the word of a privacy block.

The run is recorded once (outcomes, the wire, the audit log, the metrics) and the tests judge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from edged.sovereignty.audit import AuditReader, AuditRecord, AuditRoute
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import bridge_config, wait_until
from tests.sovereignty_parts import (
    WAIT_S,
    WireMessage,
    WireTap,
    leaks,
    wire_haystacks,
    wire_tap,
    worker_thread,
)

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

RPC_TIMEOUT_S = 180.0  # a deadline for a loaded 2-core machine; it never measures speed
NAME, EMAIL = "Maria Garcia", "maria.garcia@gmail.com"
PERSONAL = f"I'm {NAME}; mail {EMAIL} that the parcel arrived."
INVENTING = "Mail <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_3> now."  # placeholders the request never had
SHOWN = "Mail [unknown email address] and [unknown email address] now."
CAP = 8  # the inventive worker's max_tokens_cap; `fallback` asks for one more


def ask(request_id: str, mode: pb.Mode.ValueType, prompt: str, max_tokens: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        request_id=request_id, prompt=prompt, mode=mode, max_tokens=max_tokens, temperature=0.0
    )


@dataclass
class Outcome:
    text: str = ""
    provenance: pb.Provenance | None = None
    code: grpc.StatusCode | None = None
    details: str = ""


@dataclass
class TrailRun:
    outcomes: dict[str, Outcome]
    wire: list[WireMessage]
    audit: list[AuditRecord]
    cancelled_on_cloud: float | None  # edged_requests_total{mode=cloud_only, route=cloud, outcome=cancelled}

    def record(self, request_id: str) -> AuditRecord:
        (record,) = [r for r in self.audit if r.request_id == request_id]
        return record


def _escalated(tap: WireTap, request_id: str) -> bool:
    return any(m.kind == "escalate" and m.escalation().request_id == request_id for m in list(tap.messages))


def _audited(daemon: RunningDaemon, request_id: str) -> bool:
    return any(r.request_id == request_id for r in AuditReader(daemon.daemon.config.state_dir / "audit"))


def _workers_online(daemon: RunningDaemon) -> int:
    cloud = daemon.daemon.runtime.cloud
    assert cloud is not None, "the daemon has no cloud link"
    return cloud.client.workers_online()


def _stream(daemon: RunningDaemon, request: pb.GenerateRequest) -> Outcome:
    try:
        chunks = list(daemon.stub.GenerateStream(request, timeout=RPC_TIMEOUT_S))
    except grpc.RpcError as exc:
        return Outcome(code=exc.code(), details=exc.details() or "")
    return Outcome("".join(c.delta for c in chunks), chunks[-1].provenance)


def _cancel_once_on_the_wire(daemon: RunningDaemon, tap: WireTap) -> None:
    call: Any = daemon.stub.GenerateStream(ask("cancel", pb.CLOUD_ONLY, PERSONAL, 4), timeout=RPC_TIMEOUT_S)
    wait_until(lambda: _escalated(tap, "cancel"), "the escalation of 'cancel' on the broker", WAIT_S)
    call.cancel()  # the caller goes away (edged ask killed)
    wait_until(lambda: _audited(daemon, "cancel"), "the audit record of the cancelled request", WAIT_S)


@pytest.fixture(scope="module")
def trail_run(tmp_path_factory: pytest.TempPathFactory) -> TrailRun:
    tmp = tmp_path_factory.mktemp("trail")
    with MosquittoBroker(workdir=tmp / "mosquitto") as broker:
        slow = bridge_config(broker.url, "slow-worker", tmp, backend={"delay_s": 60.0, "text": "too late"})
        inventive = bridge_config(
            broker.url, "inventive-worker", tmp, backend={"text": INVENTING}, max_tokens_cap=CAP
        )
        config = {
            "device_id": "dev-trail",
            "engine": {"threads": 1},
            "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "budget": {"requests_per_hour": 3},
        }
        outcomes: dict[str, Outcome] = {}
        with wire_tap(broker.url) as tap, running_daemon(tmp / "daemon", config) as daemon:
            with worker_thread(slow):
                wait_until(lambda: _workers_online(daemon) == 1, "the slow worker's presence")
                _cancel_once_on_the_wire(daemon, tap)
            wait_until(lambda: _workers_online(daemon) == 0, "the slow worker's presence to clear")
            with worker_thread(inventive):
                wait_until(lambda: _workers_online(daemon) == 1, "the inventive worker's presence")
                outcomes["fallback"] = _stream(daemon, ask("fallback", pb.PREFER_CLOUD, PERSONAL, CAP + 1))
                outcomes["invented"] = _stream(daemon, ask("invented", pb.CLOUD_ONLY, PERSONAL, CAP))
                outcomes["budget"] = _stream(daemon, ask("budget", pb.CLOUD_ONLY, "How do tides work?", 4))
            wire = tap.barrier()
            audit = list(AuditReader(daemon.daemon.config.state_dir / "audit"))
            cancelled = daemon.daemon.metrics.registry.get_sample_value(
                "edged_requests_total", {"mode": "cloud_only", "route": "cloud", "outcome": "cancelled"}
            )
    return TrailRun(outcomes, wire, audit, cancelled)


def test_one_record_per_request(trail_run: TrailRun) -> None:
    assert sorted(r.request_id for r in trail_run.audit) == ["budget", "cancel", "fallback", "invented"]


def test_the_requests_that_left_went_redacted(trail_run: TrailRun) -> None:
    sent = [m.escalation() for m in trail_run.wire if m.kind == "escalate"]
    assert sorted(r.request_id for r in sent) == ["cancel", "fallback", "invented"]
    assert all("<EMAIL_ADDRESS_1>" in r.messages[0].content for r in sent)
    assert leaks([NAME, EMAIL], wire_haystacks(trail_run.wire)) == []


def test_a_request_cancelled_on_the_wire_is_recorded_as_sent(trail_run: TrailRun) -> None:
    record = trail_run.record("cancel")
    assert (record.route, record.outcome, record.policy) == (AuditRoute.CLOUD_REDACTED, "cancelled", "REDACT")
    assert record.redacted_values >= 2
    assert "mode=CLOUD_ONLY" in record.reasons
    assert trail_run.cancelled_on_cloud == 1.0  # counted on the route it was on, not route="none"


def test_a_fallback_after_sending_has_one_record_that_says_it_left(trail_run: TrailRun) -> None:
    outcome = trail_run.outcomes["fallback"]
    assert outcome.provenance is not None, outcome
    assert (outcome.provenance.source, outcome.provenance.degraded) == (pb.LOCAL, True)
    record = trail_run.record("fallback")
    assert (record.route, record.outcome) == (AuditRoute.CLOUD_REDACTED, "answered_local")
    assert record.redacted_values >= 2
    assert "cloud_failed:cloud_refused:max_tokens" in record.reasons
    assert record.reasons[-2:] == ("fallback=local", "answered=local")


def test_placeholders_the_cloud_made_up_never_reach_the_caller_and_are_reported(trail_run: TrailRun) -> None:
    outcome = trail_run.outcomes["invented"]
    assert outcome.provenance is not None, outcome
    assert (outcome.provenance.source, outcome.provenance.redacted) == (pb.CLOUD, True)
    assert outcome.text == SHOWN
    assert dict(outcome.provenance.invented) == {"EMAIL_ADDRESS": 2}
    record = trail_run.record("invented")
    assert (record.route, record.outcome, record.invented) == (
        AuditRoute.CLOUD_REDACTED,
        "answered_cloud",
        {"EMAIL_ADDRESS": 2},
    )


def test_a_budget_refusal_is_refused_not_denied(trail_run: TrailRun) -> None:
    outcome = trail_run.outcomes["budget"]
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, outcome
    record = trail_run.record("budget")
    assert (record.route, record.outcome, record.policy) == (AuditRoute.REFUSED, "budget_exhausted", "ALLOW")
    assert "budget_exhausted:requests_per_hour" in record.reasons
