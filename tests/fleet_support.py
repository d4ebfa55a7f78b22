"""Shared pieces of the fleet tests: keys, agents on a real Mosquitto, an observer, and signed pushes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.comms import ThreadLink
from edged.config.broker import BrokerSettings
from edged.config.daemon import DaemonConfig
from edged.config.fleet import FleetSettings
from edged.fleet.agent import FleetAgent
from edged.fleet.envelope import Target
from edged.fleet.keys import Signer, load_private_key, write_key_pair
from edged.fleet.observer import Ack, FleetObserver
from edged.fleet.outcome import ProfileBase
from edged.fleet.simulation import SimulatedApplier
from edged.fleet.topics import FleetTopics
from tests.brokers import MosquittoBroker

WAIT_S = 20.0  # generous: a wait that times out fails the test, it never measures speed
HOUR = 3600


def make_signer(directory: Path, name: str) -> tuple[Signer, Path]:
    """A fresh key pair in `directory`: the signer and the public key file."""
    directory.mkdir(parents=True, exist_ok=True)
    public, _ = write_key_pair(directory / name)
    return Signer(load_private_key(directory / name)), public


@dataclass
class RunningAgent:
    agent: FleetAgent
    link: ThreadLink
    applier: SimulatedApplier
    config: DaemonConfig

    def stop(self) -> None:
        self.agent.stop()
        self.link.stop()


@dataclass
class FleetKit:
    root: Path
    broker: MosquittoBroker
    signer: Signer
    public_key: Path
    topics: FleetTopics = field(default_factory=FleetTopics)
    observer: FleetObserver = field(init=False)
    _links: list[ThreadLink] = field(default_factory=list)
    _agents: list[RunningAgent] = field(default_factory=list)

    def __post_init__(self) -> None:
        link = self._link("fleet-observer")
        self.observer = FleetObserver(link, self.topics)
        link.start()
        link.wait_connected(WAIT_S)

    def _link(self, client_id: str) -> ThreadLink:
        link = ThreadLink.own(BrokerSettings(url=self.broker.url), client_id)
        self._links.append(link)
        return link

    def config(self, device_id: str, group: str | None = "pi5", **fleet: Any) -> DaemonConfig:
        settings = FleetSettings(group=group, key=self.public_key, **fleet)
        return DaemonConfig(device_id=device_id, state_dir=self.root / device_id, fleet=settings)

    def agent(
        self,
        device_id: str,
        group: str | None = "pi5",
        applier: SimulatedApplier | None = None,
        telemetry: Callable[[], Mapping[str, Any]] = dict,
        **fleet: Any,
    ) -> RunningAgent:
        """Start an agent the way the daemon does: agent first (Last Will, subscriptions), then the link."""
        config = self.config(device_id, group, **fleet)
        applier = applier or SimulatedApplier()
        link = ThreadLink.own(BrokerSettings(url=self.broker.url), device_id)
        agent = FleetAgent(
            device_id,
            config.fleet,
            config.state_dir,
            link,
            applier=applier,
            telemetry=telemetry,
            base=ProfileBase(config),
        )
        agent.start()
        link.start()
        link.wait_connected(WAIT_S)
        running = RunningAgent(agent, link, applier, config)
        self._agents.append(running)
        return running

    def publish(self, target: Target, payload: bytes, kind: str = "profile") -> None:
        """Publish retained on the target's topic, as `edged-fleet push` does."""
        self.observer.link.publish_and_wait(self.topics.inbound(kind, target), payload, WAIT_S, retain=True)

    def push(
        self,
        target: Target,
        profile: Mapping[str, Any],
        version: int,
        signer: Signer | None = None,
        lifetime_s: int = HOUR,
        issued_at: int | None = None,
    ) -> bytes:
        payload = (signer or self.signer).sign(
            "profile", version, target, profile, lifetime_s=lifetime_s, issued_at=issued_at
        )
        self.publish(target, payload)
        return payload

    def mark(self) -> int:
        """The number of acks seen so far: pass it as `since` to wait only for later ones."""
        return len(self.observer.acks)

    def ack(
        self, device: str, target: Target, version: int | None, kind: str = "profile", since: int = 0
    ) -> Ack:
        """Wait for an ack of `version` from `device`, among acks after `since`; fails if none comes."""

        def found() -> Ack | None:
            acks = self.observer.acks[since:]
            return next((a for a in reversed(acks) if self._matches(a, device, target, version, kind)), None)

        assert self.observer.wait(lambda: found() is not None, WAIT_S), (
            f"no ack: {device} {target} v{version}"
        )
        ack = found()
        assert ack is not None
        return ack

    @staticmethod
    def _matches(ack: Ack, device: str, target: Target, version: int | None, kind: str) -> bool:
        return ack.device == device and ack.target == target and ack.version == version and ack.kind == kind

    def state(self, device: str, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait for a retained state document of `device` that satisfies `predicate`."""

        def ready() -> bool:
            state = self.observer.states.get(device)
            return state is not None and predicate(state)

        assert self.observer.wait(ready, WAIT_S), f"state of {device}: {self.observer.states.get(device)}"
        return self.observer.states[device]

    def close(self) -> None:
        for running in self._agents:
            running.stop()
        for link in self._links:
            link.stop()


@contextmanager
def fleet_kit(root: Path, broker: MosquittoBroker) -> Iterator[FleetKit]:
    signer, public = make_signer(root / "keys", "fleet.key")
    kit = FleetKit(root, broker, signer, public)
    try:
        yield kit
    finally:
        kit.close()


def profile_doc(name: str, **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A profile document (what a TOML profile file parses to)."""
    return {"name": name, **{key: dict(value) for key, value in sections.items()}}


def as_json(payload: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(payload)
    return document
