"""EscalationClient against a real Mosquitto and real BridgeWorkers (sleeping backend, in process)."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest

from edged.comms.link import MqttLink
from edged.domain import Delta
from edged.errors import CloudUnavailable, DeadlineExceeded, InvalidRequest
from edged.escalation.client import CloudRefused, EscalationClient, EscalationResult
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest
from tests.brokers import MosquittoBroker, free_port
from tests.escalation_parts import (
    WAIT_S,
    bridge_config,
    broker_settings,
    request,
    run_async,
    start_client,
    start_observer,
    start_worker,
    until,
)

pytestmark = [pytest.mark.mqtt]


@run_async
async def test_unary_answer_comes_back_from_a_worker(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    client = await start_client(mosquitto.url)
    try:
        answer = await client.complete(request(), time.monotonic() + WAIT_S)
        assert answer.text == "hello from the cloud"
        assert answer.result.worker_id == "w1"
        assert answer.result.model == "sleep"
        assert answer.result.finish_reason == "stop"
        assert answer.result.usage.completion_tokens == 4
        assert answer.result.usage.prompt_tokens == 3
        assert client.stats.answered == 1
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_streamed_answer_arrives_in_pieces_then_a_result(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    client = await start_client(mosquitto.url)
    try:
        events = [event async for event in client.stream(request(stream=True), time.monotonic() + WAIT_S)]
        assert [e.text for e in events if isinstance(e, Delta)] == ["hello", " from", " the", " cloud"]
        assert isinstance(events[-1], EscalationResult)
        assert events[-1].worker_id == "w1"
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    client = await start_client(mosquitto.url)
    try:
        answer = await client.complete(request(max_tokens=2), time.monotonic() + WAIT_S)
        assert (answer.text, answer.result.finish_reason) == ("hello from", "length")
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_a_request_while_the_link_is_down_fails_at_once() -> None:
    client = await _client_without_broker()
    try:
        with pytest.raises(
            CloudUnavailable, match=r"MQTT link to mqtt://127\.0\.0\.1:\d+ is (connecting|disconnected)"
        ):
            await client.complete(request(), time.monotonic() + 3600)
        assert client.link_state().failed_attempts >= 1
    finally:
        await client.stop()


@run_async
async def test_on_sent_is_called_only_for_a_request_handed_to_the_broker(mosquitto: MosquittoBroker) -> None:
    """What the audit's "may have left the device" rests on: a request refused before publishing (link down)
    never calls on_sent; one the broker received does, even when nobody answers it."""
    sent: list[str] = []
    offline = await _client_without_broker()
    online = await start_client(mosquitto.url)
    try:
        for client, name in ((offline, "offline"), (online, "online")):
            events = client.stream(
                request(), time.monotonic() + 3600, on_sent=functools.partial(sent.append, name)
            )
            with pytest.raises(CloudUnavailable):
                async for _event in events:
                    pass
        assert sent == ["online"]  # refused on its PUBACK (no subscriber), after it reached the broker
    finally:
        await offline.stop()
        await online.stop()


async def _client_without_broker() -> EscalationClient:
    client = EscalationClient(broker_settings(f"mqtt://127.0.0.1:{free_port()}"), "dev-a")
    await client.start()
    await until(lambda: client.link_state().failed_attempts >= 1, "a failed connect")
    return client


@run_async
async def test_no_subscribed_worker_fails_on_the_brokers_puback(mosquitto: MosquittoBroker) -> None:
    client = await start_client(mosquitto.url)
    try:
        with pytest.raises(CloudUnavailable, match="no cloud_bridge worker is subscribed"):
            await client.complete(request(), time.monotonic() + 3600)
    finally:
        await client.stop()


@run_async
async def test_a_request_nobody_takes_fails_after_the_accept_timeout(mosquitto: MosquittoBroker) -> None:
    # a subscriber that never answers: the broker delivers, nobody sends chunk 0
    silent, _inbox = await start_observer(mosquitto.url, "$share/silent/edged/v1/+/escalate", "silent")
    client = await start_client(mosquitto.url, accept_timeout_s=0.3)
    try:
        with pytest.raises(CloudUnavailable, match=r"no worker took the request within 0\.3"):
            await client.complete(request(), time.monotonic() + 3600)
    finally:
        await client.stop()
        await silent.stop()


@run_async
async def test_the_deadline_passing_mid_answer_raises_deadline_exceeded(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 30.0}))
    client = await start_client(mosquitto.url)
    try:
        # the client's timer and the worker's (sent with the request) run out at the same moment: either
        # side may say so first, and both name the worker
        deadline_passed = "from w1 passed the deadline|worker w1: the deadline passed"
        with pytest.raises(DeadlineExceeded, match=deadline_passed):
            await client.complete(
                request(), time.monotonic() + 3.0
            )  # chunk 0 comes at once, the answer never
        assert client.in_flight() == 0
    finally:
        await client.stop()
        await worker.stop(drain_timeout=0)


@run_async
async def test_a_worker_refusal_names_the_field(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, max_tokens_cap=16))
    client = await start_client(mosquitto.url)
    try:
        with pytest.raises(CloudRefused) as refused:
            await client.complete(request(max_tokens=32), time.monotonic() + WAIT_S)
        # an InvalidRequest naming the worker's field (INVALID_ARGUMENT for a CLOUD_ONLY caller)
        assert isinstance(refused.value, InvalidRequest)
        assert refused.value.field == "max_tokens"
        assert str(refused.value) == (
            "max_tokens: 32 is outside 1..16 (max_tokens_cap); refused by cloud worker w1"
        )
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_losing_the_link_mid_request_fails_it_at_once(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 30.0}))
    client = await start_client(mosquitto.url)
    try:
        pending = asyncio.ensure_future(client.complete(request(), time.monotonic() + 3600))
        await until(lambda: worker.in_flight == 1, "the worker to take the request")
        mosquitto.stop()
        # either signal may come first: the link's own loss, or the broker publishing the worker's Last Will
        with pytest.raises(CloudUnavailable, match=r"MQTT link (disconnected|connecting)|w1 went offline"):
            await pending
    finally:
        await client.stop()
        await worker.stop(drain_timeout=0)


@run_async
async def test_after_a_broker_restart_the_client_reconnects_and_escalates(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    client = await start_client(mosquitto.url)
    try:
        assert (await client.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"
        mosquitto.stop()
        await until(lambda: not client.is_up(), "the client to notice the broker is gone")
        with pytest.raises(CloudUnavailable, match="MQTT link"):
            await client.complete(request(), time.monotonic() + 3600)
        mosquitto.start()
        await until(lambda: client.is_up() and client.workers_online() == 1, "reconnect and worker presence")
        answer = await client.complete(request(), time.monotonic() + WAIT_S)
        assert answer.text == "hello from the cloud"
        state = client.link_state()
        assert state.connected
        assert state.last_error is None
        assert state.rtt_ms is not None
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_workers_online_follows_presence(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    client = await start_client(mosquitto.url)
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    try:
        await until(lambda: client.workers_online() == 1, "the worker's presence")
        await worker.stop()
        await until(lambda: client.workers_online() == 0, "the worker's presence to be cleared")
    finally:
        await client.stop()


@run_async
async def test_a_shared_link_carries_escalation_beside_other_subscriptions(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path))
    link = MqttLink(broker_settings(mosquitto.url), client_id="dev-a")
    other: list[str] = []
    link.subscribe("fleet/dev-a/#", lambda m: other.append(m.topic))
    client = EscalationClient(link.settings, "dev-a", link=link)
    await client.start()
    await link.start()
    try:
        assert await link.wait_up(WAIT_S)
        assert (await client.complete(request(), time.monotonic() + WAIT_S)).text == "hello from the cloud"
        link.publish("fleet/dev-a/ping", b"1")
        await until(lambda: other == ["fleet/dev-a/ping"], "the other subscription's message")
    finally:
        await client.stop()
        await link.stop()
        await worker.stop()


@run_async
async def test_replies_are_bound_to_the_request_and_the_worker_that_took_it(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """issue 17 (20): with the live correlation data, a replayed chunk of an old exchange replaced the answer, a
    chunk from another worker id could finish it, and a malformed chunk killed the request. All are ignored."""
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 1.0}))
    client = await start_client(mosquitto.url)
    prefix = broker_settings(mosquitto.url).topic_prefix
    tap, replies = await start_observer(mosquitto.url, f"{prefix}/dev-a/reply/+", name="tap")
    request_tap, requests = await start_observer(
        mosquitto.url, f"{prefix}/dev-a/escalate", name="tap-requests"
    )
    try:
        live = request()
        live.request_id = "live-request"
        answer = asyncio.ensure_future(client.complete(live, time.monotonic() + WAIT_S))
        taken = await asyncio.wait_for(replies.get(), WAIT_S)  # chunk 0: the worker took it
        assert taken is not None
        correlation = taken.correlation_data
        forged: list[bytes | EscalationChunk] = [
            b"\xff\xff\xff",  # not an EscalationChunk
            EscalationChunk(request_id="an-old-request", seq=1, delta="REPLAYED", done=True, worker_id="w1"),
            EscalationChunk(request_id="live-request", seq=1, delta="SPOOFED", done=True, worker_id="w-evil"),
            EscalationChunk(request_id="", seq=1, delta="NO ID", done=True, worker_id="w1"),
        ]
        for chunk in forged:
            payload = chunk if isinstance(chunk, bytes) else chunk.SerializeToString()
            assert await tap.publish(taken.topic, payload, correlation_data=correlation) == 0
        result = await answer
        assert (result.text, result.result.worker_id) == ("hello from the cloud", "w1")
        assert client.stats.ignored_chunks == len(forged)

        # Before any worker takes it: a "chunk 0" from a worker that is not online cannot take the request.
        while len(requests):  # the first request's copy
            await requests.get()
        second = asyncio.ensure_future(client.complete(request(), time.monotonic() + WAIT_S))
        sent = await asyncio.wait_for(requests.get(), WAIT_S)
        assert sent is not None
        reply_to = taken.topic
        thief = EscalationChunk(
            request_id=EscalationRequest.FromString(sent.payload).request_id,
            seq=0,
            delta="STOLEN",
            done=True,
            worker_id="w-thief",
        )
        await tap.publish(reply_to, thief.SerializeToString(), correlation_data=sent.correlation_data)
        result = await second
        assert (result.text, result.result.worker_id) == ("hello from the cloud", "w1")
    finally:
        await request_tap.stop()
        await tap.stop()
        await client.stop()
        await worker.stop(drain_timeout=0)


@run_async
async def test_a_cancelled_request_stops_the_worker_and_its_backend(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """issue 17 (14): cancelled cloud streams kept the worker publishing for 13.6 s. A cancel message now reaches
    the worker, which stops the backend and sends nothing more; so does a stopping client."""
    worker = await start_worker(bridge_config(mosquitto.url, "w1", tmp_path, backend={"delay_s": 60.0}))
    client = await start_client(mosquitto.url)
    try:
        for stop_client in (False, True):
            caller = asyncio.ensure_future(client.complete(request(), time.monotonic() + 120.0))
            await until(lambda: worker.in_flight == 1, "the worker took the request")
            if stop_client:
                await client.stop()
            else:
                caller.cancel()
            with pytest.raises((asyncio.CancelledError, CloudUnavailable)):
                await caller
            await until(lambda: worker.in_flight == 0, "the worker stopped answering the cancelled request")
        assert worker.stats.cancelled == 2
        assert worker.stats.answered == 0
    finally:
        await client.stop()
        await worker.stop(drain_timeout=0)
