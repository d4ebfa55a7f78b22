"""An OpenAI-compatible chat completions server over HTTP, streamed (server-sent events) with httpx.

Works with vLLM, TGI, llama.cpp's server, llama-cpp-python's server, Ollama and hosted providers. httpx errors
are translated here, where they enter: unreachable or overloaded -> CloudUnavailable, refused ->
InvalidRequest, a broken stream -> EngineError.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx

from cloud_bridge.backends.base import BackendDone, BackendEvent, BackendJob
from cloud_bridge.config import OpenAIBackendSettings
from edged.comms.security import read_secret
from edged.domain import Usage
from edged.errors import CloudUnavailable, EdgedError, EngineError, InvalidRequest

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
_ERROR_TYPE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # e.g. invalid_request_error, server_error, 500


class OpenAIBackend:
    kind = "openai"

    def __init__(
        self,
        settings: OpenAIBackendSettings,
        state_dir: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport  # a seam for tests (httpx.MockTransport); real HTTP when None
        self._client: httpx.AsyncClient | None = None
        self.model = settings.model or "server-default"

    @property
    def alive(self) -> bool:
        return True  # an unreachable server fails requests (CloudUnavailable); the worker itself is fine

    async def start(self) -> None:
        headers = {}
        if self._settings.api_key_file is not None:
            key = read_secret(self._settings.api_key_file, "backend.api_key_file")
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(
            max_connections=self._settings.max_connections,
            max_keepalive_connections=self._settings.max_connections,
        )
        self._client = httpx.AsyncClient(
            base_url=self._settings.url,
            headers=headers,
            timeout=httpx.Timeout(self._settings.timeout_s),
            limits=limits,
            transport=self._transport,
        )
        await self._probe()

    async def _probe(self) -> None:
        """Log whether the server answers; a server that comes up later is fine (requests fail until then)."""
        try:
            response = await self._http().get("/models", timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            logger.warning("OpenAI-compatible server at %s is not answering yet: %s", self._settings.url, exc)
            return
        if response.status_code != 200:
            logger.warning("%s/models answered HTTP %d", self._settings.url, response.status_code)
            return
        models = [m.get("id") for m in _json_dict(response.content).get("data", []) if isinstance(m, dict)]
        logger.info(
            "OpenAI-compatible server at %s serves %s", self._settings.url, models or "no listed models"
        )

    async def stream(self, job: BackendJob) -> AsyncGenerator[BackendEvent, None]:
        body = self._body(job)
        model = str(body.get("model") or self.model)
        finish = "stop"
        usage = Usage()
        produced = 0
        try:
            async with self._http().stream("POST", "/chat/completions", json=body) as response:
                if response.status_code != 200:
                    error_body = await response.aread()
                    # error bodies may echo the request (FastAPI's 422 does): only their size and type are
                    # logged, and the error carries the status alone
                    logger.debug(
                        "HTTP %d error body: %d bytes of %s",
                        response.status_code,
                        len(error_body),
                        response.headers.get("content-type", "unknown type")[:80],
                    )
                    raise _status_error(response.status_code, response.reason_phrase)
                async for line in response.aiter_lines():
                    event = _sse_event(line)
                    if event is None:
                        continue
                    if isinstance(event, str):  # "[DONE]"
                        break
                    model = str(event.get("model") or model)
                    usage = _usage(event.get("usage")) or usage
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            produced += 1
                            yield text
                        finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException as exc:
            raise CloudUnavailable(f"{self._settings.url} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise CloudUnavailable(f"{self._settings.url} failed: {type(exc).__name__}: {exc}") from None
        if usage.completion_tokens == 0:
            usage = Usage(usage.prompt_tokens, produced)  # servers without stream usage: count the deltas
        yield BackendDone(finish, model, usage)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise CloudUnavailable("the OpenAI backend is not started")
        return self._client

    def _body(self, job: BackendJob) -> dict[str, Any]:
        params = job.params
        body: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in job.messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        model = self._settings.model or job.model
        if model:
            body["model"] = model
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.json_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json.loads(params.json_schema)},
            }
        if self._settings.stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body


def _sse_event(line: str) -> dict[str, Any] | str | None:
    """One server-sent-events line: a decoded JSON object, "[DONE]", or None for anything else."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return data
    if not data:
        return None
    event = _json_dict(data.encode())
    if not event:
        raise EngineError(f"the server sent a malformed stream event ({len(data)} bytes)")
    if "error" in event:
        # the error's message may quote the prompt: only its type (a short code) and size are logged
        kind = _error_type(event["error"])
        logger.debug("error event: type %s, %d bytes", kind, len(data))
        raise CloudUnavailable(f"the server reported an error ({kind}) in the middle of the stream")
    return event


def _error_type(error: object) -> str:
    """An OpenAI-style error's `type` or `code` when it is a short identifier, else "unknown"."""
    if isinstance(error, dict):
        for key in ("type", "code"):
            value = error.get(key)
            if isinstance(value, str | int) and _ERROR_TYPE.match(str(value)):
                return str(value)
    return "unknown"


def _json_dict(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0))


def _status_error(status: int, reason: str) -> EdgedError:
    detail = f"the server answered HTTP {status} {reason}"
    if status in (400, 404, 413, 422):
        return InvalidRequest("backend", detail)
    return CloudUnavailable(detail)
