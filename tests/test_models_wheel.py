"""A wheel built from this tree carries the model manifests and the router, and an installed edged finds them.

The wheel is built offline (no build isolation, no index) from a copy of the tree, so the build's build/ and
egg-info never land in the checkout, and installed without dependencies into a throwaway venv that sees this
venv's site-packages through a .pth line (so nothing is downloaded, and this venv's editable edged is not
imported: a path line in a .pth does not run the .pth files of the directory it adds).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMOLLM = "smollm2-135m-instruct-q4_1"
SHIPPED = [
    "smollm2-135m-instruct-q4_1.toml",
    "gemma-3-270m-q4_k_m.toml",
    "router/manifest.toml",
    "router/router.onnx",
    "router/answer.onnx",
]


def run(argv: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME"}}
    proc = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, f"{argv}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with edged installed from its wheel (not editable); returns the venv's directory."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    shutil.copy2(REPO / "pyproject.toml", source)
    shutil.copy2(REPO / "README.md", source)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("edged", "cloud_bridge", "models"):
        shutil.copytree(REPO / name, source / name, ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", work / "dist", source], work)
    (wheel,) = (work / "dist").glob("edged-*.whl")

    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    python = venv / "bin" / "python"
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], work)
    site = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
    ).stdout.strip()
    dependencies = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (Path(site) / "edged_test_dependencies.pth").write_text("".join(f"{path}\n" for path in dependencies))
    return venv


@pytest.mark.slow
def test_the_wheel_installs_the_manifests_and_router_under_share(installed: Path) -> None:
    models = installed / "share" / "edged" / "models"
    for name in SHIPPED:
        assert (models / name).is_file(), name
    assert not (models / "router" / "train_labels.jsonl").exists()  # training data stays in the repo


@pytest.mark.slow
def test_installed_edged_lists_and_verifies_its_models(installed: Path) -> None:
    edged = installed / "bin" / "edged"
    listing = run([edged, "models", "list"], installed.parent).stdout
    smollm = next(line for line in listing.splitlines() if line.startswith(SMOLLM))
    assert "Apache-2.0" in smollm
    assert "gemma-3-270m-q4_k_m" in listing

    verified = run([edged, "models", "verify", SMOLLM], installed.parent).stdout
    assert verified.startswith(f"ok   {SMOLLM}: ")


@pytest.mark.slow
def test_installed_edged_reads_models_from_the_install_not_the_checkout(installed: Path) -> None:
    script = (
        "import edged\n"
        "from edged.models.registry import default_models_dir\n"
        "from edged.routing.router import load_router\n"
        "print(edged.__file__)\n"
        "print(default_models_dir())\n"
        "print(load_router(None, 'router') is not None)\n"
    )
    out = run([installed / "bin" / "python", "-c", script], installed.parent).stdout.splitlines()
    assert Path(out[0]).is_relative_to(installed)
    assert Path(out[1]) == (installed / "share" / "edged" / "models").resolve()
    assert out[2] == "True"  # the router manifest and both ONNX files were found and matched their sha256
