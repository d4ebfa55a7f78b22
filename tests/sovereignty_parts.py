"""Parts of the end-to-end sovereignty tests: the PII corpus sample, a wire tap on the broker, a cloud_bridge
worker on its own event loop thread, and the search for raw values in bytes and decoded protobuf text.

The wire tap is a plain paho MQTT v5 client, independent of edged's link: it subscribes to `#` and records
every message the broker delivers (topic, payload and the properties that travel with it). `barrier()`
publishes a marker and waits for it to come back: Mosquitto forwards messages to a subscriber in the order it
received them, so everything published before the call (and already acknowledged to its sender) has been
recorded when it returns.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from google.protobuf import text_format
from google.protobuf.message import DecodeError, Message
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties

from cloud_bridge.config import BridgeConfig
from cloud_bridge.worker import BridgeWorker
from edged.escalation.topics import PRESENCE_LEVEL
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest, WorkerPresence
from tests.escalation_parts import start_worker

CORPUS = Path(__file__).parent / "data" / "pii_corpus.jsonl"
GENERATOR = Path(__file__).resolve().parents[1] / "bench" / "pii_corpus.py"
WAIT_S = 30.0
TAP_TOPIC = "wiretap-barrier"

# One single-turn conversation per entity type (its first in the corpus), one that mixes four data classes,
# and every multi-turn conversation. The development corpus's one missed value ("Olumide Adeyemi" in name-4,
# an unfamiliar name opening a sentence) is not sampled: recall is measured and reported by
# bench/pii_scan.py and tests/test_sovereignty_corpus.py; this test proves what happens to detected values.
SAMPLE_IDS = (
    "name-1",
    "email-1",
    "phone-1",
    "card-1",
    "iban-1",
    "ssn-1",
    "addr-1",
    "key-1",
    "key-8",
    "dev-1",
    "dev-2",
    "mixed-3",
    *(f"multi-{n}" for n in range(1, 11)),
)


@dataclass(frozen=True, slots=True)
class CorpusCase:
    id: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    values: tuple[tuple[str, str], ...]  # (entity type, raw value)

    @property
    def multi_turn(self) -> bool:
        return len(self.messages) > 1

    def echoed(self) -> str:
        """What the echo backend answers for this conversation, with every value in place."""
        return "\n".join(content for _role, content in self.messages)


def corpus_entity_types() -> set[str]:
    """Every entity type the whole corpus annotates."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return {entity["type"] for line in lines for entity in json.loads(line)["entities"]}


def load_sample(ids: Iterable[str] = SAMPLE_IDS) -> list[CorpusCase]:
    wanted = list(ids)
    cases: dict[str, CorpusCase] = {}
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        if raw["id"] in wanted:
            cases[raw["id"]] = CorpusCase(
                raw["id"],
                tuple((m["role"], m["content"]) for m in raw["messages"]),
                tuple((e["type"], e["value"]) for e in raw["entities"]),
            )
    missing = [i for i in wanted if i not in cases]
    assert not missing, f"corpus ids not found in {CORPUS}: {missing}"
    return [cases[i] for i in wanted]


@functools.cache
def generated_corpus(slice_name: str) -> tuple[dict[str, Any], ...]:
    """bench/pii_corpus.py's slice (loaded from its file: bench/ is scripts, not a package), generated once."""
    spec = importlib.util.spec_from_file_location("pii_corpus", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.generate(slice_name))


# ---- searching for raw values ----------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-.()/:]")


def forms(value: str) -> set[str]:
    """The forms a raw value is searched in: as written, and without separators (spaces, dashes, dots,
    brackets) when that leaves at least 8 characters, so a reformatted card or phone number is caught too."""
    compact = _SEPARATORS.sub("", value)
    return {value, compact} if len(compact) >= 8 else {value}


