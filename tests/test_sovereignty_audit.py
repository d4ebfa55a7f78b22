"""The audit log: what a record holds (and never holds), the salt file, size-bounded rotation, the reader's
filters, and `edged audit`."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edged.cli.audit import parse_since
from edged.cli.main import main
from edged.config.privacy import AuditSettings, DataPolicy, PrivacySettings
from edged.domain import Message
from edged.errors import ConfigError
from edged.sovereignty.audit import (
    LOG_NAME,
    SALT_NAME,
    AuditLog,
    AuditReader,
    AuditRecord,
    AuditRoute,
    log_files,
    value_hash,
)
from edged.sovereignty.detector import Finding
from edged.sovereignty.verdict import Verdict, decide, unscanned

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
CARD = "4111 1111 1111 1111"
EMAIL = "maria.garcia@gmail.com"


class Clock:
    """A settable clock (the AuditLog's time seam)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def conversation() -> tuple[list[Message], Verdict]:
    messages = [Message("user", f"card {CARD}"), Message("user", f"mail {EMAIL} and {EMAIL}")]
    findings = [
        [Finding(5, 5 + len(CARD), "CREDIT_CARD", 1.0)],
        [
            Finding(5, 5 + len(EMAIL), "EMAIL_ADDRESS", 1.0),
            Finding(32, 32 + len(EMAIL), "EMAIL_ADDRESS", 1.0),
        ],
    ]
    assert messages[1].content[32 : 32 + len(EMAIL)] == EMAIL
    return messages, decide(PrivacySettings(), findings, sensitive=False, declared=())


def test_record_holds_counts_classes_and_salted_hashes_never_content(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit", clock=Clock(T0))
    messages, verdict = conversation()
    entry = log.record(
        request_id="req-1",
        route=AuditRoute.DENIED,
        verdict=verdict,
        messages=messages,
        outcome="sensitive_data_blocked",
        reasons=("cloud_only",),
    )
    raw = (tmp_path / "audit" / LOG_NAME).read_text()
    assert CARD not in raw
    assert EMAIL not in raw
    assert "4111" not in raw
    data = json.loads(raw)
    assert data["request_id"] == "req-1"
    assert data["route"] == "DENIED"
    assert data["policy"] == "LOCAL_ONLY"
    assert data["outcome"] == "sensitive_data_blocked"
    assert data["forced_by"] == "financial"
    assert data["data_classes"] == ["contact", "financial"]
    assert data["entities"] == {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 2}
    assert data["reasons"][-1] == "cloud_only"
    assert data["time"] == "2026-05-01T12:00:00.000+00:00"
    assert data["value_hashes"]["EMAIL_ADDRESS"] == [log.value_hash(EMAIL)]  # one value, seen twice
    assert len(log.value_hash(EMAIL)) == 24
    assert AuditRecord.from_json(raw) == entry


def test_salt_is_private_stable_and_keys_the_hashes(tmp_path: Path) -> None:
    first = AuditLog(tmp_path / "a")
    salt_path = tmp_path / "a" / SALT_NAME
    assert stat.S_IMODE(salt_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert AuditLog(tmp_path / "a").value_hash(EMAIL) == first.value_hash(EMAIL)
    assert AuditLog(tmp_path / "b").value_hash(EMAIL) != first.value_hash(EMAIL)
    assert value_hash(salt_path.read_bytes(), EMAIL) == first.value_hash(EMAIL)


def test_a_readable_salt_is_made_private_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    AuditLog(tmp_path)
    salt_path = tmp_path / SALT_NAME
    salt_path.chmod(0o644)
    AuditLog(tmp_path)
    assert stat.S_IMODE(salt_path.stat().st_mode) == 0o600
    salt_path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        AuditLog(tmp_path)


def test_log_file_is_private(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    messages, verdict = conversation()
    log.record(request_id="r", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_rotation_bounds_the_size_and_keeps_the_newest(tmp_path: Path) -> None:
    max_bytes = 64 * 1024
    log = AuditLog(tmp_path, max_bytes=max_bytes, keep_files=2, clock=Clock(T0))
    messages, verdict = conversation()
    line_size = len(
        log.record(request_id="r-0000", route=AuditRoute.LOCAL, verdict=verdict, messages=messages).to_json()
    )
    count = 4 * max_bytes // line_size
    for i in range(1, count):
        log.record(request_id=f"r-{i:04d}", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    files = log_files(tmp_path)
    assert [p.name for p in files] == [f"{LOG_NAME}.2", f"{LOG_NAME}.1", LOG_NAME]
    assert all(p.stat().st_size <= max_bytes for p in files)
    ids = [e.request_id for e in AuditReader(tmp_path)]
    assert ids == sorted(ids)  # oldest first, across files
    assert ids[-1] == f"r-{count - 1:04d}"
    assert "r-0000" not in ids  # the oldest file was dropped
    assert len(ids) >= 2 * max_bytes // line_size


def test_reader_filters_by_time_route_and_value(tmp_path: Path) -> None:
    clock = Clock(T0)
    log = AuditLog(tmp_path, clock=clock)
    messages, verdict = conversation()
    log.record(request_id="old", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    clock.now = T0 + timedelta(hours=2)
    log.record(request_id="denied", route=AuditRoute.DENIED, verdict=verdict, messages=messages)
    log.record(request_id="clean", route=AuditRoute.CLOUD, verdict=unscanned("x"), messages=[])
    since = T0 + timedelta(hours=1)
    assert [e.request_id for e in AuditReader(tmp_path, since=since)] == ["denied", "clean"]
    assert [e.request_id for e in AuditReader(tmp_path, route=AuditRoute.DENIED)] == ["denied"]
    matching = AuditReader(tmp_path, value_hash=log.value_hash(CARD))
    assert [e.request_id for e in matching] == ["old", "denied"]


def test_reader_skips_and_counts_malformed_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, clock=Clock(T0))
    messages, verdict = conversation()
    log.record(request_id="a", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    with log.path.open("a") as f:
        f.write('{"not": "a record"}\nnot json at all\n\n')
    log.record(request_id="b", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    reader = AuditReader(tmp_path)
    assert [e.request_id for e in reader] == ["a", "b"]
    assert reader.skipped == 2


def test_a_record_written_before_outcomes_reads_with_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(tmp_path / "audit", clock=Clock(T0))
    messages, verdict = conversation()
    entry = log.record(
        request_id="new",
        route=AuditRoute.REFUSED,
        verdict=verdict,
        messages=messages,
        outcome="budget_exhausted",
    )
    old = json.loads(entry.to_json())
    del old["outcome"]
    old["request_id"] = "old"
    with log.path.open("a") as f:
        f.write(json.dumps(old) + "\n")
    assert [(e.request_id, e.outcome) for e in AuditReader(log.directory)] == [
        ("new", "budget_exhausted"),
        ("old", ""),
    ]
    assert main(["audit", "--state-dir", str(tmp_path), "--route", "REFUSED"]) == 0
    rows = [line.split()[2:5] for line in capsys.readouterr().out.splitlines()[1:]]
    assert rows == [["new", "REFUSED", "budget_exhausted"], ["old", "REFUSED", "-"]]


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit")
    messages, verdict = conversation()
    log.path.mkdir()  # the log path is now a directory: every append fails
    log.record(request_id="r", route=AuditRoute.LOCAL, verdict=verdict, messages=messages)
    assert log.write_failures == 1


def test_values_found_in_control_fields_are_hashed_too(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit", clock=Clock(T0))
    messages = [Message("user", "write to my landlord")]
    stop = f"mail {EMAIL}"
    verdict = decide(
        PrivacySettings(),
        [[]],
        sensitive=False,
        declared=(),
        fields=["stop[0]"],
        field_findings=[[Finding(5, 5 + len(EMAIL), "EMAIL_ADDRESS", 1.0)]],
    )
    entry = log.record(
        request_id="r", route=AuditRoute.LOCAL, verdict=verdict, messages=messages, fields=[stop]
    )
    assert entry.entities == {"EMAIL_ADDRESS": 1}
    assert entry.value_hashes == {"EMAIL_ADDRESS": [log.value_hash(EMAIL)]}
    assert EMAIL not in (tmp_path / "audit" / LOG_NAME).read_text()


def test_policy_values_round_trip(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, clock=Clock(T0))
    verdict = unscanned("PII detector failed (RuntimeError)")
    entry = log.record(request_id="x" * 500, route=AuditRoute.LOCAL, verdict=verdict, messages=[])
    assert len(entry.request_id) == 128
    (read,) = list(AuditReader(tmp_path))
    assert read == entry
    assert read.detector_failed
    assert read.policy == DataPolicy.LOCAL_ONLY.value


# -- edged audit --------------------------------------------------------------------------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    clock = Clock(datetime.now(UTC) - timedelta(days=3))
    log = AuditLog(tmp_path / "audit", clock=clock)
    messages, verdict = conversation()
    log.record(
        request_id="three-days-ago",
        route=AuditRoute.LOCAL,
        verdict=verdict,
        messages=messages,
        outcome="answered_local",
    )
    clock.now = datetime.now(UTC)
    log.record(
        request_id="just-now",
        route=AuditRoute.DENIED,
        verdict=verdict,
        messages=messages,
        outcome="sensitive_data_blocked",
    )
    return tmp_path


def test_cli_table(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--state-dir", str(state_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = ["TIME", "(UTC)", "REQUEST", "ROUTE", "OUTCOME", "POLICY", "CLASSES", "ENTITIES", "INVENTED"]
    assert lines[0].split() == header
    assert [line.split()[2:5] for line in lines[1:]] == [
        ["three-days-ago", "LOCAL", "answered_local"],
        ["just-now", "DENIED", "sensitive_data_blocked"],
    ]
    assert "CREDIT_CARD×1, EMAIL_ADDRESS×2" in lines[1]


def test_cli_filters_and_json(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--state-dir", str(state_dir), "--since", "1d", "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["request_id"] for line in out] == ["just-now"]
    assert main(["audit", "--state-dir", str(state_dir), "--route", "LOCAL", "--json"]) == 0
    assert [json.loads(line)["route"] for line in capsys.readouterr().out.splitlines()] == ["LOCAL"]
    assert main(["audit", "--state-dir", str(state_dir), "--match", CARD, "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["audit", "--state-dir", str(state_dir), "--match", "4000 0000 0000 0002", "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_reads_the_state_dir_from_a_config(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "edged.toml"
    config.write_text(f'state_dir = "{state_dir}"\n')
    assert main(["audit", "--config", str(config), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_cli_without_a_log_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--state-dir", str(tmp_path)]) == 1
    assert f"no audit log in {tmp_path / 'audit'}" in capsys.readouterr().err


def test_cli_rejects_a_bad_since(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["audit", "--state-dir", str(state_dir), "--since", "last tuesday"])
    assert caught.value.code == 2
    assert "'last tuesday'" in capsys.readouterr().err


def test_parse_since() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-04-30T08:00") == datetime(2026, 4, 30, 8, 0, tzinfo=UTC)
    assert parse_since("2026-04-30T08:00+02:00").utcoffset() == timedelta(hours=2)


def test_a_reconfigured_log_is_the_same_log_with_new_rotation_limits(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, clock=Clock(T0))
    same = log.reconfigured(AuditSettings(max_bytes=log.max_bytes, keep_files=log.keep_files))
    assert same is log
    small = log.reconfigured(AuditSettings(max_bytes=65536, keep_files=1))
    assert (small.max_bytes, small.keep_files) == (65536, 1)
    assert (log.max_bytes, log.keep_files) != (65536, 1)  # the running log is not changed under its readers
    assert small.value_hash(EMAIL) == log.value_hash(EMAIL)  # one salt, one directory
    assert small.path == log.path
