"""What the gate counts, and the interface through which it reports to the daemon's metrics.

PrivacyMetrics is the part of edged.telemetry.metrics.EdgedMetrics the gate calls (it matches structurally, so
this package does not import prometheus_client); SovereigntyCounters is the gate's own plain-counter record.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Protocol


class PrivacyMetrics(Protocol):
    def record_detections(self, counts: Mapping[str, int]) -> None:
        """Values found, by entity type, in one conversation."""
        ...

    def record_redaction(self) -> None:
        """One request released to the cloud with its values redacted."""
        ...

    def record_blocked_escalation(self, data_class: str) -> None:
        """One escalation refused because of `data_class`."""
        ...


class SovereigntyCounters:
    """Plain, thread-safe counters since the gate was built (for status pages and tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.scans = 0
        self.detections: Counter[str] = Counter()
        self.redactions = 0
        self.redacted_values = 0
        self.blocked_escalations: Counter[str] = Counter()
        self.detector_failures = 0
        self.invented: Counter[str] = Counter()  # values in cloud replies that were not in the prompt

    def record_detections(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self.scans += 1
            self.detections.update(counts)

    def record_redaction(self) -> None:
        with self._lock:
            self.redactions += 1

    def record_blocked_escalation(self, data_class: str) -> None:
        with self._lock:
            self.blocked_escalations[data_class] += 1

    def record_redacted_values(self, count: int) -> None:
        with self._lock:
            self.redacted_values += count

    def record_detector_failure(self) -> None:
        with self._lock:
            self.detector_failures += 1

    def record_invented(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self.invented.update(counts)

    def snapshot(self) -> dict[str, object]:
        """A consistent copy of every counter."""
        with self._lock:
            return {
                "scans": self.scans,
                "detections": dict(self.detections),
                "redactions": self.redactions,
                "redacted_values": self.redacted_values,
                "blocked_escalations": dict(self.blocked_escalations),
                "detector_failures": self.detector_failures,
                "invented": dict(self.invented),
            }
