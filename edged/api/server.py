"""ApiServer: the grpc.aio server with its listeners (Unix socket, optional loopback TCP), health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # grpc-stubs lacks aio
from grpc_reflection.v1alpha import reflection

from edged.api.error_map import status_code
from edged.api.servicer import InferenceServicer, MalformedRequest
from edged.config.api import ApiSettings
from edged.errors import ConfigError, ShuttingDown
from edged.v1 import inference_pb2 as pb

logger = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Inference"].full_name


def _safe_parser(cls: type[Message]) -> Callable[[bytes], Message | MalformedRequest]:
    """Parse request bytes; a malformed message reaches the handler as MalformedRequest (-> INVALID_ARGUMENT)."""

    def parse(data: bytes) -> Message | MalformedRequest:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, UnicodeDecodeError) as exc:
            return MalformedRequest(cls.DESCRIPTOR.full_name, str(exc) or type(exc).__name__)

    return parse


Context = grpc.aio.ServicerContext[Any, Any]
UnaryHandler = Callable[[Any, Context], Awaitable[Any]]
StreamHandler = Callable[[Any, Context], AsyncIterator[Any]]

# Health checks and reflection stay answerable when the Inference service is at its limit.
_HEADROOM_RPCS = 16
# At shutdown: how long the calls edged cuts may take to send their status before gRPC cancels what is left.
_CUT_S = 1.0


class RpcLimit:
    """At most `limit` Generate/GenerateStream RPCs at once (GetStatus and health are not counted); one more is
    refused with RESOURCE_EXHAUSTED naming the limit. At shutdown, `cut()` ends the calls still running with
    UNAVAILABLE and edged's reason, before gRPC would cancel them with its own "Cancelling all calls".

    All handlers run on the server's event loop, so a plain counter is exact. gRPC's own
    maximum_concurrent_rpcs (set `_HEADROOM_RPCS` higher) stays as a backstop; its refusal names no limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        # The tasks running the counted calls, each with whether it now waits inside edged's handler (True) or
        # inside gRPC, sending what the handler yielded (False).
        self._calls: dict[asyncio.Task[Any], bool] = {}
        self._cut: ShuttingDown | None = None  # set by cut(): why the running calls are ended

    async def _admit(self, context: Context) -> None:
        if self.active >= self.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.active} requests are in progress and api.max_concurrent_rpcs is {self.limit}; "
                "retry later",
            )
        self.active += 1
        task = asyncio.current_task()
        if task is not None:
            self._calls[task] = True

    def _leave(self) -> None:
        self.active -= 1
        task = asyncio.current_task()
        if task is not None:
            self._calls.pop(task, None)

    def _waiting_in_handler(self, inside: bool) -> None:
        task = asyncio.current_task()
        if task is not None and task in self._calls:
            self._calls[task] = inside

    async def _abort_if_cut(self, context: Context) -> None:
        """End the call with cut()'s status if cut() ran; otherwise (a cancel) the caller went away."""
        if self._cut is None:
            return
        await context.abort(status_code(self._cut), str(self._cut))

    async def finished(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the running calls to end by themselves."""
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=timeout_s)

    async def cut(self, reason: ShuttingDown, timeout_s: float) -> None:
        """End every call still running with UNAVAILABLE and `reason` (waiting at most `timeout_s`)."""
        self._cut = reason
        calls = set(self._calls)
        for task, inside in self._calls.items():
            # A cancel delivered while gRPC sends a streamed message lands in gRPC's code, which drops the
            # call silently (it is then cancelled with gRPC's own words); such a call checks the cut itself
            # when gRPC asks it for the next message.
            if inside:
                task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=timeout_s)

    def unary(self, handler: UnaryHandler) -> UnaryHandler:
        async def limited(request: Any, context: Context) -> Any:
            await self._admit(context)
            try:
                return await handler(request, context)
            except asyncio.CancelledError:
                await self._abort_if_cut(context)
                raise
            finally:
                self._leave()

        return limited

    def stream(self, handler: StreamHandler) -> StreamHandler:
        async def limited(request: Any, context: Context) -> AsyncIterator[Any]:
            await self._admit(context)
            try:
                async for item in handler(request, context):
                    self._waiting_in_handler(False)
                    yield item
                    await self._abort_if_cut(context)
                    self._waiting_in_handler(True)
            except asyncio.CancelledError:
                await self._abort_if_cut(context)
                raise
            finally:
                self._leave()

        return limited


def _handlers(servicer: InferenceServicer, limit: RpcLimit) -> grpc.GenericRpcHandler[Any, Any]:
    serialize: Callable[[Any], bytes] = lambda message: message.SerializeToString()  # noqa: E731
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Generate": grpc.unary_unary_rpc_method_handler(
                limit.unary(servicer.Generate),
                request_deserializer=_safe_parser(pb.GenerateRequest),
                response_serializer=serialize,
            ),
            "GenerateStream": grpc.unary_stream_rpc_method_handler(
                limit.stream(servicer.GenerateStream),
                request_deserializer=_safe_parser(pb.GenerateRequest),
                response_serializer=serialize,
            ),
            "GetStatus": grpc.unary_unary_rpc_method_handler(
                servicer.GetStatus,  # not counted: status is wanted exactly when the limit is reached
                request_deserializer=_safe_parser(pb.GetStatusRequest),
                response_serializer=serialize,
            ),
        },
    )


class ApiServer:
    def __init__(self, settings: ApiSettings, servicer: InferenceServicer) -> None:
        self._settings = settings
        self._health = health_aio.HealthServicer()
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs + _HEADROOM_RPCS,
        )
        self.limit = RpcLimit(settings.max_concurrent_rpcs)
        self._server.add_generic_rpc_handlers((_handlers(servicer, self.limit),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._server,
        )
        self.addresses: list[str] = []

    async def start(self) -> None:
        """Bind every listener (NOT_SERVING until set_serving(True)) and start accepting RPCs."""
        await self.set_serving(False)
        socket_path = self._settings.socket
        prepare_socket_path(socket_path)
        with owner_only_files():
            self._bind(f"unix:{socket_path}")
        os.chmod(socket_path, self._settings.socket_mode)
        if self._settings.tcp:
            self._bind(self._settings.tcp)
        await self._server.start()
        logger.info("listening on %s", ", ".join(self.addresses))

    def _bind(self, address: str) -> None:
        try:
            port = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError("api", [("api", address, f"cannot listen: {exc}")]) from None
        self.addresses.append(address if not address.endswith(":0") else f"{address[:-2]}:{port}")

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE):
            await self._health.set(name, status)

    async def stop(self, grace: float | None) -> None:
        """Refuse new RPCs, let running ones finish within `grace` seconds, end the rest with UNAVAILABLE.

        gRPC's stop() refuses new calls at once and, after its grace, cancels what still runs with its own
        "Cancelling all calls"; edged ends those calls itself first (UNAVAILABLE, saying why), so gRPC is given
        a little longer and finds nothing left to cancel."""
        await self.set_serving(False)
        wait_s = grace or 0.0
        stopping = asyncio.ensure_future(self._server.stop(wait_s + _CUT_S))
        await self.limit.finished(wait_s)
        reason = ShuttingDown(
            f"edged is shutting down: the request did not finish within api.grace_period_s = {wait_s:g}s"
        )
        await self.limit.cut(reason, _CUT_S)
        await stopping
        with contextlib.suppress(FileNotFoundError):
            self._settings.socket.unlink()


@contextlib.contextmanager
def owner_only_files() -> Iterator[None]:
    """Files (sockets) made inside are owner-only; the caller opens them up to the configured mode afterwards.

    A socket bound with a loose umask and chmod-ed after the server starts could take connections from anyone
    in between (umask is process-wide, so this runs on the event loop thread with nothing awaited inside)."""
    umask = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(umask)


def _section(key: str) -> str:
    return key.partition(".")[0]


def prepare_socket_path(path: Path, key: str = "api.socket") -> None:
    """Create the socket's directory; remove a stale socket file, refuse one that a live daemon still serves.

    `key` is the config key a refusal names (api.socket, http.socket)."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    _check_socket_dir(path.parent, key)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(_section(key), [(key, str(path), "exists and is not a socket")])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: a leftover from a crash
            return
    raise ConfigError(_section(key), [(key, str(path), "another process is already serving on it")])


def _check_socket_dir(directory: Path, key: str) -> None:
    """Refuse a socket directory that someone else controls (e.g. /tmp/edged-UID made first by another user).

    The directory must be a real directory owned by this process's user or by root, and nobody else may write
    to it unless it is sticky (like /tmp), where they cannot replace our socket.
    """
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(_section(key), [(key, str(directory), "the socket's directory is not a directory")])
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            _section(key),
            [
                (
                    key,
                    str(directory),
                    f"the socket's directory is owned by uid {info.st_uid}, not by this user ({os.geteuid()}) "
                    f"or root; remove it or choose another {key}",
                )
            ],
        )
    writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if (
        writable_by_others and not info.st_mode & stat.S_ISVTX
    ):  # whoever owns it: others could swap the socket
        raise ConfigError(
            _section(key),
            [(key, str(directory), "the socket's directory is writable by others and not sticky")],
        )
