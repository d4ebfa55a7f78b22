"""InferencePipeline: one request from validated input to answer, as named steps.

    gate      the privacy verdict (every message, stop string and JSON schema)
    decide    the routing decision (mode, privacy, load, link, budget, router score)
    local     the engine's answer, watched by the cascade; held back while the cloud may still replace it
    judge     the finished local answer: keep it, or hand it to the cloud (its AUTO score, a cut, a loop)
    cloud     released (redacted) by the gate, escalated over MQTT, restored; on failure the device answers
              when the mode allows it (degraded, with the reason)
    record    provenance, metrics and one audit record, however the request ends (trail.py)

A request reads the runtime (profile, gate, router, cloud, audit) once, at its start, and carries it with its
other values in one `Flight`; each step takes the flight and what the step before produced. The transport
layers call `answer()` and get text deltas followed by one final Answer; they decide nothing. The caller sees
one coherent answer: local text that might still be replaced by the cloud's is held back (routing.cascade's
HoldBack) until it has been judged, and a cloud answer that fails after it started streaming is never patched
with a local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from edged.config.routing import ScoreWeights
from edged.domain import Answer, Delta, InferenceRequest, Mode, Source
from edged.engine import FinishEvent, TokenEvent
from edged.engine.local_answerer import LocalAnswerer
from edged.errors import (
    BudgetExhausted,
    Cancelled,
    CloudRefused,
    CloudUnavailable,
    DeadlineExceeded,
    EdgedError,
    EngineError,
    SensitiveDataBlocked,
)
from edged.escalation.cloud_answerer import CloudOutcome, cloud_deadline
from edged.pipeline.answers import (
    AnswerStream,
    cloud_answer,
    escalation_reason,
    failure_reason,
    local_answer,
    prompt_text,
    refusal,
)
from edged.pipeline.runtime import Runtime, RuntimeSlot
from edged.pipeline.trail import RequestTrail
from edged.routing.cascade import CascadeMonitor, HoldBack
from edged.routing.decision import Link, Route, RouteDecision, RouteInputs, decide, judge_confidence
from edged.routing.load import EngineLoad, LoadSnapshot, SystemReading
from edged.routing.score import auto_score
from edged.sovereignty.audit import ANSWERED_CLOUD, ANSWERED_LOCAL
from edged.sovereignty.gate import control_fields
from edged.sovereignty.verdict import Verdict, declared_classes
from edged.telemetry.metrics import EdgedMetrics, outcome_of

logger = logging.getLogger(__name__)

# Errors after which a request that may be answered on either side falls back to the device. CloudRefused is a
# worker's InvalidRequest (e.g. max_tokens over its cap): the device's own checks passed before anything was
# sent, so the device may still answer; a CLOUD_ONLY caller gets it as INVALID_ARGUMENT naming the field.
_CLOUD_FAILURES = (CloudUnavailable, DeadlineExceeded, BudgetExhausted, CloudRefused, SensitiveDataBlocked)

DEADLINE_PASSED = "the deadline passed before the answer was complete"

# When no sampler runs: a device with room to spare (no limit can be exceeded).
IDLE_LOAD = LoadSnapshot(SystemReading(memory_available_mb=math.inf), EngineLoad(), taken_at=0.0)


@dataclass(frozen=True, slots=True)
class Flight:
    """One request on its way, with everything its steps read: the runtime it started with, its verdict, the
    decision's inputs and the router's score. `inputs.link` is DOWN once the request may not escalate again."""

    request: InferenceRequest
    runtime: Runtime
    trail: RequestTrail
    verdict: Verdict | None
    inputs: RouteInputs
    router_score: float | None
    weights: ScoreWeights

    @property
    def can_escalate(self) -> bool:
        """Whether an unsure local answer could still be handed to the cloud."""
        inputs = self.inputs
        return (
            inputs.mode in (Mode.AUTO, Mode.PREFER_LOCAL)
            and inputs.cloud_allowed
            and inputs.link is Link.UP
            and inputs.budget_exhausted is None
            and self.runtime.cloud is not None
        )

    def grounded(self) -> Flight:
        """The same request, kept on the device from now on (it escalated once already)."""
        return dataclasses.replace(self, inputs=dataclasses.replace(self.inputs, link=Link.DOWN))


@dataclass(slots=True)
class LocalDraft:
    """The local step's result: how generation ended and what of it is still held back."""

    finish: FinishEvent
    hold: HoldBack
    monitor: CascadeMonitor | None


