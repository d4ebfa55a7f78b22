"""The fleet agent against a real Mosquitto: group pushes, device overrides, rejections, rollback, replay."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.fleet.agent import last_good_profile
from edged.fleet.envelope import Target, canonical_bytes, encode
from edged.fleet.simulation import SimulatedApplier
from tests.brokers import MosquittoBroker
from tests.fleet_support import WAIT_S, FleetKit, fleet_kit, make_signer, profile_doc

pytestmark = [pytest.mark.mqtt]

GROUP = Target("group", "pi5")
PI5 = profile_doc("pi5", engine={"threads": 4, "slots": 4}, routing={"router_threshold": 0.6})


@pytest.fixture
def kit(tmp_path: Path, mosquitto: MosquittoBroker) -> Iterator[FleetKit]:
    with fleet_kit(tmp_path, mosquitto) as kit:
        yield kit


def test_group_push_is_applied_and_acked_by_every_member(kit: FleetKit) -> None:
    devices = [kit.agent(f"dev-{n}") for n in range(3)]
    kit.push(GROUP, PI5, version=1)
    for running in devices:
        ack = kit.ack(running.config.device_id, GROUP, 1)
        assert (ack.outcome, ack.reason) == ("applied", None)
        applied = running.applier.current
        assert applied is not None
        assert (applied.name, applied.engine.threads, applied.routing.router_threshold) == ("pi5", 4, 0.6)
        assert running.agent.profile == applied
    state = kit.state("dev-0", lambda s: s["layers"].get("group", {}).get("version") == 1)
    assert state["profile"] == "pi5"
    assert kit.observer.statuses["dev-0"]["state"] == "online"


def test_device_override_wins_over_group_key_by_key(kit: FleetKit) -> None:
    running = kit.agent("dev-a")
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    own = Target("device", "dev-a")
    kit.push(own, profile_doc("pi5-hot-corner", engine={"threads": 2}), version=1)
    assert kit.ack("dev-a", own, 1).outcome == "applied"
    profile = running.agent.profile
    assert (profile.name, profile.engine.threads) == ("pi5-hot-corner", 2)
    assert (profile.engine.slots, profile.routing.router_threshold) == (4, 0.6)  # still the group's
    kit.push(GROUP, profile_doc("pi5", engine={"threads": 3, "slots": 6}), version=2)
    assert kit.ack("dev-a", GROUP, 2).outcome == "applied"
    assert (running.agent.profile.engine.threads, running.agent.profile.engine.slots) == (2, 6)


def test_profiles_for_another_group_or_device_are_not_received(kit: FleetKit) -> None:
    running = kit.agent("dev-a")
    kit.push(Target("group", "jetson"), profile_doc("jetson"), version=1)
    kit.push(Target("device", "dev-b"), profile_doc("other"), version=1)
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    assert [p.name for p in running.applier.applied] == ["pi5"]


def _reject_case(kit: FleetKit, payload: bytes, version: int | None, reason: str) -> None:
    """Publish `payload` on the group topic; the device must reject it and keep serving version 1."""
    running = kit.agent("dev-a")
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    since = kit.mark()
    kit.publish(GROUP, payload)
    ack = kit.ack("dev-a", GROUP, version, since=since)
    assert (ack.outcome, ack.reason) == ("rejected", reason), ack.detail
    assert [p.name for p in running.applier.applied] == ["pi5"]
    assert running.agent.profile.name == "pi5"
    state = kit.state("dev-a", lambda s: s["last"].get("profile:group:pi5", {}).get("outcome") == "rejected")
    assert state["layers"]["group"]["version"] == 1


def test_tampered_envelope_is_rejected_for_its_signature(kit: FleetKit) -> None:
    signed = json.loads(kit.signer.sign("profile", 2, GROUP, profile_doc("evil"), lifetime_s=3600))
    signed["signed"]["profile"]["engine"] = {"threads": 1}
    _reject_case(kit, json.dumps(signed).encode(), 2, "bad_signature")


def test_envelope_signed_by_an_untrusted_key_is_rejected(kit: FleetKit) -> None:
    stranger, _ = make_signer(kit.root / "stranger", "stranger.key")
    _reject_case(
        kit, stranger.sign("profile", 2, GROUP, profile_doc("evil"), lifetime_s=3600), 2, "unknown_key"
    )


def test_untrusted_key_claiming_the_trusted_key_id_fails_the_signature(kit: FleetKit) -> None:
    stranger, _ = make_signer(kit.root / "stranger", "stranger.key")
    signed = json.loads(stranger.sign("profile", 2, GROUP, profile_doc("evil"), lifetime_s=3600))
    forged = dict(signed["signed"], key_id=kit.signer.key_id)
    payload = encode(forged, stranger.private_key.sign(canonical_bytes(forged)))
    _reject_case(kit, payload, 2, "bad_signature")


def test_lower_or_equal_version_is_rejected_as_rollback(kit: FleetKit) -> None:
    _reject_case(
        kit, kit.signer.sign("profile", 1, GROUP, profile_doc("older"), lifetime_s=3600), 1, "rollback"
    )


def test_expired_envelope_is_rejected(kit: FleetKit) -> None:
    payload = kit.signer.sign("profile", 2, GROUP, PI5, lifetime_s=60, issued_at=1_000_000_000)
    _reject_case(kit, payload, 2, "expired")


def test_malformed_envelope_is_rejected(kit: FleetKit) -> None:
    _reject_case(kit, b'{"signed": {"version": 2}, "signature": ', None, "malformed")


def test_clearing_the_retained_envelope_is_not_acked_as_malformed(kit: FleetKit) -> None:
    """issue 17 (23): an operator clearing the retained profile (an empty retained message) got a 'malformed'
    ack; it is no profile at all, so the device keeps what it runs and says nothing."""
    running = kit.agent("dev-a")
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    since = kit.mark()
    kit.publish(GROUP, b"")
    kit.push(GROUP, profile_doc("next"), version=2)
    assert kit.ack("dev-a", GROUP, 2, since=since).outcome == "applied"
    assert [(a.outcome, a.version) for a in kit.observer.acks[since:] if a.device == "dev-a"] == [
        ("applied", 2)
    ]
    assert [p.name for p in running.applier.applied] == ["pi5", "next"]


def test_deeply_nested_envelope_is_acked_malformed(kit: FleetKit) -> None:
    """30,000 nested brackets (60 KB, within the size limit) once raised RecursionError and got no ack."""
    _reject_case(kit, b'{"signed": ' + b"[" * 30000 + b"]" * 30000 + b', "signature": ""}', None, "malformed")


def test_oversized_envelope_is_rejected_before_parsing(kit: FleetKit) -> None:
    big = {**profile_doc("big"), "description": "x" * 400, "padding": "y" * 70_000}
    payload = kit.signer.sign("profile", 2, GROUP, big, lifetime_s=3600)
    _reject_case(kit, payload, None, "oversized")


def test_invalid_profile_is_rejected_naming_the_key(kit: FleetKit) -> None:
    payload = kit.signer.sign("profile", 2, GROUP, profile_doc("bad", engine={"threads": 0}), lifetime_s=3600)
    _reject_case(kit, payload, 2, "invalid_profile")
    ack = kit.ack("dev-a", GROUP, 2)
    assert "engine.threads = 0" in ack.detail


def test_profile_valid_alone_but_invalid_merged_is_rejected(kit: FleetKit) -> None:
    running = kit.agent("dev-a")
    kit.push(GROUP, profile_doc("pi5", engine={"max_tokens_cap": 512, "default_max_tokens": 256}), version=1)
    kit.ack("dev-a", GROUP, 1)
    own = Target("device", "dev-a")
    kit.push(own, profile_doc("greedy", engine={"default_max_tokens": 1000}), version=1)
    ack = kit.ack("dev-a", own, 1)
    assert (ack.outcome, ack.reason) == ("rejected", "invalid_profile")
    assert "default_max_tokens" in ack.detail
    assert running.agent.profile.name == "pi5"


def test_failed_apply_rolls_back_and_keeps_the_old_profile(kit: FleetKit) -> None:
    running = kit.agent("dev-a", applier=SimulatedApplier(fail_models={"gemma-3-270m-q4_k_m"}))
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    kit.push(GROUP, profile_doc("bigger", engine={"model": "gemma-3-270m-q4_k_m"}), version=2)
    ack = kit.ack("dev-a", GROUP, 2)
    assert (ack.outcome, ack.reason) == ("rolled_back", "apply_failed")
    assert "health check" in ack.detail
    assert running.agent.profile.name == "pi5"
    # the failed version is spent: pushing it again is a rollback, a higher version applies
    since = kit.mark()
    kit.push(GROUP, profile_doc("bigger", engine={"model": "gemma-3-270m-q4_k_m", "threads": 1}), version=2)
    assert kit.ack("dev-a", GROUP, 2, since=since).reason == "rollback"
    kit.push(GROUP, profile_doc("pi5-b", engine={"threads": 2}), version=3)
    assert kit.ack("dev-a", GROUP, 3).outcome == "applied"
    assert running.agent.profile.name == "pi5-b"


def test_replay_at_start_runs_the_last_good_profile_without_a_broker(
    kit: FleetKit, mosquitto: MosquittoBroker
) -> None:
    running = kit.agent("dev-a")
    kit.push(GROUP, PI5, version=1)
    kit.ack("dev-a", GROUP, 1)
    kit.push(Target("device", "dev-a"), profile_doc("mine", routing={"router_threshold": 0.9}), version=1)
    kit.ack("dev-a", Target("device", "dev-a"), 1)
    running.stop()
    kit.close()
    mosquitto.stop()
    replayed = last_good_profile(running.config)
    assert replayed is not None
    assert (replayed.name, replayed.engine.threads, replayed.routing.router_threshold) == ("mine", 4, 0.9)
    assert replayed == running.agent.profile
    # a device of another group with the same state dir does not replay the pi5 layer
    other = running.config.model_copy(
        update={"fleet": running.config.fleet.model_copy(update={"group": "x"})}
    )
    moved = last_good_profile(other)
    assert moved is not None
    assert (moved.name, moved.engine.threads) == ("mine", kit.config("tmp").engine.threads)


def test_no_fleet_state_means_no_replay(kit: FleetKit) -> None:
    assert last_good_profile(kit.config("fresh")) is None


def test_retained_profile_reaches_late_devices_and_a_reconnect_does_not_reapply_it(
    kit: FleetKit, mosquitto: MosquittoBroker
) -> None:
    payload = kit.push(GROUP, PI5, version=1)
    running = kit.agent("late")
    assert kit.ack("late", GROUP, 1).outcome == "applied"
    restarted_at = time.time()
    mosquitto.restart()  # no persistence: the device reconnects, re-subscribes, and the operator re-publishes
    # (mosquitto publishes the Last Will of its clients as it shuts down: "since" is None until back online)
    assert kit.observer.wait(lambda: (kit.observer.statuses["late"]["since"] or 0) > restarted_at, WAIT_S)
    since = kit.mark()
    kit.publish(GROUP, payload)  # the very same envelope: already applied, no second apply, no ack
    kit.push(GROUP, profile_doc("pi5-next"), version=2)
    kit.ack("late", GROUP, 2, since=since)
    assert [p.name for p in running.applier.applied] == ["pi5", "pi5-next"]
    assert [(a.version, a.outcome) for a in kit.observer.acks[since:]] == [(2, "applied")]


def test_a_device_that_lost_its_state_does_not_apply_an_older_retained_profile(kit: FleetKit) -> None:
    """issue 17: 21 — its own retained state (subscribed first) tells it the version it ran."""
    first = kit.agent("dev-lost")
    kit.push(GROUP, profile_doc("v7"), version=7)
    assert kit.ack("dev-lost", GROUP, 7).outcome == "applied"
    kit.state("dev-lost", lambda s: s["streams"].get(GROUP.stream("profile"), {}).get("version") == 7)
    first.stop()
    shutil.rmtree(first.config.state_dir)  # the device lost its state directory
    kit.push(GROUP, profile_doc("v5"), version=5)  # an older profile is what the group's topic retains now
    since = kit.mark()
    again = kit.agent("dev-lost")
    ack = kit.ack("dev-lost", GROUP, 5, since=since)
    assert (ack.outcome, ack.reason) == ("rejected", "rollback")
    assert "below 7" in ack.detail
    assert again.applier.applied == []
