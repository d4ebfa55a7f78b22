"""scripts/install on a machine without ensurepip: it asks apt-get for python3.11-venv before making .venv.

The script runs from a copy in a temporary tree (it works on the tree it sits in), with a PATH whose first
directory holds stand-ins that record how they were called: apt-get and sudo, the tools it checks for, and a
python3.11 whose `import ensurepip` fails until the stand-in apt-get has "installed" python3.11-venv. Its
`-m venv DIR` makes a DIR/bin/python and DIR/bin/edged that only record their arguments.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RECORDER = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'
# apt-get install marks python3.11-venv as present by creating $ENSUREPIP_FLAG.
APT_GET = RECORDER + 'case " $* " in *" install "*python3.11-venv*) touch "$ENSUREPIP_FLAG";; esac\n'
SUDO = RECORDER + 'exec "$@"\n'
PYTHON = (
    RECORDER
    + """if [ "$1" = -c ] && [ "$2" = "import ensurepip" ]; then [ -e "$ENSUREPIP_FLAG" ]; exit; fi
if [ "$1" = -m ] && [ "$2" = venv ]; then
    [ -e "$ENSUREPIP_FLAG" ] || { echo "ensurepip is not available" >&2; exit 1; }
    mkdir -p "$3/bin"
    cat > "$3/bin/python" <<'VENV'
#!/bin/sh
echo "venv-python $*" >> "$CALLS"
case "$1 $2" in
    "edged/engine/cpu.py --cmake-args") echo "-DGGML_NATIVE=OFF -DGGML_AMX_INT8=OFF" ;;
    "edged/engine/cpu.py --key") echo "0123456789abcdef" ;;
    "-m pip")
        if [ "$3" = wheel ]; then
            while [ $# -gt 0 ]; do
                [ "$1" = -w ] && mkdir -p "$2" && touch "$2/llama_cpp_python-0.3.36-cp311-linux_x86_64.whl"
                shift
            done
        fi ;;
esac
VENV
    printf '#!/bin/sh\\necho "venv-edged $*" >> "$CALLS"\\n' > "$3/bin/edged"
    chmod +x "$3/bin/python" "$3/bin/edged"
fi
"""
)


def fake_machine(tmp_path: Path, *, ensurepip: bool) -> tuple[Path, dict[str, str]]:
    tree = tmp_path / "tree"
    (tree / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "install", tree / "scripts" / "install")
    shutil.copy2(REPO / "pyproject.toml", tree / "pyproject.toml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {"apt-get": APT_GET, "sudo": SUDO, "python3.11": PYTHON}
    tools |= dict.fromkeys(("mosquitto", "cmake", "g++", "systemd-analyze"), RECORDER)
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    flag = tmp_path / "ensurepip-installed"
    if ensurepip:
        flag.touch()
    env = {key: value for key, value in os.environ.items() if key != "PYTHON"}
    env |= {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(tmp_path / "calls"),
        "ENSUREPIP_FLAG": str(flag),
        "EDGED_WHEELHOUSE": str(tmp_path / "wheelhouse"),
    }
    return tree, env


def run_install(tree: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    proc = subprocess.run(
        ["bash", str(tree / "scripts" / "install")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    calls_file = Path(env["CALLS"])
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return proc, calls


def test_missing_ensurepip_installs_python311_venv_before_making_the_venv(tmp_path: Path) -> None:
    tree, env = fake_machine(tmp_path, ensurepip=False)
    proc, calls = run_install(tree, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "installing Debian packages: python3.11-venv" in proc.stdout
    install = next(i for i, call in enumerate(calls) if call.startswith("apt-get") and " install " in call)
    assert calls[install].endswith("--no-install-recommends python3.11-venv")
    assert calls.index("python3.11 -m venv .venv") > install
    assert "venv-edged models verify" in calls


def test_nothing_is_installed_when_ensurepip_is_there(tmp_path: Path) -> None:
    tree, env = fake_machine(tmp_path, ensurepip=True)
    proc, calls = run_install(tree, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [call for call in calls if call.startswith(("apt-get", "sudo"))]
    assert "python3.11 -m venv .venv" in calls


def test_a_missing_python_names_its_package_and_the_venv_package(tmp_path: Path) -> None:
    tree, env = fake_machine(tmp_path, ensurepip=False)
    env["PYTHON"] = "python3.99"  # on no PATH; the stand-in apt-get does not provide it, so the script fails
    proc, calls = run_install(tree, env)
    assert proc.returncode != 0
    assert "installing Debian packages: python3.99 python3.99-venv" in proc.stdout
    assert any(call.endswith("--no-install-recommends python3.99 python3.99-venv") for call in calls)


def test_llama_cpp_python_is_built_once_per_flag_set_into_its_own_wheelhouse(tmp_path: Path) -> None:
    """The wheel is built with the CPU's flags into a folder named by them (never pip's cache), installed into the
    venv, and a second install with the same flags neither builds nor reinstalls it."""
    tree, env = fake_machine(tmp_path, ensurepip=True)
    proc, calls = run_install(tree, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    builds = [call for call in calls if call.startswith("venv-python -m pip wheel")]
    assert len(builds) == 1
    assert "--no-cache-dir" in builds[0]
    assert "--no-binary llama-cpp-python" in builds[0]
    assert "llama-cpp-python==0.3.36" in builds[0]
    assert "CMAKE_ARGS: -DGGML_NATIVE=OFF -DGGML_AMX_INT8=OFF" in proc.stdout
    wheelhouse = tmp_path / "wheelhouse" / "llama-cpp-python-0.3.36-0123456789abcdef"
    assert (wheelhouse / "CMAKE_ARGS").read_text().strip() == "-DGGML_NATIVE=OFF -DGGML_AMX_INT8=OFF"
    installs = [call for call in calls if "--force-reinstall --no-deps" in call]
    assert len(installs) == 1
    assert str(wheelhouse) in installs[0]
    assert calls.index(installs[0]) < next(i for i, c in enumerate(calls) if "install --quiet -e" in c)
    Path(env["CALLS"]).unlink()
    proc, calls = run_install(tree, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [call for call in calls if "pip wheel" in call or "--force-reinstall" in call]
