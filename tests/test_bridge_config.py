"""cloud_bridge's config: the file, flags merged on top, and errors that name the key as the file spells it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.config import (
    BridgeConfig,
    GgufBackendSettings,
    OpenAIBackendSettings,
    SleepBackendSettings,
    load_bridge_config,
)
from cloud_bridge.main import build_parser, overrides
from edged.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[1] / "cloud_bridge" / "deploy" / "bridge.toml"


def _load(path: Path | None, *argv: str) -> BridgeConfig:
    return load_bridge_config(path, overrides(build_parser().parse_args(list(argv))))


def test_no_file_and_no_flags_serves_gemma_in_process() -> None:
    config = load_bridge_config(None)
    assert isinstance(config.backend, GgufBackendSettings)
    assert config.backend.model_path is None
    assert config.broker.url == "mqtt://127.0.0.1:1883"
    assert config.group == "edged-workers"


def test_the_shipped_example_is_valid() -> None:
    config = load_bridge_config(SHIPPED)
    assert isinstance(config.backend, OpenAIBackendSettings)
    assert config.broker.use_tls
    assert config.broker.password_credential == "mqtt-password"


def test_flags_override_the_file() -> None:
    config = _load(SHIPPED, "--concurrency", "9", "--group", "gpu-a", "--broker", "mqtts://10.0.0.2:8883")
    assert config.concurrency == 9
    assert config.group == "gpu-a"
    broker = config.broker
    assert broker.url == "mqtts://10.0.0.2:8883"
    assert broker.username == "bridge"  # the rest of the file's [broker] stays


def test_a_backend_flag_of_another_type_starts_a_fresh_backend_section(tmp_path: Path) -> None:
    config = _load(SHIPPED, "--backend", "gguf", "--model", str(tmp_path / "m.gguf"))
    backend = config.backend
    assert isinstance(backend, GgufBackendSettings)
    assert backend.model_path == tmp_path / "m.gguf"


def test_openai_url_implies_the_openai_backend_and_model_is_its_model_id() -> None:
    config = _load(None, "--openai-url", "http://127.0.0.1:8080/v1/", "--model", "qwen2.5")
    backend = config.backend
    assert isinstance(backend, OpenAIBackendSettings)
    assert (backend.url, backend.model) == ("http://127.0.0.1:8080/v1", "qwen2.5")


def test_model_alone_is_a_gguf_file(tmp_path: Path) -> None:
    config = _load(None, "--model", str(tmp_path / "m.gguf"))
    backend = config.backend
    assert isinstance(backend, GgufBackendSettings)
    assert backend.model_path == tmp_path / "m.gguf"


def test_a_backend_section_without_type_is_gguf(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(f'[backend]\nmodel_path = "{tmp_path / "m.gguf"}"\nn_ctx = 2048\n')
    backend = load_bridge_config(path).backend
    assert isinstance(backend, GgufBackendSettings)
    assert (backend.model_path, backend.n_ctx) == (tmp_path / "m.gguf", 2048)
    # and the flag on top of such a file keeps the section (the same type)
    flagged = _load(path, "--model", str(tmp_path / "other.gguf")).backend
    assert isinstance(flagged, GgufBackendSettings)
    assert (flagged.model_path, flagged.n_ctx) == (tmp_path / "other.gguf", 2048)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[backend]\ntype = "sleep"\ndelay_s = 600\n', "backend.delay_s", "less than or equal to 60"),
        ('[backend]\ntype = "openai"\nurl = "ftp://x"\n', "backend.url", "http:// or https://"),
        ('[backend]\ntype = "openai"\n', "backend.url", "required key is missing"),
        ('[backend]\ntype = "tpu"\n', "backend", "does not match any of the expected tags"),
        ("[backend]\ndelay_s = 1\n", "backend.delay_s", "unknown key"),  # no type: gguf, which has no delay
        ("max_deadline_s = 0\n", "max_deadline_s", "greater than or equal to 1"),
        ("[broker]\nurl = 'mqtt://h'\nkeepalive_s = 2\n", "broker.keepalive_s", "greater than or equal to 5"),
        ("worker_id = 'a/b'\n", "worker_id", "should match pattern"),
        ("colour = 'red'\n", "colour", "unknown key"),
    ],
)
def test_bad_files_name_the_key_and_the_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_bridge_config(path)
    assert any(k == key and reason in why for k, _value, why in info.value.problems), info.value.problems


def test_sleep_backend_defaults() -> None:
    settings = SleepBackendSettings()
    assert (settings.delay_s, settings.text) == (0.05, "ok")
