"""The systemd units via scripts/check_units: `systemd-analyze verify` clean, security exposure <= 2.0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECK_UNITS = REPO / "scripts" / "check_units"
UNITS = REPO / "systemd"
VENV = Path(sys.prefix)


def check_units(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_UNITS), "--venv", str(VENV), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def row(output: str, unit: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(unit + " "):
            return line.split()
    raise AssertionError(f"no row for {unit} in:\n{output}")


@pytest.mark.parametrize("unit", ["edged.service", "edged-cloud-bridge.service"])
def test_exposure_is_at_most_two(unit: str) -> None:
    proc = check_units(UNITS / unit)
    _, _, exposure, _ = row(proc.stdout, unit)
    assert float(exposure) <= 2.0, proc.stdout


def test_edged_unit_verifies_and_passes_the_check() -> None:
    proc = check_units(UNITS / "edged.service")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, verify, _, verdict = row(proc.stdout, "edged.service")
    assert (verify, verdict) == ("ok", "ok")


def test_cloud_bridge_unit_verifies_and_passes_the_check() -> None:
    if not (VENV / "bin" / "edged-cloud-bridge").exists():
        pytest.skip("the edged-cloud-bridge console script is not installed in this venv yet")
    proc = check_units(UNITS / "edged-cloud-bridge.service")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_unit_without_hardening_fails_the_exposure_check(tmp_path: Path) -> None:
    text = (UNITS / "edged.service").read_text()
    weak = tmp_path / "edged.service"
    weak.write_text(text.split("# Hardening", 1)[0] + "[Install]\nWantedBy=multi-user.target\n")
    proc = check_units(weak)
    assert proc.returncode == 1
    exposure = float(row(proc.stdout, "edged.service")[2])
    assert exposure > 2.0
    assert re.search(r"edged.service: security: exposure \d\.\d is above 2.0", proc.stdout)


def test_a_misspelt_setting_fails_verify_although_systemd_only_warns(tmp_path: Path) -> None:
    text = (UNITS / "edged.service").read_text()
    broken = tmp_path / "edged.service"
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=strict\nProtectSytem=full"))
    proc = check_units(broken)
    assert proc.returncode == 1
    assert row(proc.stdout, "edged.service")[1] == "FAIL"
    assert "Unknown key 'ProtectSytem'" in proc.stdout


def test_a_missing_executable_fails_verify(tmp_path: Path) -> None:
    empty_venv = tmp_path / "venv"
    (empty_venv / "bin").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, str(CHECK_UNITS), "--venv", str(empty_venv), str(UNITS / "edged.service")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1
    assert f"Command {empty_venv}/bin/edged is not executable" in proc.stdout


def test_units_carry_the_service_contract() -> None:
    """The settings the daemon's lifecycle relies on (the rest is hardening, scored above)."""
    for name, executable in (("edged", "edged"), ("edged-cloud-bridge", "edged-cloud-bridge")):
        text = (UNITS / f"{name}.service").read_text()
        settings = set(text.splitlines())
        assert {"Type=notify", "NotifyAccess=main", "Restart=on-failure", "WatchdogSec=30"} <= settings
        assert "ExecReload=/bin/kill -HUP $MAINPID" in settings
        assert f"ConfigurationDirectory={name}" in settings
        assert f"StateDirectory={name}" in settings
        assert any(line.startswith(f"ExecStartPre=/opt/edged/venv/bin/{executable} ") for line in settings)
        assert any(line.startswith("LoadCredential=mqtt-password:") for line in settings)
    edged = set((UNITS / "edged.service").read_text().splitlines())
    assert {"RuntimeDirectory=edged", "RuntimeDirectoryMode=0750", "User=edged", "Group=edged"} <= edged
    assert "ExecStartPre=/opt/edged/venv/bin/edged check-config %E/edged/edged.toml" in edged
    assert {
        "LoadCredential=mqtt-client-key:edged.mqtt-client-key",
        "LoadCredential=fleet-key:edged.fleet-key",
    } <= edged
