"""The MQTT v5 link escalation and the fleet share: one connection, a topic dispatcher, a visible state."""

from typing import TYPE_CHECKING

from edged.public import lazy_exports

if TYPE_CHECKING:
    from edged.comms.dispatch import BoundedInbox as BoundedInbox
    from edged.comms.dispatch import TopicDispatcher as TopicDispatcher
    from edged.comms.link import MqttLink as MqttLink
    from edged.comms.messages import InboundMessage as InboundMessage
    from edged.comms.messages import LinkPhase as LinkPhase
    from edged.comms.messages import LinkState as LinkState
    from edged.comms.messages import MessageHandler as MessageHandler
    from edged.comms.messages import StateListener as StateListener
    from edged.comms.messages import Will as Will
    from edged.comms.security import read_secret as read_secret
    from edged.comms.threaded import ThreadLink as ThreadLink
    from edged.comms.threaded import TopicHandler as TopicHandler
    from edged.comms.wire import NO_MATCHING_SUBSCRIBERS as NO_MATCHING_SUBSCRIBERS
    from edged.comms.wire import puback_reason as puback_reason

EXPORTS = {
    "BoundedInbox": "dispatch",
    "InboundMessage": "messages",
    "LinkPhase": "messages",
    "LinkState": "messages",
    "MessageHandler": "messages",
    "MqttLink": "link",
    "NO_MATCHING_SUBSCRIBERS": "wire",
    "puback_reason": "wire",
    "read_secret": "security",
    "StateListener": "messages",
    "ThreadLink": "threaded",
    "TopicDispatcher": "dispatch",
    "TopicHandler": "threaded",
    "Will": "messages",
}
__all__ = list(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
