"""Reading loop-owned state from another thread: run the read on the loop and wait for its result."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call_on_loop(loop: asyncio.AbstractEventLoop, read: Callable[[], T], timeout_s: float) -> T:
    """`read()` run on `loop`'s thread, its result (or exception) handed back to the calling thread.

    For a thread that needs state the loop changes as it runs (the MQTT link, the escalation client, the
    engines' map): there it is read between two of the loop's steps, never half way through one. On the
    loop's own thread `read()` runs at once. TimeoutError when the loop has not started it within `timeout_s`
    (it is then never run; one already running is waited for: it is a read, it ends)."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return read()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return  # the caller gave up before the loop got here
        try:
            future.set_result(read())
        except Exception as exc:
            future.set_exception(exc)

    loop.call_soon_threadsafe(run)
    try:
        return future.result(timeout_s)
    except TimeoutError:
        if future.cancel():
            raise TimeoutError(f"the event loop did not run the read within {timeout_s}s") from None
        return future.result()
