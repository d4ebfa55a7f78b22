"""The audit log: one JSON line per request the gate judged, never any raw content.

    <state_dir>/audit/audit.jsonl      newest records, appended (mode 0600)
    <state_dir>/audit/audit.jsonl.1    rotated when the current file would pass max_bytes; .1 is the newest
    <state_dir>/audit/audit.salt       32 random bytes (mode 0600) keying the value hashes

One record per request, written once when it ends (answered, refused, failed, or abandoned by its caller). It
holds the time, request id, route (what left the device), outcome (how the request ended), policy, data classes,
reasons, entity types with counts, and for each entity type the salted hashes (HMAC-SHA256, truncated) of the
values found, so an auditor with access to the device can check whether a given value passed through without
the log holding it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from edged.config.privacy import AuditSettings
from edged.domain import Message
from edged.errors import ConfigError
from edged.files import FileWriter
from edged.sovereignty.verdict import Verdict

logger = logging.getLogger(__name__)

LOG_NAME = "audit.jsonl"
SALT_NAME = "audit.salt"
SALT_BYTES = 32
HASH_CHARS = 24
MAX_REQUEST_ID = 128


class AuditRoute(StrEnum):
    """What left the device. CLOUD and CLOUD_REDACTED are written once the request was handed to the broker,
    whoever answered in the end (a fallback to the device, an error, or a caller that went away)."""

    LOCAL = "LOCAL"  # nothing left the device: it stayed here (answered here, or failed or cancelled here)
    CLOUD = "CLOUD"  # sent to the cloud as it was (ALLOW)
    CLOUD_REDACTED = "CLOUD_REDACTED"  # sent with values replaced by placeholders
    DENIED = (
        "DENIED"  # nothing left: the privacy policy keeps the data local and the caller required the cloud
    )
    REFUSED = "REFUSED"  # nothing left: refused for a reason that is not privacy (budget, link); see outcome


# How a request ended: ANSWERED_LOCAL, ANSWERED_CLOUD, or the error's code (edged.telemetry.metrics.outcome_of:
# sensitive_data_blocked, budget_exhausted, no_cloud_link, cloud_unavailable, deadline_exceeded, cancelled, ...).
ANSWERED_LOCAL = "answered_local"
ANSWERED_CLOUD = "answered_cloud"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    time: datetime
    request_id: str
    route: AuditRoute
    policy: str
    outcome: str = ""  # "" only in records written before edged recorded it
    data_classes: tuple[str, ...] = ()
    forced_by: str | None = None
    reasons: tuple[str, ...] = ()
    entities: dict[str, int] = field(default_factory=dict)
    value_hashes: dict[str, list[str]] = field(default_factory=dict)
    detector_failed: bool = False
    redacted_values: int = 0
    invented: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        data["time"] = self.time.isoformat(timespec="milliseconds")
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> AuditRecord:
        """Parse one line; ValueError (naming the problem) when it is not a record."""
        try:
            data: dict[str, Any] = json.loads(line)
            return cls(
                time=datetime.fromisoformat(data["time"]),
                request_id=str(data["request_id"]),
                route=AuditRoute(data["route"]),
                policy=str(data["policy"]),
                outcome=str(data.get("outcome", "")),
                data_classes=tuple(data.get("data_classes", ())),
                forced_by=data.get("forced_by"),
                reasons=tuple(data.get("reasons", ())),
                entities=dict(data.get("entities", {})),
                value_hashes={k: list(v) for k, v in data.get("value_hashes", {}).items()},
                detector_failed=bool(data.get("detector_failed", False)),
                redacted_values=int(data.get("redacted_values", 0)),
                invented=dict(data.get("invented", {})),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an audit record: {type(exc).__name__}: {exc}") from None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Appends records (thread-safe; one write per record, so lines never interleave) and rotates by size. A
    failed write is logged and counted, never raised: the audit must not take the daemon down."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = AuditSettings().max_bytes,
        keep_files: int = AuditSettings().keep_files,
        clock: Callable[[], datetime] = _utc_now,
        writer: FileWriter | None = None,
    ) -> None:
        self.directory = directory
        self.path = directory / LOG_NAME
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.write_failures = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._writer = writer
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._salt = load_salt(directory)

    @classmethod
    def open(cls, state_dir: Path, settings: AuditSettings, writer: FileWriter | None = None) -> AuditLog:
        return cls(
            state_dir / "audit", max_bytes=settings.max_bytes, keep_files=settings.keep_files, writer=writer
        )

    def reconfigured(self, settings: AuditSettings) -> AuditLog:
        """The same log (directory, salt, lock, writer) with a new profile's rotation limits."""
        if (settings.max_bytes, settings.keep_files) == (self.max_bytes, self.keep_files):
            return self
        log = copy.copy(self)
        log.max_bytes, log.keep_files = settings.max_bytes, settings.keep_files
        return log

    def value_hash(self, value: str) -> str:
        return value_hash(self._salt, value)

    def record(
        self,
        *,
        request_id: str,
        route: AuditRoute,
        verdict: Verdict,
        messages: Sequence[Message],
        outcome: str = "",
        fields: Sequence[str] = (),
        reasons: Sequence[str] = (),
        redacted_values: int = 0,
        invented: Mapping[str, int] | None = None,
    ) -> AuditRecord:
        """Write the record of one request (once: see the module docstring). `fields` are the texts of the
        control fields the verdict scanned (`verdict.fields`, in order), so values found there are hashed too.
        `reasons` are the pipeline's (routing) reasons, added to the verdict's; they must be edged's own codes,
        never user text."""
        entry = AuditRecord(
            time=self._clock(),
            request_id=request_id[:MAX_REQUEST_ID],
            route=route,
            policy=verdict.policy.value,
            outcome=outcome,
            data_classes=verdict.data_classes,
            forced_by=verdict.forced_by,
            reasons=(*verdict.reasons, *reasons),
            entities=dict(verdict.entities),
            value_hashes=self._hashes(verdict, [m.content for m in messages], fields),
            detector_failed=verdict.detector_failed,
            redacted_values=redacted_values,
            invented=dict(invented or {}),
        )
        self.append(entry)
        return entry

    def _hashes(
        self, verdict: Verdict, messages: Sequence[str], fields: Sequence[str]
    ) -> dict[str, list[str]]:
        hashes: dict[str, set[str]] = {}
        scanned = [
            *zip(messages, verdict.findings, strict=False),
            *zip(fields, verdict.field_findings, strict=False),
        ]
        for text, findings in scanned:
            for f in findings:
                hashes.setdefault(f.entity_type, set()).add(self.value_hash(text[f.start : f.end]))
        return {entity: sorted(values) for entity, values in sorted(hashes.items())}

    def append(self, entry: AuditRecord) -> None:
        """With a writer, hand the line to its thread (the daemon's event loop never waits on the disk;
        issue 17: 5); without one (tools, tests), write it now."""
        line = (entry.to_json() + "\n").encode("utf-8")
        if self._writer is None:
            self._write(entry.request_id, line)
        else:
            self._writer.submit(functools.partial(self._write, entry.request_id, line))

    def _write(self, request_id: str, line: bytes) -> None:
        with self._lock:
            try:
                self._rotate_if_needed(len(line))
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.write_failures += 1
                logger.error("audit record %s not written to %s: %s", request_id, self.path, exc)

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        oldest = self._rotated(self.keep_files)
        oldest.unlink(missing_ok=True)
        for index in range(self.keep_files - 1, 0, -1):
            if (source := self._rotated(index)).exists():
                source.rename(self._rotated(index + 1))
        self.path.rename(self._rotated(1))
        logger.info("audit log rotated (%d bytes; keeping %d files)", size, self.keep_files)

    def _rotated(self, index: int) -> Path:
        return self.path.with_name(f"{LOG_NAME}.{index}")


