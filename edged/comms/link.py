"""MqttLink: one MQTT v5 connection (paho-mqtt 2.x), driven by the asyncio loop that started it.

Concurrency: paho's socket is hooked into the event loop through paho's socket callbacks (add_reader and
add_writer, the aiomqtt approach), so every paho callback, every handler and every publish runs on the loop's
thread — no locks, no thread hops. Only the blocking TCP/TLS connect runs in an executor thread; while it
runs, the loop touches the client for nothing but socket bookkeeping (see loop_io.py).

Handlers run inside paho's read callback: they must return at once (decode, queue, resolve a future) and never
wait for a publish. State listeners are called with call_soon, outside paho's callbacks.

Reconnection is one explicit loop (_supervise): connect, wait until the link is lost, back off, try again.
The owner sees each step in `state()` (phase, failed attempts, last error, seconds to the next try) and
through state listeners. Subscriptions are re-made on every connect (the session is always clean).

`async with MqttLink(...) as link:` starts the link and waits for its first connect (CloudUnavailable if it
failed, SubscriptionRefused if the broker refused a subscription), and stops it on the way out. Code on other
threads (the fleet agent's worker, the `edged-fleet` tool) reaches the same link through ThreadLink
(edged/comms/threaded.py): there is one MQTT client in edged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edged.comms.backoff import Backoff
from edged.comms.dispatch import Subscription, TopicDispatcher
from edged.comms.loop_io import LoopSocketIO
from edged.comms.messages import (
    LinkPhase,
    LinkState,
    MessageHandler,
    StateListener,
    Will,
)
from edged.comms.security import read_password, tls_context
from edged.comms.wire import inbound, is_plain_drop, new_properties, publish_properties
from edged.config.broker import BrokerSettings
from edged.errors import CloudUnavailable, NoCloudLink, SubscriptionRefused

logger = logging.getLogger(__name__)

MISC_INTERVAL_S = 1.0  # paho's loop_misc (keepalive pings, ping timeouts) wants calling about once a second
RTT_SMOOTHING = 0.125  # weight of a new sample in the smoothed round trip (TCP's SRTT gain)


class MqttLink:
    """An MQTT v5 client with reconnect, re-subscription, a topic dispatcher and a visible state."""

    def __init__(
        self,
        settings: BrokerSettings,
        client_id: str,
        *,
        will: Will | None = None,
        section: str = "broker",
        password: str | None = None,
    ) -> None:
        """`password` is for callers that hold it already (`edged-fleet` reads $EDGED_FLEET_PASSWORD); it is
        used only when settings name no password file or credential."""
        if settings.url is None:
            raise NoCloudLink(f"{section}.url is not set: no MQTT broker is configured")
        self._settings = settings
        self._section = section
        self._client_id = settings.client_id or client_id
        self._will = will
        self._password = password
        self._dispatcher = TopicDispatcher()
        self._listeners: list[StateListener] = []
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._phase = LinkPhase.STOPPED
        self._since = time.time()
        self._last_error: str | None = None
        self._failed_attempts = 0
        self._next_retry_at: float | None = None
        self._rtt_ms: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._misc_task: asyncio.Task[None] | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._up = asyncio.Event()
        self._lost = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._io: LoopSocketIO | None = None
        self._acks: dict[int, tuple[asyncio.Future[int], float, int]] = {}
        self._round_trips: dict[int, float] = {}  # SUBSCRIBE/UNSUBSCRIBE mid -> time sent
        self._subacks: dict[int, tuple[tuple[str, ...], asyncio.Future[None]]] = {}  # mid -> filters, SUBACK
        self._connect_subscribed: asyncio.Future[None] | None = None  # the SUBACK of the re-subscription
        self._first_connect: asyncio.Future[bool] | None = None
        self._last_probe = 0.0
        self._snapshot = self.state()
        self.messages_in = 0
        self.messages_out = 0

    # ---- public interface ----------------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def broker(self) -> str:
        return self._settings.url or ""

    @property
    def settings(self) -> BrokerSettings:
        return self._settings

    def is_up(self) -> bool:
        return self._phase is LinkPhase.CONNECTED

    def state(self) -> LinkState:
        retry = None
        if self._next_retry_at is not None:
            retry = max(0.0, self._next_retry_at - time.monotonic())
        return LinkState(
            phase=self._phase,
            broker=self.broker,
            since=self._since,
            rtt_ms=self._rtt_ms,
            last_error=self._last_error,
            failed_attempts=self._failed_attempts,
            next_retry_s=retry,
        )

    def snapshot(self) -> LinkState:
        """The state as of the last phase change, for threads other than the loop's (the engine thread's
        cascade hook): state() reads fields the loop changes as it runs, while this is one immutable LinkState
        the loop replaces whole, so another thread reads an old state or the new one, never a mix (issue 17:
        10)."""
        return self._snapshot

    def add_state_listener(self, listener: StateListener) -> None:
        """Call `listener(state)` on the loop after every phase change."""
        self._listeners.append(listener)

    def set_will(self, will: Will | None) -> None:
        """The Last Will for the next connect (the current session keeps the one it connected with)."""
        self._will = will
        if self._client is not None:
            if will is None:
                self._client.will_clear()
            else:
                self._client.will_set(will.topic, will.payload, will.qos, will.retain)

    async def start(self) -> None:
        """Read credentials and TLS files (ConfigError if bad), then begin connecting; does not wait."""
        if self._supervisor is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._client = self._build_client()
        self._io = LoopSocketIO(self._client, self._loop, self.broker)
        self._stopping = False
        self._stop.clear()
        self._first_connect = self._loop.create_future()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mqtt-link-{self._client_id}")

    async def __aenter__(self) -> Self:
        """Start and wait for the first connect: CloudUnavailable naming the broker and the reason if it
        failed, SubscriptionRefused if the broker refused a subscription (the link is stopped either way)."""
        await self.start()
        try:
            connected = await self.wait_first_connect()
        except BaseException:
            await self.stop()
            raise
        if not connected:
            error = self._last_error
            await self.stop()
            raise CloudUnavailable(f"MQTT broker {self.broker} not reachable: {error}")
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_up(self, timeout: float) -> bool:
        """Wait until connected; False if that did not happen within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    async def wait_first_connect(self) -> bool:
        """The first connect's outcome: True once connected with every subscription granted by its SUBACK,
        False when that attempt failed (the link goes on trying). Raises SubscriptionRefused naming the
        topic and reason when the broker refused one (its ACL): a start that cannot work fails with it."""
        if self._first_connect is None:
            raise CloudUnavailable("the MQTT link was never started")
        return await asyncio.shield(self._first_connect)

    async def stop(self, timeout: float = 2.0) -> None:
        """Send DISCONNECT (the broker then drops the Last Will), stop reconnecting and release the socket."""
        if self._supervisor is None:
            return
        self._stopping = True
        self._stop.set()
        if self._connecting is not None:
            # the executor's blocking connect cannot be cancelled: let it finish, then close what it opened
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._settings.connect_timeout_s * 2):
                    await asyncio.shield(self._connecting)
        client = self._client
        if client is not None and client.socket() is not None:
            if self._io is not None:
                self._io.closing_cleanly = True
            client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._lost.wait()
        self._supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._supervisor
        self._supervisor = None
        if self._io is not None:
            self._io.close()
        self._fail_acks("the MQTT link was stopped")
        self._settle_first_connect(False)
        self._set_phase(LinkPhase.STOPPED)

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Route messages matching `topic_filter` to `handler`; re-subscribed on every connect."""
        subscription = self._dispatcher.add(topic_filter, qos, handler)
        if self.is_up():
            self._send_subscribe([subscription])

    async def subscribe_and_wait(
        self, topic_filter: str, handler: MessageHandler, qos: int = 1, timeout: float | None = None
    ) -> None:
        """subscribe(), then wait for the broker's SUBACK while connected: SubscriptionRefused naming the
        filter when the broker refused it, CloudUnavailable when the link is down or no SUBACK came within
        `timeout` (default: broker.connect_timeout_s). The subscription stays registered either way."""
        subscription = self._dispatcher.add(topic_filter, qos, handler)
        if not self.is_up():
            raise CloudUnavailable(
                f"MQTT link to {self.broker} is down: {self._last_error or self._phase.value}"
            )
        suback = self._send_subscribe([subscription])
        if suback is None:
            raise CloudUnavailable(f"MQTT subscribe to {topic_filter!r} on {self.broker} was not sent")
        wait_s = self._settings.connect_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(wait_s):
                await asyncio.shield(suback)
        except TimeoutError:
            raise CloudUnavailable(f"no SUBACK for {topic_filter!r} within {wait_s}s") from None

    def unsubscribe(self, topic_filter: str) -> None:
        if self._dispatcher.remove(topic_filter) and self.is_up() and self._client is not None:
            self._client.unsubscribe(topic_filter)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation_data: bytes | None = None,
        response_topic: str | None = None,
        expiry_s: int | None = None,
    ) -> asyncio.Future[int]:
        """Queue a PUBLISH now (never waits). The future gets the PUBACK reason code (0 = success, 16 = no
        matching subscribers, >= 128 = refused); it fails with CloudUnavailable if the link drops first.
        Raises CloudUnavailable at once when the link is down or the outgoing queue is full."""
        client = self._client
        if client is None or self._loop is None or not self.is_up():
            raise CloudUnavailable(
                f"MQTT link to {self.broker} is down: {self._last_error or self._phase.value}"
            )
        properties = publish_properties(correlation_data, response_topic, expiry_s)
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise CloudUnavailable(
                f"MQTT outgoing queue is full ({self._settings.max_queued_messages} messages, "
                f"{self._section}.max_queued_messages)"
            )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise CloudUnavailable(f"MQTT publish on {topic} failed: {mqtt.error_string(info.rc)}")
        self.messages_out += 1
        future: asyncio.Future[int] = self._loop.create_future()
        self._acks[info.mid] = (future, time.monotonic(), qos)
        return future

    # ---- the reconnect loop --------------------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            self._set_phase(LinkPhase.CONNECTING)
            try:
                error = await self._attempt()
            except SubscriptionRefused as refused:
                # connected, but without a subscription it needs: the owner decides (a start fails with it)
                self._settle_first_connect(refused)
                error = None
            self._settle_first_connect(error is None)
            if error is None:
                await self._wait_lost_or_stop()
                if self._stop.is_set():
                    return
            else:
                self._failed_attempts += 1
                self._last_error = error
                # the first failure in a row is a warning; the rest show in state() and at INFO
                level = logging.WARNING if self._failed_attempts == 1 else logging.INFO
                attempt = self._failed_attempts
                logger.log(level, "MQTT connect to %s failed (attempt %d): %s", self.broker, attempt, error)
            delay = self._backoff.next_delay()
            self._next_retry_at = time.monotonic() + delay
            self._set_phase(LinkPhase.DISCONNECTED)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            self._next_retry_at = None

    def _settle_first_connect(self, outcome: bool | SubscriptionRefused) -> None:
        first = self._first_connect
        if first is None or first.done():
            return
        if isinstance(outcome, SubscriptionRefused):
            first.set_exception(outcome)
            first.exception()  # a link whose owner never asks must not warn
        else:
            first.set_result(outcome)

    async def _attempt(self) -> str | None:
        """One connect; None on success, else why it failed. Raises SubscriptionRefused when connected but a
        subscription was refused."""
        loop = asyncio.get_running_loop()
        self._lost.clear()
        self._connack = loop.create_future()
        self._connecting = loop.run_in_executor(None, self._connect_blocking)
        try:
            await asyncio.shield(self._connecting)
        except (OSError, ValueError) as exc:  # socket, DNS and TLS errors (ssl.SSLError is an OSError)
            return f"connect to {self._settings.host}:{self._settings.port} failed: {exc}"
        except Exception as exc:  # anything else paho raises must not end the reconnect loop
            logger.exception("unexpected error connecting to %s", self.broker)
            return (
                f"connect to {self._settings.host}:{self._settings.port} failed: {type(exc).__name__}: {exc}"
            )
        finally:
            self._connecting = None
        self._io_or_fail().watch_reads()
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                reason = await asyncio.shield(self._connack)
        except TimeoutError:
            self._client_or_fail().disconnect()
            return f"no CONNACK within {self._settings.connect_timeout_s}s"
        except CloudUnavailable as exc:
            return str(exc)
        if reason.is_failure:
            return f"broker refused the connection: {reason}"
        return await self._await_connect_subscribed()

    async def _await_connect_subscribed(self) -> str | None:
        """Wait for the SUBACK of the subscriptions re-made on connect (SubscriptionRefused if refused)."""
        subscribed, self._connect_subscribed = self._connect_subscribed, None
        if subscribed is None:
            return None
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                await asyncio.shield(subscribed)
        except TimeoutError:
            self._client_or_fail().disconnect()
            return f"no SUBACK within {self._settings.connect_timeout_s}s"
        except CloudUnavailable as exc:
            return str(exc)
        return None

    def _connect_blocking(self) -> None:
        """Runs in an executor thread: DNS, TCP and TLS handshakes block."""
        properties = new_properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 0
        self._client_or_fail().connect(
            self._settings.host,
            self._settings.port,
            keepalive=self._settings.keepalive_s,
            clean_start=True,
            properties=properties,
        )

    async def _wait_lost_or_stop(self) -> None:
        waiters = [asyncio.ensure_future(self._lost.wait()), asyncio.ensure_future(self._stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    # ---- paho client and its callbacks (all on the loop thread, except on_socket_* during a connect) -------

    def _build_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        client.enable_logger(logging.getLogger("edged.comms.paho"))
        client.connect_timeout = self._settings.connect_timeout_s
        client.max_inflight_messages_set(self._settings.max_inflight_messages)
        client.max_queued_messages_set(self._settings.max_queued_messages)
        if self._settings.username is not None:
            password = read_password(self._settings, self._section)
            client.username_pw_set(
                self._settings.username, password if password is not None else self._password
            )
        context = tls_context(self._settings, self._section)
        if context is not None:
            client.tls_set_context(context)
        if self._will is not None:
            client.will_set(self._will.topic, self._will.payload, self._will.qos, self._will.retain)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)
        if reason.is_failure:
            return
        self._connect_subscribed = self._send_subscribe(self._dispatcher.subscriptions())
        self._failed_attempts = 0
        self._last_error = None
        self._backoff.reset()
        self._up.set()
        self._misc_task = asyncio.ensure_future(self._misc())
        logger.info("MQTT link to %s connected as %s", self.broker, self._client_id)
        self._set_phase(LinkPhase.CONNECTED)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, flags: Any, reason: ReasonCode, _properties: Any
    ) -> None:
        was_up = self.is_up()
        self._up.clear()
        self._lost.set()
        if self._misc_task is not None:
            self._misc_task.cancel()
            self._misc_task = None
        if getattr(flags, "is_disconnect_packet_from_server", False):
            error = f"the broker disconnected us: {reason}"
        else:
            error = "connection to the broker lost" if is_plain_drop(reason) else f"disconnected: {reason}"
        if not self._stopping:
            self._last_error = error
            if was_up:
                logger.warning("MQTT link to %s lost: %s", self.broker, error)
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(CloudUnavailable(error))
            self._connack.exception()  # retrieved here so an unawaited attempt never warns
        self._fail_acks(f"MQTT link lost before the broker acknowledged: {error}")
        if was_up and not self._stopping:
            self._set_phase(LinkPhase.DISCONNECTED)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages_in += 1
        self._dispatcher.dispatch(inbound(message))

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _properties: Any
    ) -> None:
        entry = self._acks.pop(mid, None)
        if entry is None:
            return
        future, sent_at, qos = entry
        if qos > 0:
            self._note_rtt(time.monotonic() - sent_at)
        if not future.done():
            future.set_result(int(reason.value))

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: list[ReasonCode], _properties: Any
    ) -> None:
        self._note_round_trip(mid)
        filters, future = self._subacks.pop(mid, ((), None))
        refused = [
            SubscriptionRefused(self.broker, topic_filter, str(reason), int(reason.value))
            for topic_filter, reason in zip(filters, reasons, strict=False)
            if reason.is_failure
        ]
        for error in refused:
            self._last_error = str(error)
            logger.error("%s", error)
        if future is None or future.done():
            return
        if refused:
            future.set_exception(refused[0])
            future.exception()  # a subscription made while connected has nobody awaiting it
        else:
            future.set_result(None)

    def _on_unsubscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _reasons: Any, _properties: Any
    ) -> None:
        self._note_round_trip(mid)

    async def _misc(self) -> None:
        """Keepalive pings and ping timeouts (loop_misc), and a round-trip probe when the link is idle."""
        client = self._client_or_fail()
        while True:
            await asyncio.sleep(MISC_INTERVAL_S)
            if client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
            probe_every = self._settings.rtt_probe_s
            if probe_every > 0 and time.monotonic() - self._last_probe >= probe_every:
                self._probe()

    def _probe(self) -> None:
        """UNSUBSCRIBE from a filter never subscribed: a pure round trip to the broker with no side effect."""
        self._last_probe = time.monotonic()
        _rc, mid = self._client_or_fail().unsubscribe(
            f"{self._settings.topic_prefix}/@probe/{self._client_id}"
        )
        if mid is not None:
            self._round_trips[mid] = self._last_probe

    def _send_subscribe(self, subscriptions: list[Subscription]) -> asyncio.Future[None] | None:
        """SUBSCRIBE; the future gets the SUBACK (SubscriptionRefused naming the first refused filter)."""
        if not subscriptions or self._loop is None:
            return None
        topics = [(s.topic_filter, SubscribeOptions(qos=s.qos)) for s in subscriptions]
        _rc, mid = self._client_or_fail().subscribe(topics)
        if mid is None:
            return None
        self._round_trips[mid] = time.monotonic()
        future: asyncio.Future[None] = self._loop.create_future()
        self._subacks[mid] = (tuple(s.topic_filter for s in subscriptions), future)
        return future

    def _note_round_trip(self, mid: int) -> None:
        sent_at = self._round_trips.pop(mid, None)
        if sent_at is not None:
            self._note_rtt(time.monotonic() - sent_at)

    def _note_rtt(self, seconds: float) -> None:
        sample = seconds * 1000.0
        self._last_probe = time.monotonic()  # traffic measured the link: no probe needed for a while
        if self._rtt_ms is None:
            self._rtt_ms = sample
        else:
            self._rtt_ms += RTT_SMOOTHING * (sample - self._rtt_ms)

    def _fail_acks(self, reason: str) -> None:
        acks, self._acks = self._acks, {}
        subacks, self._subacks = self._subacks, {}
        self._round_trips.clear()
        futures: list[asyncio.Future[Any]] = [future for future, _sent_at, _qos in acks.values()]
        futures += [future for _filters, future in subacks.values()]
        for future in futures:
            if not future.done():
                future.set_exception(CloudUnavailable(reason))
                future.exception()  # nobody may be awaiting a fire-and-forget publish

    def _set_phase(self, phase: LinkPhase) -> None:
        if phase is self._phase:
            return
        self._phase = phase
        self._since = time.time()
        state = self.state()
        self._snapshot = state  # one reference replaced: safe to read from any thread
        if self._loop is None:
            return
        for listener in self._listeners:
            # outside paho's callback (paho holds a lock while it calls us)
            self._loop.call_soon(_notify, listener, state)

    def _io_or_fail(self) -> LoopSocketIO:
        if self._io is None:
            raise CloudUnavailable("the MQTT link was never started")
        return self._io

    def _client_or_fail(self) -> mqtt.Client:
        if self._client is None:
            raise CloudUnavailable("the MQTT link was never started")
        return self._client


def _notify(listener: StateListener, state: LinkState) -> None:
    try:
        listener(state)
    except Exception:
        logger.exception("MQTT link state listener failed")
