"""ApiServer: the grpc.aio server with its listeners (Unix socket, optional loopback TCP), health and reflection."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # grpc-stubs lacks aio
from grpc_reflection.v1alpha import reflection

from edged.api.servicer import InferenceServicer, MalformedRequest
from edged.config.api import ApiSettings
from edged.errors import ConfigError
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


def _handlers(servicer: InferenceServicer) -> grpc.GenericRpcHandler[Any, Any]:
    serialize: Callable[[Any], bytes] = lambda message: message.SerializeToString()  # noqa: E731
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Generate": grpc.unary_unary_rpc_method_handler(
                servicer.Generate,
                request_deserializer=_safe_parser(pb.GenerateRequest),
                response_serializer=serialize,
            ),
            "GenerateStream": grpc.unary_stream_rpc_method_handler(
                servicer.GenerateStream,
                request_deserializer=_safe_parser(pb.GenerateRequest),
                response_serializer=serialize,
            ),
            "GetStatus": grpc.unary_unary_rpc_method_handler(
                servicer.GetStatus,
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
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self._server.add_generic_rpc_handlers((_handlers(servicer),))
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
        _prepare_socket_path(socket_path)
        self._bind(f"unix:{socket_path}")
        if self._settings.tcp:
            self._bind(self._settings.tcp)
        await self._server.start()
        os.chmod(socket_path, self._settings.socket_mode)
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
        """Refuse new RPCs, let running ones finish within `grace` seconds, cancel the rest."""
        await self.set_serving(False)
        await self._server.stop(grace)
        with contextlib.suppress(FileNotFoundError):
            self._settings.socket.unlink()


def _prepare_socket_path(path: Path) -> None:
    """Create the socket's directory; remove a stale socket file, refuse one that a live daemon still serves."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError("api", [("api.socket", str(path), "exists and is not a socket")])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # nobody listens: a leftover from a crash
            return
    raise ConfigError("api", [("api.socket", str(path), "another process is already serving on it")])
