"""Fleet rollout: time from one push to the acks of every simulated device, on one local Mosquitto.

    .venv/bin/python bench/fleet_rollout.py [--sizes 100,1000,5000] [--state-root /dev/shm]

Each size gets a fresh broker and a SimulatedFleet: N devices, each with its own state dir, key ring and
version store, running the real FleetDevice code (Ed25519 verify, profile merge and validation, fsync'd
version record before the apply, persisted layers, ack + retained state), 50 devices per MQTT connection.
Three ways to roll one profile out, side by side:

    group     edged: ONE signed retained message on the group topic; the broker fans it out
    per-dev   naive: N signed messages, one per device topic, published back to back (unretained)
    serial    naive: one device at a time, waiting for its ack before the next (sizes <= --serial-max)

Reported: seconds from the first byte signed to the last ack, and each naive way's time / edged's time.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edged.comms import ThreadLink
from edged.config.broker import BrokerSettings
from edged.fleet.envelope import Target
from edged.fleet.keys import Signer, load_private_key, write_key_pair
from edged.fleet.observer import Ack, FleetObserver
from edged.fleet.simulation import SimulatedFleet
from edged.fleet.topics import FleetTopics
from tests.brokers import MosquittoBroker

GROUP = "bench"
LIFETIME_S = 3600
TIMEOUT_S = 300.0
Rollout = Callable[[], dict[str, Ack]]


def profile(version: int) -> dict[str, object]:
    return {
        "name": f"bench-v{version}",
        "engine": {"threads": 2, "slots": 4},
        "routing": {"router_threshold": 0.6},
    }


@contextlib.contextmanager
def fleet_on_broker(
    root: Path, key: Path, count: int, per_connection: int, workers: int
) -> Iterator[tuple[SimulatedFleet, FleetObserver, float]]:
    with MosquittoBroker(workdir=root / "broker") as broker:
        link = ThreadLink.own(
            BrokerSettings(url=broker.url, max_inflight_messages=1000, max_queued_messages=1_000_000),
            "bench-tool",
        )
        observer = FleetObserver(link, FleetTopics())
        link.start()
        link.wait_connected(10)
        started = time.perf_counter()
        fleet = SimulatedFleet(
            broker.url,
            root / "devices",
            Path(str(key) + ".pub"),
            count=count,
            group=GROUP,
            connections=math.ceil(count / per_connection),
            workers=workers,
        )
        fleet.start()
        if not observer.wait(lambda: len(observer.states) >= count, TIMEOUT_S):
            raise RuntimeError(f"only {len(observer.states)} of {count} devices came online")
        try:
            yield fleet, observer, time.perf_counter() - started
        finally:
            fleet.stop()
            link.stop()


def timed(run: Rollout, count: int) -> float:
    start = time.perf_counter()
    acks = run()
    elapsed = time.perf_counter() - start
    if len(acks) < count:
        raise RuntimeError(f"only {len(acks)} of {count} acks within {TIMEOUT_S} s")
    bad = [a for a in acks.values() if a.outcome != "applied"]
    if bad:
        raise RuntimeError(f"{len(bad)} devices did not apply: {bad[:3]}")
    return elapsed


def group_push(signer: Signer, fleet: SimulatedFleet, observer: FleetObserver, version: int) -> Rollout:
    target = Target("group", GROUP)

    def run() -> dict[str, Ack]:
        payload = signer.sign("profile", version, target, profile(version), lifetime_s=LIFETIME_S)
        observer.link.publish(observer.topics.inbound("profile", target), payload, 1, True)
        return observer.wait_acks("profile", target, version, len(fleet.devices), TIMEOUT_S)

    return run


def per_device_push(signer: Signer, fleet: SimulatedFleet, observer: FleetObserver, version: int) -> Rollout:
    def run() -> dict[str, Ack]:
        for device in fleet.devices:
            target = Target("device", device.device_id)
            payload = signer.sign("profile", version, target, profile(version), lifetime_s=LIFETIME_S)
            observer.link.publish(observer.topics.inbound("profile", target), payload, 1, False)
        return observer.wait_acks("profile", None, version, len(fleet.devices), TIMEOUT_S)

    return run


def serial_push(signer: Signer, fleet: SimulatedFleet, observer: FleetObserver, version: int) -> Rollout:
    def run() -> dict[str, Ack]:
        acks: dict[str, Ack] = {}
        for device in fleet.devices:
            target = Target("device", device.device_id)
            payload = signer.sign("profile", version, target, profile(version), lifetime_s=LIFETIME_S)
            observer.link.publish(observer.topics.inbound("profile", target), payload, 1, False)
            acks.update(observer.wait_acks("profile", target, version, [device.device_id], TIMEOUT_S))
        return acks

    return run


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,5000", help="fleet sizes, comma-separated")
    parser.add_argument(
        "--per-connection", type=int, default=50, help="simulated devices per MQTT connection"
    )
    parser.add_argument("--workers", type=int, default=8, help="threads that run the devices' code")
    parser.add_argument(
        "--serial-max", type=int, default=1000, help="largest size the serial baseline runs at"
    )
    default_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    parser.add_argument(
        "--state-root", default=default_root, help="where device state dirs go (default tmpfs)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"fleet rollout on one Mosquitto; {args.per_connection} devices per connection, "
        f"{args.workers} workers, "
        f"state dirs under {args.state_root or tempfile.gettempdir()}, {os.cpu_count()} CPUs"
    )
    rows = []
    for count in sizes:
        with tempfile.TemporaryDirectory(dir=args.state_root, prefix="edged-fleet-bench-") as tmp:
            root = Path(tmp)
            write_key_pair(root / "fleet.key")
            signer = Signer(load_private_key(root / "fleet.key"))
            with fleet_on_broker(root, root / "fleet.key", count, args.per_connection, args.workers) as (
                fleet,
                observer,
                setup_s,
            ):
                group_s = timed(group_push(signer, fleet, observer, 1), count)
                per_device_s = timed(per_device_push(signer, fleet, observer, 2), count)
                serial_s = (
                    timed(serial_push(signer, fleet, observer, 3), count)
                    if count <= args.serial_max
                    else None
                )
        rows.append((count, setup_s, group_s, per_device_s, serial_s))
        print(f"  {count} devices done (fleet start {setup_s:.1f} s)", flush=True)

    print()
    print(
        "| devices | edged group push (s) | per-device pushes (s) | ratio | serial push+ack (s) | ratio | "
        "edged acks/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count, _, group_s, per_device_s, serial_s in rows:
        serial = f"{serial_s:.2f} | {serial_s / group_s:.1f}x" if serial_s is not None else "not run | -"
        print(
            f"| {count} | {group_s:.2f} | {per_device_s:.2f} | {per_device_s / group_s:.1f}x | {serial} | "
            f"{count / group_s:.0f} |"
        )
    goal = [r for r in rows if r[0] == 1000]
    if goal:
        verdict = "met" if goal[0][2] <= 10.0 else "MISSED"
        print(f"\ngoal: 1,000 devices acked within 10 s after one push: {verdict} ({goal[0][2]:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
