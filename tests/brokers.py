"""A real Mosquitto broker for tests: started on a free loopback port with a generated config, stopped after.

`.ci/run` installs Mosquitto from Debian's packages when it is missing; tests fail (not skip) without it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    for name in MOSQUITTO_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "mosquitto is not installed: run scripts/install (it installs Debian's mosquitto package)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class MosquittoBroker:
    """One broker process. `extra_config` lines are appended to the listener config (ACL, passwords, TLS)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: tuple[str, ...] = ()
    allow_anonymous: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            "set_tcp_nodelay true",
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_queued_messages 100000",
            # as root, Mosquitto would drop to the `mosquitto` user, which cannot read pytest's private dirs
            *(["user root"] if os.geteuid() == 0 else []),
            *self.extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        self.process = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                log = self.log_path.read_text() if self.log_path.exists() else ""
                code = self.process.returncode
                self.stop()
                raise RuntimeError(f"mosquitto exited with {code}: {err}{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (clients must reconnect)."""
        self.stop()
        self.start()

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def find_dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin (Debian's mosquitto package ships it under the multiarch lib dir)."""
    candidates = [*Path("/usr/lib").glob("*/mosquitto_dynamic_security.so")]
    candidates += [
        Path("/usr/lib/mosquitto_dynamic_security.so"),
        Path("/usr/local/lib/mosquitto_dynamic_security.so"),
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError("mosquitto_dynamic_security.so not found (it comes with Debian's mosquitto package)")


def dynsec_broker(workdir: Path, users: dict[str, tuple[str, ...]]) -> MosquittoBroker:
    """A broker whose dynamic-security plugin checks SUBSCRIBE: each user (password = its name) may subscribe
    only to its listed filters (patterns); any other subscription gets SUBACK 0x87 "Not authorized".

    Mosquitto 2.0's acl_file (the shipped edged.acl) never refuses a SUBSCRIBE, it filters deliveries; a broker
    that checks subscriptions (the dynsec plugin, most hosted brokers) refuses them at SUBACK."""
    workdir.mkdir(parents=True, exist_ok=True)
    clients, roles = [], []
    for name, filters in users.items():
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", name.encode(), salt, 101, 64)
        clients.append(
            {
                "username": name,
                "password": base64.b64encode(digest).decode(),
                "salt": base64.b64encode(salt).decode(),
                "iterations": 101,
                "roles": [{"rolename": name}],
            }
        )
        acls = [{"acltype": "subscribePattern", "topic": f, "priority": 0, "allow": True} for f in filters]
        roles.append({"rolename": name, "acls": acls})
    document = {
        "defaultACLAccess": {
            "publishClientSend": True,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }
    config = workdir / "dynamic-security.json"
    config.write_text(json.dumps(document))
    config.chmod(0o600)
    return MosquittoBroker(
        workdir=workdir,
        allow_anonymous=False,
        extra_config=(f"plugin {find_dynsec_plugin()}", f"plugin_opt_config_file {config}"),
    )


def password_file(directory: Path, user: str) -> Path:
    """A password file for a dynsec_broker user (whose password is its name)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{user}.password"
    path.write_text(user)
    path.chmod(0o600)
    return path
