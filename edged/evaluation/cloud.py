"""The cloud side of an eval: the reference cloud (always correct) or live escalation over MQTT.

`LiveCloud` runs the daemon's EscalationClient on an event loop of its own thread, so the eval runner (plain
threads) can call `answer()` from any thread and block on the result. It connects as a client of its own
(`eval_client_id`), so a daemon running on the same device keeps its connection. Eval prompts go to the cloud
as they are in the eval file: no privacy gate, no cloud budget (see docs/escalation.md).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import uuid
from concurrent.futures import Future

from edged.config.broker import BrokerSettings
from edged.errors import CloudUnavailable, NoCloudLink
from edged.escalation.client import EscalationClient
from edged.v1.escalation_pb2 import EscalationRequest
from edged.v1.inference_pb2 import ChatMessage

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
MAX_CLIENT_ID = 128  # edged.config.broker.MQTT_NAME_PATTERN


def eval_client_id(broker: BrokerSettings, device_id: str) -> str:
    """`{client id or device id}-eval-{8 random hex}`: the broker disconnects a client when another connects
    with the same client id, so the eval must never take the daemon's. The user name (what the shipped ACL's
    %u patterns confine) stays the device's."""
    suffix = f"-eval-{secrets.token_hex(4)}"
    return (broker.client_id or device_id)[: MAX_CLIENT_ID - len(suffix)] + suffix


class LiveCloud:
    def __init__(
        self,
        broker: BrokerSettings,
        device_id: str,
        *,
        timeout_s: float = 120.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        if not broker.url:
            raise NoCloudLink("--cloud live needs a broker: set [broker] url in the config")
        self._device_id = device_id
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._loop = asyncio.new_event_loop()
        # The client lives on this loop; answer() hands coroutines to it from the runner's threads.
        self._thread = threading.Thread(target=self._loop.run_forever, name="eval-cloud", daemon=True)
        self._thread.start()
        settings = broker.model_copy(update={"client_id": eval_client_id(broker, device_id)})
        self._client = EscalationClient(settings, device_id, instance=f"eval-{uuid.uuid4().hex[:8]}")
        self._call(self._client.start()).result(CONNECT_TIMEOUT_S)
        self._wait_until_up()

    @property
    def client_id(self) -> str:
        return self._client.link.client_id

    def _call(self, coroutine: object) -> Future[object]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    def _wait_until_up(self) -> None:
        """The link up and at least one worker's presence seen, or CloudUnavailable saying which is missing."""
        deadline = time.monotonic() + self._connect_timeout_s
        while not (self._client.is_up() and self._client.workers_online() > 0):
            if time.monotonic() > deadline:
                missing = "no cloud worker is online" if self._client.is_up() else "the broker link is down"
                self.close()
                raise CloudUnavailable(f"--cloud live: {missing} after {self._connect_timeout_s:.0f}s")
            time.sleep(0.05)

    def answer(self, prompt: str, max_tokens: int) -> str:
        request = EscalationRequest(
            request_id=f"eval-{uuid.uuid4().hex[:12]}",
            device_id=self._device_id,
            messages=[ChatMessage(role="user", content=prompt)],
            max_tokens=max_tokens,
            temperature=0.0,
            top_p=1.0,
        )
        deadline = time.monotonic() + self._timeout_s
        answer = self._call(self._client.complete(request, deadline)).result(self._timeout_s + 5.0)
        return str(getattr(answer, "text", ""))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(self._client.stop()).result(self._connect_timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._connect_timeout_s)
            if not self._thread.is_alive():
                self._loop.close()
