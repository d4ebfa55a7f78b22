"""The OpenAI-compatible HTTP API, end to end: a real daemon with the bundled model, the official `openai` package
(sync, async, streaming) over loopback TCP and over the Unix socket, and raw HTTP for what the SDK hides."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from edged.client import AsyncClient, Client, GenerateOptions, Unreachable
from edged.config import parse_config
from edged.domain import Answer, Delta, Message, Source
from edged.errors import ConfigError, DeadlineExceeded, InvalidRequest, ModelNotFound, NoCloudLink
from edged.v1 import inference_pb2 as pb
from tests.daemon_harness import RunningDaemon, running_daemon

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct-q4_1"
QUESTION = "What is the capital of France?"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def edged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("edged-http")
    token_file = tmp / "token"
    token_file.write_text(TOKEN + "\n")
    http = {
        "enabled": True,
        "socket": str(tmp / "http.sock"),
        "tcp": "127.0.0.1:0",
        "token_file": str(token_file),
    }
    with running_daemon(tmp, {"http": http}) as daemon:
        yield daemon


@pytest.fixture(scope="module")
def client(edged: RunningDaemon) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=edged.openai_base_url(), api_key=TOKEN, max_retries=0, timeout=60) as c:
        yield c


def raw(edged: RunningDaemon, path: str, body: Any, token: str = TOKEN) -> httpx.Response:
    url = edged.openai_base_url().removesuffix("/v1") + path
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(url, content=content, headers=headers, timeout=60)


def chat(client: openai.OpenAI, prompt: str = QUESTION, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], **kwargs
    )


def test_status_shows_both_http_listeners(edged: RunningDaemon) -> None:
    listeners = list(edged.status().http_listeners)
    assert listeners[0] == f"unix:{edged.daemon.config.http.socket}"
    assert listeners[1].startswith("http://127.0.0.1:")


def test_chat_answer_with_usage_provenance_and_headers(edged: RunningDaemon, client: openai.OpenAI) -> None:
    response = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=16, temperature=0
    )
    completion = response.parse()
    assert (completion.choices[0].message.content or "").strip()
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    edged_info = (completion.model_extra or {})["edged"]
    assert edged_info["source"] == "LOCAL"
    assert edged_info["model"] == MODEL
    assert edged_info["device_id"] == "test-device"
    assert edged_info["reasons"][0] == "mode=AUTO"
    assert edged_info["reasons"][-1] == "answered=local"
    assert edged_info["confidence"]["available"] is True
    assert edged_info["timing"]["total_ms"] > 0
    assert response.headers["X-Edged-Source"] == "LOCAL"
    assert response.headers["X-Edged-Model"] == MODEL
    assert completion.id == f"chatcmpl-{edged_info['request_id']}"


def test_the_answer_is_the_grpc_answer(edged: RunningDaemon, client: openai.OpenAI) -> None:
    """The same pipeline: a greedy answer over HTTP is the one gRPC gives for the same messages."""
    grpc_answer = edged.stub.Generate(
        pb.GenerateRequest(prompt=QUESTION, max_tokens=16, temperature=0), timeout=60
    )
    assert chat(client, max_tokens=16, temperature=0).choices[0].message.content == grpc_answer.text


def test_stream_with_usage_ends_with_provenance_and_done(edged: RunningDaemon, client: openai.OpenAI) -> None:
    unary = chat(client, max_tokens=16, temperature=0).choices[0].message.content
    chunks = list(
        chat(client, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == unary
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1
    assert (finish[0].model_extra or {})["edged"]["source"] == "LOCAL"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert (last.model_extra or {})["edged"]["model"] == MODEL


def test_raw_stream_is_sse_ending_in_done(edged: RunningDaemon) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
        "stream": True,
    }
    response = raw(edged, "/v1/chat/completions", body)
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_json_schema_output(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    completion = chat(
        client,
        "Which city is the capital of France? Answer in JSON.",
        max_tokens=48,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
    )
    answer = json.loads(completion.choices[0].message.content or "")
    assert set(answer) == {"city"}
    assert isinstance(answer["city"], str)


def test_json_object_output(client: openai.OpenAI) -> None:
    completion = chat(
        client, 'Give a JSON object with a key "a".', max_tokens=128, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_completions_and_models(client: openai.OpenAI) -> None:
    completion = client.completions.create(model=MODEL, prompt=QUESTION, max_tokens=16, temperature=0)
    assert completion.choices[0].text.strip()
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model=MODEL, prompt=QUESTION, max_tokens=16, temperature=0, stream=True
        )
        if c.choices
    )
    assert streamed == completion.choices[0].text
    assert [m.id for m in client.models.list()] == [MODEL]


def test_edged_controls_through_extra_body(client: openai.OpenAI) -> None:
    completion = chat(
        client,
        max_tokens=8,
        extra_body={"mode": "prefer-cloud", "data_classes": ["contact"], "router_threshold": 0.5},
    )
    info = (completion.model_extra or {})["edged"]
    assert "contact" in info["data_classes"]
    assert info["source"] == "LOCAL"
    assert info["degraded"] is True
    assert "mode=PREFER_CLOUD" in info["reasons"]


def test_async_openai_client(edged: RunningDaemon) -> None:
    async def ask_twice() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=edged.openai_base_url(), api_key=TOKEN, max_retries=0) as c:
            messages: Any = [{"role": "user", "content": QUESTION}]
            one = await c.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=16, temperature=0
            )
            stream = await c.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=16, temperature=0, stream=True
            )
            parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
            return one.choices[0].message.content or "", "".join(parts)

    unary, streamed = asyncio.run(ask_twice())
    assert unary.strip()
    assert streamed == unary


def test_over_the_unix_socket(edged: RunningDaemon) -> None:
    transport = httpx.HTTPTransport(uds=str(edged.daemon.config.http.socket))
    with (
        httpx.Client(transport=transport) as http,
        openai.OpenAI(base_url="http://edged/v1", api_key=TOKEN, http_client=http, max_retries=0) as c,
    ):
        completion = c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
        )
    assert completion.choices[0].message.content
    mode = edged.daemon.config.http.socket.stat().st_mode & 0o777
    assert mode == edged.daemon.config.api.socket_mode  # opened up to api.socket_mode, not the umask's


BAD_REQUESTS: list[tuple[dict[str, Any], int, str | None, str]] = [
    ({"messages": []}, 400, "messages", "empty"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0].role", "robot"),
    ({"messages": [{"role": "user", "content": " "}]}, 400, "messages[0].content", "empty"),
    ({"max_tokens": 0}, 400, "max_tokens", "1..256"),
    ({"max_tokens": 100000}, 400, "max_tokens", "1..256"),
    ({"max_tokens": None, "max_completion_tokens": 100000}, 400, "max_completion_tokens", "1..256"),
    ({"max_tokens": 8, "max_completion_tokens": 9}, 400, "max_completion_tokens", "set one"),
    ({"stop": 5}, 400, "stop", "5"),
    ({"temperature": 3.0}, 400, "temperature", "0..2"),
    ({"top_p": 0.0}, 400, "top_p", "(0, 1]"),
    ({"stop": [""]}, 400, "stop[0]", "1..64"),
    ({"seed": -1}, 400, "seed", "greater than or equal to 0"),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
            }
        },
        400,
        "response_format.json_schema.schema",
        "nonsense",
    ),
    ({"router_threshold": 1.5}, 400, "router_threshold", "0..1"),
    ({"mode": "sideways"}, 400, "mode", "sideways"),
    ({"request_id": "bad id"}, 400, "request_id", "bad id"),
    ({"model": "no-such-model"}, 404, None, "no-such-model"),
    ({"mode": "cloud-only"}, 400, None, "broker"),
    ({"n": 2}, 400, "n", "does not support"),
    ({"logprobs": True}, 400, "logprobs", "does not support"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", "does not support"),
    ({"temprature": 0.5}, 400, "temprature", "not a field"),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        400,
        "messages[0].content",
        "image_url",
    ),
]


@pytest.mark.parametrize(("fields", "status", "param", "mentions"), BAD_REQUESTS)
def test_bad_input_gets_an_openai_error_naming_the_field_and_the_next_request_is_served(
    edged: RunningDaemon,
    client: openai.OpenAI,
    fields: dict[str, Any],
    status: int,
    param: str | None,
    mentions: str,
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4} | fields
    response = raw(edged, "/v1/chat/completions", body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
        assert error["message"].startswith(param)
    assert mentions in error["message"]
    assert chat(client, "Say hi.", max_tokens=4).choices[0].message.content


def test_the_sdk_raises_its_typed_errors(client: openai.OpenAI, edged: RunningDaemon) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        chat(client, max_tokens=100000)
    assert bad.value.param == "max_tokens"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with (
        openai.OpenAI(base_url=edged.openai_base_url(), api_key="wrong", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        chat(wrong, max_tokens=4)


def test_malformed_and_oversized_bodies(edged: RunningDaemon) -> None:
    broken = raw(edged, "/v1/chat/completions", b"{not json")
    assert broken.status_code == 400
    assert broken.json()["error"]["param"] == "body"
    huge = raw(edged, "/v1/chat/completions", b"x" * (5 * 1024 * 1024))
    assert huge.status_code == 413
    assert "error" in huge.json()


def test_deadline_is_504_and_frees_the_slot(edged: RunningDaemon) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Write a long essay about rivers."}],
        "max_tokens": 256,
        "timeout": 0.3,
    }
    response = raw(edged, "/v1/chat/completions", body)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert edged.wait_idle().slots_busy == 0


def test_a_client_that_closes_mid_stream_frees_its_slot(edged: RunningDaemon, client: openai.OpenAI) -> None:
    stream = chat(client, "Write a long essay about mountains.", max_tokens=256, stream=True)
    next(iter(stream))
    assert edged.status().slots_busy == 1
    stream.close()
    assert edged.wait_idle().slots_busy == 0
    assert chat(client, "Say hi.", max_tokens=4).choices[0].message.content


def test_health_needs_no_token(edged: RunningDaemon) -> None:
    response = httpx.get(edged.openai_base_url().removesuffix("/v1") + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "serving"}


def test_non_loopback_tcp_is_refused() -> None:
    host = "192.0.2.1"  # TEST-NET-1: never loopback (nothing is bound by validating the config)
    with pytest.raises(ConfigError) as info:
        parse_config({"http": {"enabled": True, "tcp": f"{host}:8080"}})
    assert "http.tcp" in str(info.value)


# ----------------------------------------------------------------------------- edged.client, same daemon


def test_client_unary_and_stream_give_typed_results(edged: RunningDaemon) -> None:
    with Client(edged.socket) as c:
        answer = c.generate(QUESTION, max_tokens=16, temperature=0)
        items = list(c.stream(QUESTION, max_tokens=16, temperature=0))
        status = c.status()
    assert isinstance(answer, Answer)
    assert answer.text.strip()
    assert answer.provenance.source is Source.LOCAL
    assert answer.provenance.model == MODEL
    assert answer.provenance.reasons[-1] == "answered=local"
    assert 0 < answer.usage.completion_tokens <= 16
    assert 0 < answer.timing.time_to_first_token_ms <= answer.timing.total_ms
    assert all(isinstance(item, Delta) for item in items[:-1])
    last = items[-1]
    assert isinstance(last, Answer)
    assert last.text == answer.text == "".join(i.text for i in items[:-1] if isinstance(i, Delta))
    assert status.state == "serving"


def test_client_messages_schema_and_options(edged: RunningDaemon) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with Client(edged.socket) as c:
        answer = c.generate(
            messages=[Message("system", "Answer in JSON."), Message("user", "Pick a number.")],
            options=GenerateOptions(max_tokens=32, json_schema=schema, mode="prefer-local", seed=3),
        )
    assert isinstance(json.loads(answer.text)["n"], int)
    assert "mode=PREFER_LOCAL" in answer.provenance.reasons


def test_client_errors_are_domain_errors(edged: RunningDaemon, tmp_path: Path) -> None:
    with Client(edged.socket) as c:
        with pytest.raises(InvalidRequest) as bad:
            c.generate("hi", max_tokens=100000)
        assert bad.value.field == "max_tokens"
        assert "1..256" in str(bad.value)
        with pytest.raises(ModelNotFound):
            c.generate("hi", model="nope")
        with pytest.raises(NoCloudLink):
            c.generate("hi", mode="cloud-only")
        with pytest.raises(DeadlineExceeded):
            c.generate("Write a long essay about rivers.", max_tokens=256, timeout=0.3)
        with pytest.raises(InvalidRequest):
            c.generate("hi", mode="sideways")
        assert c.generate("Say hi.", max_tokens=4).text
    with Client(tmp_path / "nobody.sock") as nobody, pytest.raises(Unreachable):
        nobody.generate("hi", timeout=5)
    edged.wait_idle()


def test_client_leaving_a_stream_early_frees_the_slot(edged: RunningDaemon) -> None:
    with Client(edged.socket) as c:
        items = c.stream("Write a long essay about mountains.", max_tokens=256)
        assert isinstance(next(items), Delta)
        assert edged.status().slots_busy == 1
        items.close()  # what leaving a for loop does when the iterator is collected
        assert edged.wait_idle().slots_busy == 0


def test_async_client(edged: RunningDaemon) -> None:
    async def use() -> tuple[Answer, list[Delta | Answer]]:
        async with AsyncClient(edged.socket) as c:
            answer = await c.generate(QUESTION, max_tokens=16, temperature=0)
            items = [item async for item in c.stream(QUESTION, max_tokens=16, temperature=0)]
            return answer, items

    answer, items = asyncio.run(use())
    last = items[-1]
    assert isinstance(last, Answer)
    assert last.text == answer.text
    assert last.provenance.model == MODEL
