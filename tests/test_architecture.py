"""The packages' public APIs (edged/public.py): each package lists its public names once, code in other packages
uses only those, and importing a package loads none of the heavy libraries its parts need."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(
    f"edged.{path.parent.name}"
    for path in (ROOT / "edged").glob("*/__init__.py")
    if path.parent.name
    not in ("v1", "cli")  # generated stubs; the command line is the top, nobody imports it
)


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if ".".join(parts[:2]) in PACKAGES else module


def _cross_package_imports() -> list[tuple[str, str, str, int]]:
    """(importing file, package, name, line) for every `from edged.P... import name` outside package P."""
    found: list[tuple[str, str, str, int]] = []
    for top in ("edged", "cloud_bridge"):
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            here = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    package = _package_of(node.module)
                    if package in PACKAGES and _package_of(here) != package:
                        found.extend((str(relative), package, a.name, node.lineno) for a in node.names)
    return found


def test_other_packages_use_only_a_package_s_public_names() -> None:
    outside = [
        f"{where}:{line} imports {name} from {package}, which is not in its __all__"
        for where, package, name, line in _cross_package_imports()
        if name not in importlib.import_module(package).__all__
    ]
    assert outside == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_public_name_resolves_to_the_module_its_type_checking_import_names(package: str) -> None:
    module = importlib.import_module(package)
    exports: dict[str, str] = module.EXPORTS
    assert module.__all__ == list(exports)
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text(encoding="utf-8"))
    typed = {
        alias.name: node.module.removeprefix(f"{package}.")
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
        if node.module.startswith(f"{package}.")
    }
    assert typed == exports  # the names the type checker sees are the names served at run time
    for name, submodule in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{submodule}"), name)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'not_public'"):
        _ = module.not_public


def _loaded_after(statements: str, libraries: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{statements}\nprint(sorted(m for m in {libraries!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return list(ast.literal_eval(out.stdout.strip()))


def test_importing_the_packages_loads_no_heavy_library() -> None:
    heavy = ("presidio_analyzer", "spacy", "onnxruntime", "llama_cpp", "paho", "cryptography", "aiohttp")
    assert _loaded_after(f"import {', '.join(PACKAGES)}", heavy) == []


def test_the_command_line_loads_only_what_its_command_needs() -> None:
    """`edged serve` builds the parser from every subcommand's module first: none of them may load a library
    that only a broker, a fleet, the privacy gate, the router or the HTTP API needs."""
    optional = ("presidio_analyzer", "spacy", "onnxruntime", "paho", "cryptography", "aiohttp")
    assert _loaded_after("from edged.cli.main import build_parser\nbuild_parser()", optional) == []


def test_a_daemon_without_broker_or_fleet_does_not_load_their_libraries(tmp_path: Path) -> None:
    """STYLE 4: heavy libraries load only when configured. A daemon without a broker has no MQTT client (paho),
    no fleet (cryptography), no privacy gate (Presidio, spaCy) and no router (onnxruntime); [http] off: no
    aiohttp."""
    code = (
        "import asyncio, sys, threading, time\n"
        "from edged.config import parse_config\n"
        "from edged.service.daemon import Daemon\n"
        f"config = parse_config({{'device_id': 'lean', 'state_dir': {str(tmp_path / 'state')!r},"
        f" 'api': {{'socket': {str(tmp_path / 'edged.sock')!r}}}, 'engine': {{'slots': 1}}}})\n"
        "daemon = Daemon(config)\n"
        "loop = asyncio.new_event_loop()\n"
        "thread = threading.Thread(target=loop.run_until_complete, args=(daemon.run(handle_signals=False),))\n"
        "thread.start()\n"
        "deadline = time.monotonic() + 120\n"
        "while daemon.status().state != 'serving' and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "state = daemon.status().state\n"
        "loop.call_soon_threadsafe(daemon.request_stop)\n"
        "thread.join(60)\n"
        "heavy = ('paho', 'cryptography', 'presidio_analyzer', 'spacy', 'onnxruntime', 'aiohttp')\n"
        "print(state, sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "serving []"
