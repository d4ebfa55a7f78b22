"""Escalation: requests leave the device over MQTT v5 for cloud_bridge workers (topics in topics.py)."""

from edged.escalation.client import EscalationAnswer, EscalationClient, EscalationEvent, EscalationResult
from edged.escalation.topics import EscalationTopics

__all__ = ["EscalationAnswer", "EscalationClient", "EscalationEvent", "EscalationResult", "EscalationTopics"]
