"""[api]: the local gRPC listeners."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from edged.config.base import KeyRuleError, StrictModel
from edged.config.paths import default_socket_path

MiB = 1024 * 1024


def check_listen_tcp(tcp: str | None, *, allow_remote: bool) -> None:
    """A listener's `tcp` HOST:PORT: parseable, a valid port, and loopback unless allow_remote_tcp is set."""
    if tcp is None:
        return
    try:
        host, port = parse_host_port(tcp)
    except ValueError as exc:
        raise KeyRuleError("tcp", tcp, str(exc)) from None
    if not allow_remote and not is_loopback(host):
        raise KeyRuleError(
            "tcp",
            tcp,
            f"tcp host {host!r} is not loopback (127.0.0.0/8, ::1 or localhost); "
            "set allow_remote_tcp = true to listen on it",
        )
    if not 0 <= port < 65536:
        raise KeyRuleError("tcp", tcp, f"tcp port {port} is outside 0..65535 (0 picks a free port)")


class ApiSettings(StrictModel):
    socket: Path = Field(
        default_factory=default_socket_path,
        description="Unix socket path apps connect to (a filesystem path; abstract sockets are refused).",
    )
    socket_mode: Annotated[int, Field(ge=0o600, le=0o666)] = Field(
        default=0o660,
        description="Permission bits of the socket file; 0o660 lets members of the daemon's group connect.",
    )
    tcp: str | None = Field(
        default=None,
        description="Optional extra TCP listener HOST:PORT, loopback unless allow_remote_tcp is true.",
    )
    allow_remote_tcp: bool = Field(
        default=False, description="Allow the TCP listener on a non-loopback address (plaintext!)."
    )
    max_message_bytes: Annotated[int, Field(ge=4096, le=64 * MiB)] = Field(
        default=4 * MiB, description="Largest request or response message accepted, in bytes."
    )
    max_concurrent_rpcs: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64,
        description="RPCs handled at once; more are refused with RESOURCE_EXHAUSTED instead of waiting.",
    )
    stream_interval_ms: Annotated[float, Field(ge=0, le=1000)] = Field(
        default=20.0,
        description="GenerateStream sends the first text at once, then joins the tokens of at most this many "
        "milliseconds into one chunk (0: a chunk per token).",
    )
    grace_period_s: Annotated[float, Field(ge=0, le=600)] = Field(
        default=10.0,
        description="On shutdown, how long in-flight requests may run before they are cancelled.",
    )

    @field_validator("socket")
    @classmethod
    def _filesystem_socket(cls, value: Path) -> Path:
        text = str(value)
        if text.startswith(("@", "\x00", "unix-abstract:")):
            raise ValueError("abstract sockets are not allowed: give a filesystem path")
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _tcp_is_local(self) -> ApiSettings:
        check_listen_tcp(self.tcp, allow_remote=self.allow_remote_tcp)
        return self


def parse_host_port(text: str) -> tuple[str, int]:
    """Split HOST:PORT (IPv6 as [::1]:PORT); raises ValueError naming the text."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
