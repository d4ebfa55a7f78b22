"""Escalation: requests leave the device over MQTT v5 for cloud_bridge workers (topics in topics.py)."""

from edged.errors import CloudRefused
from edged.escalation.client import (
    EscalationAnswer,
    EscalationClient,
    EscalationEvent,
    EscalationResult,
)
from edged.escalation.topics import EscalationTopics

__all__ = [
    "CloudRefused",
    "EscalationAnswer",
    "EscalationClient",
    "EscalationEvent",
    "EscalationResult",
    "EscalationTopics",
]