def leaks(values: Iterable[str], haystacks: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """'value in where' for every form of every value found in a (where, text-or-bytes) haystack."""
    found = []
    stacks = list(haystacks)
    for value in values:
        for form in sorted(forms(value)):
            for where, stack in stacks:
                hit = form.encode("utf-8") in stack if isinstance(stack, bytes) else form in stack
                if hit:
                    found.append(f"{value!r} ({form!r}) in {where}")
    return found


# ---- the wire tap ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WireMessage:
    topic: str
    payload: bytes
    properties: bytes  # response topic, correlation data and user properties, concatenated
    retained: bool

    @property
    def kind(self) -> str:
        """escalate, reply, presence, or other (edged publishes nothing else without a fleet)."""
        levels = self.topic.split("/")
        if levels[-1] == "escalate":
            return "escalate"
        if len(levels) >= 2 and levels[-2] == "reply":
            return "reply"
        if len(levels) >= 2 and levels[-2] == PRESENCE_LEVEL:
            return "presence"
        return "other"

    def decoded(self) -> Message | None:
        """The payload as the protobuf message its topic carries (None for an empty presence, or other)."""
        kinds: dict[str, type[Message]] = {
            "escalate": EscalationRequest,
            "reply": EscalationChunk,
            "presence": WorkerPresence,
        }
        message_type = kinds.get(self.kind)
        if message_type is None or not self.payload:
            return None
        try:
            return message_type.FromString(self.payload)
        except DecodeError as exc:
            raise AssertionError(f"{self.topic}: payload is not a {message_type.__name__}: {exc}") from None

    def escalation(self) -> EscalationRequest:
        assert self.kind == "escalate", self.topic
        return EscalationRequest.FromString(self.payload)

    def chunk(self) -> EscalationChunk:
        assert self.kind == "reply", self.topic
        return EscalationChunk.FromString(self.payload)

    def text(self) -> str:
        """The decoded message in protobuf text format, strings unescaped (as_utf8), plus the properties."""
        decoded = self.decoded()
        body = text_format.MessageToString(decoded, as_utf8=True) if decoded is not None else ""
        return f"{self.topic}\n{body}\n{self.properties.decode('utf-8', 'replace')}"


def _property_bytes(properties: Properties | None) -> bytes:
    if properties is None:
        return b""
    parts: list[bytes] = []
    response = getattr(properties, "ResponseTopic", None)
    if response:
        parts.append(str(response).encode())
    correlation = getattr(properties, "CorrelationData", None)
    if correlation:
        parts.append(bytes(correlation))
    for name, value in getattr(properties, "UserProperty", None) or []:
        parts.append(f"{name}={value}".encode())
    return b"\n".join(parts)


class WireTap:
    """Records every message on every topic of a broker (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[WireMessage] = []
        self._seen = threading.Condition()  # guards messages and _markers; paho's thread notifies
        self._markers: set[str] = set()
        self._client: Any = None

    def start(self) -> None:
        host, port = self.url.removeprefix("mqtt://").rsplit(":", 1)
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"wiretap-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        subscribed = threading.Event()
        client.on_message = self._on_message
        client.on_subscribe = lambda *_args: subscribed.set()
        client.on_connect = lambda c, *_args: c.subscribe("#", qos=1)
        client.connect(host, int(port))
        client.loop_start()
        self._client = client
        if not subscribed.wait(WAIT_S):
            raise AssertionError(f"the wire tap did not subscribe to # on {self.url}")

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_message(self, _client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._seen:
            if message.topic == TAP_TOPIC:
                self._markers.add(message.payload.decode())
            else:
                properties = _property_bytes(getattr(message, "properties", None))
                self.messages.append(
                    WireMessage(message.topic, bytes(message.payload), properties, bool(message.retain))
                )
            self._seen.notify_all()

    def barrier(self) -> list[WireMessage]:
        """Wait until everything published before this call has been recorded; returns the recording."""
        marker = uuid.uuid4().hex
        self._client.publish(TAP_TOPIC, marker.encode(), qos=1)
        deadline = time.monotonic() + WAIT_S
        with self._seen:
            while marker not in self._markers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("the wire tap's barrier message did not come back")
                self._seen.wait(left)
            return list(self.messages)


def wire_haystacks(wire: Iterable[WireMessage]) -> list[tuple[str, str | bytes]]:
    """Every recorded message's payload, MQTT properties and decoded text, each named by its place on the wire."""
    haystacks: list[tuple[str, str | bytes]] = []
    for index, message in enumerate(wire):
        where = f"#{index} {message.topic}"
        haystacks += [
            (f"{where} payload", message.payload),
            (f"{where} properties", message.properties),
            (f"{where} decoded", message.text()),
        ]
    return haystacks


@contextmanager
def wire_tap(url: str) -> Iterator[WireTap]:
    tap = WireTap(url)
    tap.start()
    try:
        yield tap
    finally:
        tap.stop()


# ---- a worker on its own event loop ----------------------------------------------------------------------


@contextmanager
def worker_thread(config: BridgeConfig) -> Iterator[BridgeWorker]:
    """A real BridgeWorker (its backend from `config`) running on an event loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"worker-{config.worker_id}", daemon=True)
    thread.start()
    try:
        worker = asyncio.run_coroutine_threadsafe(start_worker(config), loop).result(WAIT_S)
        try:
            yield worker
        finally:
            asyncio.run_coroutine_threadsafe(worker.stop(drain_timeout=5.0), loop).result(WAIT_S)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()


# ---- `edged serve` under an audit hook ---------------------------------------------------------------------

# Run as `python -c HOOKED_SERVE EVENTS_FILE serve --config ...`: installs an audit hook that appends one JSON
# line per network or process-spawning event to EVENTS_FILE (written at once, so a killed process loses
# nothing), then runs the edged CLI. The hook sees what Python code does (paho, Presidio, tldextract, urllib,
# http.client); native libraries' own sockets are checked separately, from outside, with psutil.
HOOKED_SERVE = r"""
import json, os, socket, sys

_fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_NETWORK = {"socket.connect", "socket.sendto", "socket.sendmsg"}
_LOOKUPS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
            "socket.getnameinfo"}
_OTHER = {"urllib.Request", "http.client.connect", "subprocess.Popen", "os.posix_spawn", "os.exec",
          "os.system", "os.fork", "os.forkpty"}

def _entry(event, args):
    if event in _NETWORK:
        sock, address = args[0], args[1]
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
        return {"event": event, "family": sock.family.name,
                "host": address[0] if inet else None, "port": address[1] if inet else None}
    if event in _LOOKUPS:
        host = args[0] if isinstance(args[0], str) or args[0] is None else repr(args[0])
        port = args[1] if len(args) > 1 and (isinstance(args[1], int) or args[1] is None) else repr(args[1:2])
        return {"event": event, "host": host, "port": port}
    return {"event": event, "detail": repr(args)[:200]}

def _hook(event, args):
    if event not in _NETWORK and event not in _LOOKUPS and event not in _OTHER:
        return
    try:
        entry = _entry(event, args)
    except Exception as exc:
        entry = {"event": event, "hook_error": repr(exc)}
    os.write(_fd, (json.dumps(entry) + "\n").encode())

sys.addaudithook(_hook)
from edged.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
