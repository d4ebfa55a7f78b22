"""Driving one paho client's socket from an asyncio loop, through paho's external-loop socket callbacks.

Reads and writes happen in add_reader/add_writer callbacks on the loop's thread, so paho's own callbacks (and
every handler behind them) run there too. paho opens the socket inside connect(), which the link runs in an
executor thread: socket callbacks arriving from that thread are handed to the loop with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

logger = logging.getLogger(__name__)


class LoopSocketIO:
    def __init__(self, client: mqtt.Client, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._client = client
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop's thread
        self._name = name
        self._reader_fd: int | None = None
        self._writer_fd: int | None = None
        self.closing_cleanly = False  # set by the link's stop(), before it sends DISCONNECT
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write

    def watch_reads(self) -> None:
        """Start reading the socket connect() opened (called on the loop once connect() has returned)."""
        sock = self._client.socket()
        if sock is None:
            return
        self._unwatch_reads()
        self._reader_fd = sock.fileno()
        self._loop.add_reader(self._reader_fd, self._readable)

    def close(self) -> None:
        """Stop watching and close whatever socket paho still holds."""
        self._unwatch()
        sock = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # ---- paho's socket callbacks -----------------------------------------------------------------------------

    def _on_socket_open(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        # Without TCP_NODELAY a request/response round trip on loopback took 44-88 ms (Nagle + delayed ACK);
        # with it (and `set_tcp_nodelay true` on the broker), 0.68 ms.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_socket_close(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if self.closing_cleanly:
            _finish_cleanly(sock)
        self._on_loop(self._unwatch)

    def _on_socket_register_write(self, _client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        self._on_loop(self._watch_writes, sock)

    def _on_socket_unregister_write(self, _client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        self._on_loop(self._unwatch_writes)

    # ---- the loop's side -------------------------------------------------------------------------------------

    def _on_loop(self, func: Any, *args: Any) -> None:
        """Run now on the loop's thread; from the connect executor thread, hand it to the loop."""
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            self._loop.call_soon_threadsafe(func, *args)

    def _watch_writes(self, sock: Any) -> None:
        fd = sock.fileno()
        if fd < 0:
            return  # closed before the loop got here
        self._unwatch_writes()
        self._writer_fd = fd
        self._loop.add_writer(fd, self._writable)

    def _unwatch_reads(self) -> None:
        if self._reader_fd is not None:
            self._loop.remove_reader(self._reader_fd)
        self._reader_fd = None

    def _unwatch_writes(self) -> None:
        if self._writer_fd is not None:
            self._loop.remove_writer(self._writer_fd)
        self._writer_fd = None

    def _unwatch(self) -> None:
        self._unwatch_reads()
        self._unwatch_writes()

    def _readable(self) -> None:
        try:
            rc = self._client.loop_read()
            sock = self._client.socket()
            # TLS may hold decrypted bytes the selector cannot see
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, ssl.SSLSocket) and sock.pending():
                rc = self._client.loop_read()
        except Exception as exc:  # paho maps socket errors itself; anything else must not kill the loop
            logger.warning("MQTT read from %s failed: %s", self._name, exc)
            self._unwatch()
            self._client.disconnect()

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception as exc:
            logger.warning("MQTT write to %s failed: %s", self._name, exc)
            self._unwatch()
            self._client.disconnect()


def _finish_cleanly(sock: Any, timeout_s: float = 1.0) -> None:
    """After DISCONNECT, before paho closes the socket: send FIN and read until the broker closes its side.

    Closing a socket with unread bytes (a PUBACK, a retained message) sends RST; a broker that gets the RST with
    the DISCONNECT may drop it and publish the Last Will, and a clean stop reads "connection lost" (seen 2 of 4
    runs of test_sigterm_leaves_a_clean_offline_status_not_the_last_will). Blocks the loop for at most
    `timeout_s`, once, at stop."""
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and sock.recv(65536):
            pass
