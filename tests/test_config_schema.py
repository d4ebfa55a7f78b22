"""The daemon config schema: unknown keys rejected; errors name the key, the value and the reason."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from edged.cli.main import main
from edged.cli.serve import overrides_from, register
from edged.config import effective_profile, load_config, parse_config, parse_profile
from edged.errors import ConfigError


def problems(raw: dict[str, object]) -> list[tuple[str, object, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_defaults_are_valid() -> None:
    config = parse_config({})
    assert config.api.socket.is_absolute()
    assert config.api.socket_mode == 0o660
    assert config.engine.model == "smollm2-135m-instruct-q4_1"


def test_unknown_keys_are_named() -> None:
    assert problems({"engine": {"slotz": 4}}) == [("engine.slotz", 4, "unknown key")]
    assert problems({"colour": "red"}) == [("colour", "red", "unknown key")]


def test_out_of_bounds_value_names_key_value_and_limit() -> None:
    [(key, value, reason)] = problems({"engine": {"slots": 0}})
    assert (key, value) == ("engine.slots", 0)
    assert "greater than or equal to 1" in reason


def test_cross_field_rules() -> None:
    [(_, _, reason)] = problems({"engine": {"default_max_tokens": 600, "max_tokens_cap": 512}})
    assert "default_max_tokens 600 exceeds max_tokens_cap 512" in reason
    [(_, _, reason)] = problems({"api": {"tcp": "0.0.0.0:5000"}})
    assert "not loopback" in reason
    assert parse_config({"api": {"tcp": "0.0.0.0:5000", "allow_remote_tcp": True}}).api.tcp == "0.0.0.0:5000"


def test_abstract_socket_is_refused() -> None:
    [(key, _, reason)] = problems({"api": {"socket": "@edged"}})
    assert key == "api.socket"
    assert "abstract" in reason


def test_check_config_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text("device_id = 'gw-1'\n[engine]\nslots = 2\n")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nslots = 400\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "engine.slots = 400" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("[engine\n")
    assert main(["check-config", str(broken)]) == 1
    assert main(["check-config", str(tmp_path / "missing.toml")]) == 1


def test_profile_layers_override_the_config_key_by_key() -> None:
    config = parse_config({"engine": {"threads": 3, "slots": 2}})
    profile = parse_profile({"name": "pi5", "engine": {"slots": 6}})
    merged = effective_profile(config, [profile])
    assert merged.engine.slots == 6
    assert merged.engine.threads == 3
    assert merged.name == "pi5"


def test_serve_flags_override_the_file(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--socket", "/tmp/x.sock", "--device-id", "dev-9", "--tcp", "127.0.0.1:0"]
    )
    file = tmp_path / "edged.toml"
    file.write_text("device_id = 'from-file'\n[api]\nsocket = '/run/edged/edged.sock'\n")
    config = load_config(file, overrides_from(args))
    assert config.device_id == "dev-9"
    assert str(config.api.socket) == "/tmp/x.sock"
    assert config.api.tcp == "127.0.0.1:0"


def test_check_config_checks_the_fleet_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "fleet.pub"
    key.write_text("not a key\n")
    config = tmp_path / "edged.toml"
    config.write_text(f"[fleet]\ngroup = 'pi5'\nkey = '{key}'\n")
    assert main(["check-config", str(config)]) == 1
    assert "not an Ed25519 public key" in capsys.readouterr().err
