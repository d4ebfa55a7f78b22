"""Hypothesis strategies for GenerateRequests and JSON Schemas, and the rule every answer to them must follow.

Shared by tests/test_faults_fuzz.py (the deterministic suite) and bench/faults.py (the counts). Requests are
valid-looking as often as not: a fuzzer that only sends refused requests never reaches the generation path.
Generation is kept tiny (max_tokens at most 4 when it is valid) so a hundred requests take seconds.
"""

from __future__ import annotations

import json
import queue
import random
import re
from dataclasses import dataclass
from typing import Any

import grpc
import paho.mqtt.client as paho
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes

from edged.comms.wire import new_properties
from edged.v1 import inference_pb2 as pb
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest

MODEL = "smollm2-135m-instruct-q4_1"
MODES = list(pb.Mode.values())
FINISH_REASONS = {"stop", "length", "low_confidence", "repetition"}
# What an INVALID_ARGUMENT's details must start with: the field it refuses (edged.errors.InvalidRequest).
FIELD = re.compile(
    r"^(prompt|messages(\[\d+\]\.(role|content))?|max_tokens|temperature|top_p|seed|stop(\[\d+\])?|model"
    r"|json_schema|mode|sensitive|data_classes(\[\d+\])?|router_threshold|request_id|request): "
)

_text = st.text(max_size=24)
_wordy = st.sampled_from(["Hi", "What is 2+2?", "Name a colour.", "   ", "", "\x00", "é🙂", "Say OK"])
_float32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


def _near(low: float, high: float) -> st.SearchStrategy[float]:
    """Mostly inside [low, high], sometimes just outside it or not a number at all."""
    return st.one_of(
        st.floats(low, high, width=32),
        st.sampled_from([low, high, low - 0.001, high + 0.001, -0.0]),
        _float32,
    )


_message = st.builds(
    pb.ChatMessage,
    role=st.sampled_from(["user", "user", "system", "assistant", "tool", "", "USER"]),
    content=st.one_of(_wordy, _text),
)
_request_id = st.one_of(
    st.just(""),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,16}", fullmatch=True),
    st.sampled_from(["a" * 128, "a" * 129, "bad id", "é", "../x"]),
)
SMALL_SCHEMAS = [
    "",
    '{"type": "integer"}',
    '{"type": "string", "maxLength": 3}',
    '{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}',
    '{"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2}',
    "not json",
    "[]",
    "null",
    '{"type": "string", "minLength": 4, "maxLength": 2}',
]


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    """Any GenerateRequest field that reaches the generation path, valid-looking as often as not."""
    request = pb.GenerateRequest()
    shape = draw(st.sampled_from(["prompt", "prompt", "messages", "both", "neither", "long"]))
    if shape in ("prompt", "both"):
        request.prompt = draw(st.one_of(_wordy, _text))
    if shape in ("messages", "both"):
        request.messages.extend(draw(st.lists(_message, min_size=0, max_size=4)))
    if shape == "long":  # more prompt tokens than the context holds: refused naming both numbers
        request.prompt = "word " * draw(st.integers(100, 700))
    max_tokens = draw(st.one_of(st.none(), st.integers(1, 4), st.sampled_from([0, -1, 5000, 2**31 - 1])))
    if max_tokens is not None:
        request.max_tokens = max_tokens
    for name, strategy in (("temperature", _near(0.0, 2.0)), ("top_p", _near(0.0, 1.0))):
        value = draw(st.one_of(st.none(), strategy))
        if value is not None:
            setattr(request, name, value)
    seed = draw(st.one_of(st.none(), st.integers(0, 2**32 - 1)))
    if seed is not None:
        request.seed = seed
    request.stop.extend(draw(st.lists(st.one_of(_text, st.just("x" * 65)), max_size=9)))
    request.model = draw(st.sampled_from(["", "", MODEL, "no-such-model", "x" * 300]))
    request.json_schema = draw(st.sampled_from([*SMALL_SCHEMAS, "", "", ""]))
    request.mode = draw(
        st.sampled_from([*MODES, pb.Mode.LOCAL_ONLY, pb.Mode.ValueType(99)])
    )  # unknown number
    request.sensitive = draw(st.booleans())
    request.data_classes.extend(draw(st.lists(st.one_of(_text, st.just("pii")), max_size=3)))
    threshold = draw(st.one_of(st.none(), _near(0.0, 1.0)))
    if threshold is not None:
        request.router_threshold = threshold
    request.request_id = draw(_request_id)
    return request


