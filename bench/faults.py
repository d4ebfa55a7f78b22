"""Fault counts (issue 17): one run of every fault area against a real daemon, Mosquitto and cloud_bridge worker.

`edged serve` runs as a subprocess (under `strace -f -e trace=connect` when strace is installed, to count outbound
connection attempts), so a crash is seen as its exit, not as the end of this script. A real Mosquitto and a real
`edged-cloud-bridge` process (sleep backend, 0.3 s per answer) complete the system. Areas, in order:

  start              every start and restart of the daemon (outbound attempts while loading router and gate)
  request fields     hypothesis-generated GenerateRequests, unary and streamed (tests/fuzz_parts.py)
  json schemas       hypothesis-generated JSON Schemas for the grammar converter
  mqtt payloads      malformed payloads on every topic the daemon and the worker subscribe to
  spoofed replies    forged, replayed and stranger chunks under a live request's correlation data
  worker killed      SIGKILL to the worker mid-stream (PREFER_CLOUD must be answered locally)
  broker restarted   Mosquitto restarted mid-stream
  sighup configs     broken, empty and odd config files on SIGHUP
  profile attacks    unsigned, wrong key, rollback, expired, future-dated, oversized, malformed, deeply nested
  sigterm under load SIGTERM with more streams than slots

After every case: a crash is the daemon's (or worker's) exit, and the daemon is restarted to go on; a hang is a
call still unanswered at its deadline (or no health answer, or no reload/exit notification in time); a lost
request is one that got neither its answer nor the refusal the rules give it; a wrong outcome is an attack that
was accepted or a forged text in an answer. "serving" means health SERVING and a plain local answer after every
case. Nothing is hidden: every counted failure is printed with its case.

    .venv/bin/python bench/faults.py [--examples 60] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import psutil
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.fleet.envelope import Target
from edged.fleet.topics import FleetTopics
from edged.v1 import inference_pb2 as pb
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest
from tests.brokers import MosquittoBroker
from tests.escalation_parts import spawn_worker, stop_process, worker_config_file
from tests.fleet_support import make_signer
from tests.fuzz_parts import (
    RawClient,
    Received,
    call,
    garbage_payloads,
    generate_requests,
    json_schemas,
    judge_answer,
    judge_schema,
)
from tests.ops_support import ServedDaemon, served_daemon, small_engine_config, toml_document

DEVICE = "faults-device"
GROUP = "pi5"
PREFIX = "edged/v1"
WORKER = "w1"
CLOUD_TEXT = "cloud ok"
RPC_S = 60.0  # every call's deadline: an answer later than this is a hang
SERVING = health_pb2.HealthCheckResponse.SERVING
CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_INET6?),.*?htons\((\d+)\).*?\"([0-9a-f.:]+)\"")


@dataclass
class Area:
    name: str
    cases: int = 0
    crashes: int = 0
    hangs: int = 0
    lost: int = 0
    wrong: int = 0
    outbound: int | None = None
    serving: bool = True
    failures: list[str] = field(default_factory=list)

    def fail(self, kind: str, case: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        self.failures.append(f"{kind}: {case}")


class Rig:
    """The system under test and the checks run after every case."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.stack = contextlib.ExitStack()
        self.broker = self.stack.enter_context(MosquittoBroker(workdir=tmp / "broker"))
        self.signer, public = make_signer(tmp / "keys", "fleet.key")
        self.other_signer, _ = make_signer(tmp / "other-keys", "other.key")
        self.strace = shutil.which("strace")
        self.config = small_engine_config(
            tmp, engine={"default_max_tokens": 4, "max_tokens_cap": 64}, api={"grace_period_s": 30.0}
        )
        self.config["device_id"] = DEVICE
        self.config["broker"] = {"url": self.broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
        self.config["fleet"] = {"group": GROUP, "key": str(public)}
        self.mqtt = self.connect_mqtt()
        self.worker: subprocess.Popen[bytes] | None = None
        self.daemon: ServedDaemon | None = None
        self._daemon_stack: contextlib.ExitStack | None = None
        self.starts = Area("start")

    # ---- processes -------------------------------------------------------------------------------------------

    def start_daemon(self) -> None:
        """`edged serve` (under strace when installed), each start in its own directory and trace file."""
        before = self.outbound_total()
        run = self.tmp / f"start{self.starts.cases}"
        run.mkdir()
        wrapper = (
            "-f",
            "-qq",
            "-e",
            "trace=connect",
            "-o",
            str(self.tmp / f"connect.trace.{self.starts.cases}"),
        )
        self._daemon_stack = contextlib.ExitStack()
        self.daemon = self._daemon_stack.enter_context(
            served_daemon(run, self.config, wrapper=(self.strace, *wrapper) if self.strace else ())
        )
        self.starts.cases += 1
        self.daemon.wait_ready()
        if not self.wait(lambda: self.status().link.state == "connected", 60):
            self.starts.fail("hangs", "the daemon's link did not connect within 60 s")
        self.starts.outbound = (self.starts.outbound or 0) + self.outbound_total() - before

    def stop_daemon(self) -> None:
        """Kill what is left (edged itself first: strace killed alone would leave it running detached)."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            with contextlib.suppress(psutil.Error, RuntimeError):
                psutil.Process(self.daemon_pid()).kill()
        if self._daemon_stack is not None:
            self._daemon_stack.close()
        self.daemon = None
        self._daemon_stack = None

    def daemon_pid(self) -> int:
        """The edged process itself (under strace, strace's child)."""
        assert self.daemon is not None
        if not self.strace:
            return self.daemon.proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = psutil.Process(self.daemon.proc.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.05)
        raise RuntimeError("strace has no child")

    def send(self, sig: signal.Signals) -> None:
        psutil.Process(self.daemon_pid()).send_signal(sig)

    def start_worker(self) -> None:
        backend = {"type": "sleep", "delay_s": 0.3, "text": CLOUD_TEXT}
        config = worker_config_file(self.tmp, WORKER, backend)
        self.worker = spawn_worker(self.broker.url, WORKER, self.tmp, "--config", str(config))
        if not self.wait(self.cloud_answers, 60):
            raise RuntimeError(f"the worker never answered: {(self.tmp / f'{WORKER}.log').read_text()}")

    def close(self) -> None:
        self.stop_daemon()
        if self.worker is not None:
            stop_process(self.worker)
        self.mqtt.close()
        self.stack.close()

    def connect_mqtt(self) -> RawClient:
        """The bench's own MQTT client: it sees the daemon's escalations, their replies and its fleet acks."""
        client = RawClient(self.broker.port, "faults-bench")
        for topic in ("escalate", "reply/+"):
            client.subscribe(f"{PREFIX}/{DEVICE}/{topic}")
        client.subscribe(f"{PREFIX}/fleet/device/{DEVICE}/ack")
        return client

    def reply_topic(self) -> str:
        """The daemon's reply topic (new at every start), from the Response Topic of an escalation it sends."""
        drain(self)
        self.cloud_answers()
        sent = [m.reply_to for m in drain(self) if m.topic.endswith("/escalate") and m.reply_to]
        if not sent:
            raise RuntimeError("the daemon sent no escalation to learn its reply topic from")
        return sent[0]

    # ---- observations ----------------------------------------------------------------------------------------

    def status(self) -> pb.StatusResponse:
        assert self.daemon is not None
        response: pb.StatusResponse = self.daemon.stub.GetStatus(pb.GetStatusRequest(), timeout=10)
        return response

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                if condition():
                    return True
            time.sleep(0.05)
        return False

    def cloud_answers(self) -> bool:
        assert self.daemon is not None
        request = pb.GenerateRequest(prompt="Hi", max_tokens=4, mode=pb.Mode.CLOUD_ONLY)
        try:
            answer = self.daemon.stub.Generate(request, timeout=RPC_S)
        except grpc.RpcError:
            return False
        return bool(answer.text == CLOUD_TEXT)

    def outbound_total(self) -> int:
        """connect() attempts to anything but the broker, in every start's trace so far."""
        return sum(1 for _ in self.outbound_destinations())

    def outbound_destinations(self) -> Iterator[str]:
        for path in sorted(self.tmp.glob("connect.trace.*")):
            for match in CONNECT.finditer(path.read_text(errors="replace")):
                family, port, address = match.groups()
                if (address, int(port)) != ("127.0.0.1", self.broker.port):
                    yield f"{family} {address}:{port}"

    def after_case(self, area: Area, case: str) -> None:
        """Crash, hang and serving checks; a crashed daemon or worker is restarted so the run goes on."""
        assert self.daemon is not None
        if self.worker is not None and self.worker.poll() is not None:
            area.fail("crashes", f"{case}: the worker exited with {self.worker.returncode}")
            self.start_worker()
        code = self.daemon.proc.poll()
        if code is not None:
            area.fail("crashes", f"{case}: the daemon exited with {code}: {self.daemon.describe()[-800:]}")
            area.serving = False
            self.stop_daemon()
            self.start_daemon()
            return
        try:
            healthy = self.daemon.health() == SERVING
            answer = self.daemon.stub.Generate(
                pb.GenerateRequest(prompt="Say OK.", max_tokens=1, temperature=0.0, mode=pb.Mode.LOCAL_ONLY),
                timeout=RPC_S,
            )
            healthy = healthy and answer.usage.completion_tokens >= 1
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                area.fail("hangs", f"{case}: the plain request after it hung")
            healthy = False
        if not healthy:
            area.serving = False
            area.failures.append(f"not serving after {case}")


def timed_call(
    rig: Rig, area: Area, request: pb.GenerateRequest, streamed: bool, case: str
) -> tuple[pb.GenerateResponse | None, grpc.RpcError | None] | None:
    """One call: its answer or error, or None when it hung (counted here)."""
    assert rig.daemon is not None
    started = time.monotonic()
    response, error = call(rig.daemon.stub, request, streamed, RPC_S)
    code = None if error is None else error.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started >= RPC_S - 1:
        area.fail("hangs", f"{case}: no answer within {RPC_S:.0f} s")
        return None
    return response, error


FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def fuzz_requests(rig: Rig, examples: int) -> Area:
    area = Area("request fields")

    @settings(FUZZ, max_examples=examples)
    @given(request=generate_requests(), streamed=st.booleans())
    def case(request: pb.GenerateRequest, streamed: bool) -> None:
        area.cases += 1
        label = f"request #{area.cases} ({'stream' if streamed else 'unary'}) {str(request)[:200]!r}"
        result = timed_call(rig, area, request, streamed, label)
        verdict = None if result is None else judge_answer(request, *result)
        if verdict is not None and verdict.problem is not None:
            area.fail("lost", f"{label}: {verdict.problem}")
        rig.after_case(area, label)

    case()
    return area


def fuzz_schemas(rig: Rig, examples: int) -> Area:
    area = Area("json schemas")

    @settings(FUZZ, max_examples=examples)
    @given(schema=json_schemas())
    def case(schema: str) -> None:
        area.cases += 1
        label = f"schema #{area.cases} {schema[:160]!r}"
        request = pb.GenerateRequest(
            prompt="Answer in JSON.",
            max_tokens=3,
            temperature=0.0,
            mode=pb.Mode.LOCAL_ONLY,
            json_schema=schema,
        )
        result = timed_call(rig, area, request, False, label)
        verdict = None if result is None else judge_schema(*result)
        if verdict is not None and verdict.problem is not None:
            area.fail("lost", f"{label}: {verdict.problem}")
        rig.after_case(area, label)

    case()
    return area


def mqtt_payloads(rig: Rig) -> Area:
    area = Area("mqtt payloads")
    fleet = FleetTopics(PREFIX)
    targets = [Target("group", GROUP), Target("device", DEVICE)]
    reply_topic = rig.reply_topic()
    topics = [
        reply_topic,
        f"{PREFIX}/@workers/w-stranger",
        *(fleet.inbound(kind, target) for kind in ("keys", "profile") for target in targets),
        f"{PREFIX}/{DEVICE}/escalate",
        f"{PREFIX}/other-device/escalate",
        f"{PREFIX}/{DEVICE}/cancel",
    ]
    for topic in topics:
        for index, payload in enumerate(garbage_payloads()):
            area.cases += 1
            label = f"{topic} payload #{index} ({len(payload)} bytes)"
            rig.mqtt.publish(topic, payload)
            rig.mqtt.publish(topic, payload, correlation=b"\x01" * 4096, reply_to=f"{PREFIX}/x/reply/1")
            rig.mqtt.publish(topic, payload, correlation=b"c", reply_to=reply_topic)
            rig.after_case(area, label)
        if not rig.cloud_answers():
            area.fail("lost", f"a cloud request after the payloads on {topic}")
    return area


def drain(rig: Rig) -> list[Received]:
    seen: list[Received] = []
    while not rig.mqtt.received.empty():
        seen.append(rig.mqtt.received.get_nowait())
    return seen


def next_message(rig: Rig, predicate: Callable[[Received], bool], timeout: float = 20.0) -> Received | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            message = rig.mqtt.received.get(timeout=0.1)
            if predicate(message):
                return message
    return None


class Background:
    """A call on its own thread, so a fault can be injected while it runs."""

    def __init__(self, rig: Rig, request: pb.GenerateRequest, streamed: bool) -> None:
        assert rig.daemon is not None
        stub = rig.daemon.stub
        self.started = time.monotonic()
        self.result: tuple[pb.GenerateResponse | None, grpc.RpcError | None] = (None, None)
        self.thread = threading.Thread(
            target=lambda: setattr(self, "result", call(stub, request, streamed, RPC_S))
        )
        self.thread.start()

    def join(self) -> tuple[pb.GenerateResponse | None, grpc.RpcError | None, float]:
        self.thread.join(RPC_S + 10)
        return (*self.result, time.monotonic() - self.started)


def spoofed_replies(rig: Rig) -> Area:
    area = Area("spoofed replies")
    drain(rig)
    rig.cloud_answers()  # an old exchange, recorded to be replayed
    old_chunks = [m for m in drain(rig) if "/reply/" in m.topic]

    def forged(live: EscalationRequest) -> list[tuple[str, list[bytes]]]:
        def chunk(**fields: Any) -> bytes:
            return EscalationChunk(**fields).SerializeToString()

        return [
            ("garbage bytes", [b"\xff\xff\xff"]),
            ("empty payload", [b""]),
            ("replayed old exchange", [m.payload for m in old_chunks]),
            (
                "old request id",
                [chunk(request_id="old", seq=1, delta="REPLAYED", done=True, worker_id=WORKER)],
            ),
            (
                "stranger worker",
                [chunk(request_id=live.request_id, seq=1, delta="SPOOFED", done=True, worker_id="evil")],
            ),
            ("no request id", [chunk(request_id="", seq=1, delta="NO ID", done=True, worker_id=WORKER)]),
            (
                "stolen seq 0",
                [chunk(request_id=live.request_id, seq=0, delta="STOLEN", done=True, worker_id="evil")],
            ),
            (
                "far seq",
                [chunk(request_id=live.request_id, seq=10**6, delta="FAR", done=True, worker_id=WORKER)],
            ),
        ]

    for kind in range(8):
        for streamed in (False, True):
            area.cases += 1
            drain(rig)
            running = Background(
                rig, pb.GenerateRequest(prompt="Hi", max_tokens=4, mode=pb.Mode.CLOUD_ONLY), streamed
            )
            sent = next_message(rig, lambda m: m.topic.endswith("/escalate"))
            name = "?"
            if sent is not None and sent.reply_to:
                name, payloads = forged(EscalationRequest.FromString(sent.payload))[kind]
                for payload in payloads:
                    rig.mqtt.publish(sent.reply_to, payload, correlation=sent.correlation)
            label = f"{name} ({'stream' if streamed else 'unary'})"
            response, error, took = running.join()
            if error is not None or response is None:
                kind_of = "hangs" if took >= RPC_S - 1 else "lost"
                area.fail(kind_of, f"{label}: {error.code().name if error else 'no answer'}")
            elif response.text != CLOUD_TEXT:
                area.fail("wrong", f"{label}: answered {response.text!r}")
            rig.after_case(area, label)
    return area


def worker_killed(rig: Rig) -> Area:
    area = Area("worker killed")
    cases = [(pb.Mode.PREFER_CLOUD, True), (pb.Mode.PREFER_CLOUD, False), (pb.Mode.CLOUD_ONLY, True)]
    for mode, streamed in cases:
        area.cases += 1
        label = f"{pb.Mode.Name(mode)} {'stream' if streamed else 'unary'}"
        drain(rig)
        running = Background(rig, pb.GenerateRequest(prompt="Hi", max_tokens=4, mode=mode), streamed)
        next_message(rig, lambda m: "/reply/" in m.topic)  # chunk 0: the worker holds it
        assert rig.worker is not None
        rig.worker.kill()
        rig.worker.wait(10)
        response, error, took = running.join()
        if took >= RPC_S - 1:
            area.fail("hangs", label)
        elif mode == pb.Mode.CLOUD_ONLY:
            if error is None or error.code() != grpc.StatusCode.UNAVAILABLE:
                area.fail("lost", f"{label}: {error.code().name if error else 'answered'}, not UNAVAILABLE")
        elif error is not None or response is None or response.usage.completion_tokens < 1:
            area.fail("lost", f"{label}: {error.code().name if error else 'empty'} instead of a local answer")
        rig.start_worker()
        rig.after_case(area, label)
    return area


def broker_restarted(rig: Rig) -> Area:
    area = Area("broker restarted")
    for streamed in (True, False):
        area.cases += 1
        label = f"PREFER_CLOUD {'stream' if streamed else 'unary'}"
        drain(rig)
        request = pb.GenerateRequest(prompt="Hi", max_tokens=4, mode=pb.Mode.PREFER_CLOUD)
        running = Background(rig, request, streamed)
        next_message(rig, lambda m: "/reply/" in m.topic)
        rig.mqtt.close()
        rig.broker.restart()
        rig.mqtt = rig.connect_mqtt()
        response, error, took = running.join()
        if took >= RPC_S - 1:
            area.fail("hangs", label)
        elif error is not None or response is None or response.usage.completion_tokens < 1:
            area.fail("lost", f"{label}: {error.code().name if error else 'empty'}")
        if not rig.wait(rig.cloud_answers, 60):
            area.fail("lost", f"{label}: no cloud answer within 60 s of the broker's return")
        rig.after_case(area, label)
    return area


def sighup_configs(rig: Rig) -> Area:
    area = Area("sighup configs")
    good = toml_document(rig.config)
    broken = {
        "syntax error": "[engine\nmax_tokens_cap = 8\n",
        "out of bounds": "[engine]\nslots = 0\n",
        "empty": "",
        "comment only": "# nothing\n\n",
        "binary": "\x00\xff\xfe garbage",
        "unknown key": good + "surprise = 1\n",
        "lower cap, no broker (valid)": toml_document({k: v for k, v in rig.config.items() if k != "broker"}),
    }
    for name, text in broken.items():
        area.cases += 1
        daemon = rig.daemon
        assert daemon is not None
        after = len(daemon.notify.messages)
        rejections = daemon.log().count("reload rejected")
        daemon.config_path.write_text(text)
        rig.send(signal.SIGHUP)

        def reloaded(daemon: ServedDaemon = daemon, after: int = after) -> bool:
            return daemon.notify.find("READY", "1", after=after) is not None or daemon.proc.poll() is not None

        if not daemon.notify.wait_until(reloaded, 60):
            area.fail("hangs", f"{name}: no READY=1 within 60 s of SIGHUP")
        rejected = daemon.log().count("reload rejected") > rejections
        if rejected == ("valid" in name):
            area.fail("wrong", f"{name}: {'rejected' if rejected else 'not rejected'}")
        rig.after_case(area, name)
    assert rig.daemon is not None
    rig.daemon.config_path.write_text(good)
    rig.send(signal.SIGHUP)
    rig.wait(lambda: rig.status().link.state == "connected", 60)
    return area


def profile_attacks(rig: Rig) -> Area:
    area = Area("profile attacks")
    target = Target("group", GROUP)
    topic = FleetTopics(PREFIX).inbound("profile", target)
    now = int(time.time())

    def signed(version: int, **changes: Any) -> bytes:
        document = json.loads(
            rig.signer.sign("profile", version, target, {"name": f"v{version}"}, lifetime_s=3600)
        )
        document["signed"].update(changes)
        return json.dumps(document).encode()

    def push(payload: bytes) -> dict[str, Any] | None:
        drain(rig)
        rig.mqtt.publish(topic, payload, retain=True)
        ack = next_message(rig, lambda m: m.topic.endswith("/ack"), timeout=20)
        return None if ack is None else dict(json.loads(ack.payload))

    baseline = push(rig.signer.sign("profile", 5, target, {"name": "v5"}, lifetime_s=3600))
    if baseline is None or baseline["outcome"] != "applied":
        area.failures.append(f"the good v5 push was not applied: {baseline}")
    unsigned = json.loads(signed(6))
    unsigned["signature"] = ""
    tampered = json.loads(signed(6))
    tampered["signed"]["profile"] = {"name": "tampered"}
    attacks = {
        "unsigned": json.dumps(unsigned).encode(),
        "tampered": json.dumps(tampered).encode(),
        "wrong key": rig.other_signer.sign("profile", 6, target, {"name": "evil"}, lifetime_s=3600),
        "rollback": rig.signer.sign("profile", 4, target, {"name": "v4"}, lifetime_s=3600),
        "replay of v5": rig.signer.sign("profile", 5, target, {"name": "v5-again"}, lifetime_s=3600),
        "expired": rig.signer.sign(
            "profile", 7, target, {"name": "old"}, lifetime_s=60, issued_at=now - 7200
        ),
        "future-dated": rig.signer.sign(
            "profile", 8, target, {"name": "future"}, lifetime_s=3600, issued_at=now + 10 * 365 * 86400
        ),
        "oversized": signed(9, profile={"name": "big", "pad": "x" * 70000}),
        "malformed": b'{"signed": {"version": 10}, "signature": ',
        # 29999, not the 30000 of the mqtt payloads area: the device acks one rejection per distinct payload
        "deeply nested": b'{"signed": ' + b"[" * 29999 + b"]" * 29999 + b', "signature": ""}',
        "not base64 signature": json.dumps({**unsigned, "signature": "***"}).encode(),
        "short signature": json.dumps({**unsigned, "signature": base64.b64encode(b"abc").decode()}).encode(),
    }
    running = 5
    for name, payload in attacks.items():
        area.cases += 1
        ack = push(payload)
        version = running
        with contextlib.suppress(grpc.RpcError):
            version = rig.status().profile.version
        if ack is None:
            area.fail("hangs", f"{name}: no ack within 20 s")
        elif ack["outcome"] == "applied" or version != running:  # one wrong outcome per case
            area.fail(
                "wrong", f"{name}: acked {ack['outcome']} v{ack['version']}, running v{running} -> v{version}"
            )
        running = version
        rig.after_case(area, name)
    rig.mqtt.publish(topic, b"", retain=True)  # clear the retained attack
    return area


def sigterm_under_load(rig: Rig) -> Area:
    area = Area("sigterm under load")
    for streams in (6, 12):
        area.cases += 1
        label = f"{streams} streams on 2 slots"
        request = pb.GenerateRequest(prompt="Write a story about a dragon.", max_tokens=32, temperature=0.0)
        running = [Background(rig, request, streamed=True) for _ in range(streams)]
        time.sleep(0.5)
        assert rig.daemon is not None
        rig.send(signal.SIGTERM)
        try:
            code = rig.daemon.proc.wait(60)
        except subprocess.TimeoutExpired:
            area.fail("hangs", f"{label}: still running 60 s after SIGTERM")
            code = None
        if code not in (0, None):
            area.fail("crashes", f"{label}: exit status {code}: {rig.daemon.describe()[-800:]}")
        for index, job in enumerate(running):
            response, error, took = job.join()
            if took >= RPC_S - 1:
                area.fail("hangs", f"{label}: stream {index}")
            elif error is not None and error.code() not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
            ):
                area.fail("lost", f"{label}: stream {index} ended {error.code().name}: {error.details()}")
            elif error is None and (response is None or response.finish_reason not in ("stop", "length")):
                area.fail("lost", f"{label}: stream {index}: {response.finish_reason if response else None}")
        rig.stop_daemon()
        rig.start_daemon()
        rig.after_case(area, label)
    return area


def table(areas: list[Area], measured: bool) -> str:
    columns = [
        "area",
        "cases",
        "crashes",
        "hangs past deadline",
        "requests lost",
        "wrong outcomes",
        "outbound attempts",
        "serving after every case",
    ]
    head = "| " + " | ".join(columns) + " |"
    rows = [head, "|" + " --- |" * 8]
    for a in areas:
        outbound = str(a.outbound) if measured and a.outbound is not None else "not measured"
        rows.append(
            f"| {a.name} | {a.cases} | {a.crashes} | {a.hangs} | {a.lost} | {a.wrong} | {outbound} | "
            f"{'yes' if a.serving else 'no'} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=60, help="hypothesis examples per fuzzed area")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edged-faults-") as tmp:
        rig = Rig(Path(tmp))
        try:
            rig.start_daemon()
            rig.start_worker()
            steps: list[Callable[[], Area]] = [
                lambda: fuzz_requests(rig, args.examples),
                lambda: fuzz_schemas(rig, args.examples),
                lambda: mqtt_payloads(rig),
                lambda: spoofed_replies(rig),
                lambda: worker_killed(rig),
                lambda: broker_restarted(rig),
                lambda: sighup_configs(rig),
                lambda: profile_attacks(rig),
                lambda: sigterm_under_load(rig),
            ]
            areas = []
            for step in steps:
                before = rig.outbound_total()
                area = step()
                area.outbound = rig.outbound_total() - before
                areas.append(area)
                print(f"# {area.name}: {area.cases} cases, {time.monotonic() - started:.0f} s", flush=True)
            areas.insert(0, rig.starts)
            destinations = sorted(set(rig.outbound_destinations()))
        finally:
            rig.close()
    text = table(areas, rig.strace is not None)
    print(text)
    for area in areas:
        for failure in area.failures:
            print(f"- {area.name}: {failure}")
    if destinations:
        print("outbound destinations:", ", ".join(destinations))
    print(f"total {sum(a.cases for a in areas)} cases in {time.monotonic() - started:.0f} s")
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
