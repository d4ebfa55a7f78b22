"""Building answers: what has reached the caller so far, timing, provenance, and the reason codes the pipeline
writes into provenance, metrics and the audit log."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edged.domain import Answer, ConfidenceSummary, Delta, InferenceRequest, Provenance, Source, Timing, Usage
from edged.engine import FinishEvent
from edged.errors import BudgetExhausted, CloudUnavailable, EdgedError, NoCloudLink
from edged.escalation.cloud_answerer import CloudOutcome, usage_of
from edged.routing.decision import RouteDecision
from edged.telemetry.metrics import label_code


@dataclass(slots=True)
class AnswerStream:
    """What has reached the caller so far (once text is out, the answer's source is fixed)."""

    streaming: bool
    sent: bool = False
    first_token_at: float | None = None
    parts: list[str] = field(default_factory=list)

    def emit(self, text: str) -> Delta | None:
        if not text:
            return None
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.parts.append(text)
        self.sent = self.sent or self.streaming
        return Delta(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def timing(self, request: InferenceRequest, *, queue_ms: float) -> Timing:
        now = time.monotonic()
        first = self.first_token_at or now
        return Timing(
            queue_ms=queue_ms,
            time_to_first_token_ms=(first - request.received_at) * 1000.0,
            total_ms=(now - request.received_at) * 1000.0,
        )


def local_answer(
    request: InferenceRequest,
    stream: AnswerStream,
    finish: FinishEvent,
    *,
    model: str,
    reasons: tuple[str, ...],
    degraded: bool,
    device_id: str,
    router_score: float | None,
    data_classes: tuple[str, ...],
) -> Answer:
    return Answer(
        request_id=request.request_id,
        text=stream.text,
        finish_reason=finish.finish_reason,
        provenance=Provenance(
            source=Source.LOCAL,
            model=model,
            confidence=finish.confidence,
            reasons=reasons,
            degraded=degraded,
            device_id=device_id,
            router_score=router_score,
            data_classes=data_classes,
        ),
        usage=Usage(finish.prompt_tokens, finish.completion_tokens),
        timing=stream.timing(request, queue_ms=finish.queue_ms),
    )


def cloud_answer(
    request: InferenceRequest,
    stream: AnswerStream,
    outcome: CloudOutcome,
    *,
    reasons: tuple[str, ...],
    degraded: bool,
    device_id: str,
    router_score: float | None,
    data_classes: tuple[str, ...],
) -> Answer:
    return Answer(
        request_id=request.request_id,
        text=stream.text,
        finish_reason=outcome.result.finish_reason or "stop",
        provenance=Provenance(
            source=Source.CLOUD,
            model=outcome.result.model,
            confidence=ConfidenceSummary(),  # a cloud backend gives no per-token signals
            reasons=reasons,
            degraded=degraded,
            device_id=device_id,
            router_score=router_score,
            redacted=outcome.release.redacted,
            data_classes=data_classes,
            invented=outcome.invented,
        ),
        usage=usage_of(outcome.result),
        timing=stream.timing(request, queue_ms=0.0),
    )


def prompt_text(request: InferenceRequest) -> str:
    """What the pre-generation router reads: the conversation's last user turn."""
    users = [m.content for m in request.messages if m.role == "user"]
    return users[-1] if users else request.messages[-1].content


def refusal(decision: RouteDecision) -> EdgedError:
    """The error for a request its mode cannot be served under, with the decision's reasons."""
    why = "; ".join(decision.reasons)
    if decision.refusal is NoCloudLink:
        return NoCloudLink(f"no cloud link configured: start edged with --broker URL ({why})")
    if decision.refusal is CloudUnavailable:
        return CloudUnavailable(f"the cloud link is down ({why})")
    if decision.refusal is BudgetExhausted:
        return BudgetExhausted(f"the cloud budget is spent ({why})")
    return decision.error()


def failure_reason(exc: BaseException) -> str:
    """The provenance reason for a cloud attempt that failed, e.g. cloud_failed:cloud_unavailable."""
    return f"cloud_failed:{label_code(type(exc).__name__)}"


def escalation_reason(reasons: tuple[str, ...]) -> str:
    """The metrics label of why a request went to the cloud: the first rule that voted for the cloud (a device
    load over its limit, or a score below its threshold; not a score the decision only recorded), else its mode."""
    for reason in reasons:
        if reason.startswith("over_limit") or (
            reason.startswith(("router_score", "confidence")) and "<threshold=" in reason
        ):
            return reason.split("=")[0].split(":")[0]
    return reasons[0] if reasons else "unknown"
