"""Durable fleet state under STATE_DIR/fleet: versions seen, the last good profile layers, the key ring.

Every file is replaced atomically: written to a temporary file in the same directory, fsynced, renamed over
the old one, and the directory fsynced, so a power cut leaves either the old or the new content. The version
of a message is recorded here BEFORE it is applied: a profile that crashes the daemon is never applied twice.

    versions.json   {"streams": {STREAM: {"version": N, "digest": SHA256, "state": STATE}}}
    applied.json    {"layers": {"group"|"device": {"target": ..., "version": N, ..., "profile": {...}}}}
    keyring.json    {"keys": {KEY_ID: BASE64}, "revoked": [KEY_ID]}

A file that cannot be read back is moved aside (NAME.corrupt-UNIXTIME) and logged; the device then runs as if
it had no fleet state rather than refusing to start.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from edged.files import write_atomic
from edged.fleet.envelope import Target
from edged.fleet.keys import KeyRing

logger = logging.getLogger(__name__)


class StreamState(StrEnum):
    APPLYING = "applying"  # recorded, apply not finished: at start this becomes rolled_back ("interrupted")
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    # A device with no record of the stream learned this version from its own retained state (it lost its
    # state directory): nothing below it is accepted, this very version may still be applied.
    LEARNED = "learned"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """The highest version of one stream (kind + target) this device accepted, and what became of it."""

    version: int
    digest: str
    state: StreamState


@dataclass(frozen=True, slots=True)
class AppliedLayer:
    """One fleet profile layer that is part of the running profile."""

    scope: str
    name: str
    version: int
    key_id: str
    issued_at: int
    applied_at: float
    profile: dict[str, Any]

    @property
    def target(self) -> Target:
        return Target(self.scope, self.name)


class FleetStore:
    """The fleet files of one device. Used from one thread (the agent's worker); reads are cached."""

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / "fleet"
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._streams = self._load_streams()

    # -- versions ----------------------------------------------------------------------------------

    def stream(self, stream: str) -> StreamRecord | None:
        return self._streams.get(stream)

    def streams(self) -> dict[str, StreamRecord]:
        return dict(self._streams)

    def record(self, stream: str, version: int, digest: str, state: StreamState) -> None:
        """Durably record the outcome of `version` of `stream` (fsync + atomic rename before returning)."""
        streams = {**self._streams, stream: StreamRecord(version, digest, state)}
        document = {"streams": {name: asdict(record) for name, record in sorted(streams.items())}}
        write_atomic(self.directory / "versions.json", _dump(document))
        self._streams = streams

    def _load_streams(self) -> dict[str, StreamRecord]:
        document = self._read("versions.json")
        if document is None:
            return {}
        try:
            return {
                name: StreamRecord(int(item["version"]), str(item["digest"]), StreamState(item["state"]))
                for name, item in document["streams"].items()
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._quarantine("versions.json", exc)
            return {}

    # -- applied layers ----------------------------------------------------------------------------

    def layers(self) -> dict[str, AppliedLayer]:
        """The persisted last good fleet layers by scope ("group", "device")."""
        document = self._read("applied.json")
        if document is None:
            return {}
        try:
            return {scope: AppliedLayer(**item) for scope, item in document["layers"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            self._quarantine("applied.json", exc)
            return {}

    def save_layers(self, layers: dict[str, AppliedLayer]) -> None:
        document = {"layers": {scope: asdict(layer) for scope, layer in sorted(layers.items())}}
        write_atomic(self.directory / "applied.json", _dump(document))

    # -- key ring ----------------------------------------------------------------------------------

    def keyring(self) -> KeyRing | None:
        document = self._read("keyring.json")
        if document is None:
            return None
        try:
            return KeyRing.from_json(document)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self._quarantine("keyring.json", exc)
            return None

    def save_keyring(self, ring: KeyRing) -> None:
        write_atomic(self.directory / "keyring.json", _dump(ring.to_json()))

    # -- files -------------------------------------------------------------------------------------

    def _read(self, name: str) -> Any:
        path = self.directory / name
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._quarantine(name, exc)
            return None

    def _quarantine(self, name: str, exc: Exception) -> None:
        path = self.directory / name
        aside = path.with_name(f"{name}.corrupt-{int(time.time())}")
        logger.error(
            "fleet state file %s is unreadable (%s); moved to %s, starting without it", path, exc, aside
        )
        try:
            os.replace(path, aside)
        except OSError as move_error:
            logger.error("could not move %s aside: %s", path, move_error)


def _dump(document: Any) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
