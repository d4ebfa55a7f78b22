"""Fleet profiles end to end through a real daemon: signed pushes over a real Mosquitto are applied by the daemon's
ProfileApplier (live settings, an engine swap, a rollback), reported in acks and GetStatus, replayed at the
next start with no broker, and kept on top of the config when `systemctl reload` (SIGHUP) re-reads it."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest

from edged.fleet.envelope import Target
from edged.fleet.observer import Ack
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker, free_port
from tests.daemon_harness import running_daemon
from tests.escalation_parts import wait_until
from tests.fleet_support import FleetKit, fleet_kit, profile_doc
from tests.ops_support import ServedDaemon, served_daemon, small_engine_config, toml_document

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

DEVICE = "test-device"  # the harness's device id
GROUP = Target("group", "pi5")
ME = Target("device", DEVICE)


def test_pushed_profiles_are_applied_rolled_back_and_replayed(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    state = tmp_path / "daemon"
    with fleet_kit(tmp_path / "fleet", mosquitto) as kit:
        config = {
            "broker": {"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            "fleet": {"group": "pi5", "key": str(kit.public_key)},
        }
        with running_daemon(state, config) as edged:
            wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")

            # a group profile that changes live settings only
            since = kit.mark()
            kit.push(GROUP, profile_doc("pi5-live", routing={"router_threshold": 0.3}), version=1)
            assert kit.ack(DEVICE, GROUP, 1, since=since).outcome == "applied"
            status = edged.status()
            assert (status.profile.name, status.profile.version, status.profile.origin) == (
                "pi5-live",
                1,
                "fleet",
            )
            assert status.profile.group == "pi5"
            assert edged.daemon.profile.routing.router_threshold == pytest.approx(0.3)

            # a device profile that needs a new engine: loaded, health-checked, swapped
            since = kit.mark()
            kit.push(ME, profile_doc("pi5-two-slots", engine={"slots": 2}), version=1)
            assert kit.ack(DEVICE, ME, 1, since=since).outcome == "applied"
            status = edged.status()
            assert status.slots_free + status.slots_busy == 2
            assert status.profile.name == "pi5-two-slots"
            assert edged.stub.Generate(pb.GenerateRequest(prompt="Say hi.", max_tokens=4), timeout=60).text

            # a model that cannot load: rolled back, the running profile and engine stay
            bogus = tmp_path / "bogus.gguf"
            bogus.write_bytes(b"not a model" * 64)
            since = kit.mark()
            broken = profile_doc("broken", engine={"model": "bogus", "model_path": str(bogus)})
            kit.push(ME, broken, version=2)
            ack = kit.ack(DEVICE, ME, 2, since=since)
            assert ack.outcome == "rolled_back"
            assert "new engine failed" in ack.detail or "new engine failed" in (ack.reason or "")
            assert edged.status().profile.name == "pi5-two-slots"
            assert edged.stub.Generate(pb.GenerateRequest(prompt="Say hi.", max_tokens=4), timeout=60).text

    # the next start has no broker to talk to: the last good fleet profile runs anyway
    offline = {
        "broker": {"url": f"mqtt://127.0.0.1:{free_port()}", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "fleet": {"group": "pi5", "key": str(kit.public_key)},
    }
    with running_daemon(state, offline) as edged:
        status = edged.status()
        assert status.profile.name == "pi5-two-slots"
        assert status.slots_free + status.slots_busy == 2
        assert status.link.state != "connected"
        assert edged.daemon.profile.routing.router_threshold == pytest.approx(0.3)


STORY = "Write a long story about a dragon."  # greedy: runs on past 400 tokens, so answers end at their limit
OPS_DEVICE = "ops-test"  # the device id of tests.ops_support's config


def token_cap(edged: ServedDaemon) -> str:
    """The max_tokens range the daemon accepts, from its refusal of a request above any cap used here."""
    with pytest.raises(grpc.RpcError) as refused:
        edged.generate(prompt=STORY, max_tokens=1000, temperature=0.0, mode=pb.LOCAL_ONLY)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
    details = str(refused.value.details())
    return details[details.index("outside ") + len("outside ") :]


def default_answer_tokens(edged: ServedDaemon) -> int:
    """Tokens in an answer that does not set max_tokens: the running engine.default_max_tokens."""
    answer = edged.generate(prompt=STORY, temperature=0.0, mode=pb.LOCAL_ONLY)
    assert answer.finish_reason == "length", answer
    tokens: int = answer.usage.completion_tokens
    return tokens


def push_and_wait(kit: FleetKit, profile: dict[str, object], version: int) -> Ack:
    """Push a group profile and wait for the daemon's ack of it."""
    since = kit.mark()
    kit.push(GROUP, profile, version=version)
    return kit.ack(OPS_DEVICE, GROUP, version, since=since)


def sighup(edged: ServedDaemon, config_text: str, after: int) -> tuple[int, str]:
    """Write the config, SIGHUP, wait for RELOADING=1 then READY=1: READY's index and its STATUS."""
    edged.config_path.write_text(config_text)
    edged.send(signal.SIGHUP)
    reloading = edged.wait_notification("RELOADING", "1", after=after + 1)
    ready = edged.wait_ready(after=reloading + 1)
    return ready, edged.notify.messages[ready]["STATUS"]


def test_sighup_keeps_the_fleet_profile_and_later_pushes_merge_on_the_reloaded_config(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with fleet_kit(tmp_path / "fleet", mosquitto) as kit:
        config = small_engine_config(
            tmp_path,
            engine={"max_tokens_cap": 400, "default_max_tokens": 16},
            broker={"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            fleet={"group": "pi5", "key": str(kit.public_key)},
        )
        with served_daemon(tmp_path, config) as edged:
            ready = edged.wait_ready()
            wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")
            ack = push_and_wait(kit, profile_doc("fleet-cap", engine={"max_tokens_cap": 300}), 1)
            assert ack.outcome == "applied", ack
            assert token_cap(edged) == "1..300"

            # The operator edits the config: a cap the fleet overrides, and a default the fleet leaves alone.
            config["engine"] |= {"max_tokens_cap": 350, "default_max_tokens": 8}
            ready, status = sighup(edged, toml_document(config), after=ready)
            assert "reload refused" not in status, edged.describe()
            assert token_cap(edged) == "1..300", "the reload dropped the fleet's layer"
            assert default_answer_tokens(edged) == 8, "the reload did not apply the config"
            profile = edged.status().profile
            assert (profile.name, profile.version, profile.origin) == ("fleet-cap", 1, "fleet")

            # A later push merges on the reloaded config, not on the one the daemon started with.
            ack = push_and_wait(kit, profile_doc("fleet-cap-2", engine={"max_tokens_cap": 280}), 2)
            assert ack.outcome == "applied", ack
            assert token_cap(edged) == "1..280"
            assert default_answer_tokens(edged) == 8

            # A push whose privacy gate cannot be built, with an engine change beside it: nothing of it applies.
            broken = profile_doc(
                "no-gate", engine={"slots": 1}, privacy={"detector": {"spacy_model": "no_such_pkg"}}
            )
            ack = push_and_wait(kit, broken, 3)
            assert (ack.outcome, ack.reason) == ("rolled_back", "apply_failed"), ack
            assert "spacy_model = 'no_such_pkg'" in ack.detail, ack
            status_now = edged.status()
            assert status_now.profile.name == "fleet-cap-2"
            assert status_now.slots_free + status_now.slots_busy == 2, "the new engine went in anyway"
            assert token_cap(edged) == "1..280"

            # The same through SIGHUP: READY=1 still comes, saying the reload was refused, and nothing changed.
            config["engine"] |= {"slots": 1}
            broken_config = toml_document(config) + '[privacy.detector]\nspacy_model = "no_such_pkg"\n'
            ready, status = sighup(edged, broken_config, after=ready)
            assert status.startswith("serving"), status
            assert "reload refused" in status, status
            assert "no_such_pkg" in status, status
            status_now = edged.status()
            assert status_now.slots_free + status_now.slots_busy == 2, "the new engine went in anyway"
            assert status_now.profile.name == "fleet-cap-2"
            assert token_cap(edged) == "1..280"
            assert default_answer_tokens(edged) == 8


@pytest.mark.parametrize("attempt", [1, 2])
def test_sigterm_leaves_a_clean_offline_status_not_the_last_will(
    mosquitto: MosquittoBroker, tmp_path: Path, attempt: int
) -> None:
    """issue 17 (16): after SIGTERM the retained status read "offline / connection lost" (2 of 2 runs)."""
    with fleet_kit(tmp_path / "fleet", mosquitto) as kit:
        config = small_engine_config(
            tmp_path,
            broker={"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
            fleet={"group": "pi5", "key": str(kit.public_key)},
        )
        with served_daemon(tmp_path, config) as edged:
            edged.wait_ready()
            wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")
            assert kit.observer.wait(
                lambda: kit.observer.statuses.get("ops-test", {}).get("state") == "online", 10
            )
            edged.send(signal.SIGTERM)
            assert edged.wait_exit() == 0, edged.describe()
    with fleet_kit(tmp_path / "later", mosquitto) as later:  # a newcomer reads only what is retained now
        later.observer.sync()
        status = later.observer.statuses["ops-test"]
    assert (status["state"], status["cause"]) == ("offline", "stopped"), status
