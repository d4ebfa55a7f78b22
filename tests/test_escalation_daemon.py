"""Escalation through a real daemon: gRPC in, MQTT out to real `edged-cloud-bridge` processes, and back.

One Mosquitto and one daemon (the bundled SmolLM2, `broker.url` set, so the privacy gate and the cloud link
are loaded) serve the module. Its `routing.confidence_threshold` is 1.0: every local answer counts as unsure,
so a PREFER_LOCAL request escalates after generating locally, and AUTO requests set `router_threshold` 1.0 to
go to the cloud before generating. Each test starts the worker processes it needs and stops them before the
next. The sleep backend answers where the content does not matter; Gemma 3 270M where it does.

No assertion measures time: "within the deadline" means the call returned its answer (or its error) rather
than the client's own DEADLINE_EXCEEDED, and waits for state are bounded and fail by naming what they waited for.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
import openai
import pytest

from edged.escalation.client import EscalationClient
from edged.v1 import inference_pb2 as pb
from edged.v1.escalation_pb2 import EscalationChunk
from tests.brokers import MosquittoBroker
from tests.daemon_harness import RunningDaemon, running_daemon
from tests.escalation_parts import (
    MODEL_WAIT_S,
    WAIT_S,
    run_async,
    spawn_worker,
    start_observer,
    stop_process,
    wait_until,
    worker_config_file,
)
from tests.ops_support import toml_document
from tests.sovereignty_parts import leaks, wire_haystacks, wire_tap

pytestmark = [pytest.mark.mqtt, pytest.mark.slow]

DEVICE = "esc-device"
CLOUD_TEXT = "one two three four five six"
PROMPT = "How do tides work?"
DEADLINE_S = MODEL_WAIT_S  # the caller's deadline where the local model may answer (2 shared cores)
SHORT_DEADLINE_S = 16.0  # a deadline a slow worker overruns: half for the cloud, half for the local fallback
GEMMA_MODEL = "gemma-3-270m-q4_k_m"
LOCAL_MODEL = "smollm2-135m-instruct-q4_1"
EDGED = str(Path(sys.executable).with_name("edged"))
T = TypeVar("T")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(workdir=tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture(scope="module")
def daemon(broker: MosquittoBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    config = {
        "device_id": DEVICE,
        "broker": {"url": broker.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "routing": {"confidence_threshold": 1.0},
        # the cloud modes through the OpenAI API too; one completion at a time, so a held one shows the limit
        "http": {"enabled": True, "tcp": "127.0.0.1:0", "max_concurrent_requests": 1},
    }
    with running_daemon(tmp_path_factory.mktemp("edged"), config) as running:
        yield running


def escalation_client(daemon: RunningDaemon) -> EscalationClient:
    cloud = daemon.daemon.runtime.cloud
    assert cloud is not None, "the daemon has no cloud link"
    return cloud.client


class Workers:
    """`edged-cloud-bridge` processes for one test; each is taken as ready once the daemon sees its presence."""

    def __init__(self, broker: MosquittoBroker, daemon: RunningDaemon, tmp: Path) -> None:
        self._broker = broker
        self._client = escalation_client(daemon)
        self._tmp = tmp
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, backend: dict[str, Any] | None = None, **settings: Any
    ) -> subprocess.Popen[bytes]:
        """A worker with `backend` (None: the default Gemma) and top-level `settings` (e.g. max_tokens_cap),
        once the daemon knows it is online."""
        config = worker_config_file(self._tmp, name, backend)
        if settings:  # top-level keys go before the file's first [section]
            config.write_text(toml_document(settings) + config.read_text())
        process = spawn_worker(self._broker.url, name, self._tmp, "--config", str(config))
        self._processes.append(process)
        online = len(self._processes)

        def ready() -> bool:
            assert process.poll() is None, f"worker {name} exited: {self.log(name)}"
            return self._client.workers_online() >= online

        wait_until(ready, f"worker {name}'s presence", MODEL_WAIT_S if backend is None else WAIT_S)
        return process

    def sleeping(self, name: str, *, delay_s: float = 0.0, text: str = CLOUD_TEXT) -> subprocess.Popen[bytes]:
        return self.start(name, {"type": "sleep", "delay_s": delay_s, "text": text})

    def log(self, name: str) -> str:
        path = self._tmp / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop_all(self) -> None:
        for process in self._processes:
            stop_process(process)
        wait_until(lambda: self._client.workers_online() == 0, "the workers' presence to clear")


@pytest.fixture
def workers(broker: MosquittoBroker, daemon: RunningDaemon, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(broker, daemon, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def ask(
    mode: pb.Mode.ValueType, prompt: str = PROMPT, *, max_tokens: int = 8, **extra: Any
) -> pb.GenerateRequest:
    return pb.GenerateRequest(prompt=prompt, mode=mode, max_tokens=max_tokens, temperature=0.0, **extra)


def refusal(daemon: RunningDaemon, request: pb.GenerateRequest, timeout: float) -> grpc.RpcError:
    """The error a unary call ends with (failing the test if it answers)."""
    with pytest.raises(grpc.RpcError) as caught:
        daemon.stub.Generate(request, timeout=timeout)
    error: grpc.RpcError = caught.value
    return error


def edged_status(daemon: RunningDaemon, *flags: str) -> str:
    done = subprocess.run(
        [EDGED, "status", "--socket", str(daemon.socket), *flags],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=True,
    )
    return done.stdout


# ---- answers from the cloud ------------------------------------------------------------------------------


def test_a_cloud_only_answer_arrives_from_the_cloud(daemon: RunningDaemon, workers: Workers) -> None:
    workers.sleeping("unary")
    response = daemon.stub.Generate(ask(pb.CLOUD_ONLY), timeout=WAIT_S)
    assert response.text == CLOUD_TEXT
    assert response.finish_reason == "stop"
    p = response.provenance
    assert (p.source, p.model, p.degraded, p.device_id) == (pb.CLOUD, "sleep", False, DEVICE)
    assert list(p.reasons) == ["mode=CLOUD_ONLY", "answered=cloud"]
    assert response.usage.completion_tokens == len(CLOUD_TEXT.split())


def test_a_streamed_cloud_answer_arrives_in_order_with_provenance_on_the_last_chunk(
    daemon: RunningDaemon, workers: Workers
) -> None:
    workers.sleeping("streamed")
    chunks = list(daemon.stub.GenerateStream(ask(pb.CLOUD_ONLY), timeout=WAIT_S))
    *body, last = chunks
    words = CLOUD_TEXT.split(" ")
    assert [c.delta for c in body] == [words[0], *(" " + word for word in words[1:])]
    assert not any(c.done or c.HasField("provenance") for c in body)
    assert last.done
    assert last.delta == ""
    assert (last.provenance.source, last.provenance.model) == (pb.CLOUD, "sleep")
    assert list(last.provenance.reasons) == ["mode=CLOUD_ONLY", "answered=cloud"]
    assert last.finish_reason == "stop"


@pytest.mark.parametrize(
    ("mode", "extra", "rule"),
    [
        (pb.PREFER_CLOUD, {}, None),
        (pb.AUTO, {"router_threshold": 1.0}, r"router_score=0\.\d\d<threshold=1\.00"),
        (pb.PREFER_LOCAL, {}, r"confidence(@\d+)?=0\.\d\d<threshold=1\.00"),
    ],
    ids=["prefer_cloud", "auto", "prefer_local"],
)
def test_each_mode_that_may_escalate_goes_to_the_cloud(
    daemon: RunningDaemon, workers: Workers, mode: pb.Mode.ValueType, extra: dict[str, Any], rule: str | None
) -> None:
    workers.sleeping("modes")
    response = daemon.stub.Generate(ask(mode, **extra), timeout=DEADLINE_S)
    assert (response.text, response.provenance.source) == (CLOUD_TEXT, pb.CLOUD)
    reasons = list(response.provenance.reasons)
    assert reasons[0] == f"mode={pb.Mode.Name(mode)}"
    assert reasons[-1] == "answered=cloud"
    assert not response.provenance.degraded
    if rule is not None:
        assert any(re.fullmatch(rule, reason) for reason in reasons), reasons


def test_gemma_answers_an_escalated_question_unary_and_streamed(
    daemon: RunningDaemon, workers: Workers
) -> None:
    workers.start("gemma")  # no backend section: the worker's default, Gemma 3 270M in process
    question = ask(pb.CLOUD_ONLY, "What is the capital of France?", max_tokens=8)
    response = daemon.stub.Generate(question, timeout=DEADLINE_S)
    assert "Paris" in response.text
    assert (response.provenance.source, response.provenance.model) == (pb.CLOUD, GEMMA_MODEL)
    chunks = list(daemon.stub.GenerateStream(question, timeout=DEADLINE_S))
    assert "".join(c.delta for c in chunks) == response.text  # greedy: the same answer, in pieces
    assert chunks[-1].provenance.model == GEMMA_MODEL


# ---- failures: the device answers, or the caller hears why before its deadline -----------------------------


def test_cloud_only_without_any_worker_is_unavailable(daemon: RunningDaemon) -> None:
    assert escalation_client(daemon).workers_online() == 0
    error = refusal(daemon, ask(pb.CLOUD_ONLY), DEADLINE_S)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "no cloud_bridge worker is subscribed" in (error.details() or "")


async def _kill_once_taken(broker: MosquittoBroker, workers: Workers, call: Callable[[], T]) -> T:
    """Run `call` (a blocking gRPC call) in a thread; once a worker has taken its escalation (chunk 0 on the
    reply topic), SIGKILL that worker. Returns what the call returns, or raises what it raises."""
    process = workers.sleeping("doomed", delay_s=60.0)
    observer, replies = await start_observer(broker.url, f"edged/v1/{DEVICE}/reply/+")
    try:
        outcome = asyncio.ensure_future(asyncio.to_thread(call))
        message = await asyncio.wait_for(replies.get(), DEADLINE_S)  # PREFER_LOCAL generates locally first
        assert message is not None
        taken = EscalationChunk.FromString(message.payload)
        assert (taken.seq, taken.worker_id) == (0, "doomed")
        process.kill()  # no DISCONNECT: the broker publishes the worker's Last Will, clearing its presence
        return await outcome
    finally:
        stop_process(process, signal.SIGKILL)
        await observer.stop()


def _assert_local_fallback(provenance: pb.Provenance, mode: pb.Mode.ValueType) -> None:
    p = provenance
    assert (p.source, p.model, p.degraded) == (pb.LOCAL, LOCAL_MODEL, True)
    reasons = list(p.reasons)
    assert reasons[0] == f"mode={pb.Mode.Name(mode)}"
    assert reasons[-3:] == ["cloud_failed:cloud_unavailable", "fallback=local", "answered=local"]


@pytest.mark.parametrize(
    ("mode", "extra"),
    [(pb.PREFER_LOCAL, {}), (pb.AUTO, {"router_threshold": 1.0}), (pb.PREFER_CLOUD, {})],
    ids=["prefer_local", "auto", "prefer_cloud"],
)
@run_async
async def test_a_worker_killed_mid_request_leaves_the_answer_to_the_device(
    broker: MosquittoBroker,
    daemon: RunningDaemon,
    workers: Workers,
    mode: pb.Mode.ValueType,
    extra: dict[str, Any],
) -> None:
    request = ask(mode, **extra)
    # an answer, not the client's DEADLINE_EXCEEDED: it came within the deadline
    response = await _kill_once_taken(
        broker, workers, lambda: daemon.stub.Generate(request, timeout=DEADLINE_S)
    )
    assert response.text
    _assert_local_fallback(response.provenance, mode)
    assert daemon.status().link.in_flight == 0


@run_async
async def test_a_worker_killed_before_a_streamed_answer_began_leaves_it_to_the_device(
    broker: MosquittoBroker, daemon: RunningDaemon, workers: Workers
) -> None:
    request = ask(pb.PREFER_CLOUD)
    chunks = await _kill_once_taken(
        broker, workers, lambda: list(daemon.stub.GenerateStream(request, timeout=DEADLINE_S))
    )
    *body, last = chunks
    assert body
    assert all(c.delta and not c.done for c in body)
    assert last.done
    _assert_local_fallback(last.provenance, pb.PREFER_CLOUD)


@run_async
async def test_a_worker_killed_mid_request_makes_cloud_only_unavailable(
    broker: MosquittoBroker, daemon: RunningDaemon, workers: Workers
) -> None:
    request = ask(pb.CLOUD_ONLY)
    with pytest.raises(grpc.RpcError) as caught:
        await _kill_once_taken(broker, workers, lambda: daemon.stub.Generate(request, timeout=DEADLINE_S))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # not DEADLINE_EXCEEDED: within the deadline
    assert "worker doomed went offline while answering" in (caught.value.details() or "")


@pytest.mark.parametrize("mode", [pb.PREFER_CLOUD, pb.CLOUD_ONLY], ids=["prefer_cloud", "cloud_only"])
def test_a_frozen_worker_is_given_up_after_the_accept_timeout(
    daemon: RunningDaemon, workers: Workers, mode: pb.Mode.ValueType
) -> None:
    """SIGSTOP: still subscribed, its TCP connection open, but it never takes the request (no chunk 0)."""
    frozen = workers.sleeping("frozen")
    frozen.send_signal(signal.SIGSTOP)
    try:
        if mode == pb.CLOUD_ONLY:
            error = refusal(daemon, ask(mode), DEADLINE_S)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "no worker took the request within 2.0 s (escalation.accept_timeout_s)" in (
                error.details() or ""
            )
        else:
            response = daemon.stub.Generate(ask(mode), timeout=DEADLINE_S)
            _assert_local_fallback(response.provenance, mode)
    finally:
        frozen.send_signal(signal.SIGCONT)


def test_a_worker_slower_than_the_deadline_leaves_prefer_cloud_answered_locally_in_time(
    daemon: RunningDaemon, workers: Workers
) -> None:
    workers.sleeping("slow", delay_s=60.0)
    response = daemon.stub.Generate(ask(pb.PREFER_CLOUD), timeout=SHORT_DEADLINE_S)
    p = response.provenance
    assert (p.source, p.degraded) == (pb.LOCAL, True)
    assert list(p.reasons) == [
        "mode=PREFER_CLOUD",
        "cloud_failed:deadline_exceeded",
        "fallback=local",
        "answered=local",
    ]


@pytest.mark.parametrize(
    ("mode", "extra"),
    [(pb.PREFER_CLOUD, {}), (pb.AUTO, {"router_threshold": 1.0}), (pb.CLOUD_ONLY, {})],
    ids=["prefer_cloud", "auto", "cloud_only"],
)
def test_a_request_the_worker_refuses_is_answered_locally_unless_cloud_only(
    daemon: RunningDaemon, workers: Workers, mode: pb.Mode.ValueType, extra: dict[str, Any]
) -> None:
    """max_tokens 8 passes the device's cap (256) but not the worker's (4): the worker refuses it as invalid."""
    workers.start("capped", {"type": "sleep", "delay_s": 0.0, "text": CLOUD_TEXT}, max_tokens_cap=4)
    request = ask(mode, max_tokens=8, **extra)
    if mode == pb.CLOUD_ONLY:
        error = refusal(daemon, request, DEADLINE_S)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == (
            "max_tokens: 8 is outside 1..4 (max_tokens_cap); refused by cloud worker capped"
        )
        return
    response = daemon.stub.Generate(request, timeout=DEADLINE_S)
    p = response.provenance
    assert (p.source, p.model, p.degraded) == (pb.LOCAL, LOCAL_MODEL, True)
    assert response.text
    reasons = list(p.reasons)
    assert reasons[0] == f"mode={pb.Mode.Name(mode)}"
    assert reasons[-3:] == ["cloud_failed:cloud_refused:max_tokens", "fallback=local", "answered=local"]


def test_a_request_the_device_refuses_is_never_sent(daemon: RunningDaemon, workers: Workers) -> None:
    workers.sleeping("unused")
    client = escalation_client(daemon)
    sent = client.stats.sent
    for mode in (pb.PREFER_CLOUD, pb.CLOUD_ONLY):
        error = refusal(daemon, ask(mode, max_tokens=1000), DEADLINE_S)  # the device's cap is 256
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("max_tokens: 1000 is outside 1..256")
    assert client.stats.sent == sent


def test_cloud_only_past_its_deadline_fails_and_releases_the_escalation(
    daemon: RunningDaemon, workers: Workers
) -> None:
    workers.sleeping("stuck", delay_s=60.0)
    call = daemon.stub.Generate.future(ask(pb.CLOUD_ONLY), timeout=SHORT_DEADLINE_S)
    wait_until(lambda: daemon.status().link.in_flight == 1, "GetStatus to show the escalation in flight")
    error = call.exception(DEADLINE_S)
    assert error is not None
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: daemon.status().link.in_flight == 0, "the escalation to be released")


# ---- the link: status, broker down, broker back ------------------------------------------------------------


def test_status_shows_the_link(broker: MosquittoBroker, daemon: RunningDaemon, workers: Workers) -> None:
    workers.sleeping("status")
    daemon.stub.Generate(ask(pb.CLOUD_ONLY), timeout=WAIT_S)
    link = daemon.status().link
    assert (link.state, link.broker, link.last_error, link.in_flight) == ("connected", broker.url, "", 0)
    assert link.rtt_ms > 0
    assert f"cloud link: connected to {broker.url}, rtt " in edged_status(daemon)
    shown = json.loads(edged_status(daemon, "--json"))["link"]
    assert (shown["state"], shown["broker"], shown["last_error"]) == ("connected", broker.url, "")
    assert shown["rtt_ms"] > 0


def test_broker_down_then_back(broker: MosquittoBroker, daemon: RunningDaemon, workers: Workers) -> None:
    workers.sleeping("survivor")
    broker.stop()
    try:
        wait_until(
            lambda: daemon.status().link.state != "connected", "the daemon to notice the broker is gone"
        )
        link = daemon.status().link
        assert link.state in ("connecting", "disconnected")
        assert link.last_error
        shown = edged_status(daemon)  # the last error changes with every failed reconnect: its shape only
        assert re.search(
            rf"^cloud link: (connecting|disconnected) to {broker.url}, .*last error: ", shown, re.M
        )
        # refused by the routing decision (link_down), not after waiting for anything
        error = refusal(daemon, ask(pb.CLOUD_ONLY), DEADLINE_S)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "link_down" in (error.details() or "")
        response = daemon.stub.Generate(ask(pb.PREFER_CLOUD), timeout=DEADLINE_S)
        p = response.provenance
        assert (p.source, p.degraded) == (pb.LOCAL, True)
        assert list(p.reasons) == ["mode=PREFER_CLOUD", "link_down", "answered=local"]
    finally:
        if broker.process is None:
            broker.start()
    client = escalation_client(daemon)
    wait_until(lambda: daemon.status().link.state == "connected", "the daemon to reconnect")
    wait_until(lambda: client.workers_online() == 1, "the worker to reconnect")
    response = daemon.stub.Generate(ask(pb.CLOUD_ONLY), timeout=WAIT_S)
    assert (response.text, response.provenance.source) == (CLOUD_TEXT, pb.CLOUD)
    assert daemon.status().link.last_error == ""


# ---- scripts/demo ------------------------------------------------------------------------------------------

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo"


def _demo_env(tmp_path: Path) -> dict[str, str]:
    """Gemma assembled under the test's directory, the demo's work directory too (so its removal shows)."""
    return {**os.environ, "EDGED_DEMO_STATE": str(tmp_path / "state"), "TMPDIR": str(tmp_path)}


def test_the_demo_shows_a_local_and_an_escalated_answer_then_stops_everything(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(DEMO)],
        capture_output=True,
        text=True,
        timeout=2 * MODEL_WAIT_S,
        env=_demo_env(tmp_path),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    shown = done.stdout
    assert "[LOCAL smollm2-135m-instruct-q4_1; mode=LOCAL_ONLY; answered=local]" in shown
    assert f"[CLOUD {GEMMA_MODEL}; mode=CLOUD_ONLY; answered=cloud]" in shown
    assert "answered: 1 local, 1 cloud" in shown
    assert re.search(r"^cloud link: connected to mqtt://127\.0\.0\.1:\d+, rtt ", shown, re.M)
    stopped = re.findall(r"^   (\S+) stopped$", shown, re.M)
    assert stopped == ["edged", "cloud-bridge", "mosquitto"]  # reverse order, each exited cleanly
    assert not list(tmp_path.glob("edged-demo.*"))  # the work directory is removed


def test_ctrl_c_stops_the_demo_in_order(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("wb") as sink:
        # its own process group, as a terminal's foreground job: Ctrl-C is SIGINT to the whole group
        demo = subprocess.Popen(
            [str(DEMO)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=_demo_env(tmp_path),
            start_new_session=True,
        )
    try:
        wait_until(
            lambda: "worker connected and subscribed" in out.read_text(), "the demo's worker", MODEL_WAIT_S
        )
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(MODEL_WAIT_S) == 130
    finally:
        stop_process(demo, signal.SIGKILL)
    shown = out.read_text()
    stopped = re.findall(r"^   (\S+) stopped", shown, re.M)
    assert stopped[-2:] == ["cloud-bridge", "mosquitto"], shown
    assert "[CLOUD" not in shown
    assert not list(tmp_path.glob("edged-demo.*"))


# ---- the cloud modes through the OpenAI-compatible HTTP API ---------------------------------------------


def openai_client(daemon: RunningDaemon) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=daemon.openai_base_url(), api_key="unused", max_retries=0, timeout=DEADLINE_S
    )


def test_cloud_only_over_http_is_answered_by_the_worker_unary_and_streamed(
    daemon: RunningDaemon, workers: Workers
) -> None:
    workers.sleeping("http-cloud")
    messages: Any = [{"role": "user", "content": PROMPT}]
    with openai_client(daemon) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=LOCAL_MODEL, messages=messages, max_tokens=8, extra_body={"mode": "cloud-only"}
        )
        completion = raw.parse()
        chunks = list(
            client.chat.completions.create(
                model=LOCAL_MODEL,
                messages=messages,
                max_tokens=8,
                stream=True,
                extra_body={"mode": "cloud-only"},
            )
        )
    assert completion.choices[0].message.content == CLOUD_TEXT
    info = (completion.model_extra or {})["edged"]
    assert (info["source"], info["reasons"]) == ("CLOUD", ["mode=CLOUD_ONLY", "answered=cloud"])
    assert raw.headers["X-Edged-Source"] == "CLOUD"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == CLOUD_TEXT
    last = (chunks[-1].model_extra or {})["edged"]
    assert last["source"] == "CLOUD"


def test_prefer_cloud_over_http_sends_personal_data_redacted_and_restores_it(
    broker: MosquittoBroker, daemon: RunningDaemon, workers: Workers
) -> None:
    workers.start("http-echo", {"type": "echo", "chunk_chars": 8})
    email = "jane.doe@example.org"
    messages: Any = [{"role": "user", "content": f"Write to {email} about the invoice"}]
    with wire_tap(broker.url) as tap, openai_client(daemon) as client:
        completion = client.chat.completions.create(
            model=LOCAL_MODEL, messages=messages, max_tokens=64, extra_body={"mode": "prefer-cloud"}
        )
        wire = tap.barrier()
    info = (completion.model_extra or {})["edged"]
    assert info["source"] == "CLOUD", info
    assert info["redacted"] is True
    assert email in (completion.choices[0].message.content or "")  # the echo's placeholder, restored
    assert leaks([email], wire_haystacks(wire)) == []


def test_cloud_only_over_http_without_a_worker_is_an_openai_503(daemon: RunningDaemon) -> None:
    messages: Any = [{"role": "user", "content": PROMPT}]
    with openai_client(daemon) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=LOCAL_MODEL, messages=messages, max_tokens=8, extra_body={"mode": "cloud-only"}
        )
    assert caught.value.status_code == 503
    body: Any = caught.value.body
    assert body["code"] == "unavailable", body
    with openai_client(daemon) as client:  # and the next request is served
        answer = client.chat.completions.create(model=LOCAL_MODEL, messages=messages, max_tokens=4)
    assert answer.choices[0].message.content is not None


def test_http_refuses_a_completion_over_its_limit_with_429_naming_it(
    daemon: RunningDaemon, workers: Workers
) -> None:
    """http.max_concurrent_requests is 1 here: while a slow cloud answer holds it, the next is refused."""
    workers.sleeping("http-slow", delay_s=3.0)
    client = escalation_client(daemon)
    sent = client.stats.sent
    messages: Any = [{"role": "user", "content": PROMPT}]
    cloud_only: Any = {"mode": "cloud-only"}
    with openai_client(daemon) as http, ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            http.chat.completions.create,
            model=LOCAL_MODEL,
            messages=messages,
            max_tokens=8,
            extra_body=cloud_only,
        )
        wait_until(lambda: client.stats.sent > sent, "the held request to reach the broker")
        with pytest.raises(openai.RateLimitError) as caught:
            http.chat.completions.create(model=LOCAL_MODEL, messages=messages, max_tokens=4)
        assert "http.max_concurrent_requests is 1" in caught.value.message
        assert held.result(timeout=DEADLINE_S).choices[0].message.content == CLOUD_TEXT
    with openai_client(daemon) as http:  # the slot is free again
        assert http.chat.completions.create(model=LOCAL_MODEL, messages=messages, max_tokens=4).choices
