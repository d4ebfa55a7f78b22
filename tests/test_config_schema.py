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


def test_escalation_keys_under_broker_are_named_with_their_new_place() -> None:
    assert problems({"broker": {"accept_timeout_s": 3.0}}) == [
        ("broker.accept_timeout_s", 3.0, "moved to [escalation]: write it as escalation.accept_timeout_s")
    ]
    assert parse_config({"escalation": {"max_escalations": 8}}).escalation.max_escalations == 8


def test_out_of_bounds_value_names_key_value_and_limit() -> None:
    [(key, value, reason)] = problems({"engine": {"slots": 0}})
    assert (key, value) == ("engine.slots", 0)
    assert "greater than or equal to 1" in reason


CROSS_FIELD_CASES: list[tuple[dict[str, object], str, object, str]] = [
    (
        {"engine": {"default_max_tokens": 600, "max_tokens_cap": 512}},
        "engine.default_max_tokens",
        600,
        "default_max_tokens 600 exceeds max_tokens_cap 512",
    ),
    ({"engine": {"max_tokens_cap": 16}}, "engine.default_max_tokens", 256, "exceeds max_tokens_cap 16"),
    (
        {"engine": {"slots": 40, "batch_tokens": 32, "prefill_chunk": 16}},
        "engine.slots",
        40,
        "slots 40 exceeds batch_tokens 32",
    ),
    (
        {"engine": {"batch_tokens": 64, "prefill_chunk": 128}},
        "engine.prefill_chunk",
        128,
        "prefill_chunk 128 exceeds batch_tokens 64",
    ),
    ({"engine": {"model_sha256": "ab" * 32}}, "engine.model_sha256", "ab" * 32, "model_path is not"),
    ({"api": {"tcp": "10.0.0.1:5000"}}, "api.tcp", "10.0.0.1:5000", "tcp host '10.0.0.1' is not loopback"),
    ({"api": {"tcp": "0.0.0.0:5000"}}, "api.tcp", "0.0.0.0:5000", "set allow_remote_tcp = true"),
    ({"http": {"tcp": "10.0.0.1:8080"}}, "http.tcp", "10.0.0.1:8080", "tcp host '10.0.0.1' is not loopback"),
    ({"api": {"tcp": "127.0.0.1:70000"}}, "api.tcp", "127.0.0.1:70000", "port 70000 is outside 0..65535"),
    ({"api": {"tcp": "localhost"}}, "api.tcp", "localhost", "'localhost' is not HOST:PORT"),
]


@pytest.mark.parametrize(("raw", "key", "value", "reason"), CROSS_FIELD_CASES)
def test_cross_field_rules_name_the_key_its_value_and_the_limit(
    raw: dict[str, object], key: str, value: object, reason: str
) -> None:
    [problem] = problems(raw)
    assert problem[:2] == (key, value)
    assert reason in problem[2]


def test_cross_field_rules_name_the_key_in_a_profile_and_in_the_message() -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile({"name": "tiny", "engine": {"slots": 48, "batch_tokens": 32}})
    assert info.value.problems == [
        (
            "engine.slots",
            48,
            "slots 48 exceeds batch_tokens 32: a decode step holds one token per running slot, "
            "so slots must be <= batch_tokens",
        )
    ]
    assert str(info.value).startswith("profile: engine.slots = 48: slots 48 exceeds batch_tokens 32")


def test_cross_field_rules_accept_what_they_allow() -> None:
    assert parse_config({"api": {"tcp": "0.0.0.0:5000", "allow_remote_tcp": True}}).api.tcp == "0.0.0.0:5000"
    assert parse_config({"api": {"tcp": "[::1]:0"}}).api.tcp == "[::1]:0"
    engine = parse_config({"engine": {"slots": 32, "batch_tokens": 32, "prefill_chunk": 32}}).engine
    assert (engine.slots, engine.batch_tokens, engine.prefill_chunk) == (32, 32, 32)


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


REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("profile", sorted((REPO / "device_profiles").glob("*.toml")), ids=lambda p: p.stem)
def test_check_config_validates_a_shipped_profile_alone(
    profile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fleet manager checks a device profile with no daemon config; as FILE it is named a profile."""
    assert main(["check-config", "--profile", str(profile)]) == 0
    assert f"ok: {profile} (as profiles" in capsys.readouterr().out
    assert main(["check-config", str(profile)]) == 1
    assert f"is a valid device profile; check it with: edged check-config --profile {profile}" in (
        capsys.readouterr().err
    )


def test_check_config_profile_alone_names_key_value_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad-profile.toml"
    bad.write_text("name = 'x'\n[engine]\nslots = 400\n")
    assert main(["check-config", "--profile", str(bad)]) == 1
    assert "engine.slots = 400" in capsys.readouterr().err
    assert main(["check-config"]) == 2


def test_check_config_lists_each_file_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text("name = 'p'\n")
    config = tmp_path / "c.toml"
    config.write_text(f"profile = '{profile}'\n")
    assert main(["check-config", str(config), "--profile", str(profile)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: {config}, {profile}"


def test_check_config_lists_a_profile_named_twice_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 17 (23): the config's own profile given again with --profile was listed (and merged) twice."""
    profile = tmp_path / "pi5.toml"
    profile.write_text("name = 'pi5'\n[engine]\nslots = 2\n")
    config = tmp_path / "edged.toml"
    config.write_text(f"profile = '{profile}'\n")
    capsys.readouterr()
    assert main(["check-config", str(config), "--profile", str(profile)]) == 0
    assert capsys.readouterr().out == f"ok: {config}, {profile}\n"


def test_check_config_finds_a_missing_spacy_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The privacy gate's spaCy package is looked up (not loaded): an error with a broker, a note without one."""
    section = "[privacy.detector]\nspacy_model = 'no_such_pkg'\n"
    linked = tmp_path / "linked.toml"
    linked.write_text(f"[broker]\nurl = 'mqtt://127.0.0.1:1883'\n{section}")
    assert main(["check-config", str(linked)]) == 1
    assert (
        "privacy.detector.spacy_model = 'no_such_pkg': no installed Python package" in capsys.readouterr().err
    )
    offline = tmp_path / "offline.toml"
    offline.write_text(section)
    assert main(["check-config", str(offline)]) == 0
    assert "note: privacy.detector.spacy_model 'no_such_pkg' is not installed" in capsys.readouterr().err
    installed = tmp_path / "installed.toml"
    installed.write_text("[broker]\nurl = 'mqtt://127.0.0.1:1883'\n")
    assert main(["check-config", str(installed)]) == 0


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
