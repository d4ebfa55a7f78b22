"""EscalationClient: the device side of escalation — MQTT v5 request/response to cloud_bridge workers.

One request: PUBLISH (QoS 1) an EscalationRequest on {prefix}/{device}/escalate with Response Topic = this
client's reply topic, Correlation Data = 16 random bytes, Message Expiry Interval = the seconds left before
the deadline (rounded up). A worker answers with EscalationChunks on the reply topic: chunk 0 on taking the
request, then deltas, the last with done = true. Chunks are put back in seq order, duplicates dropped.

Failing fast (so PREFER_* modes can still answer locally): a request while the link is down fails at once;
the broker's PUBACK "no matching subscribers" fails it at once; no worker taking it within accept_timeout_s
fails it; the link dropping, or the worker that took it going offline (its retained presence cleared by its
Last Will), fails it at once. Nothing waits past the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from edged.comms.link import MqttLink
from edged.comms.messages import InboundMessage, LinkState
from edged.comms.wire import NO_MATCHING_SUBSCRIBERS, puback_reason
from edged.config.broker import BrokerSettings
from edged.config.escalation import EscalationSettings
from edged.domain import Delta, Usage
from edged.errors import CloudRefused as CloudRefused  # noqa: PLC0414 - re-exported for edged.pipeline (mypy)
from edged.errors import CloudUnavailable, DeadlineExceeded, EdgedError
from edged.escalation.sequencer import ChunkSequencer
from edged.escalation.topics import EscalationTopics
from edged.v1.escalation_pb2 import EscalationChunk, EscalationError, EscalationRequest, WorkerPresence

logger = logging.getLogger(__name__)


_FIELD = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_.\[\]]{0,63}$"
)  # what a worker's refusal names: max_tokens, stop[2]
MAX_REFUSAL_CHARS = 400


@dataclass(frozen=True, slots=True)
class EscalationResult:
    """The end of an escalated answer (after its deltas)."""

    finish_reason: str
    model: str
    usage: Usage
    worker_id: str
    backend_ms: float


@dataclass(frozen=True, slots=True)
class EscalationAnswer:
    text: str
    result: EscalationResult


EscalationEvent = Delta | EscalationResult


@dataclass
class EscalationStats:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    late_chunks: int = 0  # chunks for a request that is over (or never was ours)
    foreign_chunks: int = 0  # chunks from a second worker that got a duplicate delivery
    ignored_chunks: int = 0  # malformed, or not bound to the live request and the worker that took it


class _Pending:
    """One escalation waiting for its chunks; fed by the reply handler, drained by stream()."""

    def __init__(self, max_buffered: int) -> None:
        self.request_id = ""  # set once the request is prepared; every reply chunk must carry it
        self.sequencer = ChunkSequencer(max_buffered)
        self.max_buffered = max_buffered
        self.ready: deque[EscalationChunk] = deque()
        self.wake = asyncio.Event()
        self.error: EdgedError | None = None
        self.worker_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.worker_id is not None

    def offer(self, chunk: EscalationChunk, stats: EscalationStats) -> None:
        if self.error is not None or self.sequencer.finished:
            stats.late_chunks += 1
            return
        if chunk.request_id != self.request_id:
            stats.ignored_chunks += 1  # a replay of another exchange under this correlation data
            return
        if self.worker_id is None:
            if chunk.seq != 0 or not chunk.worker_id:
                stats.ignored_chunks += 1  # a worker takes a request with chunk 0, naming itself
                return
            self.worker_id = chunk.worker_id  # the first worker to answer owns the request
        elif chunk.worker_id != self.worker_id:
            stats.foreign_chunks += 1  # a duplicate delivery another worker also answered: ignore it
            stats.ignored_chunks += 1
            return
        try:
            in_order = self.sequencer.push(chunk)
        except CloudUnavailable as exc:
            self.fail(exc)
            return
        if len(self.ready) + len(in_order) > self.max_buffered:
            self.fail(
                CloudUnavailable(
                    f"more than {self.max_buffered} reply chunks unread (escalation.reply_buffer)"
                )
            )
            return
        self.ready.extend(in_order)
        if in_order:
            self.wake.set()

    def fail(self, error: EdgedError) -> None:
        if self.error is None and not self.sequencer.finished:
            self.error = error
            self.wake.set()

    async def next(self, until: float) -> EscalationChunk | None:
        """The next in-order chunk; None if none came before `until` (time.monotonic())."""
        while not self.ready:
            if self.error is not None:
                raise self.error
            left = until - time.monotonic()
            if left <= 0:
                return None
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self.wake.wait()
        return self.ready.popleft()


class EscalationClient:
    """Sends EscalationRequests to cloud_bridge workers and streams their answers back.

    Runs on the daemon's event loop. Give it its own link (from `settings`) or a shared MqttLink.
    """

    def __init__(
        self,
        settings: BrokerSettings,
        device_id: str,
        *,
        escalation: EscalationSettings | None = None,
        link: MqttLink | None = None,
        instance: str | None = None,
    ) -> None:
        self._escalation = escalation or EscalationSettings()
        self._topics = EscalationTopics(settings.topic_prefix)
        self._device = device_id
        self._escalate_topic = self._topics.escalate(device_id)
        self._cancel_topic = self._topics.cancel(device_id)
        self._reply_topic = self._topics.reply(device_id, instance or secrets.token_hex(4))
        self._owns_link = link is None
        self._link = link if link is not None else MqttLink(settings, client_id=device_id)
        self._pending: dict[bytes, _Pending] = {}
        self._workers: dict[str, WorkerPresence] = {}
        self._started = False
        self._listening = False
        self.stats = EscalationStats()

    @property
    def reply_topic(self) -> str:
        return self._reply_topic

    @property
    def link(self) -> MqttLink:
        return self._link

    async def start(self) -> None:
        """Subscribe to the reply and presence topics and (if the link is ours) start connecting."""
        if self._started:
            return
        self._started = True
        self._link.subscribe(self._reply_topic, self._on_reply, qos=1)
        self._link.subscribe(self._topics.presence_filter(), self._on_presence, qos=1)
        if not self._listening:
            self._link.add_state_listener(self._on_link_state)
            self._listening = True
        if self._owns_link:
            await self._link.start()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for correlation, pending in self._pending.items():
            if not pending.sequencer.finished:
                self._cancel(correlation)
        self._fail_all(CloudUnavailable("the escalation client is stopping"))
        self._link.unsubscribe(self._reply_topic)
        self._link.unsubscribe(self._topics.presence_filter())
        if self._owns_link:
            await self._link.stop()

    def is_up(self) -> bool:
        return self._started and self._link.is_up()

    def is_up_from_any_thread(self) -> bool:
        """is_up() for a thread other than the loop's: the link's published snapshot (MqttLink.snapshot), not
        the fields its loop is changing."""
        return self._started and self._link.snapshot().connected

    def link_state(self) -> LinkState:
        return self._link.state()

    def workers_online(self) -> int:
        """Workers whose retained presence this client has seen (0 until the first connect)."""
        return len(self._workers)

    def in_flight(self) -> int:
        return len(self._pending)

    async def stream(
        self, request: EscalationRequest, deadline: float, *, on_sent: Callable[[], None] | None = None
    ) -> AsyncGenerator[EscalationEvent, None]:
        """Escalate `request`; yields Delta pieces of the answer, then one EscalationResult.

        `deadline` is a time.monotonic() value. Raises CloudUnavailable when the link is down or no worker
        answers in time, DeadlineExceeded when the answer started but the deadline passed, CloudRefused (an
        InvalidRequest naming the field) when the worker refused the request as invalid. `on_sent` is called
        as the request is handed to the link for publishing: from then on it may reach the broker, whatever
        happens next."""
        correlation = secrets.token_bytes(16)
        pending = _Pending(self._escalation.reply_buffer)
        try:
            message = self._prepare(request, deadline)
            pending.request_id = message.request_id
            self._pending[correlation] = pending
            if on_sent is not None:
                # before the publish call: paho may queue the message even when the call then reports an error
                on_sent()
            ack = self._link.publish(
                self._escalate_topic,
                message.SerializeToString(),
                qos=1,
                correlation_data=correlation,
                response_topic=self._reply_topic,
                expiry_s=math.ceil(deadline - time.monotonic()),
            )
            ack.add_done_callback(_ack_checker(pending, self._escalate_topic))
            self.stats.sent += 1
            async with contextlib.aclosing(self._receive(pending, deadline)) as events:
                async for event in events:
                    if isinstance(event, EscalationResult):
                        # settled before the last yield: a consumer may stop iterating at the result
                        self.stats.answered += 1
                        self._pending.pop(correlation, None)
                    yield event
        except EdgedError:
            self.stats.failed += 1
            raise
        finally:
            if self._pending.pop(correlation, None) is not None and not pending.sequencer.finished:
                self._cancel(correlation)

    def _cancel(self, correlation: bytes) -> None:
        """Tell the workers to stop an unfinished request (the caller left, failed or the client stops): the one
        that took it stops its backend and sends nothing more. Fire and forget: a down link loses it, and the
        worker stops at the request's deadline anyway."""
        try:
            sent = self._link.publish(self._cancel_topic, b"", qos=1, correlation_data=correlation)
        except CloudUnavailable:
            return
        sent.add_done_callback(_consume)

    async def complete(self, request: EscalationRequest, deadline: float) -> EscalationAnswer:
        """The whole answer at once (request.stream decides how the worker sends it)."""
        parts: list[str] = []
        async with contextlib.aclosing(self.stream(request, deadline)) as events:
            async for event in events:
                if isinstance(event, Delta):
                    parts.append(event.text)
                else:
                    return EscalationAnswer("".join(parts), event)
        raise CloudUnavailable("the reply ended without a result")  # _receive always ends with one

    # ---- internals -----------------------------------------------------------------------------------------

    def _prepare(self, request: EscalationRequest, deadline: float) -> EscalationRequest:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"the deadline passed {-left:.3f}s before escalation")
        if not self.is_up():
            state = self._link.state()
            raise CloudUnavailable(
                f"MQTT link to {state.broker} is {state.phase.value}: {state.last_error or '-'}"
            )
        if len(self._pending) >= self._escalation.max_escalations:
            raise CloudUnavailable(
                f"{len(self._pending)} escalations in flight (escalation.max_escalations = "
                f"{self._escalation.max_escalations})"
            )
        message = EscalationRequest()
        message.CopyFrom(request)
        message.request_id = message.request_id or uuid.uuid4().hex
        message.device_id = self._device
        message.deadline_unix_ms = int((time.time() + left) * 1000)
        return message

    async def _receive(self, pending: _Pending, deadline: float) -> AsyncGenerator[EscalationEvent, None]:
        accept_by = min(deadline, time.monotonic() + self._escalation.accept_timeout_s)
        while True:
            chunk = await pending.next(deadline if pending.accepted else accept_by)
            if chunk is None:
                if not pending.accepted:
                    waited = (
                        f"{self._escalation.accept_timeout_s} s (escalation.accept_timeout_s)"
                        if accept_by < deadline
                        else "the deadline"
                    )
                    raise CloudUnavailable(f"no worker took the request within {waited}")
                raise DeadlineExceeded(f"the cloud answer from {pending.worker_id} passed the deadline")
            if chunk.HasField("error") and chunk.error.code:
                raise _worker_error(chunk.error, chunk.worker_id)
            if chunk.delta:
                yield Delta(chunk.delta)
            if chunk.done:
                usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                yield EscalationResult(
                    chunk.finish_reason, chunk.model, usage, chunk.worker_id, chunk.backend_ms
                )
                return

    def _on_reply(self, message: InboundMessage) -> None:
        pending = self._pending.get(message.correlation_data or b"")
        if pending is None:
            self.stats.late_chunks += 1
            logger.debug("reply chunk for an unknown or finished escalation on %s", message.topic)
            return
        try:
            chunk = EscalationChunk.FromString(message.payload)
        except DecodeError:
            # anyone who can publish on the reply topic could send it: ignored, never the end of the request
            self.stats.ignored_chunks += 1
            logger.warning(
                "ignored a malformed reply chunk (%d bytes) on %s", len(message.payload), message.topic
            )
            return
        if not pending.accepted and chunk.worker_id not in self._workers:
            self.stats.ignored_chunks += 1  # only a worker whose presence is retained can take a request
            return
        pending.offer(chunk, self.stats)

    def _on_presence(self, message: InboundMessage) -> None:
        worker = self._topics.worker_of_presence(message.topic)
        if worker is None:
            return
        if message.payload:
            try:
                self._workers[worker] = WorkerPresence.FromString(message.payload)
            except DecodeError:
                logger.warning("malformed presence of worker %s (%d bytes)", worker, len(message.payload))
            return
        self._workers.pop(worker, None)
        for pending in self._pending.values():
            if pending.worker_id == worker:
                pending.fail(CloudUnavailable(f"worker {worker} went offline while answering"))

    def _on_link_state(self, state: LinkState) -> None:
        if state.connected:
            return
        self._workers.clear()  # rebuilt from the retained presence messages after the next connect
        self._fail_all(CloudUnavailable(f"MQTT link {state.phase.value}: {state.last_error or '-'}"))

    def _fail_all(self, error: EdgedError) -> None:
        for pending in self._pending.values():
            pending.fail(error)


