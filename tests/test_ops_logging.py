"""Journald-friendly logging: priorities under systemd, timestamps elsewhere, and the prompt/answer guard."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.domain import Answer, InferenceRequest, Message, Provenance, SamplingParams, Source, Timing, Usage
from edged.telemetry.logging import (
    ContentGuard,
    UserText,
    configure_logging,
    set_level,
    stream_is_journal,
    syslog_priority,
)

SECRET = "my card is 4111 1111 1111 1111"
logger = logging.getLogger("edged.test_ops_logging")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


@pytest.fixture
def journal_file(tmp_path: Path) -> Iterator[tuple[io.TextIOWrapper, dict[str, str]]]:
    """A file standing in for the journal stream, and the $JOURNAL_STREAM that names it."""
    with (tmp_path / "journal").open("w+", encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        yield stream, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def read(stream: io.TextIOBase) -> str:
    stream.flush()
    stream.seek(0)
    return stream.read()


def test_under_journald_lines_carry_priorities_and_no_timestamps(
    journal_file: tuple[io.TextIOWrapper, dict[str, str]],
) -> None:
    stream, environ = journal_file
    configure_logging("DEBUG", stream=stream, environ=environ)
    logger.debug("slot %d freed", 3)
    logger.info("model loaded in %.1f s", 0.8)
    logger.warning("link down")
    try:
        raise RuntimeError("engine died")
    except RuntimeError:
        logger.exception("engine failed")

    lines = read(stream).splitlines()
    assert lines[:4] == [
        "<7>edged.test_ops_logging: slot 3 freed",
        "<6>edged.test_ops_logging: model loaded in 0.8 s",
        "<4>edged.test_ops_logging: link down",
        "<3>edged.test_ops_logging: engine failed",
    ]
    traceback = lines[4:]
    assert traceback[0] == "<3>Traceback (most recent call last):"
    assert traceback[-1] == "<3>RuntimeError: engine died"
    assert all(line.startswith("<3>") for line in traceback)


def test_elsewhere_lines_start_with_a_timestamp(
    journal_file: tuple[io.TextIOWrapper, dict[str, str]],
) -> None:
    stream, _ = journal_file
    other = {"JOURNAL_STREAM": "1:2"}  # systemd's stream, but stderr was redirected elsewhere since
    configure_logging("INFO", stream=stream, environ=other)
    logger.info("listening on %s", "/run/edged/edged.sock")
    line = read(stream).strip()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        stamp + r" INFO    edged.test_ops_logging: listening on /run/edged/edged.sock", line
    ), line


def test_stream_is_journal_only_for_the_named_device_and_inode(
    journal_file: tuple[io.TextIOWrapper, dict[str, str]],
) -> None:
    stream, environ = journal_file
    assert stream_is_journal(stream, environ)
    assert not stream_is_journal(stream, {})
    assert not stream_is_journal(stream, {"JOURNAL_STREAM": "garbage"})
    assert not stream_is_journal(io.StringIO(), environ)  # no file descriptor


def test_level_comes_from_config_and_can_change_on_reload() -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream=stream, environ={})
    logger.info("hidden")
    logger.warning("shown")
    set_level("DEBUG")
    logger.debug("now shown")
    text = stream.getvalue()
    assert "hidden" not in text
    assert "shown" in text
    assert "now shown" in text


def test_reconfiguring_replaces_the_handler_instead_of_doubling_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first, environ={})
    configure_logging("INFO", stream=second, environ={})
    factory = logging.getLogRecordFactory()
    assert isinstance(factory, ContentGuard)
    assert not isinstance(factory.inner, ContentGuard)
    logger.info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


def test_user_text_is_withheld_at_info_and_above_and_shown_at_debug() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, environ={})
    logger.debug("prompt: %s", UserText(SECRET))
    logger.info("prompt: %s", UserText(SECRET))
    logger.error("answer: %(text)s", {"text": UserText(SECRET)})
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f"prompt: {SECRET}")
    assert lines[1].endswith(f"prompt: <{len(SECRET)} chars withheld>")
    assert lines[2].endswith(f"answer: <{len(SECRET)} chars withheld>")


def test_domain_objects_carrying_text_are_summarised_at_info(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream, environ={})
    request = InferenceRequest(
        request_id="r7", messages=(Message("user", SECRET),), params=SamplingParams(max_tokens=16)
    )
    reply = Answer(
        request_id="r7",
        text=SECRET,
        finish_reason="stop",
        provenance=Provenance(source=Source.LOCAL, model="m"),
        usage=Usage(),
        timing=Timing(),
    )
    logger.info("got %s", request)
    logger.info("sent %r", reply)
    logger.warning(request.messages[0])
    text = stream.getvalue()
    assert SECRET not in text
    assert SECRET not in caplog.text  # every handler in the process, not only edged's
    assert "got <request r7: 1 messages, mode AUTO>" in text
    assert f"sent <answer r7: {len(SECRET)} chars, stop>" in text
    assert f"<user message: {len(SECRET)} chars>" in text


def test_user_text_stays_withheld_before_logging_is_configured(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logger.info("prompt: %s", UserText(SECRET))
    assert SECRET not in caplog.text
    assert "chars withheld" in caplog.text


def test_long_debug_text_is_cut() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, environ={})
    logger.debug("%s", UserText("y" * 5000))
    assert stream.getvalue().rstrip().endswith("y...(1000 more chars)")


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (25, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
    ],
)
def test_syslog_priorities(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority
