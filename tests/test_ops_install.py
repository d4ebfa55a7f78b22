"""scripts/install-systemd into a temporary root: units, user, group, config dir; idempotent; dry run."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edged.cli.main import main as edged_main

REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install-systemd"
CHECK_UNITS = REPO / "scripts" / "check_units"


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fresh_install_lays_out_units_user_config_and_credstore(tmp_path: Path) -> None:
    proc = install(tmp_path)
    assert proc.returncode == 0, proc.stderr

    unit = tmp_path / "etc/systemd/system/edged.service"
    assert unit.read_text() == (REPO / "systemd/edged.service").read_text()
    assert mode(unit) == 0o644
    assert "edged:x:" in (tmp_path / "etc/passwd").read_text()
    assert re.search(r"^edged:x:\d+:$", (tmp_path / "etc/group").read_text(), re.MULTILINE)
    assert (tmp_path / "etc/edged/edged.toml").read_text() == (REPO / "systemd/edged.toml").read_text()
    assert (tmp_path / "etc/edged/edged.toml.example").exists()
    assert mode(tmp_path / "etc/credstore") == 0o700
    assert not (tmp_path / "etc/systemd/system/edged-cloud-bridge.service").exists()
    assert "created            /etc/systemd/system/edged.service" in proc.stdout


def test_the_installed_example_config_passes_check_config(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    assert edged_main(["check-config", str(tmp_path / "etc/edged/edged.toml")]) == 0


def test_the_example_config_is_valid_with_its_optional_sections_uncommented(tmp_path: Path) -> None:
    lines = (REPO / "systemd/edged.toml").read_text().splitlines(keepends=True)
    enabled = [line[2:] if re.match(r"^# (\[[a-z_]+\]|[a-z_]+ = )", line) else line for line in lines]
    assert sum(1 for a, b in zip(lines, enabled, strict=True) if a != b) >= 8
    full = tmp_path / "full.toml"
    full.write_text("".join(enabled))
    assert edged_main(["check-config", str(full)]) == 0


def test_a_second_run_changes_nothing_and_keeps_the_operators_config(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    config = tmp_path / "etc/edged/edged.toml"
    config.write_text('log_level = "DEBUG"\n')
    passwd = (tmp_path / "etc/passwd").read_text()

    proc = install(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == 'log_level = "DEBUG"\n'
    assert (tmp_path / "etc/passwd").read_text() == passwd
    actions = [line.split()[0] for line in proc.stdout.splitlines() if not line.startswith("note")]
    assert set(actions) == {"unchanged"}, proc.stdout


def test_a_changed_unit_is_updated(tmp_path: Path) -> None:
    assert install(tmp_path).returncode == 0
    unit = tmp_path / "etc/systemd/system/edged.service"
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    proc = install(tmp_path)
    assert "updated            /etc/systemd/system/edged.service" in proc.stdout
    assert unit.read_text() == (REPO / "systemd/edged.service").read_text()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    proc = install(tmp_path, "--dry-run", "--unit", "edged", "--unit", "edged-cloud-bridge")
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert "would create       /etc/systemd/system/edged.service" in proc.stdout
    assert "would create       /etc/systemd/system/edged-cloud-bridge.service" in proc.stdout
    assert "would run          systemd-sysusers" in proc.stdout


def test_venv_option_rewrites_the_executable_paths_and_the_result_verifies(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    proc = install(tmp_path / "root", "--venv", str(venv))
    assert proc.returncode == 0, proc.stderr
    # issue 17 (23): the venv exists here; only under --root is it missing, and the note says so
    assert "does not exist yet" not in proc.stdout
    assert f"the unit runs {venv}/bin/edged on the system under --root {tmp_path / 'root'}" in proc.stdout
    unit = tmp_path / "root/etc/systemd/system/edged.service"
    text = unit.read_text()
    assert f"ExecStart={venv}/bin/edged serve --config %E/edged/edged.toml" in text
    assert "/opt/edged/venv" not in text

    check = subprocess.run(
        [sys.executable, str(CHECK_UNITS), "--venv", "/opt/edged/venv", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout


def test_cloud_bridge_gets_its_unit_and_config_directory_but_no_static_user(tmp_path: Path) -> None:
    proc = install(tmp_path, "--unit", "edged-cloud-bridge")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "etc/systemd/system/edged-cloud-bridge.service").exists()
    assert (tmp_path / "etc/edged-cloud-bridge").is_dir()
    assert not (tmp_path / "etc/passwd").exists()  # DynamicUser=yes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--venv", "venv"], "--venv venv: must be an absolute path"),
        (["--enable"], "--enable works on the live system only"),
        (["--unit", "edged-fleet"], "invalid choice: 'edged-fleet'"),
    ],
)
def test_bad_options_are_refused_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    proc = install(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []
