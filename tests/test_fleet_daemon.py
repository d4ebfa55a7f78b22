"""Fleet profiles end to end through a real daemon: signed pushes over a real Mosquitto are applied by the daemon's
ProfileApplier (live settings, an engine swap, a rollback), reported in acks and GetStatus, and replayed at the
next start with no broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.fleet.envelope import Target
from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker, free_port
from tests.daemon_harness import running_daemon
from tests.escalation_parts import wait_until
from tests.fleet_support import fleet_kit, profile_doc

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
