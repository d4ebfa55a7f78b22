"""A start that fails half way through a step is torn down like a finished one (issue 17: 4): a bad broker
password file, found by the MQTT link after the fleet's thread had started, left that thread (and the loaded
engine) running."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from edged.config import parse_config
from edged.routing.load import FakeSystemSource
from edged.service.daemon import Daemon
from tests.brokers import MosquittoBroker
from tests.fleet_support import make_signer

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]


def test_a_step_that_fails_half_way_is_torn_down(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    _, public_key = make_signer(tmp_path / "keys", "fleet.key")
    config = parse_config(
        {
            "device_id": "test-device",
            "state_dir": str(tmp_path / "state"),
            "api": {"socket": str(tmp_path / "edged.sock")},
            "engine": {"threads": 2, "slots": 1, "context_per_slot": 256},
            "broker": {
                "url": mosquitto.url,
                "username": "test-device",
                "password_file": str(tmp_path / "no-such-password"),
            },
            "fleet": {"group": "pi5", "key": str(public_key)},
        }
    )
    daemon = Daemon(config, load_source=FakeSystemSource())
    assert asyncio.run(daemon.run(handle_signals=False)) == 1
    alive = [t.name for t in threading.enumerate() if t.name == "edged-fleet" or t.name.startswith("engine-")]
    assert alive == [], f"still running after the failed start: {alive}"
    assert not (tmp_path / "edged.sock").exists()


def test_a_reload_task_is_held_until_it_ends(tmp_path: Path) -> None:
    """issue 17 (3): SIGHUP's reload task had no reference, so the garbage collector could end it midway."""
    config = parse_config({"state_dir": str(tmp_path / "state"), "api": {"socket": str(tmp_path / "s.sock")}})
    daemon = Daemon(config, load_source=FakeSystemSource())

    async def signal_then_settle() -> tuple[int, int]:
        daemon.reload_soon()
        held = len(daemon._reloads)
        await asyncio.gather(*daemon._reloads)
        return held, len(daemon._reloads)

    assert asyncio.run(signal_then_settle()) == (1, 0)
