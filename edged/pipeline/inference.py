"""InferencePipeline: one request from validated input to answer — gate it, route it, run it, say where and why.

    privacy gate (scan every message)  ->  routing decision (mode, privacy, load, link, budget, router score)
      -> LOCAL: the engine, watched by the confidence cascade; an unsure answer may still escalate
      -> CLOUD: released (redacted) by the gate, escalated over MQTT, restored; on failure the device answers
                when the mode allows it (degraded, with the reason)
    -> provenance, metrics, and one audit record, however the request ends (edged.trail)

The transport layers call `answer()` and get text deltas followed by one final Answer; they decide nothing.
The caller sees one coherent answer: local text that might still be replaced by the cloud's is held back until
the cascade has judged it, and a cloud answer that fails after it started streaming is never patched with a
local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from edged.config.profile import DeviceProfile
from edged.config.routing import ScoreWeights
from edged.domain import (
    Answer,
    Delta,
    InferenceRequest,
    Mode,
    Source,
)
from edged.engine import FinishEvent, TokenEvent
from edged.engine.local_answerer import LocalAnswerer
from edged.errors import (
    BudgetExhausted,
    Cancelled,
    CloudUnavailable,
    DeadlineExceeded,
    EdgedError,
    EngineError,
    SensitiveDataBlocked,
)
from edged.escalation.client import CloudRefused
from edged.escalation.cloud_answerer import CloudAnswerer, CloudOutcome, cloud_deadline
from edged.pipeline.answers import (
    AnswerStream,
    cloud_answer,
    escalation_reason,
    failure_reason,
    local_answer,
    prompt_text,
    refusal,
)
from edged.pipeline.trail import RequestTrail
from edged.routing.cascade import CascadeMonitor
from edged.routing.decision import Link, Route, RouteDecision, RouteInputs, decide
from edged.routing.load import EngineLoad, LoadSnapshot, SystemReading
from edged.routing.router import PromptRouter, effective_weights
from edged.routing.score import auto_score
from edged.sovereignty.audit import ANSWERED_CLOUD, ANSWERED_LOCAL, AuditLog
from edged.sovereignty.gate import SensitivityGate, control_fields
from edged.sovereignty.verdict import Verdict, declared_classes
from edged.telemetry.metrics import EdgedMetrics, outcome_of

logger = logging.getLogger(__name__)

# Errors after which a request that may be answered on either side falls back to the device. CloudRefused is a
# worker's InvalidRequest (e.g. max_tokens over its cap): the device's own checks passed before anything was
# sent, so the device may still answer; a CLOUD_ONLY caller gets it as INVALID_ARGUMENT naming the field.
_CLOUD_FAILURES = (CloudUnavailable, DeadlineExceeded, BudgetExhausted, CloudRefused)


def _why_not_cloud(exc: BaseException) -> str:
    """The provenance reason of a failed cloud attempt; a refusal names the field, e.g.
    cloud_failed:cloud_refused:max_tokens."""
    reason = failure_reason(exc)
    return f"{reason}:{exc.field}" if isinstance(exc, CloudRefused) else reason


DEADLINE_PASSED = "the deadline passed before the answer was complete"


def _ended_early(request: InferenceRequest) -> EdgedError:
    """Why an answer was closed before it ended: its deadline (the transport ends the call at it), else the
    caller left."""
    if request.deadline is not None and time.monotonic() >= request.deadline:
        return DeadlineExceeded(DEADLINE_PASSED)
    return Cancelled("the caller went away")


class InferencePipeline:
    def __init__(
        self,
        device_id: str,
        local: LocalAnswerer,
        *,
        profile: Callable[[], DeviceProfile] = DeviceProfile,
        load: Callable[[], LoadSnapshot] | None = None,
        metrics: EdgedMetrics | None = None,
    ) -> None:
        self.device_id = device_id
        self.local = local
        self.metrics = metrics
        self._profile = profile
        self._load = load
        # Attached by the daemon's startup steps when configured:
        self.cloud: CloudAnswerer | None = None
        self.gate: SensitivityGate | None = None
        self.audit: AuditLog | None = None
        self.router: PromptRouter | None = None
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
        trail = RequestTrail()
        try:
            async for item in self._answer(request, streaming, trail):
                if isinstance(item, Answer):
                    self._count(request, item)
                    self._end(request, trail, answer=item)
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            if not trail.ended:  # the caller went away (cancelled, disconnected), or its deadline cut it off
                self._fail(request, trail, _ended_early(request))
            raise
        except Exception as exc:  # a domain error, or a fault of edged's own (counted as internal_error)
            self._fail(request, trail, exc)
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

    def _fail(self, request: InferenceRequest, trail: RequestTrail, error: Exception) -> None:
        if self.metrics is not None:
            self.metrics.record_failure(request.mode, error, trail.side)
        self._end(request, trail, error=error)

    def _count(self, request: InferenceRequest, answer: Answer) -> None:
        if answer.provenance.source is Source.CLOUD:
            self.answered_cloud += 1
        else:
            self.answered_local += 1
        if self.metrics is not None:
            self.metrics.record_answer(request.mode, answer)

    async def _answer(
        self, request: InferenceRequest, streaming: bool, trail: RequestTrail
    ) -> AsyncIterator[Delta | Answer]:
        profile = self._profile()
        verdict = trail.verdict = await self._assess(request)
        router_score = self._router_score(request)
        inputs = self._inputs(request, profile, verdict, router_score)
        decision = decide(inputs)
        trail.reasons = decision.reasons
        stream = AnswerStream(streaming)
        if decision.route is Route.REFUSE:
            if decision.refusal is SensitiveDataBlocked and verdict is not None:
                if self.metrics is not None:
                    self.metrics.record_blocked_escalation(verdict.forced_by or "unknown")
                raise verdict.blocked_error()
            trail.refused = True
            raise refusal(decision)
        if decision.route is Route.CLOUD:
            async for item in self._cloud_first(
                request, verdict, decision, inputs, router_score, stream, trail
            ):
                yield item
            return
        async for item in self._via_local(
            request, verdict, decision.reasons, decision.degraded, inputs, router_score, stream, trail
        ):
            yield item

    # ------------------------------------------------------------------ the decision's inputs

    async def _assess(self, request: InferenceRequest) -> Verdict | None:
        """The privacy verdict (messages, stop strings and JSON schema); None when there is no cloud link
        (nothing can leave the device: declared classes are still checked, as the gate would)."""
        if self.gate is None or self.cloud is None:
            self._profile().privacy.check_declared(request.data_classes)
            return None
        return await asyncio.to_thread(self.gate.assess_request, request)

    def _router_score(self, request: InferenceRequest) -> float | None:
        if (
            self.router is None
            or self.router.signal_only
            or request.mode not in (Mode.AUTO, Mode.PREFER_LOCAL)
        ):
            return None
        return self.router.score(prompt_text(request))

    def _inputs(
        self,
        request: InferenceRequest,
        profile: DeviceProfile,
        verdict: Verdict | None,
        router_score: float | None,
    ) -> RouteInputs:
        routing = profile.routing
        budget = self.cloud.budget_exhausted() if self.cloud is not None else None
        return RouteInputs(
            mode=request.mode,
            cloud_allowed=verdict is None or verdict.allows_cloud,
            load=self._load() if self._load is not None else IDLE_LOAD,
            limits=profile.limits,
            link=self.cloud.link() if self.cloud is not None else Link.DISABLED,
            budget_exhausted=budget,
            router_score=router_score,
            router_threshold=routing.router_threshold
            if request.router_threshold is None
            else request.router_threshold,
            confidence_threshold=routing.confidence_threshold,
            router_signal_only=self.router is not None and self.router.signal_only,
        )

    # ------------------------------------------------------------------ cloud first

    async def _cloud_first(
        self,
        request: InferenceRequest,
        verdict: Verdict | None,
        decision: RouteDecision,
        inputs: RouteInputs,
        router_score: float | None,
        stream: AnswerStream,
        trail: RequestTrail,
    ) -> AsyncIterator[Delta | Answer]:
        may_fall_back = request.mode is not Mode.CLOUD_ONLY
        if self.metrics is not None:
            self.metrics.record_escalation(escalation_reason(decision.reasons))
        try:
            async for item in self._via_cloud(
                request,
                verdict,
                decision.reasons,
                decision.degraded,
                stream,
                trail,
                keep_for_local=may_fall_back,
                router_score=router_score,
            ):
                yield item
            return
        except (*_CLOUD_FAILURES, SensitiveDataBlocked) as exc:
            trail.reasons = (*decision.reasons, failure_reason(exc))
            if not may_fall_back or stream.sent:
                raise
            failure = exc
        reasons = (*decision.reasons, _why_not_cloud(failure), "fallback=local")
        if self.metrics is not None:
            self.metrics.record_fallback(failure_reason(failure))
        plain = dataclasses.replace(inputs, link=Link.DOWN)  # no second escalation for this request
        async for item in self._via_local(
            request, verdict, reasons, True, plain, router_score, AnswerStream(stream.streaming), trail
        ):
            yield item

    async def _via_cloud(
        self,
        request: InferenceRequest,
        verdict: Verdict | None,
        reasons: tuple[str, ...],
        degraded: bool,
        stream: AnswerStream,
        trail: RequestTrail,
        *,
        keep_for_local: bool,
        router_score: float | None,
    ) -> AsyncIterator[Delta | Answer]:
        """The cloud's answer (restored), buffered unless streaming; raises on any cloud failure."""
        assert self.cloud is not None
        assert verdict is not None
        trail.side = Source.CLOUD
        release = await self.cloud.release(request, verdict)
        deadline = cloud_deadline(request, time.monotonic(), keep_for_local)
        buffered: list[Delta] = []
        outcome: CloudOutcome | None = None
        try:
            answer = self.cloud.answer(
                request, release, deadline, on_sent=lambda: trail.handed_to_broker(release)
            )
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
        final_reasons = (*reasons, "answered=cloud")
        trail.invented = outcome.invented
        yield cloud_answer(
            request,
            stream,
            outcome,
            reasons=final_reasons,
            degraded=degraded,
            device_id=self.device_id,
            router_score=router_score,
            data_classes=verdict.data_classes,
        )

    # ------------------------------------------------------------------ local first

    def _cloud_reachable(self) -> bool:
        """Asked by the cascade at its verdict: a collapse nobody can take over from runs to the end.

        Runs on the engine thread (the cascade hook), so it reads the link's snapshot, which the loop replaces
        whole, not the link's loop-owned state (issue 17: 10); the budget has its own lock."""
        cloud = self.cloud
        return (
            cloud is not None and cloud.link_from_any_thread() is Link.UP and cloud.budget_exhausted() is None
        )

    def _can_escalate(self, inputs: RouteInputs) -> bool:
        """Whether an unsure local answer could still be handed to the cloud."""
        return (
            inputs.mode in (Mode.AUTO, Mode.PREFER_LOCAL)
            and inputs.cloud_allowed
            and inputs.link is Link.UP
            and inputs.budget_exhausted is None
            and self.cloud is not None
        )

    async def _via_local(
        self,
        request: InferenceRequest,
        verdict: Verdict | None,
        reasons: tuple[str, ...],
        degraded: bool,
        inputs: RouteInputs,
        router_score: float | None,
        stream: AnswerStream,
        trail: RequestTrail,
    ) -> AsyncIterator[Delta | Answer]:
        trail.side = Source.LOCAL
        trail.reasons = reasons
        profile = self._profile()
        routing = profile.routing
        weights = effective_weights(profile, self.router)
        can_escalate = self._can_escalate(inputs)
        monitor = None
        if can_escalate and routing.cascade:
            monitor = CascadeMonitor(
                k=routing.cascade_tokens,
                threshold=routing.cascade_threshold,
                weights=weights,
                router_score=router_score,
            )
        # While the cascade (or, for a unary call, the post-generation check) may still replace the local
        # answer, its text is held back.
        holding = can_escalate and (monitor is not None or not stream.streaming)
        held: list[str] = []
        finish: FinishEvent | None = None
        hook = monitor.engine_hook(can_escalate=self._cloud_reachable) if monitor is not None else None
        events = self.local.events(request, hook)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, FinishEvent):
                    finish = event
                    break
                assert isinstance(event, TokenEvent)
                if stream.first_token_at is None:
                    stream.first_token_at = time.monotonic()
                if holding and (
                    not stream.streaming
                    or monitor is None
                    or monitor.verdict is None
                    or monitor.verdict.collapsed
                ):
                    held.append(event.text)  # undecided, or to be replaced by the cloud's answer
                    continue
                if holding:  # the cascade has judged the first k tokens and kept the local answer
                    holding = False
                    event_text = "".join([*held, event.text])
                    held.clear()
                else:
                    event_text = event.text
                delta = stream.emit(event_text)
                if delta is not None:
                    yield delta
        assert finish is not None
        escalate, final_reasons = self._judge(
            request, "".join(held), inputs, finish, reasons, router_score, weights, monitor, undecided=holding
        )
        if escalate:
            async for item in self._escalate_after_local(
                request, verdict, final_reasons, inputs, router_score, finish, held, stream, trail
            ):
                yield item
            return
        for text in held:
            delta = stream.emit(text)
            if delta is not None:
                yield delta
        yield self._local(
            request, verdict, finish, (*final_reasons, "answered=local"), degraded, router_score, stream
        )

    def _judge(
        self,
        request: InferenceRequest,
        reply: str,
        inputs: RouteInputs,
        finish: FinishEvent,
        reasons: tuple[str, ...],
        router_score: float | None,
        weights: ScoreWeights,
        monitor: CascadeMonitor | None,
        *,
        undecided: bool,
    ) -> tuple[bool, tuple[str, ...]]:
        """After local generation: should the cloud answer instead? (and the reasons either way).

        `reply` is the whole local answer whenever it is still undecided (it was held back). With the router's
        answer model the finished answer is scored from prompt, reply and confidence together; without one,
        from the router score and the confidence signals."""
        if finish.finish_reason == "low_confidence" and monitor is not None and monitor.verdict is not None:
            # The monitor stopped the stream (it checked that the cloud was reachable): the local answer is cut
            # short, so it escalates whatever the link does now (a failed cloud answer falls back to local).
            # The reason is decide()'s, as for every other route (a monitor runs only for AUTO and
            # PREFER_LOCAL with the cloud allowed, where decide() always judges the confidence).
            v = monitor.verdict
            cascade = decide(
                dataclasses.replace(
                    inputs, confidence=v.score, confidence_threshold=v.threshold, cascade_tokens=v.tokens
                )
            )
            return True, (*reasons, *(r for r in cascade.reasons if r.startswith("confidence@")))
        if finish.finish_reason == "repetition":
            # The loop guard cut a degenerate answer: as unsure as an answer gets, so it escalates where it
            # still can (held back, cloud allowed); otherwise the cut answer is given with the reason.
            reasons = (*reasons, "repetition")
            return undecided and self._can_escalate(inputs), reasons
        if not undecided or not self._can_escalate(inputs):
            return False, reasons
        if self.router is not None:
            score = self.router.finished_score(
                prompt_text(request), reply, router_score, finish.confidence, weights
            )
        else:
            score = auto_score(router_score, finish.confidence, weights)
        post = decide(dataclasses.replace(inputs, confidence=score))
        extra = tuple(r for r in post.reasons if r.startswith("confidence"))
        return post.route is Route.CLOUD, (*reasons, *extra)

    async def _escalate_after_local(
        self,
        request: InferenceRequest,
        verdict: Verdict | None,
        reasons: tuple[str, ...],
        inputs: RouteInputs,
        router_score: float | None,
        local_finish: FinishEvent,
        local_held: list[str],
        stream: AnswerStream,
        trail: RequestTrail,
    ) -> AsyncIterator[Delta | Answer]:
        """The local answer was judged too unsure: answer from the cloud; if the cloud fails, answer locally."""
        if self.metrics is not None:
            self.metrics.record_escalation(
                "repetition" if local_finish.finish_reason == "repetition" else "low_confidence"
            )
        if not stream.sent:
            stream.first_token_at = None  # the caller's first token will be the cloud's
        try:
            async for item in self._via_cloud(
                request,
                verdict,
                reasons,
                False,
                stream,
                trail,
                keep_for_local=True,
                router_score=router_score,
            ):
                yield item
            return
        except (*_CLOUD_FAILURES, SensitiveDataBlocked) as exc:
            trail.reasons = (*reasons, failure_reason(exc))
            if stream.sent:
                raise
            failure = exc
        fallback = (*reasons, _why_not_cloud(failure), "fallback=local")
        if self.metrics is not None:
            self.metrics.record_fallback(failure_reason(failure))
        if local_finish.finish_reason != "low_confidence":
            # the local answer is whole: give it after all
            trail.side = Source.LOCAL
            for text in local_held:
                delta = stream.emit(text)
                if delta is not None:
                    yield delta
            yield self._local(
                request, verdict, local_finish, (*fallback, "answered=local"), True, router_score, stream
            )
            return
        # the cascade cut the local answer short: generate it again, to the end this time
        plain = dataclasses.replace(inputs, link=Link.DOWN)
        async for item in self._via_local(
            request, verdict, fallback, True, plain, router_score, AnswerStream(stream.streaming), trail
        ):
            yield item

    # ------------------------------------------------------------------ audit

    def _local(
        self,
        request: InferenceRequest,
        verdict: Verdict | None,
        finish: FinishEvent,
        reasons: tuple[str, ...],
        degraded: bool,
        router_score: float | None,
        stream: AnswerStream,
    ) -> Answer:
        model = self.local.engine_for(request.model).model_id
        classes = (
            verdict.data_classes
            if verdict is not None
            else declared_classes(request.data_classes, sensitive=request.sensitive)
        )
        return local_answer(
            request,
            stream,
            finish,
            model=model,
            reasons=reasons,
            degraded=degraded,
            device_id=self.device_id,
            router_score=router_score,
            data_classes=classes,
        )

    def _end(
        self,
        request: InferenceRequest,
        trail: RequestTrail,
        *,
        answer: Answer | None = None,
        error: Exception | None = None,
    ) -> None:
        """The request's one audit record (`answer` or `error` ends it): what left the device (trail.route),
        how it ended and why."""
        if trail.ended:
            return
        trail.ended = True
        if self.audit is None or trail.verdict is None:
            return  # no gate (no cloud link): nothing was judged, nothing could leave
        if answer is not None:
            cloud = answer.provenance.source is Source.CLOUD
            outcome, reasons = (ANSWERED_CLOUD if cloud else ANSWERED_LOCAL), answer.provenance.reasons
        else:
            outcome, reasons = outcome_of(error or EngineError("no answer")), trail.reasons
        try:
            self.audit.record(
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


# When no sampler runs: a device with room to spare (no limit can be exceeded).
IDLE_LOAD = LoadSnapshot(SystemReading(memory_available_mb=math.inf), EngineLoad(), taken_at=0.0)
