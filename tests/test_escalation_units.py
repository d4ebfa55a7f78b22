"""Pure parts of escalation: topics, chunk ordering, backoff, dispatch, broker settings, credential files."""

from __future__ import annotations

import ast
import asyncio
import random
import time
from pathlib import Path

import pytest
from paho.mqtt.client import topic_matches_sub  # the reference for topic_matches
from pydantic import ValidationError

from edged.comms.backoff import Backoff
from edged.comms.dispatch import BoundedInbox, TopicDispatcher, match_filter, topic_matches
from edged.comms.messages import InboundMessage
from edged.comms.security import read_password, tls_context
from edged.config.base import config_error
from edged.config.broker import BrokerSettings
from edged.domain import InferenceRequest, Message, SamplingParams
from edged.errors import CloudUnavailable, ConfigError
from edged.escalation.client import EscalationStats, _Pending
from edged.escalation.cloud_answerer import DEFAULT_CLOUD_TIMEOUT_S, MAX_CLOUD_WAIT_S, cloud_deadline
from edged.escalation.sequencer import ChunkSequencer
from edged.escalation.topics import EscalationTopics
from edged.v1.escalation_pb2 import EscalationChunk
from tests.escalation_parts import run_async

TOPICS = EscalationTopics("edged/v1")


def test_topics_put_the_device_in_one_level() -> None:
    assert TOPICS.escalate("dev-1") == "edged/v1/dev-1/escalate"
    assert TOPICS.reply("dev-1", "ab12") == "edged/v1/dev-1/reply/ab12"
    assert TOPICS.shared_escalate("pool") == "$share/pool/edged/v1/+/escalate"
    assert TOPICS.presence("w1") == "edged/v1/@workers/w1"
    assert TOPICS.device_of_escalate("edged/v1/dev-1/escalate") == "dev-1"
    assert TOPICS.device_of_escalate("edged/v1/dev-1/reply/x") is None
    assert TOPICS.device_of_escalate("other/dev-1/escalate") is None
    assert TOPICS.worker_of_presence("edged/v1/@workers/w1") == "w1"


@pytest.mark.parametrize("device", ["a/b", "+", "#", "", "a b"])
def test_topics_refuse_levels_that_would_escape_acl_patterns(device: str) -> None:
    with pytest.raises(ValueError, match="not a valid topic level"):
        TOPICS.escalate(device)


def test_reply_topic_must_belong_to_the_requesting_device() -> None:
    assert TOPICS.is_reply_of("dev-1", "edged/v1/dev-1/reply/ab12")
    assert not TOPICS.is_reply_of("dev-1", "edged/v1/dev-2/reply/ab12")
    assert not TOPICS.is_reply_of("dev-1", "edged/v1/dev-1/reply/ab/12")
    assert not TOPICS.is_reply_of("dev-1", "edged/v1/dev-1/escalate")


def _chunk(seq: int, delta: str = "", done: bool = False) -> EscalationChunk:
    return EscalationChunk(seq=seq, delta=delta, done=done)


@run_async
async def test_a_cancel_that_lands_with_a_reply_chunk_is_not_lost() -> None:
    """The caller leaves (gRPC cancels the handler) in the same loop turn as the worker's first chunk arrives.
    Python 3.11's asyncio.wait_for returned the chunk and swallowed the cancel: the request then waited for the
    worker's answer (60 s in tests/test_sovereignty_trail.py) with nobody listening and no audit record."""
    pending = _Pending(max_buffered=8)
    pending.request_id = "r1"
    waiter = asyncio.ensure_future(pending.next(time.monotonic() + 30))
    await asyncio.sleep(0)  # it now waits for a chunk
    pending.offer(EscalationChunk(request_id="r1", seq=0, worker_id="w1"), EscalationStats())
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_no_code_waits_with_asyncio_wait_for() -> None:
    """asyncio.wait_for in Python 3.11 drops a cancel that arrives as its awaitable completes; edged waits with
    asyncio.timeout, which does not."""
    root = Path(__file__).resolve().parents[1]
    calls = [
        f"{path.relative_to(root)}:{node.lineno}"
        for package in ("edged", "cloud_bridge")
        for path in sorted((root / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Attribute) and node.attr == "wait_for"
    ]
    assert calls == []


def test_sequencer_reorders_and_drops_duplicates() -> None:
    sequencer = ChunkSequencer(max_held=8)
    assert sequencer.push(_chunk(0)) == [_chunk(0)]
    assert sequencer.push(_chunk(2, "b")) == []
    assert sequencer.push(_chunk(0)) == []
    assert [c.seq for c in sequencer.push(_chunk(1, "a"))] == [1, 2]
    assert sequencer.push(_chunk(2, "b")) == []
    assert [c.seq for c in sequencer.push(_chunk(3, done=True))] == [3]
    assert sequencer.finished
    assert sequencer.push(_chunk(4)) == []
    assert sequencer.duplicates == 3


def test_sequencer_bounds_chunks_waiting_for_a_gap() -> None:
    sequencer = ChunkSequencer(max_held=2)
    sequencer.push(_chunk(1))
    sequencer.push(_chunk(2))
    with pytest.raises(CloudUnavailable, match="chunk 0 never arrived"):
        sequencer.push(_chunk(3))


def test_backoff_doubles_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 4.0, jitter=0.0, rng=random.Random(1))
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_jitter_stays_within_bounds() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(50)]
    assert all(1.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 10


def _message(topic: str) -> InboundMessage:
    return InboundMessage(topic=topic, payload=b"x", qos=1, retain=False)


def test_dispatcher_matches_shared_filters_and_survives_a_failing_handler() -> None:
    dispatcher = TopicDispatcher()
    seen: list[str] = []
    dispatcher.add("$share/g/edged/v1/+/escalate", 1, lambda m: seen.append(m.topic))

    def broken(_message: InboundMessage) -> None:
        raise RuntimeError("boom")

    dispatcher.add("edged/v1/#", 1, broken)
    assert dispatcher.dispatch(_message("edged/v1/d1/escalate")) == 2
    assert seen == ["edged/v1/d1/escalate"]
    assert dispatcher.handler_errors == 1
    assert dispatcher.dispatch(_message("elsewhere")) == 0
    assert dispatcher.unmatched == 1


@run_async
async def test_bounded_inbox_drops_when_full_and_ends_when_closed() -> None:
    inbox = BoundedInbox(maxsize=2)
    for name in ("a", "b", "c"):
        inbox.put(_message(name))
    inbox.close()
    assert [m.topic async for m in inbox] == ["a", "b"]
    assert inbox.dropped == 1


def _problems(raw: dict[str, object]) -> list[tuple[str, object, str]]:
    with pytest.raises(ValidationError) as info:
        BrokerSettings.model_validate(raw)
    return config_error("broker", info.value, prefix="broker").problems


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        ({"url": "http://h:1"}, "broker.url", "scheme must be mqtt:// or mqtts://"),
        ({"url": "mqtt://user:pw@h:1"}, "broker.url", "credentials in the URL are not allowed"),
        ({"url": "mqtt://h:99999"}, "broker.url", "bad port"),
        ({"url": "mqtt://h", "tls_ca_file": "/ca.pem"}, "broker", "is not mqtts://"),
        ({"url": "mqtts://h", "tls_cert_file": "/c.pem"}, "broker", "must be set together"),
        ({"url": "mqtt://h", "password_file": "/p"}, "broker", "username is not"),
        ({"url": "mqtt://h", "reconnect_min_s": 5, "reconnect_max_s": 1}, "broker", "above reconnect_max_s"),
        ({"keepalive_s": 1}, "broker.keepalive_s", "greater than or equal to 5"),
        ({"username": "a/b"}, "broker.username", "should match pattern"),
        ({"colour": "red"}, "broker.colour", "unknown key"),
    ],
)
def test_bad_broker_settings_name_key_and_reason(raw: dict[str, object], key: str, reason: str) -> None:
    problems = _problems(raw)
    assert any(k == key and reason in why for k, _value, why in problems), problems


