"""The in-process llama.cpp backend on the real Gemma 3 270M file assembled from its PyPI chunk packages."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from cloud_bridge.backends.base import BackendDone, BackendJob
from cloud_bridge.backends.gguf import GgufBackend, default_model, transcript
from cloud_bridge.config import GgufBackendSettings
from edged.domain import Message, SamplingParams
from edged.errors import InvalidRequest, ModelError, ModelIntegrityError
from tests.brokers import MosquittoBroker
from tests.escalation_parts import MODEL_WAIT_S, bridge_config, request, run_async, start_client, start_worker

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A worker state directory with Gemma assembled once for the module."""
    directory = tmp_path_factory.mktemp("bridge-state")
    default_model(directory / "models")
    return directory


def _job(text: str = "What is the capital of France?", max_tokens: int = 8) -> BackendJob:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return BackendJob("g1", (Message("user", text),), params, None, time.monotonic() + 120)


def test_the_default_model_is_assembled_once_and_verified(state_dir: Path) -> None:
    path = default_model(state_dir / "models")
    assert path == state_dir / "models" / "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size > 200_000_000
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind


def test_a_corrupt_model_file_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"GGUF but not really")
    with pytest.raises(ModelIntegrityError, match="unexpected sha256"):
        default_model(models)


@run_async
async def test_a_missing_model_path_names_the_key(tmp_path: Path) -> None:
    backend = GgufBackend(GgufBackendSettings(model_path=tmp_path / "absent.gguf"), tmp_path)
    with pytest.raises(ModelError, match=r"backend\.model_path '.*absent\.gguf': no such file"):
        await backend.start()


async def _text(events: AsyncIterator[object]) -> tuple[str, BackendDone]:
    parts: list[str] = []
    async for event in events:
        if isinstance(event, BackendDone):
            return "".join(parts), event
        assert isinstance(event, str)
        parts.append(event)
    raise AssertionError("no BackendDone")


@run_async
async def test_gemma_answers_and_a_consumer_that_leaves_stops_its_job(state_dir: Path) -> None:
    backend = GgufBackend(GgufBackendSettings(threads=2, n_ctx=512), state_dir)
    await backend.start()
    try:
        text, done = await _text(backend.stream(_job()))
        assert "Paris" in text
        assert done.model == "gemma-3-270m-q4_k_m"
        assert 0 < done.usage.completion_tokens <= 8
        assert done.usage.prompt_tokens > 5
        async with contextlib.aclosing(backend.stream(_job(max_tokens=64))) as events:
            first = await anext(events)
            assert isinstance(first, str)
        # the engine thread dropped the abandoned job and serves the next one in full
        again, _done = await _text(backend.stream(_job()))
        assert again == text  # greedy
    finally:
        await backend.close()


@pytest.mark.mqtt
@run_async
async def test_an_escalated_answer_from_gemma(
    state_dir: Path, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    config = bridge_config(
        mosquitto.url,
        "w-gemma",
        tmp_path,
        state_dir=str(state_dir),
        backend={"type": "gguf", "threads": 2, "n_ctx": 512},
    )
    worker = await start_worker(config)
    client = await start_client(mosquitto.url)
    try:
        answer = await client.complete(
            request("What is the capital of France?", max_tokens=8), time.monotonic() + MODEL_WAIT_S
        )
        assert "Paris" in answer.text
        assert answer.result.model == "gemma-3-270m-q4_k_m"
        assert answer.result.worker_id == "w-gemma"
    finally:
        await client.stop()
        await worker.stop()


def test_a_base_model_gets_a_question_answer_transcript() -> None:
    messages = (
        Message("system", "Be brief."),
        Message("user", "Capital of France?"),
        Message("assistant", "Paris."),
        Message("user", "And of Italy?"),
    )
    assert transcript(messages) == (
        "Be brief.\n\nQuestion: Capital of France?\nAnswer: Paris.\nQuestion: And of Italy?\nAnswer:"
    )


@run_async
async def test_a_json_schema_constrains_the_answer(state_dir: Path) -> None:
    backend = GgufBackend(GgufBackendSettings(threads=2, n_ctx=512), state_dir)
    await backend.start()
    # maxLength keeps the greedy base model's string short enough to close within max_tokens (unbounded, it
    # once ran on in digits past them, on a build whose arithmetic broke a near-tie the other way)
    capital = {"type": "string", "maxLength": 16}
    schema = {"type": "object", "properties": {"capital": capital}, "required": ["capital"]}
    job = _job("What is the capital of France? Reply in JSON.", max_tokens=40)
    job = BackendJob(
        job.request_id, job.messages, replace(job.params, json_schema=json.dumps(schema)), None, job.deadline
    )
    try:
        text, _done = await _text(backend.stream(job))
        assert isinstance(json.loads(text)["capital"], str)
        bad = BackendJob("b", job.messages, replace(job.params, json_schema="{nope"), None, job.deadline)
        with pytest.raises(InvalidRequest, match="json_schema: not valid JSON"):
            await _text(backend.stream(bad))
    finally:
        await backend.close()
