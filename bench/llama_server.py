"""llama.cpp's C++ ``llama-server``, built once for the engine bench from the sources llama-cpp-python vendors.

The competitor is the llama.cpp that edged itself runs: the sdist of the installed llama-cpp-python carries it
under ``vendor/llama.cpp``. The sdist is taken from pip's download (``pip download --no-binary``, a PyPI fetch at
bench-build time, never at daemon run time) unless a copy already lies in the cache directory. The build uses the
portable flags of ``edged/engine/cpu.py`` (``GGML_NATIVE=OFF``, never AMX), so both sides run the same kernels,
and is cached under ``<cache>/llama-server-<version>-<flags key>/``: a second bench run starts at once.

Standard library only, so the build can run before the venv is complete::

    python3 bench/llama_server.py [--version 0.3.36] [--cache DIR]   # prints the binary's path
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

logger = logging.getLogger(__name__)

DISTRIBUTION = "llama-cpp-python"
SERVER_ARGS = [
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]
BUILD_JOBS = "2"  # the bench machines are small; more jobs only thrash


def _cpu_module() -> ModuleType:
    """edged/engine/cpu.py loaded by path: the edged.engine package imports llama_cpp, this file needs only stdlib."""
    path = Path(__file__).resolve().parent.parent / "edged" / "engine" / "cpu.py"
    spec = importlib.util.spec_from_file_location("edged_engine_cpu", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("EDGED_BENCH_CACHE", Path(base) / "edged" / "bench"))


def installed_version() -> str:
    return importlib.metadata.version(DISTRIBUTION)


def build_flags() -> list[str]:
    cpu = _cpu_module()
    return [*cpu.chosen_cmake_args(), *SERVER_ARGS]


def binary_path(cache: Path, version: str, flags: list[str]) -> Path:
    key = _cpu_module().flags_key(flags)
    return cache / f"llama-server-{version}-{key}" / "build" / "bin" / "llama-server"


def sdist(cache: Path, version: str) -> Path:
    """The sdist in the cache, downloaded from PyPI by pip when it is not there yet."""
    name = f"llama_cpp_python-{version}.tar.gz"
    path = cache / name
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    logger.warning("downloading the %s %s sdist from PyPI into %s", DISTRIBUTION, version, cache)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", str(cache)]
    subprocess.run([*command, f"{DISTRIBUTION}=={version}"], check=True)
    if not path.is_file():
        raise FileNotFoundError(f"pip download left no {name} in {cache}")
    return path


def unpack_vendored(archive: Path, target: Path) -> Path:
    """Extracts only ``vendor/llama.cpp`` of the sdist into ``target/src``."""
    prefix = archive.name.removesuffix(".tar.gz") + "/vendor/llama.cpp/"
    source = target / "src"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise FileNotFoundError(f"{archive} holds no {prefix}")
        for member in members:
            member.name = member.name[len(prefix) :]
        tar.extractall(source, members=[m for m in members if m.name], filter="data")
    return source


def ensure_built(cache: Path | None = None, version: str | None = None) -> Path:
    """The llama-server binary for this version and flag set, built first when the cache has none."""
    cache = cache or default_cache()
    version = version or installed_version()
    flags = build_flags()
    binary = binary_path(cache, version, flags)
    if binary.is_file():
        return binary
    root = binary.parent.parent.parent
    if root.exists():
        shutil.rmtree(root)  # a half-finished earlier build
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    source = unpack_vendored(sdist(cache, version), partial)
    build = partial / "build"
    logger.warning("building llama-server %s with %s (several minutes on 2 cores)", version, " ".join(flags))
    configure = ["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *flags]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", BUILD_JOBS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    partial.rename(root)
    return binary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", help="llama-cpp-python version (default: the installed one)")
    parser.add_argument("--cache", type=Path, help=f"cache directory (default: {default_cache()})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(ensure_built(args.cache, args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
