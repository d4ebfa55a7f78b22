"""CloudAnswerer: a request's way to the cloud — released (redacted) by the privacy gate, charged to the budget,
escalated over MQTT, and its answer restored before the caller sees it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edged.domain import Delta, InferenceRequest, Usage
from edged.errors import CloudUnavailable
from edged.routing.budget import CloudBudget, estimated_tokens
from edged.routing.decision import Link
from edged.sovereignty.gate import ReplyReport, SensitivityGate
from edged.sovereignty.redaction import CloudRelease
from edged.sovereignty.verdict import Verdict
from edged.v1 import inference_pb2 as pb
from edged.v1.escalation_pb2 import EscalationRequest

if TYPE_CHECKING:
    from edged.escalation.client import EscalationClient, EscalationResult

logger = logging.getLogger(__name__)

# Without a caller deadline a cloud answer may take this long; with one, the caller's deadline rules, up to
# MAX_CLOUD_WAIT_S (what a worker accepts by default: cloud_bridge's max_deadline_s).
DEFAULT_CLOUD_TIMEOUT_S = 120.0
MAX_CLOUD_WAIT_S = 3600.0


@dataclass(frozen=True, slots=True)
class CloudOutcome:
    """The end of a cloud answer, after its (restored) deltas."""

    result: EscalationResult
    release: CloudRelease
    reply: ReplyReport | None
    # What the cloud made up, by entity type: values that occur nowhere in the conversation (left in the answer)
    # and placeholders that stand for no value of the request (shown as markers: see restore.py).
    invented: dict[str, int] = field(default_factory=dict)


class CloudAnswerer:
    def __init__(
        self, device_id: str, client: EscalationClient, gate: SensitivityGate, budget: CloudBudget
    ) -> None:
        self._device_id = device_id
        self._client = client
        self._gate = gate
        self._budget = budget

    def budget_exhausted(self) -> str | None:
        return self._budget.exhausted()

    def link(self) -> Link:
        """On the event loop: the link as the loop sees it now."""
        return Link.UP if self._client.is_up() else Link.DOWN

    @property
    def client(self) -> EscalationClient:
        return self._client

    def reachable(self) -> bool:
        """From any thread (the engine's cascade hook): whether an answer could be handed over now, the link up
        (its immutable snapshot, never the loop-owned state; issue 17: 10) and budget left (its own lock)."""
        return self._client.is_up_from_any_thread() and self._budget.exhausted() is None

    @property
    def gate(self) -> SensitivityGate:
        """The gate it releases requests and scans replies with (the runtime's: a privacy change builds a new
        CloudAnswerer with the new gate)."""
        return self._gate

    async def release(self, request: InferenceRequest, verdict: Verdict) -> CloudRelease:
        """What may leave the device: messages and control fields (raises SensitiveDataBlocked for
        LOCAL_ONLY data)."""
        return await asyncio.to_thread(self._gate.release_request, request, verdict)

    async def answer(
        self,
        request: InferenceRequest,
        release: CloudRelease,
        deadline: float,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> AsyncIterator[Delta | CloudOutcome]:
        """Restored deltas, then one CloudOutcome. Raises CloudUnavailable, DeadlineExceeded, BudgetExhausted.
        `on_sent` is called once the escalation is handed to the broker (from then on it may have left the
        device, whatever happens to the answer).

        The request is charged before it is sent; its tokens when the result comes (the worker's usage, or an
        estimate when it reports none). An answer that fails or is abandoned is charged an estimate of what
        was sent and received: whether a backend processed the prompt cannot be known here, so it counts."""
        # The budget's saves run on the daemon's file writer thread: charging never waits on the disk here.
        self._budget.charge_request()
        restorer = release.stream_restorer()
        raw: list[str] = []
        escalation = self._escalation(request, release)
        events = self._client.stream(escalation, deadline, on_sent=on_sent)
        charged = False
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, Delta):
                        raw.append(event.text)
                        text = restorer.feed(event.text)
                        if text:
                            yield Delta(text)
                        continue
                    tail = restorer.finish()
                    if tail:
                        yield Delta(tail)
                    usage = event.usage.prompt_tokens + event.usage.completion_tokens
                    charged = True
                    self._budget.charge_tokens(usage or _estimate(escalation, raw))
                    reply = await asyncio.to_thread(self._gate.scan_reply, "".join(raw), release)
                    yield CloudOutcome(event, release, reply, self._invented(reply, restorer.invented))
                    return
            raise CloudUnavailable("the cloud reply ended without a result")
        finally:
            if not charged:  # failed, cancelled or closed by the caller
                self._budget.charge_tokens(_estimate(escalation, raw))

    def _invented(self, reply: ReplyReport, placeholders: Counter[str]) -> dict[str, int]:
        """Invented values (the reply scan's) and invented placeholders (the restorer's), by entity type."""
        if placeholders:
            logger.info("cloud reply holds placeholders the request did not have: %s", dict(placeholders))
            self._gate.counters.record_invented(placeholders)
        return dict(sorted((Counter(reply.invented) + placeholders).items()))

    def _escalation(self, request: InferenceRequest, release: CloudRelease) -> EscalationRequest:
        params = request.params
        message = EscalationRequest(
            request_id=request.request_id,
            device_id=self._device_id,
            messages=[pb.ChatMessage(role=m.role, content=m.content) for m in release.messages],
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(release.stop),
            json_schema=release.json_schema or "",
            stream=True,
            model=request.model or "",
        )
        if params.seed is not None:
            message.seed = params.seed
        return message


def _estimate(sent: EscalationRequest, received: list[str]) -> int:
    """Tokens of a cloud answer without usage figures: estimated from the characters sent and received."""
    chars = (
        sum(len(m.content) for m in sent.messages) + sum(len(s) for s in sent.stop) + len(sent.json_schema)
    )
    return estimated_tokens(chars + sum(len(text) for text in received))


def cloud_deadline(request: InferenceRequest, now: float, keep_for_local: bool) -> float:
    """When the cloud must have answered: the caller's deadline (half of what is left when the device must
    still be able to answer after a cloud failure) but at most MAX_CLOUD_WAIT_S, or DEFAULT_CLOUD_TIMEOUT_S
    without one."""
    if request.deadline is None:
        return now + DEFAULT_CLOUD_TIMEOUT_S
    left = request.deadline - now
    return now + min(left / 2 if keep_for_local else left, MAX_CLOUD_WAIT_S)


def usage_of(result: EscalationResult) -> Usage:
    return Usage(result.usage.prompt_tokens, result.usage.completion_tokens)


def elapsed_ms(since: float) -> float:
    return (time.monotonic() - since) * 1000.0
