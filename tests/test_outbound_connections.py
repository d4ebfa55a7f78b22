"""issue 17 (15): the daemon reaches nothing but its broker. `edged serve` runs under strace while it serves,
loads the router (onnxruntime) and runs the privacy gate (Presidio, spaCy); every connect() and every sendto() or
sendmsg() with an address is read from the trace, and one to anything but the broker or a local socket fails."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import grpc
import psutil
import pytest

from edged.v1 import inference_pb2 as pb
from tests.brokers import MosquittoBroker
from tests.escalation_parts import wait_until
from tests.ops_support import served_daemon, small_engine_config

pytestmark = [pytest.mark.slow, pytest.mark.mqtt]

_ADDRESSED = re.compile(r"\b(connect|sendto|sendmsg)\(\d+, .*?sa_family=(AF_\w+)(.*)")
_INET = re.compile(r'sin6?_port=htons\((\d+)\).*?(?:inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)")')


def outbound(trace: str, broker_port: int) -> list[str]:
    """The trace lines that address anything but a local socket or the broker."""
    found = []
    for line in trace.splitlines():
        match = _ADDRESSED.search(line)
        if match is None or match.group(2) in ("AF_UNIX", "AF_NETLINK"):
            continue
        inet = _INET.search(match.group(3))
        target = (inet.group(2) or inet.group(3), int(inet.group(1))) if inet else None
        if target not in (("127.0.0.1", broker_port), ("::1", broker_port)):
            found.append(line.strip())
    return found


def test_outbound_finds_a_dns_query_and_passes_the_broker() -> None:
    """The parser's positive and negative control, on lines as strace prints them."""
    trace = "\n".join(
        [
            '123 connect(7, {sa_family=AF_INET, sin_port=htons(1883), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
            '123 connect(8, {sa_family=AF_UNIX, sun_path="/run/edged.sock"}, 110) = 0',
            '124 connect(9, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("127.0.0.53")}, 16) = 0',
            '124 sendto(9, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
            'inet_pton(AF_INET6, "2603:1061::1", &sin6_addr), sin6_scope_id=0}, 28) = 1',
        ]
    )
    assert [line.split()[0] for line in outbound(trace, 1883)] == ["124", "124"]


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (apt-get install strace)")
def test_the_daemon_connects_to_nothing_but_its_broker(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    config = small_engine_config(
        tmp_path, broker={"url": mosquitto.url, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    )
    trace_path = tmp_path / "connect.trace"
    wrapper = ("strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace_path))
    with served_daemon(tmp_path, config, wrapper=wrapper) as edged:
        edged.wait_ready()
        wait_until(lambda: edged.status().link.state == "connected", "the daemon's link is up")
        pii = "My name is Maria Garcia, write to maria.garcia@gmail.com about https://example.com/x."
        assert edged.generate(prompt=pii, mode=pb.AUTO, max_tokens=4).text  # router, gate, local answer
        with pytest.raises(grpc.RpcError):  # gated, then refused: no worker listens
            edged.generate(prompt=pii, mode=pb.CLOUD_ONLY, max_tokens=4)
        daemon = psutil.Process(edged.proc.pid).children()[0]  # strace's child is `edged serve` itself
        daemon.send_signal(signal.SIGTERM)  # strace would not pass its own SIGTERM on
        assert edged.wait_exit() == 0, edged.describe()
    trace = trace_path.read_text()
    assert "sa_family=AF_INET" in trace, "the trace saw not even the broker connection"
    assert outbound(trace, mosquitto.port) == []
