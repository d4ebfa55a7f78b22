"""Shared pieces of the escalation and cloud_bridge tests: async test running, waiting, workers and requests.

Workers run either in process (a real BridgeWorker with its own MQTT link, on the test's event loop) or as a
real `edged-cloud-bridge` process; both talk to a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cloud_bridge.backends import create_backend
from cloud_bridge.config import BridgeConfig, parse_bridge_config
from cloud_bridge.worker import BridgeWorker
from edged.comms.dispatch import BoundedInbox
from edged.comms.link import MqttLink
from edged.config.broker import BrokerSettings
from edged.config.escalation import EscalationSettings
from edged.escalation.client import EscalationClient
from edged.v1.escalation_pb2 import EscalationChunk, EscalationRequest
from edged.v1.inference_pb2 import ChatMessage
from tests.brokers import MosquittoBroker, free_port
from tests.ops_support import toml_document

WAIT_S = 20.0  # generous: a wait that runs out fails the test; it never measures speed
MODEL_WAIT_S = 300.0  # a real model on 2 shared cores: deadlines for answers that run a model
P = ParamSpec("P")
T = TypeVar("T")


def run_async(test: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async test function on a fresh event loop (pytest has no async plugin here)."""

    @functools.wraps(test)
    def runner(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(test(*args, **kwargs))

    return runner


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait until `condition()` holds; fail naming `what` if it does not within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """`until` for synchronous tests (a daemon on its own thread, a worker process)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# Mosquitto started as root drops to the `mosquitto` user, which cannot read pytest's 0700 temp dirs (password
# files, certificates): MosquittoBroker keeps it root by itself; a config written from scratch must say so too.
AS_ROOT = ("user root",) if os.geteuid() == 0 else ()


def broker_settings(url: str, **extra: Any) -> BrokerSettings:
    """Fast reconnects for tests; everything else as shipped."""
    return BrokerSettings.model_validate(
        {"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **extra}
    )


def bridge_config(url: str, worker_id: str, tmp: Path, **extra: Any) -> BridgeConfig:
    raw: dict[str, Any] = {
        "broker": {"url": url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5},
        "worker_id": worker_id,
        "state_dir": str(tmp / worker_id),
        "backend": {"type": "sleep", "delay_s": 0.0, "text": "hello from the cloud"},
    }
    for key, value in extra.items():
        merge = (
            isinstance(value, dict)
            and key in raw
            and value.get("type", "sleep") == raw[key].get("type", "sleep")
        )
        raw[key] = {**raw[key], **value} if merge else value
    return parse_bridge_config(raw, "test")


async def start_worker(config: BridgeConfig) -> BridgeWorker:
    worker = BridgeWorker(config, create_backend(config.backend, config.state_dir))
    await worker.start()
    assert await worker.link.wait_up(WAIT_S), f"worker {config.worker_id} did not connect"
    return worker


async def start_client(url: str, device: str = "dev-a", **extra: Any) -> EscalationClient:
    escalation = {key: extra.pop(key) for key in list(extra) if key in EscalationSettings.model_fields}
    client = EscalationClient(
        broker_settings(url, **extra), device, escalation=EscalationSettings.model_validate(escalation)
    )
    await client.start()
    assert await client.link.wait_up(WAIT_S), "client did not connect"
    return client


async def start_observer(
    url: str, topic_filter: str, name: str = "observer", **extra: Any
) -> tuple[MqttLink, BoundedInbox]:
    """A plain MQTT client (edged's link) collecting what `topic_filter` delivers."""
    link = MqttLink(broker_settings(url, **extra), client_id=name)
    inbox = BoundedInbox(maxsize=10_000, name=name)
    link.subscribe(topic_filter, inbox.put, qos=1)
    await link.start()
    assert await link.wait_up(WAIT_S), f"{name} did not connect"
    return link, inbox


def request(text: str = "What is MQTT?", *, stream: bool = False, max_tokens: int = 32) -> EscalationRequest:
    return EscalationRequest(
        messages=[ChatMessage(role="user", content=text)],
        max_tokens=max_tokens,
        temperature=0.0,
        stream=stream,
    )


async def next_chunk(inbox: BoundedInbox) -> tuple[bytes, EscalationChunk]:
    """The next reply chunk an observer received, with its correlation data."""
    message = await asyncio.wait_for(inbox.get(), WAIT_S)
    assert message is not None, "observer closed"
    return message.correlation_data or b"", EscalationChunk.FromString(message.payload)


async def chunks_until_done(inbox: BoundedInbox, correlation: bytes) -> list[tuple[bytes, EscalationChunk]]:
    """Every chunk received until the last chunk of `correlation` (chunks of other requests included)."""
    seen: list[tuple[bytes, EscalationChunk]] = []
    while True:
        key, chunk = await next_chunk(inbox)
        seen.append((key, chunk))
        if key == correlation and chunk.done:
            return seen


# ---- worker processes ------------------------------------------------------------------------------------------


def spawn_worker(
    url: str, worker_id: str, tmp: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """A real `edged-cloud-bridge` process (the console script of this venv)."""
    script = Path(sys.executable).with_name("edged-cloud-bridge")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    argv = [
        str(script),
        "--broker",
        url,
        "--worker-id",
        worker_id,
        "--state-dir",
        str(tmp / worker_id),
        *flags,
    ]
    with (tmp / f"{worker_id}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def worker_config_file(tmp: Path, name: str, backend: dict[str, Any] | None = None) -> Path:
    """A worker config for tests: fast reconnects, a short drain, and `backend` (None: the default Gemma)."""
    doc: dict[str, Any] = {"drain_timeout_s": 1.0, "broker": {"reconnect_min_s": 0.1, "reconnect_max_s": 0.5}}
    if backend is not None:
        doc["backend"] = backend
    path = tmp / f"{name}.toml"
    path.write_text(toml_document(doc))
    return path


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WAIT_S)
    return process.returncode


# ---- TLS material -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path, client_cn: str = "dev-a") -> TlsFiles:
    """A throwaway CA, a broker certificate for 127.0.0.1 and a client certificate with CN `client_cn`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edged test CA")])
    ca = _certificate(ca_name, ca_name, ca_key.public_key(), ca_key, is_ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    server = _certificate(server_name, ca_name, server_key.public_key(), ca_key, is_ca=False, ip="127.0.0.1")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, client_cn)])
    client = _certificate(client_name, ca_name, client_key.public_key(), ca_key, is_ca=False)
    files = TlsFiles(
        directory / "ca.crt",
        directory / "broker.crt",
        directory / "broker.key",
        directory / "client.crt",
        directory / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(_pem_key(server_key))
    files.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    files.client_key.write_bytes(_pem_key(client_key))
    return files


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    is_ca: bool,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False
        )
    return builder.sign(signer, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ---- the shipped broker setup (cloud_bridge/deploy) -----------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[1] / "cloud_bridge" / "deploy"


@dataclass
class ShippedBroker(MosquittoBroker):
    """Mosquitto running cloud_bridge/deploy/mosquitto.conf as shipped, with only paths and ports replaced."""

    secrets: Path = Path()
    tls: TlsFiles | None = None
    tls_port: int = field(default_factory=free_port)

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def write_config(self) -> None:
        assert self.tls is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = (DEPLOY / "mosquitto.conf").read_text()
        replacements = {
            "password_file /etc/mosquitto/edged.passwd": f"password_file {self.secrets / 'edged.passwd'}",
            "acl_file /etc/mosquitto/edged.acl": f"acl_file {DEPLOY / 'edged.acl'}",
            "listener 8883\n": f"listener {self.tls_port} 127.0.0.1\n",
            "certfile /etc/mosquitto/certs/broker.crt": f"certfile {self.tls.server_cert}",
            "keyfile /etc/mosquitto/certs/broker.key": f"keyfile {self.tls.server_key}",
            "cafile /etc/mosquitto/certs/ca.crt": f"cafile {self.tls.ca}",
            "listener 1883 127.0.0.1": f"listener {self.port} 127.0.0.1",
        }
        for shipped, local in replacements.items():
            assert shipped in text, f"the shipped mosquitto.conf no longer has {shipped!r}"
            text = text.replace(shipped, local)
        extra = [*AS_ROOT, f"log_dest file {self.log_path}", "log_type all"]
        self.config_path.write_text("\n".join(extra) + "\n" + text)


def make_passwords(out: Path, *devices: str) -> Path:
    """Run the shipped make-passwords script; returns the directory of plain-text secrets."""
    subprocess.run([str(DEPLOY / "make-passwords"), str(out), *devices], check=True, capture_output=True)
    return out / "secrets"
