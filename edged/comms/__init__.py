"""The MQTT v5 link escalation and the fleet share: one connection, a topic dispatcher, a visible state."""

from edged.comms.dispatch import BoundedInbox, TopicDispatcher
from edged.comms.link import NO_MATCHING_SUBSCRIBERS, MqttLink, puback_reason
from edged.comms.messages import InboundMessage, LinkPhase, LinkState, MessageHandler, StateListener, Will

__all__ = [
    "NO_MATCHING_SUBSCRIBERS",
    "BoundedInbox",
    "InboundMessage",
    "LinkPhase",
    "LinkState",
    "MessageHandler",
    "MqttLink",
    "StateListener",
    "TopicDispatcher",
    "Will",
    "puback_reason",
]