def test_broker_defaults_ports_by_scheme() -> None:
    assert BrokerSettings(url="mqtt://h").port == 1883
    assert BrokerSettings(url="mqtts://h").port == 8883
    assert BrokerSettings(url="mqtts://h:1234").port == 1234
    assert BrokerSettings(url="mqtts://h").use_tls


def test_password_from_file_and_from_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    settings = BrokerSettings(url="mqtt://h", username="dev", password_file=tmp_path / "pw")
    assert read_password(settings) == "s3cret"
    (tmp_path / "mqtt").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = BrokerSettings(url="mqtt://h", username="dev", password_credential="mqtt")
    assert read_password(settings) == "from-credential"


def test_unreadable_secrets_and_tls_files_are_config_errors(tmp_path: Path) -> None:
    settings = BrokerSettings(url="mqtt://h", username="dev", password_file=tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"broker.password_file = '.*missing': No such file"):
        read_password(settings)
    (tmp_path / "empty").write_text("")
    settings = BrokerSettings(url="mqtt://h", username="dev", password_file=tmp_path / "empty")
    with pytest.raises(ConfigError, match="the file is empty"):
        read_password(settings)
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"broker.tls_ca_file = '.*bad.pem'"):
        tls_context(BrokerSettings(url="mqtts://h", tls_ca_file=tmp_path / "bad.pem"))


@pytest.mark.parametrize(
    ("topic_filter", "topic"),
    [
        ("a/b", "a/b"),
        ("a/+", "a/b"),
        ("a/#", "a"),
        ("a/#", "a/b/c"),
        ("#", "a/b"),
        ("+/+", "a/b"),
        ("a/+/c", "a//c"),
        ("$share/g/a/+", "a/b"),
        ("$SYS/#", "$SYS/x"),
        ("+", "$SYS"),
        ("#", "$SYS/x"),
        ("a/b", "a/b/c"),
        ("a/+", "a"),
        ("a/+", "a/b/c"),
        ("a/b/c", "a/b"),
        ("b/#", "a/b"),
    ],
)
def test_topic_matching_agrees_with_paho(topic_filter: str, topic: str) -> None:
    levels = tuple(match_filter(topic_filter).split("/"))
    assert topic_matches(levels, topic) == topic_matches_sub(match_filter(topic_filter), topic)


def test_cloud_deadline_halves_for_a_fallback_and_is_capped() -> None:
    def request(deadline: float | None) -> InferenceRequest:
        return InferenceRequest(
            "r", (Message("user", "hi"),), SamplingParams(max_tokens=8), deadline=deadline
        )

    now = 1000.0
    assert cloud_deadline(request(None), now, keep_for_local=True) == now + DEFAULT_CLOUD_TIMEOUT_S
    assert cloud_deadline(request(now + 10), now, keep_for_local=True) == now + 5  # half left for the device
    assert cloud_deadline(request(now + 10), now, keep_for_local=False) == now + 10
    # a caller willing to wait two hours still gets a deadline a worker accepts
    assert cloud_deadline(request(now + 7200), now, keep_for_local=False) == now + MAX_CLOUD_WAIT_S
    assert cloud_deadline(request(now + 9000), now, keep_for_local=True) == now + MAX_CLOUD_WAIT_S
