"""`edged-fleet` against a real Mosquitto and real agents: keygen, sign, push, rotate, status, watch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.cli.main import main as edged_main
from edged.config.loader import load_profile
from edged.fleet.envelope import Target, decode
from edged.fleet.keys import Signer, load_private_key, load_public_key
from edged.fleet.simulation import SimulatedApplier
from edged.fleet.tool import main
from tests.brokers import MosquittoBroker
from tests.fleet_support import FleetKit, fleet_kit, make_signer, profile_doc

pytestmark = [pytest.mark.mqtt]

PROFILES = Path(__file__).resolve().parent.parent / "device_profiles"
BOARD_PROFILES = sorted(PROFILES.glob("*.toml"))
GROUP = Target("group", "pi5")


@pytest.fixture
def kit(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[FleetKit]:
    with fleet_kit(tmp_path, mosquitto) as kit:
        yield kit


def _key_file(kit: FleetKit) -> Path:
    return kit.root / "keys" / "fleet.key"


def test_board_profiles_exist_for_the_four_boards() -> None:
    names = {path.stem for path in BOARD_PROFILES}
    assert names >= {
        "raspberry-pi-5-8gb",
        "jetson-orin-nano-8gb",
        "x86-industrial-gateway",
        "low-power-arm-2gb",
    }


@pytest.mark.parametrize("profile", BOARD_PROFILES, ids=lambda p: p.stem)
def test_board_profile_passes_check_config(profile: Path, tmp_path: Path) -> None:
    config = tmp_path / "edged.toml"
    config.write_text('device_id = "board-under-test"\n')
    assert edged_main(["check-config", str(config), "--profile", str(profile)]) == 0


def test_check_config_names_the_bad_key_of_a_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "edged.toml"
    config.write_text("")
    bad = tmp_path / "bad.toml"
    bad.write_text((PROFILES / "low-power-arm-2gb.toml").read_text().replace("slots = 2", "slots = 0"))
    assert edged_main(["check-config", str(config), "--profile", str(bad)]) == 1
    assert "engine.slots = 0" in capsys.readouterr().err


def test_jetson_profile_offloads_layers_and_small_board_keeps_kv_cache_small() -> None:
    jetson = load_profile(PROFILES / "jetson-orin-nano-8gb.toml")
    small = load_profile(PROFILES / "low-power-arm-2gb.toml")
    assert jetson.engine.gpu_layers > 0
    kv_bytes_per_token = 2 * 30 * 3 * 64 * 2  # SmolLM2-135M: K and V, 30 layers, 3 KV heads, dim 64, f16
    assert small.engine.slots * small.engine.context_per_slot * kv_bytes_per_token < 64 * 1024 * 1024


def test_keygen_sign_offline_then_push_the_signed_file(kit: FleetKit, tmp_path: Path) -> None:
    key = tmp_path / "ops" / "fleet.key"
    key.parent.mkdir()
    assert main(["keygen", str(key)]) == 0
    assert main(["keygen", str(key)]) == 1  # never overwrites a key
    signed = tmp_path / "pi5-v7.json"
    profile = PROFILES / "raspberry-pi-5-8gb.toml"
    args = ["sign", str(profile), "--key", str(key), "--group", "pi5", "--version", "7", "-o", str(signed)]
    assert main(args) == 0
    envelope = decode(signed.read_bytes().strip(), 1 << 20)
    assert (envelope.version, envelope.target, envelope.body["engine"]["threads"]) == (7, GROUP, 4)
    assert envelope.key_id == Signer(load_private_key(key)).key_id
    load_public_key(Path(str(key) + ".pub")).verify(envelope.signature, envelope.signed_bytes)
    # a device trusting that key applies the pushed file
    kit.public_key = Path(str(key) + ".pub")
    running = kit.agent("pi-1")
    assert main(["push", str(signed), "--key", str(key), "--group", "pi5", "--broker", kit.broker.url]) == 0
    assert kit.ack("pi-1", GROUP, 7).outcome == "applied"
    assert running.agent.profile.name == "raspberry-pi-5-8gb"


def test_push_picks_the_next_version_and_waits_for_acks(
    kit: FleetKit, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(2):
        kit.agent(f"pi-{n}")
    kit.push(GROUP, profile_doc("old"), version=41)
    for n in range(2):
        kit.ack(f"pi-{n}", GROUP, 41)
    profile = str(PROFILES / "raspberry-pi-5-8gb.toml")
    args = ["push", profile, "--key", str(_key_file(kit)), "--group", "pi5", "--broker", kit.broker.url]
    assert main([*args, "--wait", "20"]) == 0
    out = capsys.readouterr().out
    assert "pushed profile version 42 to group pi5" in out
    assert "applied 2" in out


def test_push_refuses_a_version_not_above_the_groups_and_keeps_the_retained_one(
    kit: FleetKit, capsys: pytest.CaptureFixture[str]
) -> None:
    """issue 17 (21): `push --version 5` to a group on 7 replaced the retained profile, which a device that
    joins later (or lost its state) would then apply."""
    kit.agent("pi-7")
    kit.push(GROUP, profile_doc("seven"), version=7)
    kit.ack("pi-7", GROUP, 7)
    profile = str(PROFILES / "raspberry-pi-5-8gb.toml")
    args = ["push", profile, "--key", str(_key_file(kit)), "--group", "pi5", "--broker", kit.broker.url]
    for version in ("5", "7"):
        assert main([*args, "--version", version]) == 1
        err = capsys.readouterr().err
        assert f"--version {version} is not above version 7, the highest group pi5 reports or retains" in err
    kit.observer.sync()
    retained = [e for e in kit.observer.envelopes.values() if e.target == GROUP and e.kind == "profile"]
    assert [e.version for e in retained] == [7]


def test_push_wait_reports_a_rollback_and_exits_incomplete(
    kit: FleetKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.agent("pi-ok")
    kit.agent("pi-bad", applier=SimulatedApplier(fail_models={"gemma-3-270m-q4_k_m"}))
    kit.push(GROUP, profile_doc("base"), version=1)
    kit.ack("pi-ok", GROUP, 1)
    kit.ack("pi-bad", GROUP, 1)
    profile = tmp_path / "gemma.toml"
    profile.write_text('name = "gemma"\n[engine]\nmodel = "gemma-3-270m-q4_k_m"\n')
    args = ["push", str(profile), "--key", str(_key_file(kit)), "--group", "pi5", "--broker", kit.broker.url]
    assert main([*args, "--wait", "20"]) == 3
    out = capsys.readouterr().out
    assert "pi-bad: rolled_back (apply_failed)" in out
    assert "applied 1, rolled_back 1" in out


def test_push_refuses_an_invalid_profile_before_signing(
    kit: FleetKit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text("[engine]\nthreads = 999\n")
    args = ["push", str(profile), "--key", str(_key_file(kit)), "--group", "pi5", "--broker", kit.broker.url]
    assert main(args) == 1
    assert "engine.threads = 999" in capsys.readouterr().err


def test_unreachable_broker_is_a_clear_error(kit: FleetKit, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["status", "--broker", "mqtt://127.0.0.1:9", "--timeout", "1"]
    assert main(args) == 1
    assert "127.0.0.1:9 not reachable" in capsys.readouterr().err


def test_status_table_and_json_count_the_latest_rollout(
    kit: FleetKit, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.agent("pi-1")
    kit.agent("pi-2", applier=SimulatedApplier(fail_models={"gemma-3-270m-q4_k_m"}))
    gone = kit.agent("pi-3")
    kit.state("pi-3", lambda s: s["group"] == "pi5")
    gone.stop()  # went offline before the rollout: pending
    kit.push(GROUP, profile_doc("v1"), version=1)
    kit.ack("pi-1", GROUP, 1)
    kit.ack("pi-2", GROUP, 1)
    kit.push(GROUP, profile_doc("v2", engine={"model": "gemma-3-270m-q4_k_m"}), version=2)
    kit.ack("pi-1", GROUP, 2)
    kit.ack("pi-2", GROUP, 2)
    for device in ("pi-1", "pi-2"):  # the state document follows the ack: wait until both are retained
        kit.state(device, lambda s: s["last"].get("profile:group:pi5", {}).get("version") == 2)
    assert main(["status", "--json", "--broker", kit.broker.url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rollout"]["version"] == 2
    assert report["counts"] == {"applied": 1, "rejected": 0, "rolled_back": 1, "pending": 1}
    rows = {row["device"]: row for row in report["devices"]}
    assert (rows["pi-1"]["presence"], rows["pi-1"]["group_version"], rows["pi-1"]["outcome"]) == (
        "online",
        2,
        "applied",
    )
    assert (rows["pi-2"]["group_version"], rows["pi-2"]["outcome"]) == (1, "rolled_back")
    assert (rows["pi-3"]["presence"], rows["pi-3"]["outcome"]) == ("offline", "pending")
    assert main(["status", "--broker", kit.broker.url]) == 0
    table = capsys.readouterr().out
    assert "latest rollout: group pi5 version 2" in table
    assert "applied 1, rejected 0, rolled_back 1, pending 1" in table


def test_rotate_announces_a_new_key_that_devices_then_accept(kit: FleetKit, tmp_path: Path) -> None:
    running = kit.agent("pi-1")
    kit.push(GROUP, profile_doc("v1"), version=1)
    kit.ack("pi-1", GROUP, 1)
    new_signer, new_public = make_signer(tmp_path / "new", "fleet-2.key")
    # before the announcement the new key is unknown
    since = kit.mark()
    kit.push(GROUP, profile_doc("v2"), version=2, signer=new_signer)
    assert kit.ack("pi-1", GROUP, 2, since=since).reason == "unknown_key"
    old_id = kit.signer.key_id
    since = kit.mark()
    args = ["rotate", "--key", str(_key_file(kit)), "--new-key", str(new_public), "--group", "pi5"]
    assert main([*args, "--revoke", old_id, "--broker", kit.broker.url]) == 0
    assert kit.ack("pi-1", GROUP, 1, kind="keys").outcome == "applied"
    # the envelope refused for its unknown key is tried again once the key is trusted
    assert kit.ack("pi-1", GROUP, 2, since=since).outcome == "applied"
    assert running.agent.profile.name == "v2"
    # the old key is revoked: its envelopes are now refused
    since = kit.mark()
    kit.push(GROUP, profile_doc("v3-old-key"), version=3)
    assert kit.ack("pi-1", GROUP, 3, since=since).reason == "unknown_key"
    assert running.agent.profile.name == "v2"


def test_rotation_survives_a_restart_and_the_revoked_config_key_stays_revoked(
    kit: FleetKit, tmp_path: Path
) -> None:
    running = kit.agent("pi-1")
    new_signer, new_public = make_signer(tmp_path / "new", "fleet-2.key")
    args = ["rotate", "--key", str(_key_file(kit)), "--new-key", str(new_public), "--group", "pi5"]
    assert main([*args, "--revoke", kit.signer.key_id, "--broker", kit.broker.url]) == 0
    kit.ack("pi-1", GROUP, 1, kind="keys")
    running.stop()
    restarted = kit.agent("pi-1")  # same state dir, same configured (now revoked) key
    assert set(restarted.agent.device.ring.keys) == {new_signer.key_id}
    kit.push(GROUP, profile_doc("after-restart"), version=1, signer=new_signer)
    assert kit.ack("pi-1", GROUP, 1).outcome == "applied"


def test_key_rotation_can_be_disabled(kit: FleetKit, tmp_path: Path) -> None:
    kit.agent("pi-1", key_rotation=False)
    _, new_public = make_signer(tmp_path / "new", "fleet-2.key")
    args = ["rotate", "--key", str(_key_file(kit)), "--new-key", str(new_public), "--group", "pi5"]
    assert main([*args, "--broker", kit.broker.url]) == 0
    ack = kit.ack("pi-1", GROUP, None, kind="keys")
    assert (ack.outcome, ack.reason) == ("rejected", "rotation_disabled")


def test_watch_prints_retained_state_then_live_acks(
    kit: FleetKit, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.agent("pi-1")
    kit.push(GROUP, profile_doc("watched"), version=5)
    kit.ack("pi-1", GROUP, 5)
    kit.state("pi-1", lambda s: s["profile"] == "watched")
    codes: list[int] = []
    args = ["watch", "--json", "--group", "pi5", "--count", "4", "--for", "20", "--broker", kit.broker.url]
    watcher = threading.Thread(target=lambda: codes.append(main(args)))
    watcher.start()
    lines: list[str] = []
    while len(lines) < 2 and watcher.is_alive():  # the retained presence and state: watch has subscribed
        lines += capsys.readouterr().out.splitlines()
        time.sleep(0.05)
    kit.push(GROUP, profile_doc("watched-2"), version=6)
    watcher.join(30)
    assert codes == [0]
    events = [json.loads(line) for line in lines + capsys.readouterr().out.splitlines()]
    assert [(e["event"], e.get("profile")) for e in events[:2]] == [("status", None), ("state", "watched")]
    acks = [e for e in events if e["event"] == "ack"]
    assert [(a["version"], a["outcome"]) for a in acks] == [(6, "applied")]
