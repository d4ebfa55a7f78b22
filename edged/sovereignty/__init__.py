"""Data sovereignty: what of a conversation may leave the device, and the record of what did.

    config      edged.config.privacy          data classes, policies, detector and audit settings
    gate        SensitivityGate               assess -> Verdict, release -> CloudRelease, scan_reply
    detector    Detector, Finding             the detection seam; presidio.PresidioDetector is the real one
    redaction   CloudRelease, Redactor        numbered placeholders; restore.Restorer / StreamRestorer
    audit       AuditLog, AuditReader, AuditRoute  append-only JSONL under the state directory
    counters    SovereigntyCounters           plain counters; PrivacyMetrics is the metrics interface

Submodules are imported by name: Presidio and spaCy load only when a gate is built.
"""