def _refusal(message: str, worker_id: str) -> CloudRefused:
    """The worker's "field: reason" as a CloudRefused naming that field ("escalation" if it names none)."""
    field, separator, detail = message.partition(": ")
    if not (separator and _FIELD.match(field)):
        field, detail = "escalation", message
    return CloudRefused(
        field, f"{detail[:MAX_REFUSAL_CHARS]}; refused by cloud worker {worker_id[:64] or '?'}"
    )


def _ack_checker(pending: _Pending, topic: str) -> Callable[[asyncio.Future[int]], None]:
    def check(ack: asyncio.Future[int]) -> None:
        if ack.cancelled():
            return
        error = ack.exception()
        if isinstance(error, EdgedError):
            pending.fail(error)
            return
        code = ack.result()
        if code == NO_MATCHING_SUBSCRIBERS:
            pending.fail(CloudUnavailable(f"no cloud_bridge worker is subscribed to {topic}"))
        elif code >= 0x80:
            pending.fail(CloudUnavailable(f"the broker refused the escalation: {puback_reason(code)}"))

    return check


def _consume(future: asyncio.Future[int]) -> None:
    """A fire-and-forget publish: its outcome is read so asyncio never reports it as unretrieved."""
    if not future.cancelled():
        future.exception()


def _worker_error(error: EscalationError, worker_id: str) -> EdgedError:
    text = f"worker {worker_id or '?'}: {error.message or error.code}"
    if error.code == "invalid_argument":
        return _refusal(error.message, worker_id)
    if error.code == "deadline_exceeded":
        return DeadlineExceeded(text)
    return CloudUnavailable(f"{error.code}: {text}")
