"""[http]: the OpenAI-compatible HTTP listener (off by default; a Unix socket only unless `tcp` is set)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from edged.config.api import MiB, check_listen_tcp
from edged.config.base import StrictModel
from edged.config.paths import default_runtime_dir

HTTP_SOCKET_NAME = "edged-http.sock"


def default_http_socket_path() -> Path:
    return default_runtime_dir() / HTTP_SOCKET_NAME


class HttpSettings(StrictModel):
    enabled: bool = Field(
        default=False,
        description="Serve the OpenAI-compatible HTTP API (POST /v1/chat/completions, /v1/completions, "
        "GET /v1/models, /health) beside gRPC.",
    )
    socket: Path = Field(
        default_factory=default_http_socket_path,
        description="Unix socket of the HTTP API (always on when enabled; mode api.socket_mode).",
    )
    tcp: str | None = Field(
        default=None,
        description="Optional extra TCP listener HOST:PORT (port 0 picks a free one), loopback unless "
        "allow_remote_tcp is true.",
    )
    allow_remote_tcp: bool = Field(
        default=False, description="Allow the HTTP TCP listener on a non-loopback address (plaintext!)."
    )
    token_file: Path | None = Field(
        default=None,
        description="A file holding a bearer token every /v1 request must send as `Authorization: Bearer "
        "TOKEN` (compared in constant time); unset: no token is asked for.",
    )
    max_concurrent_requests: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=64,
        description="Completions handled at once over HTTP (streamed or not); one more is refused with 429 "
        "naming this limit instead of waiting (/health and /v1/models are not counted).",
    )
    max_body_bytes: Annotated[int, Field(ge=4096, le=64 * MiB)] = Field(
        default=4 * MiB, description="Largest request body accepted, in bytes (larger: 413)."
    )

    @field_validator("socket")
    @classmethod
    def _filesystem_socket(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        return value

    @model_validator(mode="after")
    def _tcp_is_local(self) -> HttpSettings:
        check_listen_tcp(self.tcp, allow_remote=self.allow_remote_tcp)
        return self

    def read_token(self) -> bytes | None:
        """The bearer token from token_file (stripped), or None when no file is configured."""
        if self.token_file is None:
            return None
        token = self.token_file.read_bytes().strip()
        if not token:
            raise ValueError(f"{self.token_file} is empty")
        return token