# ---- JSON Schemas for the grammar converter ----------------------------------------------------------------

_count = st.one_of(
    st.integers(0, 12),
    st.sampled_from([-1, 999, 1000, 1001, 5000, 30000, 100000, 10_000_000, 2**63]),
    st.sampled_from([2.5, True, "3", None]),
)
_COUNTS = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems")}


@st.composite
def _bounded(draw: st.DrawFn, kind: str, base: dict[str, Any]) -> dict[str, Any]:
    for key in _COUNTS.get(kind, ()):
        if draw(st.booleans()):
            base[key] = draw(_count)
    return base


_pattern = st.one_of(
    st.sampled_from(["^[a-z]+$", "^a{2,3}$", "^(ab)*$", "^a{0,50000}$", "^((((a))))$", "[", "^a{1001}$"]),
    st.integers(1, 40).map(lambda n: "^" + "(" * n + "a" + ")" * n + "$"),
)
_leaf: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.sampled_from(["integer", "number", "boolean", "null"]).map(lambda t: {"type": t}),
    st.builds(dict, type=st.just("string")).flatmap(lambda d: _bounded("string", d)),
    st.builds(dict, type=st.just("string"), pattern=_pattern),
    st.builds(dict, enum=st.lists(st.one_of(st.integers(), st.text(max_size=5)), min_size=1, max_size=4)),
    st.builds(dict, const=st.text(max_size=5)),
    st.builds(dict, type=st.sampled_from(["strnig", "", "object"]), format=st.sampled_from(["date", "x"])),
)


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=6)
    return st.one_of(
        st.builds(dict, type=st.just("array"), items=children).flatmap(lambda d: _bounded("array", d)),
        st.builds(
            dict,
            type=st.just("object"),
            properties=st.dictionaries(names, children, max_size=4),
            required=st.lists(names, max_size=3),
            additionalProperties=st.booleans(),
        ),
        st.builds(dict, anyOf=st.lists(children, min_size=1, max_size=3)),
        st.builds(dict, allOf=st.lists(children, min_size=1, max_size=2)),
        st.builds(dict, type=st.just("array"), prefixItems=st.lists(children, max_size=3)),
    )


def _nested(depth: int) -> str:
    return '{"type": "array", "items": ' * depth + '{"type": "integer"}' + "}" * depth


_odd_text = st.one_of(
    st.integers(1, 40000).map(lambda n: "[" * n + "]" * n),  # deep brackets (40000: past the 64 KiB limit)
    st.integers(1, 60).map(_nested),  # deep but meaningful nesting
    st.sampled_from(
        ["{", "", "true", '"x"', "[1, 2]", '{"$ref": "#/$defs/x"}', '{"type": ["string", "null"]}']
    ),
    st.integers(1, 2000).map(lambda n: json.dumps({"enum": list(range(n))})),  # wide
)


def json_schemas() -> st.SearchStrategy[str]:
    """Schema text: trees of nesting, repetition counts and contradictions, or raw odd text."""
    trees = st.recursive(_leaf, _extend, max_leaves=12).map(json.dumps)
    return st.one_of(trees, trees, _odd_text)


# ---- what an answer must be ----------------------------------------------------------------------------------


def call(
    stub: Any, request: pb.GenerateRequest, streamed: bool, timeout: float
) -> tuple[pb.GenerateResponse | None, grpc.RpcError | None]:
    """One Generate or GenerateStream call: the whole answer (a stream's last chunk as a response) or its error."""
    try:
        if not streamed:
            return stub.Generate(request, timeout=timeout), None
        chunks = list(stub.GenerateStream(request, timeout=timeout))
    except grpc.RpcError as error:
        return None, error
    done = [chunk for chunk in chunks if chunk.done]
    if len(done) != 1 or not chunks[-1].done:
        return pb.GenerateResponse(finish_reason=f"a stream of {len(chunks)} chunks, {len(done)} done"), None
    response = pb.GenerateResponse(text="".join(c.delta for c in chunks), finish_reason=done[0].finish_reason)
    response.usage.CopyFrom(done[0].usage)
    return response, None


