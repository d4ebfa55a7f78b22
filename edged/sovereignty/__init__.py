"""Data sovereignty: what of a conversation may leave the device, and the record of what did.

    config      edged.config.privacy          data classes, policies, detector and audit settings
    gate        SensitivityGate               assess -> Verdict, release -> CloudRelease, scan_reply
    detector    Detector, Finding             the detection seam; presidio.PresidioDetector is the real one
    redaction   CloudRelease, Redactor        numbered placeholders; restore.Restorer / StreamRestorer
    audit       AuditLog, AuditReader, AuditRoute  append-only JSONL under the state directory
    counters    SovereigntyCounters           plain counters; PrivacyMetrics is the metrics interface

Submodules are imported by name: Presidio and spaCy load only when a gate is built.
"""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.sovereignty.audit import ANSWERED_CLOUD as ANSWERED_CLOUD
    from edged.sovereignty.audit import ANSWERED_LOCAL as ANSWERED_LOCAL
    from edged.sovereignty.audit import AuditLog as AuditLog
    from edged.sovereignty.audit import AuditReader as AuditReader
    from edged.sovereignty.audit import AuditRecord as AuditRecord
    from edged.sovereignty.audit import AuditRoute as AuditRoute
    from edged.sovereignty.audit import log_files as log_files
    from edged.sovereignty.audit import match_hash as match_hash
    from edged.sovereignty.gate import ReplyReport as ReplyReport
    from edged.sovereignty.gate import SensitivityGate as SensitivityGate
    from edged.sovereignty.gate import control_fields as control_fields
    from edged.sovereignty.redaction import CloudRelease as CloudRelease
    from edged.sovereignty.verdict import Verdict as Verdict
    from edged.sovereignty.verdict import declared_classes as declared_classes

EXPORTS = {
    "ANSWERED_CLOUD": "audit",
    "ANSWERED_LOCAL": "audit",
    "AuditLog": "audit",
    "AuditReader": "audit",
    "AuditRecord": "audit",
    "AuditRoute": "audit",
    "CloudRelease": "redaction",
    "control_fields": "gate",
    "declared_classes": "verdict",
    "log_files": "audit",
    "match_hash": "audit",
    "ReplyReport": "gate",
    "SensitivityGate": "gate",
    "Verdict": "verdict",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