def load_salt(directory: Path) -> bytes:
    """The directory's salt, created (0600) on first use; a salt file others can read is made private."""
    path = directory / SALT_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            logger.warning("audit salt %s was readable by others; setting mode 0600", path)
            path.chmod(0o600)
        return _read_salt(path)
    salt = os.urandom(SALT_BYTES)
    try:
        os.write(fd, salt)
    finally:
        os.close(fd)
    return salt


def value_hash(salt: bytes, value: str) -> str:
    return hmac.new(salt, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:HASH_CHARS]


def match_hash(directory: Path, value: str) -> str:
    """The hash `value` has in the records of `directory` (what `edged audit --match` looks for); the salt is
    read, never created. OSError if it cannot be read, ConfigError if the file is not a salt."""
    return value_hash(_read_salt(directory / SALT_NAME), value)


def _read_salt(path: Path) -> bytes:
    """An existing salt file's bytes; OSError if it cannot be read, ConfigError if it is not a salt."""
    salt = path.read_bytes()
    if len(salt) != SALT_BYTES:
        raise ConfigError(str(path), [("(file)", len(salt), f"an audit salt is {SALT_BYTES} bytes")])
    return salt


def log_files(directory: Path) -> list[Path]:
    """The audit files, oldest first."""
    rotated = []
    for path in directory.glob(f"{LOG_NAME}.*"):
        suffix = path.name.rsplit(".", 1)[1]
        if suffix.isdigit():
            rotated.append((int(suffix), path))
    current = directory / LOG_NAME
    return [p for _, p in sorted(rotated, reverse=True)] + ([current] if current.exists() else [])


@dataclass
class AuditReader:
    """Reads records oldest first, filtered; lines that are not records are skipped and counted."""

    directory: Path
    since: datetime | None = None
    route: AuditRoute | None = None
    value_hash: str | None = None
    skipped: int = 0

    def __iter__(self) -> Iterator[AuditRecord]:
        for path in log_files(self.directory):
            with path.open(encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = AuditRecord.from_json(line)
                    except ValueError as exc:
                        self.skipped += 1
                        logger.warning("%s:%d skipped: %s", path, number, exc)
                        continue
                    if self._wanted(entry):
                        yield entry

    def _wanted(self, entry: AuditRecord) -> bool:
        if self.since is not None and entry.time < self.since:
            return False
        if self.route is not None and entry.route is not self.route:
            return False
        return self.value_hash is None or any(self.value_hash in h for h in entry.value_hashes.values())
