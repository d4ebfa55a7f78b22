"""Which instruction sets this CPU has, and the llama.cpp build flags that follow from them.

llama.cpp's own default, ``GGML_NATIVE=ON``, compiles for whatever the build machine reports. On an Intel Xeon
with AMX that switches on llama.cpp's AMX kernels, which fault in ``ggml_backend_amx_mul_mat`` on the first decode
(llama.cpp issue #20824: the tile permission is per thread and a tile config is dropped by the compiler). So edged
builds with ``GGML_NATIVE=OFF`` and names each ISA level the CPU has, never AMX. The same flags build the bench's
``llama-server``, so both sides of a comparison run the same kernels.

This file needs only the standard library: ``scripts/install`` runs it with the system Python before edged (or
anything else) is installed::

    python3 edged/engine/cpu.py --cmake-args   # the CMAKE_ARGS for llama-cpp-python
    python3 edged/engine/cpu.py --key          # a short name of that flag set (the wheelhouse folder)

``EDGED_LLAMA_CMAKE_ARGS`` replaces the chosen flags entirely (e.g. ``-DGGML_CUDA=ON`` on a Jetson).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

OVERRIDE_ENV = "EDGED_LLAMA_CMAKE_ARGS"

# x86 feature (as /proc/cpuinfo names it) -> the ggml option it enables. Order is the order the flags are printed.
_X86_OPTIONS: tuple[tuple[str, str], ...] = (
    ("sse4_2", "GGML_SSE42"),
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("bmi2", "GGML_BMI2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("avx_vnni", "GGML_AVX_VNNI"),
    ("avx512f", "GGML_AVX512"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),  # the kernel spells this one without "_" (but avx512_vbmi2)
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
# Never on, whatever the CPU says, until upstream's AMX kernels are fixed (llama.cpp #20824).
_X86_ALWAYS_OFF = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
# ARM feature (/proc/cpuinfo "Features") -> the -march extension it allows.
_ARM_EXTENSIONS: tuple[tuple[str, str], ...] = (("asimddp", "dotprod"), ("i8mm", "i8mm"), ("sve", "sve"))


@dataclass(frozen=True)
class CpuInfo:
    """The machine's architecture, its model name and the feature flags the kernel reports."""

    machine: str
    model: str
    flags: frozenset[str]

    @property
    def has_amx(self) -> bool:
        return any(flag.startswith("amx") for flag in self.flags)

    def summary(self) -> str:
        """One line for messages: the model and the features that matter to llama.cpp's kernels."""
        wanted = [feature for feature, _ in _X86_OPTIONS] + ["amx_tile", "amx_int8", "amx_bf16"]
        wanted += [feature for feature, _ in _ARM_EXTENSIONS] + ["asimd", "neon"]
        present = [feature for feature in wanted if feature in self.flags]
        return (
            f"{self.machine} {self.model or 'unknown CPU'} [{' '.join(present) or 'no SIMD flags reported'}]"
        )


def read_cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """Reads the first processor's model and flags (all cores of the machines edged runs on are alike)."""
    machine = platform.machine()
    model = ""
    flags: frozenset[str] = frozenset()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo(machine, model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "cpu model", "hardware"} and not model:
            model = value.strip()
        elif key in {"flags", "features"} and not flags:
            flags = frozenset(value.split())
    return CpuInfo(machine, model, flags)


def cmake_args(cpu: CpuInfo) -> list[str]:
    """The portable llama.cpp build flags for this CPU: native detection off, each present ISA level named."""
    args = ["-DGGML_NATIVE=OFF"]
    if cpu.machine in {"x86_64", "AMD64", "i686", "i386"}:
        args += [f"-D{option}={'ON' if feature in cpu.flags else 'OFF'}" for feature, option in _X86_OPTIONS]
        args += [f"-D{option}=OFF" for option in _X86_ALWAYS_OFF]
    elif cpu.machine in {"aarch64", "arm64"}:
        extensions = [ext for feature, ext in _ARM_EXTENSIONS if feature in cpu.flags]
        args.append("-DGGML_CPU_ARM_ARCH=" + "+".join(["armv8.2-a", *extensions]))
    # Other architectures: native off and llama.cpp's portable defaults.
    return args


def chosen_cmake_args(cpu: CpuInfo | None = None, env: dict[str, str] | None = None) -> list[str]:
    """The flags to build with: ``EDGED_LLAMA_CMAKE_ARGS`` when set, else those chosen for this CPU."""
    override = (os.environ if env is None else env).get(OVERRIDE_ENV, "").strip()
    if override:
        return override.split()
    return cmake_args(cpu or read_cpu_info())


def flags_key(args: list[str]) -> str:
    """A short, stable name for a flag set: a wheel built with other flags is never taken for this one."""
    return hashlib.sha256(" ".join(args).encode()).hexdigest()[:16]


def main(argv: list[str]) -> int:
    args = chosen_cmake_args()
    if argv == ["--cmake-args"]:
        print(" ".join(args))
    elif argv == ["--key"]:
        print(flags_key(args))
    elif argv == ["--summary"]:
        print(read_cpu_info().summary())
    else:
        print("usage: cpu.py --cmake-args | --key | --summary", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
