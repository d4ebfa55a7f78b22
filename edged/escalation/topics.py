"""Every MQTT topic of escalation, in one place.

    {prefix}/{device}/escalate            device -> workers   request (EscalationRequest), QoS 1
    {prefix}/{device}/reply/{instance}    worker -> device    reply chunks (EscalationChunk), QoS 1
    {prefix}/{device}/cancel              device -> workers   cancel: empty payload, the request's correlation
                                                              data; every worker subscribes (not shared)
    {prefix}/@workers/{worker_id}         worker, retained    presence (WorkerPresence); empty = gone
    $share/{group}/{prefix}/+/escalate    what a worker group subscribes to (N workers split the load)

The device id is one topic level, so broker ACLs confine a device with `%u`/`%c` patterns:
`pattern write {prefix}/%u/escalate`, `pattern write {prefix}/%u/cancel` and
`pattern read {prefix}/%u/reply/+`. `{instance}` is random per
EscalationClient start, so a restarted daemon never reads replies meant for its previous life. `@workers`
cannot collide with a device id (device ids are letters, digits, '_' and '-').
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEVEL = re.compile(r"^[A-Za-z0-9_\-.@]{1,128}$")
PRESENCE_LEVEL = "@workers"


def _level(name: str, value: str) -> str:
    if not _LEVEL.match(value):
        raise ValueError(f"{name} {value!r} is not a valid topic level (letters, digits, '_', '-', '.', '@')")
    return value


@dataclass(frozen=True, slots=True)
class EscalationTopics:
    prefix: str

    def escalate(self, device: str) -> str:
        return f"{self.prefix}/{_level('device id', device)}/escalate"

    def reply(self, device: str, instance: str) -> str:
        return f"{self.prefix}/{_level('device id', device)}/reply/{_level('instance', instance)}"

    def cancel(self, device: str) -> str:
        return f"{self.prefix}/{_level('device id', device)}/cancel"

    def cancel_filter(self) -> str:
        """Every device's cancel topic."""
        return f"{self.prefix}/+/cancel"

    def escalate_filter(self) -> str:
        """Every device's escalate topic."""
        return f"{self.prefix}/+/escalate"

    def shared_escalate(self, group: str) -> str:
        return f"$share/{_level('group', group)}/{self.escalate_filter()}"

    def presence(self, worker_id: str) -> str:
        return f"{self.prefix}/{PRESENCE_LEVEL}/{_level('worker id', worker_id)}"

    def presence_filter(self) -> str:
        return f"{self.prefix}/{PRESENCE_LEVEL}/+"

    def device_of_escalate(self, topic: str) -> str | None:
        """The device id in `{prefix}/{device}/escalate`, or None if the topic is not one."""
        rest = _strip(topic, self.prefix)
        if rest is None:
            return None
        device, _, tail = rest.partition("/")
        return device if tail == "escalate" and _LEVEL.match(device) and device != PRESENCE_LEVEL else None

    def device_of_cancel(self, topic: str) -> str | None:
        """The device id in `{prefix}/{device}/cancel`, or None if the topic is not one."""
        rest = _strip(topic, self.prefix)
        if rest is None:
            return None
        device, _, tail = rest.partition("/")
        return device if tail == "cancel" and _LEVEL.match(device) and device != PRESENCE_LEVEL else None

    def is_reply_of(self, device: str, topic: str) -> bool:
        """True when `topic` is one of `device`'s reply topics (a worker answers nowhere else)."""
        rest = _strip(topic, f"{self.prefix}/{device}/reply")
        return rest is not None and bool(_LEVEL.match(rest))

    def worker_of_presence(self, topic: str) -> str | None:
        rest = _strip(topic, f"{self.prefix}/{PRESENCE_LEVEL}")
        return rest if rest is not None and _LEVEL.match(rest) else None


def _strip(topic: str, head: str) -> str | None:
    return topic[len(head) + 1 :] if topic.startswith(head + "/") else None
