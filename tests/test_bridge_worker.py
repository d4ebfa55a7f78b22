"""BridgeWorker in process against a real Mosquitto: load sharing, duplicates, expiry, refusals, draining.

Raw requests are published with edged's own link (any MQTT v5 client would do) and replies are checked where
they are delivered: on the reply topic, through a separate subscriber.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from cloud_bridge.backends import create_backend
from cloud_bridge.worker import BridgeWorker
from edged.comms.link import MqttLink
from edged.errors import CloudUnavailable
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest
from tests.brokers import MosquittoBroker
from tests.escalation_parts import (
    WAIT_S,
    bridge_config,
    broker_settings,
    chunks_until_done,
    next_chunk,
    request,
    run_async,
    start_client,
    start_observer,
    start_worker,
    until,
)

pytestmark = [pytest.mark.mqtt]

REPLY = "edged/v1/dev-a/reply/obs"
ESCALATE = "edged/v1/dev-a/escalate"


def _raw(text: str = "hi", *, deadline_in_s: float = 30.0, request_id: str = "r") -> bytes:
    message = request(text)
    message.request_id = request_id
    message.device_id = "dev-a"
    message.deadline_unix_ms = int((time.time() + deadline_in_s) * 1000)
    return message.SerializeToString()


async def _sender(url: str) -> MqttLink:
    link = MqttLink(broker_settings(url), client_id="dev-a")
    await link.start()
    assert await link.wait_up(WAIT_S)
    return link


@run_async
async def test_two_workers_share_the_load(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    slow = {"backend": {"delay_s": 0.2}, "concurrency": 1}
    workers = [await start_worker(bridge_config(mosquitto.url, f"w{i}", tmp_path, **slow)) for i in (1, 2)]
    client = await start_client(mosquitto.url)
    try:
        deadline = time.monotonic() + WAIT_S
        answers = await asyncio.gather(*(client.complete(request(), deadline) for _ in range(8)))
        by_worker = Counter(answer.result.worker_id for answer in answers)
        assert set(by_worker) == {"w1", "w2"}
        assert sum(by_worker.values()) == 8
        assert [w.stats.answered for w in workers] == [by_worker["w1"], by_worker["w2"]]
    finally:
        await client.stop()
        for worker in workers:
            await worker.stop()


@run_async
async def test_a_duplicate_delivery_gives_one_answer(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    try:
        payload = _raw(request_id="twice")
        for _ in range(2):  # what a broker redelivery looks like: same payload, same correlation data
            sender.publish(ESCALATE, payload, correlation_data=b"dup", response_topic=REPLY, expiry_s=30)
        await until(
            lambda: worker.stats.duplicates == 1 and worker.stats.answered == 1, "both deliveries handled"
        )
        sender.publish(ESCALATE, _raw(request_id="marker"), correlation_data=b"mark", response_topic=REPLY)
        seen = await chunks_until_done(replies, b"mark")
        dup_chunks = [chunk for key, chunk in seen if key == b"dup"]
        assert [c.seq for c in dup_chunks] == [0, 1]  # taken, then the one answer
        assert [c.done for c in dup_chunks] == [False, True]
        assert dup_chunks[1].delta == "hello from the cloud"
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


@run_async
async def test_an_expired_request_is_dropped(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    try:
        stale = _raw(request_id="stale", deadline_in_s=-1.0)
        sender.publish(ESCALATE, stale, correlation_data=b"stale", response_topic=REPLY)
        sender.publish(ESCALATE, _raw(request_id="fresh"), correlation_data=b"fresh", response_topic=REPLY)
        seen = await chunks_until_done(replies, b"fresh")
        assert [key for key, _chunk in seen if key == b"stale"] == []
        assert worker.stats.expired == 1
        assert list(worker.stats.taken_ids) == ["fresh"]
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


@run_async
async def test_a_request_without_a_deadline_is_refused(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    try:
        message = request()
        sender.publish(ESCALATE, message.SerializeToString(), correlation_data=b"x", response_topic=REPLY)
        key, chunk = await next_chunk(replies)
        assert (key, chunk.done, chunk.error.code) == (b"x", True, "invalid_argument")
        assert "deadline_unix_ms" in chunk.error.message
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


@run_async
async def test_garbage_and_foreign_reply_topics_never_get_an_answer_elsewhere(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloud_bridge")
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    observer, replies = await start_observer(mosquitto.url, "edged/v1/+/reply/+")
    sender = await _sender(mosquitto.url)
    try:
        # dev-a asks the worker to answer into dev-b's reply topic: dropped, not answered
        foreign = "edged/v1/dev-b/reply/x"
        sender.publish(ESCALATE, _raw(request_id="foreign"), correlation_data=b"f", response_topic=foreign)
        sender.publish(ESCALATE, _raw(request_id="nowhere"), correlation_data=b"n")  # no response topic
        # issue 17 (23): 4 KiB of correlation data was accepted, and would be echoed on every chunk
        sender.publish(ESCALATE, _raw(request_id="bulky"), correlation_data=b"c" * 4096, response_topic=REPLY)
        sender.publish(ESCALATE, b"\xff\x00 not protobuf", correlation_data=b"g", response_topic=REPLY)
        _key, garbage = await next_chunk(replies)
        assert garbage.error.code == "invalid_argument"
        assert "not an EscalationRequest" in garbage.error.message
        # the foreign and the missing reply topic and the bulky correlation data (dropped), the garbage (refused)
        assert worker.stats.invalid == 4
        sender.publish(ESCALATE, _raw(request_id="ok"), correlation_data=b"ok", response_topic=REPLY)
        seen = await chunks_until_done(replies, b"ok")
        assert [key for key, _chunk in seen if key in (b"f", b"n", b"c" * 4096)] == []
        drops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped a request")]
        assert drops == [
            f"dropped a request on {ESCALATE}: response topic {foreign!r} is not one of dev-a's reply "
            "topics (edged/v1/dev-a/reply/INSTANCE)",
            f"dropped a request on {ESCALATE}: no response topic",
            f"dropped a request on {ESCALATE}: correlation data of 4096 bytes, at most 64",
        ]
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


@run_async
async def test_a_deadline_too_far_ahead_is_refused_and_the_worker_keeps_serving(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Without a message expiry, a deadline past 2**32 s once made the reply's expiry overflow in paho: the
    worker failed inside the callback and the device heard nothing."""
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    beyond_mqtt = _raw(request_id="far", deadline_in_s=2.0**32 + 10)
    largest = EscalationRequest.FromString(_raw(request_id="max"))
    largest.deadline_unix_ms = 2**63 - 1
    try:
        sender.publish(ESCALATE, beyond_mqtt, correlation_data=b"far", response_topic=REPLY)
        sender.publish(ESCALATE, largest.SerializeToString(), correlation_data=b"max", response_topic=REPLY)
        # no deadline_unix_ms, the message expiry alone too far ahead
        no_deadline = request().SerializeToString()
        sender.publish(ESCALATE, no_deadline, correlation_data=b"exp", response_topic=REPLY, expiry_s=7200)
        refusals: dict[bytes, EscalationChunk] = {}
        while len(refusals) < 3:
            key, chunk = await next_chunk(replies)
            refusals[key] = chunk
        for key, field in ((b"far", "deadline_unix_ms"), (b"max", "deadline_unix_ms")):
            chunk = refusals[key]
            assert (chunk.seq, chunk.done, chunk.error.code) == (0, True, "invalid_argument")
            assert chunk.error.message.startswith(f"{field}: ")
            assert "more than max_deadline_s 3600 s from now" in chunk.error.message
        assert str(2**63 - 1) in refusals[b"max"].error.message
        # the broker passes on the expiry left (7200 s, or a second less on a slow machine)
        assert re.match(r"message_expiry_interval: 7\d{3} is 7\d{3} s ahead", refusals[b"exp"].error.message)
        # a far deadline with a sane expiry is bounded by the expiry: answered
        sender.publish(ESCALATE, beyond_mqtt, correlation_data=b"ok", response_topic=REPLY, expiry_s=30)
        seen = await chunks_until_done(replies, b"ok")
        assert [chunk.delta for key, chunk in seen if key == b"ok"] == ["", "hello from the cloud"]
        assert (worker.stats.invalid, worker.stats.answered) == (3, 1)
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


