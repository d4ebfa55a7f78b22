"""RequestTrail: what one request did on its way through the pipeline, noted as it happens, so that its metrics
and its one audit record say what left the device and why, however the request ends.

The pipeline notes each step (the verdict, the routing reasons, the side answering it, the moment it was handed
to the broker) and ends the trail once: with the answer, with the error it raises, or when the caller went away
(cancelled, disconnected, past its deadline). A request handed to the broker may have left the device whatever
happens next, so its record says CLOUD or CLOUD_REDACTED even when the device answered it after all or nobody did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edged.domain import Source
from edged.errors import SensitiveDataBlocked
from edged.sovereignty.audit import AuditRoute
from edged.sovereignty.redaction import CloudRelease
from edged.sovereignty.verdict import Verdict


@dataclass(slots=True)
class RequestTrail:
    verdict: Verdict | None = None  # None: no cloud link, nothing was scanned (and nothing can leave)
    reasons: tuple[str, ...] = ()  # the routing reasons so far
    side: Source | None = None  # the side answering it now; None before it was routed
    sent: CloudRelease | None = None  # what was handed to the broker, if anything
    refused: bool = False  # the routing decision refused it (a privacy refusal raises SensitiveDataBlocked)
    invented: dict[str, int] = field(default_factory=dict)  # what the cloud's answer made up, by entity type
    ended: bool = False

    def handed_to_broker(self, release: CloudRelease) -> None:
        """From now on the released messages may have left the device (the first release counts: a request
        escalates once)."""
        if self.sent is None:
            self.sent = release

    def route(self, error: BaseException | None = None) -> AuditRoute:
        """What left the device, for the record of a request that ends with `error` (None: answered)."""
        if self.sent is not None:
            return AuditRoute.CLOUD_REDACTED if self.sent.redacted else AuditRoute.CLOUD
        if isinstance(error, SensitiveDataBlocked):
            return AuditRoute.DENIED
        return AuditRoute.REFUSED if self.refused else AuditRoute.LOCAL

    @property
    def redacted_values(self) -> int:
        return self.sent.replacements if self.sent is not None else 0