@dataclass(frozen=True)
class Verdict:
    """One request's outcome: `problem` is None when the daemon answered as it must."""

    outcome: str  # "ok" or the status code's name
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def judge_answer(
    request: pb.GenerateRequest, response: pb.GenerateResponse | None, error: grpc.RpcError | None
) -> Verdict:
    """An answer (finished, within max_tokens) or a refusal that names its field; never anything else."""
    if error is None:
        assert response is not None
        return _judge_response(request, response)
    code, details = error.code(), str(error.details())
    allowed = {
        grpc.StatusCode.INVALID_ARGUMENT: FIELD.match(details) is not None,
        grpc.StatusCode.NOT_FOUND: bool(request.model) and details.startswith("model: "),
        # no broker in the fuzzed daemon: a cloud mode that must leave the device is refused as such
        grpc.StatusCode.FAILED_PRECONDITION: request.mode in (pb.Mode.CLOUD_ONLY, pb.Mode.PREFER_CLOUD),
        grpc.StatusCode.PERMISSION_DENIED: request.sensitive or bool(request.data_classes),
    }
    if allowed.get(code, False):
        return Verdict(code.name)
    return Verdict(code.name, f"{code.name}: {details[:300]}")


def _judge_response(request: pb.GenerateRequest, response: pb.GenerateResponse) -> Verdict:
    if response.finish_reason not in FINISH_REASONS:
        return Verdict("ok", f"finish_reason {response.finish_reason!r}")
    limit = request.max_tokens if request.HasField("max_tokens") else None
    if limit is not None and response.usage.completion_tokens > limit:
        return Verdict("ok", f"{response.usage.completion_tokens} tokens for max_tokens {limit}")
    return Verdict("ok")


def judge_schema(response: pb.GenerateResponse | None, error: grpc.RpcError | None) -> Verdict:
    """A schema either works or is refused with INVALID_ARGUMENT naming `json_schema`."""
    if error is None:
        return Verdict("ok")
    code, details = error.code(), str(error.details())
    if code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("json_schema: "):
        return Verdict(code.name)
    return Verdict(code.name, f"{code.name}: {details[:300]}")


# ---- MQTT: what a broken or hostile publisher sends ------------------------------------------------------------


def garbage_payloads() -> list[bytes]:
    """What an unauthenticated or broken publisher could send: a fixed list, so the suite is deterministic."""
    noise = random.Random(17)
    request = EscalationRequest(request_id="r1", max_tokens=4, stream=True).SerializeToString()
    return [
        b"",
        b"\x00",
        b"\xff" * 64,
        noise.randbytes(512),
        noise.randbytes(200 * 1024),
        b"{}",
        b"null",
        b'{"signed": ',
        b'{"signed": ' + b"[" * 30000 + b"]" * 30000 + b', "signature": ""}',
        request[: len(request) // 2],  # a truncated EscalationRequest
        request,  # a real one, but sent to every topic
        EscalationChunk(request_id="r1", seq=0, done=True, worker_id="w-stranger").SerializeToString(),
    ]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    correlation: bytes | None
    reply_to: str | None


class RawClient:
    """A plain paho MQTT v5 client on loopback: publishes exactly the bytes and properties it is given, and
    collects what its subscriptions deliver (paho's callback thread only puts into a queue)."""

    def __init__(self, port: int, client_id: str = "fuzz-publisher") -> None:
        self.received: queue.Queue[Received] = queue.Queue()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id, protocol=paho.MQTTv5)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _client: object, _userdata: object, message: Any) -> None:
        properties = getattr(message, "properties", None)
        self.received.put(
            Received(
                message.topic,
                bytes(message.payload),
                getattr(properties, "CorrelationData", None),
                getattr(properties, "ResponseTopic", None),
            )
        )

    def subscribe(self, topic_filter: str) -> None:
        self._client.subscribe(topic_filter, qos=1)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        correlation: bytes | None = None,
        reply_to: str | None = None,
        retain: bool = False,
        timeout: float = 20.0,
    ) -> None:
        properties = new_properties(PacketTypes.PUBLISH)
        if correlation is not None:
            properties.CorrelationData = correlation
        if reply_to is not None:
            properties.ResponseTopic = reply_to
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise RuntimeError(f"the broker did not take a publish on {topic}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
