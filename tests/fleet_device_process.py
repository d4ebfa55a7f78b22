"""A fleet device in its own process, for tests that kill it: `python -m tests.fleet_device_process ...`.

Its applier (the daemon's seam) exits the process abruptly on a profile whose model is "crash-on-apply", as a
daemon killed mid-swap would; otherwise it applies. Prints "ready" once connected.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from edged.comms import ThreadLink
from edged.config.broker import BrokerSettings
from edged.config.daemon import DaemonConfig
from edged.config.fleet import FleetSettings
from edged.config.profile import DeviceProfile
from edged.fleet.agent import FleetAgent
from edged.fleet.outcome import ApplyOutcome

CRASH_MODEL = "crash-on-apply"


def apply(profile: DeviceProfile) -> ApplyOutcome:
    if profile.engine.model == CRASH_MODEL:
        os._exit(70)  # no cleanup, no DISCONNECT: the broker publishes the Last Will
    return ApplyOutcome.applied()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args()
    config = DaemonConfig(
        device_id=args.device, state_dir=args.state_dir, fleet=FleetSettings(group=args.group, key=args.key)
    )
    link = ThreadLink.own(BrokerSettings(url=args.broker, keepalive_s=5), args.device)
    agent = FleetAgent.from_config(config, link, apply, dict)
    agent.start()
    link.start()
    link.wait_connected(20)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
