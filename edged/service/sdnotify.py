"""The systemd notification protocol (sd_notify(3)): NAME=VALUE lines in one datagram on $NOTIFY_SOCKET.

systemd passes the socket in $NOTIFY_SOCKET: a filesystem path, or an abstract socket written with a
leading "@". With Type=notify, `systemctl start` returns once READY=1 arrives; STATUS= is the line
`systemctl status` shows; WATCHDOG=1 must arrive at least every $WATCHDOG_USEC microseconds or the
service is restarted; RELOADING=1 and STOPPING=1 tell systemd a reload or a stop is under way.

A notifier never raises into the daemon: without $NOTIFY_SOCKET (not under systemd) every call is a no-op that
returns False, and a failed send is logged (once per failure streak, so a dead receiver cannot flood the log).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from types import TracebackType

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

MAX_STATUS_CHARS = 512  # `systemctl status` shows one line; longer text only costs datagram space
SEND_TIMEOUT_S = 2.0  # systemd drains the socket at once; a stuck receiver must not stall the serving loop

Address = str | bytes


def parse_notify_address(value: str) -> Address:
    """The socket address in $NOTIFY_SOCKET: "@name" is abstract (sent as b"\\0name"), "/path" a file path.

    Raises ValueError naming the variable, the value and what is accepted (vsock and relative paths are not).
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise ValueError(
        f"{NOTIFY_SOCKET_ENV}={value!r}: expected an absolute socket path or an abstract '@name' socket"
    )


def watchdog_timeout(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """The watchdog timeout in seconds, or None when the watchdog is off or meant for another process.

    $WATCHDOG_USEC is the timeout; $WATCHDOG_PID, when set, names the process it applies to.
    """
    usec_text = environ.get(WATCHDOG_USEC_ENV)
    if not usec_text:
        return None
    pid_text = environ.get(WATCHDOG_PID_ENV)
    if pid_text and pid_text.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        logger.warning("ignoring %s=%r: not an integer number of microseconds", WATCHDOG_USEC_ENV, usec_text)
        return None
    if usec <= 0:
        logger.warning("ignoring %s=%r: must be greater than 0", WATCHDOG_USEC_ENV, usec_text)
        return None
    return usec / 1_000_000


def _one_line(text: str) -> str:
    """A value for one NAME=VALUE line: a newline would start a new assignment, a NUL end the text."""
    cleaned = " ".join(text.replace("\0", " ").split())
    return cleaned[:MAX_STATUS_CHARS]


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class ServiceNotifier:
    """Tells systemd how the service is doing; thread-safe (the serving loop and lifecycle both call it)."""

    def __init__(
        self,
        address: Address | None,
        *,
        watchdog_timeout_s: float | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self._address = address
        self._watchdog_timeout_s = watchdog_timeout_s
        self._monotonic_usec = monotonic_usec
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()  # guards socket creation and the failure streak, not the send itself
        self._failing = False

    @classmethod
    def from_environment(
        cls, environ: MutableMapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> ServiceNotifier:
        """A notifier for the socket systemd gave this process (disabled when there is none or it is bad).

        With unset_environment=True the variables are removed, so child processes cannot notify in our name.
        """
        env = os.environ if environ is None else environ
        raw = env.get(NOTIFY_SOCKET_ENV)
        timeout = watchdog_timeout(env)
        if unset_environment:
            for name in (NOTIFY_SOCKET_ENV, WATCHDOG_USEC_ENV, WATCHDOG_PID_ENV):
                env.pop(name, None)
        if not raw:
            logger.debug("%s is not set: not running under systemd's notify protocol", NOTIFY_SOCKET_ENV)
            return cls(None, watchdog_timeout_s=timeout)
        try:
            address = parse_notify_address(raw)
        except ValueError as exc:
            logger.warning("service notifications disabled: %s", exc)
            return cls(None, watchdog_timeout_s=timeout)
        return cls(address, watchdog_timeout_s=timeout)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_timeout(self) -> float | None:
        """Seconds without WATCHDOG=1 after which systemd restarts the service; None when it is off."""
        return self._watchdog_timeout_s

    def watchdog_interval(self) -> float | None:
        """How often to send WATCHDOG=1: half the timeout (sd_watchdog_enabled(3)); None when it is off."""
        return None if self._watchdog_timeout_s is None else self._watchdog_timeout_s / 2

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: the model is loaded and the listeners are bound."""
        return self.send({"READY": "1"} | self._status(status))

    def status(self, text: str) -> bool:
        """A one-line, human-readable state for `systemctl status`."""
        return self.send({"STATUS": text})

    def watchdog(self) -> bool:
        """The serving loop is alive; send at watchdog_interval() while the engine's heartbeat is fresh."""
        return self.send({"WATCHDOG": "1"})

    def reloading(self, status: str | None = None) -> bool:
        """A reload began (SIGHUP); send ready() when it is done, whether the new config was taken or not."""
        fields = {"RELOADING": "1", "MONOTONIC_USEC": str(self._monotonic_usec())}
        return self.send(fields | self._status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown began (on SIGTERM or SIGINT)."""
        return self.send({"STOPPING": "1"} | self._status(status))

    def send(self, fields: Mapping[str, str]) -> bool:
        """Send NAME=VALUE assignments in one datagram: True when sent, False when disabled or failed."""
        if self._address is None:
            return False
        payload = "\n".join(f"{name}={_one_line(value)}" for name, value in fields.items()).encode()
        try:
            self._connection().sendto(payload, self._address)
        except OSError as exc:
            self._note_failure(exc)
            return False
        self._note_success()
        return True

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def __enter__(self) -> ServiceNotifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @staticmethod
    def _status(text: str | None) -> dict[str, str]:
        return {} if text is None else {"STATUS": text}

    def _connection(self) -> socket.socket:
        with self._lock:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.settimeout(SEND_TIMEOUT_S)
                self._socket = sock
            return self._socket

    def _note_failure(self, exc: OSError) -> None:
        with self._lock:
            first = not self._failing
            self._failing = True
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "cannot notify systemd on %r: %s", self._address, exc)

    def _note_success(self) -> None:
        with self._lock:
            recovered = self._failing
            self._failing = False
        if recovered:
            logger.info("notifying systemd works again")
