"""paho's MQTT v5 properties and reason codes, translated at the edge so nothing else sees paho types."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.comms.messages import InboundMessage

NO_MATCHING_SUBSCRIBERS = 0x10  # PUBACK reason: the broker had nobody to deliver to
MAX_EXPIRY_S = 0xFFFFFFFF  # Message Expiry Interval is a four-byte integer: paho raises struct.error beyond


def new_properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]  # paho's Properties is unannotated


def publish_properties(
    correlation_data: bytes | None, response_topic: str | None, expiry_s: int | None
) -> Properties | None:
    if correlation_data is None and response_topic is None and expiry_s is None:
        return None
    properties = new_properties(PacketTypes.PUBLISH)
    if correlation_data is not None:
        properties.CorrelationData = correlation_data
    if response_topic is not None:
        properties.ResponseTopic = response_topic
    if expiry_s is not None:
        properties.MessageExpiryInterval = min(max(1, expiry_s), MAX_EXPIRY_S)
    return properties


def inbound(message: mqtt.MQTTMessage) -> InboundMessage:
    properties = getattr(message, "properties", None)
    correlation = getattr(properties, "CorrelationData", None)
    response_topic = getattr(properties, "ResponseTopic", None)
    expiry = getattr(properties, "MessageExpiryInterval", None)
    return InboundMessage(
        topic=message.topic,
        payload=bytes(message.payload),
        qos=message.qos,
        retain=bool(message.retain),
        correlation_data=bytes(correlation) if correlation is not None else None,
        response_topic=str(response_topic) if response_topic is not None else None,
        expiry_s=int(expiry) if expiry is not None else None,
    )


def puback_reason(code: int) -> str:
    """The name of a PUBACK reason code, e.g. 'No matching subscribers' for 16."""
    try:
        return str(ReasonCode(PacketTypes.PUBACK, identifier=code))
    except (KeyError, ValueError):
        return f"reason code {code}"


def is_plain_drop(reason: ReasonCode) -> bool:
    """paho reports a dropped socket (no DISCONNECT packet) as 'Unspecified error'."""
    return int(reason.value) in (0, 0x80)