class _ClockThatFailsOnce:
    """A wall clock (the worker's seam for clock skew) whose first reading raises an error quoting `text`: what
    an unforeseen library error looks like when its message carries request data."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.readings = 0

    def __call__(self) -> float:
        self.readings += 1
        if self.readings == 1:
            raise RuntimeError(f"cannot read the clock for {self.text!r}")
        return time.time()


@run_async
async def test_an_unexpected_error_is_refused_as_internal_and_the_worker_keeps_serving(
    mosquitto: MosquittoBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "my private question about the merger"
    config = bridge_config(mosquitto.url, "w1", tmp_path)
    clock = _ClockThatFailsOnce(secret)
    worker = BridgeWorker(config, create_backend(config.backend, config.state_dir), wall_clock=clock)
    await worker.start()
    assert await worker.link.wait_up(WAIT_S)
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    try:
        sender.publish(
            ESCALATE, _raw(secret, request_id="bug"), correlation_data=b"bug", response_topic=REPLY
        )
        key, chunk = await next_chunk(replies)
        assert (key, chunk.seq, chunk.done) == (b"bug", 0, True)
        assert (chunk.error.code, chunk.error.message) == ("internal", "internal error: RuntimeError")
        sender.publish(
            ESCALATE, _raw(secret, request_id="next"), correlation_data=b"ok", response_topic=REPLY
        )
        seen = await chunks_until_done(replies, b"ok")
        assert seen[-1][1].delta == "hello from the cloud"
        assert (worker.stats.failed, worker.stats.answered) == (1, 1)
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "request bug on edged/v1/dev-a/escalate failed unexpectedly: RuntimeError" in logged
        assert "private question" not in logged
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()


@run_async
async def test_a_full_backlog_refuses_at_once(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    config = bridge_config(mosquitto.url, "w1", tmp_path, concurrency=1, backlog=0, backend={"delay_s": 30.0})
    worker = await start_worker(config)
    client = await start_client(mosquitto.url)
    try:
        first = asyncio.ensure_future(client.complete(request(), time.monotonic() + 3600))
        await until(lambda: worker.in_flight == 1, "the first request to be taken")
        with pytest.raises(
            CloudUnavailable, match="resource_exhausted: worker w1: worker w1 has 1 requests in flight"
        ):
            await client.complete(request(), time.monotonic() + 3600)
        assert worker.stats.rejected == 1
        first.cancel()
    finally:
        await client.stop()
        await worker.stop(drain_timeout=0)


@run_async
async def test_stopping_drains_in_flight_requests(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 0.3}))
    client = await start_client(mosquitto.url)
    try:
        pending = asyncio.ensure_future(client.complete(request(), time.monotonic() + WAIT_S))
        await until(lambda: worker.in_flight == 1, "the request to be taken")
        await worker.stop(drain_timeout=WAIT_S)
        answer = await pending
        assert answer.text == "hello from the cloud"
        assert worker.stats.answered == 1
    finally:
        await client.stop()


@run_async
async def test_a_drain_past_its_timeout_cuts_requests_with_an_answer(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 30.0}))
    client = await start_client(mosquitto.url)
    try:
        pending = asyncio.ensure_future(client.complete(request(), time.monotonic() + 3600))
        await until(lambda: worker.in_flight == 1, "the request to be taken")
        await worker.stop(drain_timeout=0.1)
        with pytest.raises(CloudUnavailable, match=r"w1 is shutting down|w1 went offline"):
            await pending
    finally:
        await client.stop()


@run_async
async def test_bad_fields_are_refused_naming_the_field_and_limit(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, max_tokens_cap=64))
    observer, replies = await start_observer(mosquitto.url, REPLY)
    sender = await _sender(mosquitto.url)
    cases: dict[bytes, tuple[EscalationRequest, str]] = {}
    for key, field, value, message in [
        (b"1", "max_tokens", 0, "max_tokens: 0 is outside 1..64"),
        (b"2", "temperature", 3.0, "temperature: 3.0 is outside [0, 2]"),
        (b"3", "device_id", "dev-b", "device_id: 'dev-b' does not match the topic's device 'dev-a'"),
    ]:
        bad = EscalationRequest.FromString(_raw())
        setattr(bad, field, value)
        cases[key] = (bad, message)
    no_messages = EscalationRequest.FromString(_raw())
    del no_messages.messages[:]
    cases[b"4"] = (no_messages, "messages: 0 messages, allowed 1..256")
    wrong_role = EscalationRequest.FromString(_raw())
    wrong_role.messages[0].role = "robot"
    cases[b"5"] = (wrong_role, "messages[0].role: 'robot' is not one of")
    for key, field, value, message in [
        (b"6", "request_id", "a b\nforged log line", "request_id: 'a b\\nforged log line' must be 0-128"),
        (b"7", "model", "m" * 300, "model: 300 characters, at most 256"),
        (b"8", "json_schema", "{not json", "json_schema: not valid JSON (9 characters): Expecting"),
        (b"9", "json_schema", "[1, 2]", "json_schema: must be a JSON object, got list"),
        (b"10", "deadline_unix_ms", -5, "deadline_unix_ms: -5 is negative"),
        (b"11", "top_p", 1.5, "top_p: 1.5 is outside (0, 1]"),
        # the daemon's schema bounds, applied by the worker too (issue 17: 12, 13, 18)
        (b"13", "json_schema", "[" * 30000 + "]" * 30000, "json_schema: schema nests 30000 levels deep"),
        (b"14", "json_schema", '{"type":"string","maxLength":30000}', "/maxLength 30000 is outside 0..1000"),
        (
            b"15",
            "json_schema",
            '{"type":"string","minLength":4,"maxLength":1}',
            "/minLength 4 is greater than",
        ),
    ]:
        bad = EscalationRequest.FromString(_raw())
        setattr(bad, field, value)
        cases[key] = (bad, message)
    empty_stop = EscalationRequest.FromString(_raw())
    empty_stop.stop.extend(["\n", ""])
    cases[b"12"] = (empty_stop, "stop[1]: length 0 is outside 1..256")
    try:
        for key, (bad, _message) in cases.items():
            sender.publish(ESCALATE, bad.SerializeToString(), correlation_data=key, response_topic=REPLY)
        errors: dict[bytes, EscalationChunk] = {}
        while len(errors) < len(cases):
            key, chunk = await next_chunk(replies)
            errors[key] = chunk
        for key, (_bad, message) in cases.items():
            assert errors[key].error.code == "invalid_argument"
            assert message in errors[key].error.message
        assert worker.stats.invalid == len(cases)
    finally:
        await sender.stop()
        await observer.stop()
        await worker.stop()
