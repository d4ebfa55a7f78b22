"""Files that must survive a crash whole, and the one thread that writes the daemon's state files."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a failed rename must not leave the temporary file behind
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FileWriter:
    """One thread doing a daemon's state-file writes (the audit's appends, the cloud budget's fsynced saves)
    in the order they were handed over, so the event loop never waits on the disk (issue 17: 5).

    close() runs everything handed over before it, then stops the thread: the daemon closes it last at
    shutdown, so no record is lost. A write handed over after close() runs at once on the caller's thread,
    after the queue has drained (order is kept). A write that raises is logged; the thread goes on."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submit() against close()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[], object]) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put(write)
                return
        self._thread.join()
        write()

    def flush(self) -> None:
        """Return once every write handed over before this call has run."""
        done = threading.Event()
        self.submit(done.set)
        done.wait()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (write := self._queue.get()) is not None:
            try:
                write()
            except Exception:  # the thread must outlive one bad write: later records still go out
                logger.exception("a state file write failed")
