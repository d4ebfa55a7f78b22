"""BridgeWorker: takes EscalationRequests from a shared subscription, answers them with a backend as chunks.

Per request, in paho's message callback (decide and hand off, never wait): check the response topic belongs to
the device in the request topic, decode, refuse a deadline more than max_deadline_s ahead, drop it if expired,
drop it if its correlation id was seen (a broker redelivery), validate (checks.py), refuse it if the backlog is
full, send chunk 0 ("taken"), start a task. The task waits for one of `concurrency` slots, streams the backend's
answer as chunks 1.. (the last with done = true) and never outlives the request's deadline. Anything unexpected
is refused `internal`: the device never waits for a request the worker took or could read.

Stopping (SIGTERM) drains: unsubscribe (the broker routes new requests to the group's other workers), let
in-flight requests finish within drain_timeout_s, clear the retained presence, disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cloud_bridge.backends.base import Backend, BackendDone, BackendJob
from cloud_bridge.checks import check_fields, check_request_id, decode_request
from cloud_bridge.config import BridgeConfig
from edged.comms.link import MqttLink
from edged.comms.messages import InboundMessage, LinkState, Will
from edged.domain import Message, SamplingParams
from edged.errors import (
    CloudUnavailable,
    DeadlineExceeded,
    EdgedError,
    InvalidRequest,
    Overloaded,
    SubscriptionRefused,
)
from edged.escalation.topics import EscalationTopics
from edged.v1.escalation_pb2 import EscalationChunk, EscalationError, EscalationRequest, WorkerPresence

logger = logging.getLogger(__name__)

RESTART_KEYS = ("broker", "group", "worker_id", "state_dir", "backend")  # bound to the link and the backend
SEEN_CAPACITY = 100_000  # correlation ids remembered for duplicate detection
MAX_CORRELATION_BYTES = 64


@dataclass
class WorkerStats:
    received: int = 0
    answered: int = 0
    expired: int = 0  # dropped: the deadline had passed (on arrival or while waiting for a slot)
    duplicates: int = 0  # dropped: the correlation id was already taken
    rejected: int = 0  # refused: backlog full
    invalid: int = 0  # refused or dropped: malformed
    failed: int = 0  # the backend failed or the deadline passed mid-answer
    cancelled: int = 0  # stopped: the device cancelled it (its caller left, or its client stopped)
    taken_ids: deque[str] = field(
        default_factory=lambda: deque(maxlen=1000)
    )  # request ids taken, newest last


class SeenRequests:
    """Correlation ids this worker has taken, each kept until its deadline (at most `capacity`)."""

    def __init__(self, capacity: int = SEEN_CAPACITY) -> None:
        self._until: OrderedDict[bytes, float] = OrderedDict()
        self._capacity = capacity

    def add_if_new(self, key: bytes, until: float, now: float) -> bool:
        while self._until and next(iter(self._until.values())) < now:
            self._until.popitem(last=False)
        if key in self._until:
            return False
        self._until[key] = until
        if len(self._until) > self._capacity:
            self._until.popitem(last=False)
        return True


@dataclass
class _Reply:
    """One taken request and the chunks sent back for it so far."""

    request: EscalationRequest
    correlation: bytes
    reply_to: str
    deadline: float  # time.monotonic()
    job: BackendJob
    seq: int = 0
    cancelled: bool = False  # the device cancelled it: stop, and send nothing more


class BridgeWorker:
    def __init__(
        self,
        config: BridgeConfig,
        backend: Backend,
        *,
        link: MqttLink | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._backend = backend
        self._topics = EscalationTopics(config.broker.topic_prefix)
        self._presence_topic = self._topics.presence(config.worker_id)
        self._shared = self._topics.shared_escalate(config.group)
        will = Will(self._presence_topic, b"", qos=1, retain=True)  # empty retained = this worker is gone
        self._link = (
            link if link is not None else MqttLink(config.broker, client_id=config.worker_id, will=will)
        )
        self._wall_clock = wall_clock  # a seam for tests of clock skew
        self._slots = asyncio.Semaphore(config.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[
            tuple[str, bytes], tuple[asyncio.Task[None], _Reply]
        ] = {}  # (device, correlation)
        self._seen = SeenRequests()
        self._taking = False
        self.stats = WorkerStats()

    @property
    def worker_id(self) -> str:
        return self._config.worker_id

    @property
    def link(self) -> MqttLink:
        return self._link

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def config(self) -> BridgeConfig:
        return self._config

    def reconfigure(self, config: BridgeConfig) -> list[str]:
        """Take the limits of a reloaded config now; returns the keys that only a restart can change."""
        frozen = [key for key in RESTART_KEYS if getattr(config, key) != getattr(self._config, key)]
        if config.concurrency != self._config.concurrency:
            # new requests wait on the new slots; requests already in a slot finish in the old ones
            self._slots = asyncio.Semaphore(config.concurrency)
        self._config = config.model_copy(update={key: getattr(self._config, key) for key in frozen})
        return frozen

    async def start(self) -> None:
        """Load the backend, then subscribe and connect (requests are taken only once it can answer)."""
        await self._backend.start()
        self._taking = True
        self._link.add_state_listener(self._on_link_state)
        self._link.subscribe(self._shared, self._on_request, qos=1)
        # not shared: only the worker that took a request knows it, so every worker hears every cancel
        self._link.subscribe(self._topics.cancel_filter(), self._on_cancel, qos=1)
        await self._link.start()
        # one connect attempt at most: a refused subscription (the broker's ACL) fails the start with it
        try:
            await self._link.wait_first_connect()
        except SubscriptionRefused:
            self._taking = False
            await self._link.stop()
            await self._backend.close()
            raise
        logger.info(
            "worker %s takes requests from %s (backend %s, model %s, concurrency %d)",
            self.worker_id,
            self._shared,
            self._backend.kind,
            self._backend.model,
            self._config.concurrency,
        )

    async def stop(self, drain_timeout: float | None = None) -> None:
        """Stop taking requests, let in-flight ones finish (within drain_timeout), clear presence, leave."""
        timeout = self._config.drain_timeout_s if drain_timeout is None else drain_timeout
        self._taking = False
        self._link.unsubscribe(self._shared)
        if self._tasks:
            logger.info("draining %d in-flight requests (up to %.1fs)", len(self._tasks), timeout)
            _done, cut = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in cut:
                task.cancel()
            await asyncio.gather(*cut, return_exceptions=True)
        await self._clear_presence()
        await self._link.stop()
        await self._backend.close()
        logger.info("worker %s stopped: %s", self.worker_id, self.stats)

    # ---- taking requests (in paho's callback: decide and hand off, never wait) -----------------------------

    def _on_request(self, message: InboundMessage) -> None:
        self.stats.received += 1
        reply = self._addressed(message)
        if reply is None:
            return
        try:
            if not self._admit(message, reply):
                return
            self.stats.taken_ids.append(reply.request.request_id)
            self._send(reply, EscalationChunk())  # chunk 0: taken, by this worker
            task = asyncio.ensure_future(self._serve(reply))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            key = (self._topics.device_of_escalate(message.topic) or "?", reply.correlation)
            self._running[key] = (task, reply)
            task.add_done_callback(lambda _task: self._running.pop(key, None))
        except Exception as exc:
            # a bug costs this one request, refused so the device never waits; never the worker (paho would
            # only log it and the device would wait for nothing)
            self.stats.failed += 1
            logger.error(
                "request %s on %s failed unexpectedly: %s",
                reply.request.request_id,
                message.topic,
                _trace(exc),
            )
            self._refuse_safely(reply, EdgedError(f"internal error: {type(exc).__name__}"))

    def _on_cancel(self, message: InboundMessage) -> None:
        """A device cancels one of its requests (named by its correlation data; the ACL lets a device publish
        only on its own cancel topic): the task is cancelled, which closes the backend's stream."""
        device = self._topics.device_of_cancel(message.topic)
        running = self._running.get((device or "", message.correlation_data or b""))
        if running is None:
            return  # not ours, already finished, or not taken yet
        task, reply = running
        reply.cancelled = True
        task.cancel()
        logger.info("request %s cancelled by %s", reply.request.request_id, device)

    def _addressed(self, message: InboundMessage) -> _Reply | None:
        """A reply to fill in, or None (dropped) when the request names no reply topic of its own device."""
        reply_to, correlation = message.response_topic or "", message.correlation_data or b""
        why = self._unanswerable(message.topic, reply_to, correlation)
        if why is not None:  # nowhere (allowed) to answer: drop it (topics are not secret; payloads are)
            self.stats.invalid += 1
            logger.warning("dropped a request on %s: %s", message.topic, why)
            return None
        return _Reply(EscalationRequest(), correlation, reply_to, time.monotonic() + 5.0, _EMPTY_JOB)

    def _unanswerable(self, topic: str, reply_to: str, correlation: bytes) -> str | None:
        device = self._topics.device_of_escalate(topic)
        if device is None:
            return "the topic names no device"
        if not reply_to:
            return "no response topic"
        if not self._topics.is_reply_of(device, reply_to):
            expected = self._topics.reply(device, "INSTANCE")
            return f"response topic {reply_to[:200]!r} is not one of {device}'s reply topics ({expected})"
        if not correlation:
            return f"response topic {reply_to!r} but no correlation data"
        if len(correlation) > MAX_CORRELATION_BYTES:  # echoed on every chunk; edged sends 16
            return f"correlation data of {len(correlation)} bytes, at most {MAX_CORRELATION_BYTES}"
        return None

    def _admit(self, message: InboundMessage, reply: _Reply) -> bool:
        """Decode and check the request into `reply`; False when it was dropped or refused."""
        device = self._topics.device_of_escalate(message.topic) or "?"
        now = time.monotonic()
        try:
            if len(message.payload) > self._config.max_request_bytes:
                raise InvalidRequest(
                    "payload",
                    f"{len(message.payload)} bytes, over max_request_bytes {self._config.max_request_bytes}",
                )
            reply.request = decode_request(message.payload)
            check_request_id(reply.request.request_id)
            deadline = self._deadline(reply.request, message.expiry_s, now)
            if deadline <= now:
                self.stats.expired += 1
                logger.info("dropped expired request %s from %s", reply.request.request_id, device)
                return False
            reply.deadline = deadline
            if not self._seen.add_if_new(reply.correlation, reply.deadline, now):
                self.stats.duplicates += 1
                logger.info(
                    "dropped a second delivery of request %s from %s", reply.request.request_id, device
                )
                return False
            reply.job = self._job(reply.request, device, reply.deadline)
            if len(self._tasks) >= self._config.concurrency + self._config.backlog:
                raise Overloaded(f"worker {self.worker_id} has {len(self._tasks)} requests in flight")
        except EdgedError as exc:
            if isinstance(exc, Overloaded):
                self.stats.rejected += 1
            else:
                self.stats.invalid += 1
            self._refuse(reply, exc)
            return False
        return True

    def _deadline(self, request: EscalationRequest, expiry_s: int | None, now: float) -> float:
        """The earlier of the request's absolute deadline and the broker's remaining message expiry, at most
        max_deadline_s from now (a later one is refused: it would hold a slot and a duplicate-check entry)."""
        if request.deadline_unix_ms < 0:
            raise InvalidRequest("deadline_unix_ms", f"{request.deadline_unix_ms} is negative")
        candidates = []
        if request.deadline_unix_ms > 0:
            candidates.append(request.deadline_unix_ms / 1000.0 - self._wall_clock())
        if expiry_s is not None:
            candidates.append(float(expiry_s))
        if not candidates:
            raise InvalidRequest(
                "deadline_unix_ms", "missing (and no message expiry): every request needs one"
            )
        left, limit = min(candidates), self._config.max_deadline_s
        if left > limit:
            field = "deadline_unix_ms" if request.deadline_unix_ms > 0 else "message_expiry_interval"
            value = request.deadline_unix_ms if request.deadline_unix_ms > 0 else expiry_s
            raise InvalidRequest(
                field, f"{value} is {left:.0f} s ahead, more than max_deadline_s {limit:g} s from now"
            )
        return now + left

    def _job(self, request: EscalationRequest, device: str, deadline: float) -> BackendJob:
        check_fields(request, device, self._config.max_tokens_cap)
        params = SamplingParams(
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p or 1.0,
            seed=request.seed if request.HasField("seed") else None,
            stop=tuple(request.stop),
            json_schema=request.json_schema or None,
        )
        messages = tuple(Message(m.role, m.content) for m in request.messages)
        return BackendJob(request.request_id, messages, params, request.model or None, deadline)

    # ---- answering -----------------------------------------------------------------------------------------

    async def _serve(self, reply: _Reply) -> None:
        try:
            async with self._slots:
                if time.monotonic() >= reply.deadline:
                    self.stats.expired += 1
                    return
                async with asyncio.timeout(reply.deadline - time.monotonic()):
                    await self._answer(reply)
            self.stats.answered += 1
        except TimeoutError:
            self.stats.failed += 1
            self._refuse(reply, DeadlineExceeded("the deadline passed while the backend was answering"))
        except EdgedError as exc:
            self.stats.failed += 1
            logger.warning("request %s failed: %s", reply.request.request_id, exc)
            self._refuse(reply, exc)
        except asyncio.CancelledError:
            if reply.cancelled:  # the device asked: it waits for nothing more
                self.stats.cancelled += 1
                return
            self._refuse(reply, CloudUnavailable(f"worker {self.worker_id} is shutting down"))
            raise
        except Exception as exc:
            self.stats.failed += 1
            logger.error("request %s failed unexpectedly: %s", reply.request.request_id, _trace(exc))
            self._refuse_safely(reply, EdgedError(f"internal error: {type(exc).__name__}"))

    async def _answer(self, reply: _Reply) -> None:
        started = time.monotonic()
        stream = reply.request.stream
        held: list[str] = []
        done: BackendDone | None = None
        async with contextlib.aclosing(self._backend.stream(reply.job)) as events:
            async for event in events:
                if isinstance(event, BackendDone):
                    done = event
                elif stream:
                    self._send(reply, EscalationChunk(delta=event))
                else:
                    held.append(event)
        if done is None:
            raise EdgedError("the backend ended without a result")
        final = EscalationChunk(
            delta="".join(held), done=True, finish_reason=done.finish_reason, model=done.model
        )
        final.usage.prompt_tokens = done.usage.prompt_tokens
        final.usage.completion_tokens = done.usage.completion_tokens
        final.backend_ms = (time.monotonic() - started) * 1000.0
        self._send(reply, final)
        logger.debug(
            "answered %s: %d tokens in %.1f ms",
            reply.request.request_id,
            done.usage.completion_tokens,
            final.backend_ms,
        )

    def _refuse(self, reply: _Reply, error: EdgedError) -> None:
        chunk = EscalationChunk(done=True, error=EscalationError(code=_error_code(error), message=str(error)))
        self._send(reply, chunk)

    def _refuse_safely(self, reply: _Reply, error: EdgedError) -> None:
        """`_refuse` after an unexpected error: if even that fails, log it (the device's wait then ends with
        its accept timeout or its deadline)."""
        try:
            self._refuse(reply, error)
        except Exception as exc:
            logger.error("refusal of request %s not sent: %s", reply.request.request_id, _trace(exc))

    def _send(self, reply: _Reply, chunk: EscalationChunk) -> None:
        """Publish the next chunk of `reply`; never waits (a down link loses it: the device gave up too)."""
        chunk.request_id = reply.request.request_id
        chunk.seq = reply.seq
        chunk.worker_id = self.worker_id
        left = math.ceil(reply.deadline - time.monotonic())
        try:
            self._link.publish(
                reply.reply_to,
                chunk.SerializeToString(),
                qos=1,
                correlation_data=reply.correlation,
                expiry_s=left,
            )
        except CloudUnavailable as exc:
            logger.debug("chunk %d of %s not sent: %s", chunk.seq, reply.request.request_id, exc)
        # counted once published or lost with the link; a chunk that raised anything else keeps its seq for the
        # refusal that follows, so the device's sequencer is not left waiting for a gap
        reply.seq += 1

    # ---- presence ------------------------------------------------------------------------------------------

    def _on_link_state(self, state: LinkState) -> None:
        if state.connected and self._taking:
            presence = WorkerPresence(
                worker_id=self.worker_id,
                group=self._config.group,
                backend=self._backend.kind,
                model=self._backend.model,
                concurrency=self._config.concurrency,
            )
            with contextlib.suppress(CloudUnavailable):
                self._link.publish(self._presence_topic, presence.SerializeToString(), qos=1, retain=True)

    async def _clear_presence(self) -> None:
        with contextlib.suppress(CloudUnavailable, TimeoutError):
            ack = self._link.publish(self._presence_topic, b"", qos=1, retain=True)
            async with asyncio.timeout(2.0):
                await ack


_EMPTY_JOB = BackendJob("", (), SamplingParams(max_tokens=1), None, 0.0)


def _trace(exc: BaseException) -> str:
    """An unexpected error as its type and stack of code lines: never its message, which may quote a request."""
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    return f"{type(exc).__name__}\n{frames}".rstrip()


def _error_code(error: EdgedError) -> str:
    if isinstance(error, InvalidRequest):
        return "invalid_argument"
    if isinstance(error, DeadlineExceeded):
        return "deadline_exceeded"
    if isinstance(error, Overloaded):
        return "resource_exhausted"
    if isinstance(error, CloudUnavailable):
        return "unavailable"
    return "internal"
