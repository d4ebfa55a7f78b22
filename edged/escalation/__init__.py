"""Escalation: requests leave the device over MQTT v5 for cloud_bridge workers (topics in topics.py)."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.escalation.client import EscalationAnswer as EscalationAnswer
    from edged.escalation.client import EscalationClient as EscalationClient
    from edged.escalation.client import EscalationEvent as EscalationEvent
    from edged.escalation.client import EscalationResult as EscalationResult
    from edged.escalation.cloud_answerer import CloudAnswerer as CloudAnswerer
    from edged.escalation.cloud_answerer import CloudOutcome as CloudOutcome
    from edged.escalation.cloud_answerer import cloud_deadline as cloud_deadline
    from edged.escalation.cloud_answerer import usage_of as usage_of
    from edged.escalation.topics import EscalationTopics as EscalationTopics

EXPORTS = {
    "cloud_deadline": "cloud_answerer",
    "CloudAnswerer": "cloud_answerer",
    "CloudOutcome": "cloud_answerer",
    "EscalationAnswer": "client",
    "EscalationClient": "client",
    "EscalationEvent": "client",
    "EscalationResult": "client",
    "EscalationTopics": "topics",
    "usage_of": "cloud_answerer",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