@dataclass(frozen=True, slots=True)
class Judgement:
    escalate: bool
    reasons: tuple[str, ...]  # the judge's own reasons, added to the decision's


class InferencePipeline:
    def __init__(
        self,
        device_id: str,
        local: LocalAnswerer,
        runtime: RuntimeSlot,
        *,
        load: Callable[[], LoadSnapshot] | None = None,
        metrics: EdgedMetrics | None = None,
    ) -> None:
        self.device_id = device_id
        self.local = local
        self.metrics = metrics
        self._runtime = runtime
        self._load = load
        self.answered_local = 0
        self.answered_cloud = 0

    # ------------------------------------------------------------------ entry point

    async def answer(
        self, request: InferenceRequest, *, streaming: bool = False
    ) -> AsyncGenerator[Delta | Answer, None]:
        """Text deltas as they are produced, then the final Answer; domain errors are raised.

        streaming=False (a unary call) lets the pipeline buffer: nothing the caller sees is fixed until the end.
        Every request ends its trail once, before its answer or error reaches the caller: metrics and one audit
        record.
        """
        runtime = self._runtime.current
        trail = RequestTrail()
        try:
            async for item in self._answer(request, runtime, AnswerStream(streaming), trail):
                if isinstance(item, Answer):
                    self._record(request, runtime, trail, answer=item)
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            if not trail.ended:  # the caller went away (cancelled, disconnected), or its deadline cut it off
                self._record(request, runtime, trail, error=_ended_early(request))
            raise
        except Exception as exc:  # a domain error, or a fault of edged's own (counted as internal_error)
            self._record(request, runtime, trail, error=exc)
            raise

    async def answer_whole(self, request: InferenceRequest) -> Answer:
        """A unary call's answer: `answer(streaming=False)` run to its end (the deltas are in the Answer)."""
        answer: Answer | None = None
        async for item in self.answer(request, streaming=False):
            if isinstance(item, Answer):
                answer = item
        if answer is None:
            raise EngineError("the pipeline ended without an answer")
        return answer

    def record_refusal(self, mode: Mode, error: EdgedError) -> None:
        """A request refused before it reached the pipeline (it did not validate)."""
        if self.metrics is not None:
            self.metrics.record_failure(mode, error)

    async def _answer(
        self, request: InferenceRequest, runtime: Runtime, stream: AnswerStream, trail: RequestTrail
    ) -> AsyncIterator[Delta | Answer]:
        verdict = trail.verdict = await self._gate(request, runtime)
        flight, decision = self._decide(request, runtime, verdict, trail)
        if decision.route is Route.REFUSE:
            raise self._refused(flight, decision)
        if decision.route is Route.CLOUD:
            if self.metrics is not None:
                self.metrics.record_escalation(escalation_reason(decision.reasons))
            steps = self._cloud(flight, decision.reasons, decision.degraded, stream, draft=None)
        else:
            steps = self._local_then_judge(flight, decision.reasons, decision.degraded, stream)
        async for item in steps:
            yield item

    # ------------------------------------------------------------------ gate, decide

    async def _gate(self, request: InferenceRequest, runtime: Runtime) -> Verdict | None:
        """The privacy verdict (messages, stop strings and JSON schema); None when there is no cloud link
        (nothing can leave the device: declared classes are still checked, as the gate would)."""
        if runtime.gate is None or runtime.cloud is None:
            runtime.profile.privacy.check_declared(request.data_classes)
            return None
        return await asyncio.to_thread(runtime.gate.assess_request, request)

    def _decide(
        self, request: InferenceRequest, runtime: Runtime, verdict: Verdict | None, trail: RequestTrail
    ) -> tuple[Flight, RouteDecision]:
        profile, router, cloud = runtime.profile, runtime.router, runtime.cloud
        routing = profile.routing
        router_score = None
        if router is not None and not router.signal_only and request.mode in (Mode.AUTO, Mode.PREFER_LOCAL):
            router_score = router.score(prompt_text(request))
        inputs = RouteInputs(
            mode=request.mode,
            cloud_allowed=verdict is None or verdict.allows_cloud,
            load=self._load() if self._load is not None else IDLE_LOAD,
            limits=profile.limits,
            link=cloud.link() if cloud is not None else Link.DISABLED,
            budget_exhausted=cloud.budget_exhausted() if cloud is not None else None,
            router_score=router_score,
            router_threshold=routing.router_threshold
            if request.router_threshold is None
            else request.router_threshold,
            confidence_threshold=routing.confidence_threshold,
            router_signal_only=router is not None and router.signal_only,
        )
        decision = decide(inputs)
        trail.reasons = decision.reasons
        return Flight(request, runtime, trail, verdict, inputs, router_score, runtime.weights), decision

    def _refused(self, flight: Flight, decision: RouteDecision) -> EdgedError:
        if decision.refusal is SensitiveDataBlocked and flight.verdict is not None:
            if self.metrics is not None:
                self.metrics.record_blocked_escalation(flight.verdict.forced_by or "unknown")
            return flight.verdict.blocked_error()
        flight.trail.refused = True
        return refusal(decision)

    # ------------------------------------------------------------------ local, judge

    async def _local_then_judge(
        self, flight: Flight, reasons: tuple[str, ...], degraded: bool, stream: AnswerStream
    ) -> AsyncIterator[Delta | Answer]:
        """Generate locally, judge the answer, then finish it or hand the request to the cloud."""
        flight.trail.side = Source.LOCAL
        flight.trail.reasons = reasons
        draft: LocalDraft | None = None
        async for item in self._generate(flight, stream):
            if isinstance(item, LocalDraft):
                draft = item
            else:
                yield item
        assert draft is not None
        judgement = self._judge(flight, draft)
        reasons = (*reasons, *judgement.reasons)
        if judgement.escalate:
            if self.metrics is not None:
                cut = "repetition" if draft.finish.finish_reason == "repetition" else "low_confidence"
                self.metrics.record_escalation(cut)
            if not stream.sent:
                stream.first_token_at = None  # the caller's first token will be the cloud's
            async for answer in self._cloud(flight, reasons, False, stream, draft=draft):
                yield answer
            return
        for answer in self._finish_local(flight, draft, (*reasons, "answered=local"), degraded, stream):
            yield answer

    async def _generate(self, flight: Flight, stream: AnswerStream) -> AsyncIterator[Delta | LocalDraft]:
        """The engine's answer as deltas, except what is held back, then the LocalDraft (as the cloud side
        ends with its CloudOutcome)."""
        routing = flight.runtime.profile.routing
        monitor = None
        if flight.can_escalate and routing.cascade:
            monitor = CascadeMonitor(
                k=routing.cascade_tokens,
                threshold=routing.cascade_threshold,
                weights=flight.weights,
                router_score=flight.router_score,
            )
        hold = HoldBack(monitor, streaming=stream.streaming, can_escalate=flight.can_escalate)
        cloud = flight.runtime.cloud
        hook = monitor.engine_hook(can_escalate=cloud.reachable) if monitor and cloud else None
        finish: FinishEvent | None = None
        events = self.local.events(flight.request, hook, stream_interval_s=flight.runtime.stream_interval_s)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, FinishEvent):
                    finish = event
                    break
                assert isinstance(event, TokenEvent)
                if stream.first_token_at is None:
                    stream.first_token_at = time.monotonic()
                delta = stream.emit(hold.feed(event.text))
                if delta is not None:
                    yield delta
        assert finish is not None
        yield LocalDraft(finish, hold, monitor)

    def _judge(self, flight: Flight, draft: LocalDraft) -> Judgement:
        """After local generation: should the cloud answer instead?

        With the router's answer model the finished answer is scored from prompt, reply and confidence
        together; without one, from the router score and the confidence signals."""
        finish, monitor = draft.finish, draft.monitor
        if finish.finish_reason == "low_confidence" and monitor is not None and monitor.verdict is not None:
            # The monitor stopped the stream (it checked that the cloud was reachable): the local answer is cut
            # short, so it escalates whatever the link does now (a failed cloud answer falls back to local).
            v = monitor.verdict
            return Judgement(True, (judge_confidence(v.score, v.threshold, v.tokens)[1],))
        undecided = draft.hold.holding
        if finish.finish_reason == "repetition":
            # The loop guard cut a degenerate answer: as unsure as an answer gets, so it escalates where it
            # still can (held back, cloud allowed); otherwise the cut answer is given with the reason.
            return Judgement(undecided and flight.can_escalate, ("repetition",))
        if not undecided or not flight.can_escalate:
            return Judgement(False, ())
        router = flight.runtime.router
        if router is not None:
            reply = "".join(draft.hold.held)
            prompt = prompt_text(flight.request)
            score = router.finished_score(
                prompt, reply, flight.router_score, finish.confidence, flight.weights
            )
        else:
            score = auto_score(flight.router_score, finish.confidence, flight.weights)
        unsure, reason = judge_confidence(score, flight.inputs.confidence_threshold)
        return Judgement(unsure, (reason,))

    def _finish_local(
        self,
        flight: Flight,
        draft: LocalDraft,
        reasons: tuple[str, ...],
        degraded: bool,
        stream: AnswerStream,
    ) -> list[Delta | Answer]:
        """The held-back text (if any), then the local Answer."""
        flight.trail.side = Source.LOCAL
        out: list[Delta | Answer] = [d for d in map(stream.emit, draft.hold.held) if d is not None]
        request, verdict = flight.request, flight.verdict
        classes = (
            verdict.data_classes
            if verdict is not None
            else declared_classes(request.data_classes, sensitive=request.sensitive)
        )
        out.append(
            local_answer(
                request,
                stream,
                draft.finish,
                model=request.model or self.local.default_model,  # the engine's id (LocalAnswerer.engine_for)
                reasons=reasons,
                degraded=degraded,
                device_id=self.device_id,
                router_score=flight.router_score,
                data_classes=classes,
            )
        )
        return out

    # ------------------------------------------------------------------ cloud, and the way back

    async def _cloud(
        self,
        flight: Flight,
        reasons: tuple[str, ...],
        degraded: bool,
        stream: AnswerStream,
        *,
        draft: LocalDraft | None,
    ) -> AsyncIterator[Delta | Answer]:
        """The cloud's answer; if it fails before anything was sent and the mode allows it, the device's: the
        local `draft` when it is whole (an escalation after a finished local answer), else a new local answer
        that may not escalate again."""
        may_fall_back = draft is not None or flight.request.mode is not Mode.CLOUD_ONLY
        try:
            async for item in self._via_cloud(
                flight, reasons, degraded, stream, keep_for_local=may_fall_back
            ):
                yield item
            return
        except _CLOUD_FAILURES as exc:
            flight.trail.reasons = (*reasons, failure_reason(exc))
            if not may_fall_back or stream.sent:
                raise
            failure = exc
        why = failure_reason(failure)
        if self.metrics is not None:
            self.metrics.record_fallback(why)
        refused_field = f":{failure.field}" if isinstance(failure, CloudRefused) else ""
        fallback = (*reasons, f"{why}{refused_field}", "fallback=local")
        if draft is not None and draft.finish.finish_reason != "low_confidence":
            for item in self._finish_local(flight, draft, (*fallback, "answered=local"), True, stream):
                yield item
            return
        # cloud first, or the cascade cut the local answer short: generate it (again), to the end this time
        grounded = flight.grounded()
        async for item in self._local_then_judge(grounded, fallback, True, AnswerStream(stream.streaming)):
            yield item

    async def _via_cloud(
        self,
        flight: Flight,
        reasons: tuple[str, ...],
        degraded: bool,
        stream: AnswerStream,
        *,
        keep_for_local: bool,
    ) -> AsyncIterator[Delta | Answer]:
        """The cloud's answer (restored), buffered unless streaming; raises on any cloud failure."""
        cloud, verdict, request, trail = flight.runtime.cloud, flight.verdict, flight.request, flight.trail
        assert cloud is not None
        assert verdict is not None
        trail.side = Source.CLOUD
        release = await cloud.release(request, verdict)
        deadline = cloud_deadline(request, time.monotonic(), keep_for_local)
        buffered: list[Delta] = []
        outcome: CloudOutcome | None = None
        try:
            answer = cloud.answer(request, release, deadline, on_sent=lambda: trail.handed_to_broker(release))
            async for item in answer:
                if isinstance(item, CloudOutcome):
                    outcome = item
                    continue
                delta = stream.emit(item.text)
                if delta is None:
                    continue
                if stream.streaming:
                    yield delta
                else:
                    buffered.append(delta)
        except EdgedError:
            if not stream.streaming:
                stream.parts.clear()
                stream.first_token_at = None
            raise
        assert outcome is not None
        for delta in buffered:
            yield delta
        trail.invented = outcome.invented
        yield cloud_answer(
            request,
            stream,
            outcome,
            reasons=(*reasons, "answered=cloud"),
            degraded=degraded,
            device_id=self.device_id,
            router_score=flight.router_score,
            data_classes=verdict.data_classes,
        )

    # ------------------------------------------------------------------ record

    def _record(
        self,
        request: InferenceRequest,
        runtime: Runtime,
        trail: RequestTrail,
        *,
        answer: Answer | None = None,
        error: Exception | None = None,
    ) -> None:
        """The request's end, once (`answer` or `error`): its counts and metrics, and its one audit record —
        what left the device (trail.route), how it ended and why."""
        if trail.ended:
            return
        trail.ended = True
        if answer is not None:
            self._count(request, answer)
        elif self.metrics is not None:
            self.metrics.record_failure(request.mode, error or EngineError("no answer"), trail.side)
        if runtime.audit is None or trail.verdict is None:
            return  # no gate (no cloud link): nothing was judged, nothing could leave
        if answer is not None:
            cloud = answer.provenance.source is Source.CLOUD
            outcome, reasons = (ANSWERED_CLOUD if cloud else ANSWERED_LOCAL), answer.provenance.reasons
        else:
            outcome, reasons = outcome_of(error or EngineError("no answer")), trail.reasons
        try:
            runtime.audit.record(
                request_id=request.request_id,
                route=trail.route(error),
                verdict=trail.verdict,
                messages=request.messages,
                outcome=outcome,
                fields=[
                    text for _name, text in control_fields(request.params.stop, request.params.json_schema)
                ],
                reasons=reasons,
                redacted_values=trail.redacted_values,
                invented=trail.invented,
            )
        except OSError as exc:
            logger.error("audit record for request %s could not be written: %s", request.request_id, exc)

    def _count(self, request: InferenceRequest, answer: Answer) -> None:
        if answer.provenance.source is Source.CLOUD:
            self.answered_cloud += 1
        else:
            self.answered_local += 1
        if self.metrics is not None:
            self.metrics.record_answer(request.mode, answer)


def _ended_early(request: InferenceRequest) -> EdgedError:
    """Why an answer was closed before it ended: its deadline (the transport ends the call at it), else the
    caller left."""
    if request.deadline is not None and time.monotonic() >= request.deadline:
        return DeadlineExceeded(DEADLINE_PASSED)
    return Cancelled("the caller went away")
