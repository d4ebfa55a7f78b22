"""HttpApi: the OpenAI-compatible HTTP API (aiohttp, on the daemon's event loop) beside gRPC.

Like the gRPC servicer it only decodes (the body becomes the same GenerateRequest, validated by the same
decode_request), calls the InferencePipeline and encodes; a domain error becomes an OpenAI error body with the
status edged.api.error_map derives from the one gRPC map. A client that disconnects cancels its handler
(handler_cancellation), which closes the pipeline's stream: the engine frees the slot within one token, as on gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from edged.api.convert import MODES, RequestLimits, decode_request
from edged.api.error_map import http_status
from edged.api.http_wire import (
    ChatCompletionBody,
    CompletionBody,
    Envelope,
    error_object,
    parse_body,
    provenance_headers,
)
from edged.api.server import owner_only_files, prepare_socket_path
from edged.config.api import parse_host_port
from edged.config.http import HttpSettings
from edged.domain import Answer, Delta, InferenceRequest, Mode
from edged.errors import ConfigError, EdgedError, InvalidRequest, Overloaded, ShuttingDown
from edged.pipeline.inference import InferencePipeline
from edged.service.snapshot import DaemonStatus

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_ERROR_TYPES |= {404: "not_found_error", 429: "rate_limit_error", 504: "timeout_error"}


def _error_response(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return web.json_response(error_object(message, kind, code, param), status=status)


def domain_error_response(exc: EdgedError) -> web.Response:
    status, code = http_status(exc)
    if code == "internal":
        logger.error("request failed: %s", exc)
    param = exc.field if isinstance(exc, InvalidRequest) else None
    return _error_response(status, str(exc), code, param)


class HttpApi:
    def __init__(
        self,
        settings: HttpSettings,
        socket_mode: int,
        pipeline: InferencePipeline,
        limits: Callable[[], RequestLimits],
        status: Callable[[], DaemonStatus],
    ) -> None:
        self._settings = settings
        self._socket_mode = socket_mode
        self._pipeline = pipeline
        self._limits = limits
        self._status = status
        try:
            self._token = settings.read_token()
        except (OSError, ValueError) as exc:
            raise ConfigError("http", [("http.token_file", str(settings.token_file), str(exc))]) from None
        self.serving = False
        self.in_flight = 0
        self.addresses: list[str] = []
        app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[self._guard])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        # handler_cancellation: a disconnected client cancels its handler (aiohttp >= 3.9 defaults to not)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._runner.setup()
        path = self._settings.socket
        prepare_socket_path(path, "http.socket")
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with owner_only_files():  # bound owner-only, opened up to api.socket_mode before it accepts
                unix.bind(str(path))
        except OSError as exc:
            unix.close()
            raise ConfigError("http", [("http.socket", str(path), f"cannot listen: {exc}")]) from None
        os.chmod(path, self._socket_mode)
        await self._add_site(web.SockSite(self._runner, unix), f"unix:{path}")
        if self._settings.tcp:
            host, port = parse_host_port(self._settings.tcp)
            await self._add_site(web.TCPSite(self._runner, host, port), None)
        logger.info("HTTP API on %s", ", ".join(self.addresses))

    async def _add_site(self, site: web.BaseSite, name: str | None) -> None:
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError("http", [("http", site.name, f"cannot listen: {exc}")]) from None
        if name is None:  # TCP: the bound port (port 0 picks one)
            server: Any = site._server  # aiohttp exposes the bound socket only here
            host, port = server.sockets[0].getsockname()[:2]
            name = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        self.addresses.append(name)

    async def drain(self, grace: float) -> None:
        """Refuse new requests (503), give the running ones `grace` seconds; the rest are cancelled by stop()."""
        self.serving = False
        deadline = time.monotonic() + grace
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.serving = False
        await self._runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            self._settings.socket.unlink()

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bearer token, then the handler; every refusal leaves in OpenAI's error shape."""
        if request.path.startswith("/v1/") and self._token is not None:
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
            if not hmac.compare_digest(sent, self._token):
                return _error_response(401, "a valid bearer token is required", "invalid_api_key")
        try:
            return await handler(request)
        except EdgedError as exc:
            return domain_error_response(exc)
        except web.HTTPException as exc:  # routing (404/405) and body size (413) from aiohttp
            return _error_response(exc.status, exc.reason, exc.reason.lower().replace(" ", "_"))

    # ------------------------------------------------------------------ endpoints

    async def _health(self, request: web.Request) -> web.Response:
        state = self._status().state
        ok = self.serving and state == "serving"
        return web.json_response({"status": state if not ok else "serving"}, status=200 if ok else 503)

    async def _models(self, request: web.Request) -> web.Response:
        models = [m for m in self._status().models if m.loaded]
        data = [{"id": m.id, "object": "model", "created": 0, "owned_by": "edged"} for m in models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, ChatCompletionBody, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, CompletionBody, chat=False)

    async def _generate(
        self, request: web.Request, kind: type[ChatCompletionBody] | type[CompletionBody], *, chat: bool
    ) -> web.StreamResponse:
        if not self.serving:
            raise ShuttingDown("edged is not serving (loading or draining); retry later")
        limit = self._settings.max_concurrent_requests
        if self.in_flight >= limit:  # handlers run on the event loop: the plain counter is exact
            raise Overloaded(
                f"{self.in_flight} requests are in progress and http.max_concurrent_requests is {limit}; "
                "retry later"
            )
        self.in_flight += 1
        try:
            body, decoded = self._decode(kind, await request.read())
            envelope = Envelope(chat, decoded.request_id, decoded.model or self._limits_default())
            if body.stream:
                return await self._stream(request, decoded, envelope, body.include_usage)
            answer = await self._pipeline.answer_whole(decoded)
            return web.json_response(envelope.response(answer), headers=provenance_headers(answer))
        finally:
            self.in_flight -= 1

    def _decode(
        self, kind: type[ChatCompletionBody] | type[CompletionBody], raw: bytes
    ) -> tuple[ChatCompletionBody | CompletionBody, InferenceRequest]:
        mode = Mode.AUTO
        try:
            body = parse_body(kind, raw)
            msg = body.to_proto()
            mode = MODES.get(msg.mode, Mode.AUTO)
            deadline = time.monotonic() + body.timeout if body.timeout is not None else None
            try:
                return body, decode_request(msg, self._limits(), deadline)
            except InvalidRequest as exc:  # name the field as the caller sent it
                field = body.wire_field(exc.field)
                if field == exc.field:
                    raise
                raise InvalidRequest(field, str(exc).removeprefix(f"{exc.field}: ")) from None
        except EdgedError as exc:
            self._pipeline.record_refusal(mode, exc)
            raise

    def _limits_default(self) -> str:
        return self._pipeline.local.default_model

    async def _stream(
        self, request: web.Request, decoded: InferenceRequest, envelope: Envelope, include_usage: bool
    ) -> web.StreamResponse:
        """SSE: the first item is awaited before the headers go out, so a refusal still gets its status."""
        answer = self._pipeline.answer(decoded, streaming=True)
        async with contextlib.aclosing(answer) as items:
            first = await anext(items)  # EdgedError here -> an error response with its status
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Edged-Request-Id": decoded.request_id,
                }
            )
            await response.prepare(request)
            try:
                await self._send_events(response, first, items, envelope, include_usage)
            except EdgedError as exc:  # after the headers: OpenAI's in-stream error event
                status, code = http_status(exc)
                param = exc.field if isinstance(exc, InvalidRequest) else None
                await _event(
                    response, error_object(str(exc), "server_error", code, param) | {"status": status}
                )
            return response

    async def _send_events(
        self,
        response: web.StreamResponse,
        first: Delta | Answer,
        items: AsyncIterator[Delta | Answer],
        envelope: Envelope,
        include_usage: bool,
    ) -> None:
        item: Delta | Answer = first
        is_first = True
        while True:
            if isinstance(item, Answer):
                if envelope.chat and is_first:
                    await _event(response, envelope.chunk("", first=True))
                await _event(response, envelope.chunk("", finish=item))
                if include_usage:
                    await _event(response, envelope.usage_chunk(item))
                await response.write(b"data: [DONE]\n\n")
                return
            await _event(response, envelope.chunk(item.text, first=is_first))
            is_first = False
            item = await anext(items)


async def _event(response: web.StreamResponse, document: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(document, separators=(",", ":")).encode() + b"\n\n")
