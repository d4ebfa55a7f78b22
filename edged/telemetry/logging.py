"""Logging for edged: stdlib logging to stderr, shaped for journald when systemd captures stderr.

Under systemd ($JOURNAL_STREAM names the device and inode of our stderr) every line starts with a syslog
priority "<N>", from which journald sets PRIORITY=, and carries no timestamp (journald adds its own).
Elsewhere each line starts with a timestamp.

Prompt and answer text never appears at INFO or above. Wrap such text in UserText: it is shown only in DEBUG
records, and prints as "<N chars withheld>" anywhere else, even before configure_logging ran. Once it has run,
a record factory also withholds requests, messages, answers and deltas passed as log arguments, for every
handler in the process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

from edged.domain import Answer, Delta, InferenceRequest, Message

HANDLER_NAME: Final = "edged"
JOURNAL_STREAM_ENV: Final = "JOURNAL_STREAM"
DEBUG_TEXT_LIMIT: Final = 4000  # keeps one DEBUG record of a long prompt readable in the journal

# logging level -> syslog priority (sd-daemon(3)): crit, err, warning, info, debug
_PRIORITIES: Final = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return 7


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd connected ($JOURNAL_STREAM is "DEVICE:INODE")."""
    value = (os.environ if environ is None else environ).get(JOURNAL_STREAM_ENV, "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):  # a closed stream, or one without a file descriptor
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class UserText:
    """Prompt or answer text in a log argument: shown in DEBUG records only."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"<{len(self.text)} chars withheld>"

    __repr__ = __str__


class _Shown(str):
    """A summary that prints the same with %s and %r."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _summary(value: object) -> object:
    """What an INFO-or-above record may show of a value that carries prompt or answer text."""
    if isinstance(value, UserText):
        return _Shown(value)
    if isinstance(value, InferenceRequest):
        return _Shown(
            f"<request {value.request_id}: {len(value.messages)} messages, mode {value.mode.value}>"
        )
    if isinstance(value, Answer):
        return _Shown(f"<answer {value.request_id}: {len(value.text)} chars, {value.finish_reason}>")
    if isinstance(value, Message):
        return _Shown(f"<{value.role} message: {len(value.content)} chars>")
    if isinstance(value, Delta):
        return _Shown(f"<delta: {len(value.text)} chars>")
    return value


def _revealed(value: object) -> object:
    if not isinstance(value, UserText):
        return value
    text = value.text
    if len(text) > DEBUG_TEXT_LIMIT:
        return f"{text[:DEBUG_TEXT_LIMIT]}...({len(text) - DEBUG_TEXT_LIMIT} more chars)"
    return text


def guard_record(record: logging.LogRecord) -> None:
    """Withhold prompt and answer text from a record at INFO or above; reveal UserText at DEBUG."""
    convert = _revealed if record.levelno < logging.INFO else _summary
    if not isinstance(record.msg, str):
        record.msg = convert(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {key: convert(arg) for key, arg in record.args.items()}
    elif record.args:
        record.args = tuple(convert(arg) for arg in record.args)


class ContentGuard:
    """A log record factory applying guard_record to each record as it is made, before any handler sees it."""

    def __init__(self, inner: Callable[..., logging.LogRecord]) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.inner(*args, **kwargs)
        guard_record(record)
        return record


def install_content_guard() -> None:
    """Make every log record in this process pass guard_record (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, ContentGuard):
        logging.setLogRecordFactory(ContentGuard(factory))


class JournalFormatter(logging.Formatter):
    """`<N>logger: message`, the priority on every line so a traceback keeps its priority in the journal."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class ConsoleFormatter(logging.Formatter):
    """`2025-01-31 12:00:00,123 INFO    logger: message` for a terminal or a plain log file."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


def configure_logging(
    level: str | int = "INFO", *, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> logging.Handler:
    """Send every logger's records to stderr (or `stream`) at `level`, journald-shaped under systemd.

    Calling it again (a reload with a new log level) replaces edged's handler instead of adding a second.
    """
    target = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(target)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JournalFormatter() if stream_is_journal(target, environ) else ConsoleFormatter())
    install_content_guard()
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str | int) -> None:
    """Change the log level (config key log_level) without touching the handler."""
    logging.getLogger().setLevel(level)
