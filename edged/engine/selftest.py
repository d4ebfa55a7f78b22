"""The decode self-test: a child process loads a model with the installed llama.cpp and decodes a few tokens.

A llama.cpp built for the wrong CPU does not raise, it kills the process (SIGSEGV in the AMX kernels, SIGILL for an
instruction the CPU lacks) on the first decode. Run in-process, that is a daemon that reported READY and then died
without a word. So before the daemon loads a model for the first time with a given library, CPU and model file, it
runs this test in a child: a crash there becomes a `BackendCrashed` that names the signal, the CPU's features and
what llama.cpp was built with, and the daemon exits without a restart loop. A passing result is remembered in the
state directory under a key of exactly those three things, so later starts pay nothing.

    python -m edged.engine.selftest MODEL.gguf [--tokens N] [--threads N]   (what the parent runs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from edged.engine.cpu import CpuInfo, read_cpu_info
from edged.engine.native import NativeContext, NativeModel
from edged.errors import BackendCrashed, ModelError
from edged.files import write_atomic

logger = logging.getLogger(__name__)

_PROMPT = "The capital of France is"
_TIMEOUT_S = 120.0
_CACHE_NAME = "selftest.json"


@dataclass(frozen=True, slots=True)
class SelftestResult:
    """What the child reported: how many tokens it decoded, how fast, and llama.cpp's own feature line."""

    tokens: int
    seconds: float
    system_info: str
    text: str


def library_identity() -> str:
    """The installed llama.cpp shared library, by path, size and mtime (a rebuilt wheel changes it)."""
    package = Path(llama_cpp.__file__).resolve().parent
    libraries = sorted(package.glob("lib/*.so*")) + sorted(package.glob("lib/*.dylib"))
    parts = [str(package)] + [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in libraries]
    return "|".join(parts)


def amx_problem(cpu: CpuInfo, system_info: str) -> str | None:
    """llama.cpp's AMX kernels on an AMX CPU fault on the first decode (llama.cpp #20824): refuse that build."""
    if cpu.has_amx and "AMX_INT8 = 1" in system_info:
        return (
            "llama.cpp was built with its AMX kernels on a CPU that has AMX, which crashes on the first decode "
            "(llama.cpp #20824); rebuild it with scripts/install (GGML_NATIVE=OFF, no AMX)"
        )
    return None


def run_selftest(model: Path, *, model_id: str, threads: int, tokens: int = 4) -> SelftestResult:
    """Decode `tokens` tokens of `model` in a child process; BackendCrashed if it dies, ModelError otherwise."""
    cpu = read_cpu_info()
    argv = [sys.executable, "-m", "edged.engine.selftest", str(model), "--tokens", str(tokens)]
    argv += ["--threads", str(threads)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ModelError(
            f"the decode self-test of {model_id} did not finish in {_TIMEOUT_S:.0f}s (CPU: {cpu.summary()})"
        ) from None
    lines = proc.stdout.splitlines()
    system_info = next(
        (line[len("system_info: ") :] for line in lines if line.startswith("system_info: ")), ""
    )
    if proc.returncode < 0:  # killed by a signal: the native code crashed
        raise BackendCrashed(_crash_message(model_id, proc, cpu, system_info))
    if proc.returncode != 0:  # a Python error (an unreadable file, say): an ordinary model error
        raise ModelError(_crash_message(model_id, proc, cpu, system_info))
    try:
        report = json.loads(lines[-1])
        result = SelftestResult(
            int(report["tokens"]), float(report["seconds"]), system_info, str(report["text"])
        )
    except (IndexError, ValueError, KeyError, TypeError):
        raise ModelError(
            f"the decode self-test of {model_id} printed no result: {proc.stdout[-500:]!r}"
        ) from None
    problem = amx_problem(cpu, system_info)
    if problem is not None:
        raise BackendCrashed(f"{model_id}: {problem}; CPU: {cpu.summary()}; llama.cpp: {system_info}")
    return result


def _crash_message(model_id: str, proc: subprocess.CompletedProcess[str], cpu: CpuInfo, info: str) -> str:
    if proc.returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            how = f"was killed by signal {-proc.returncode}"
    else:
        how = f"exited with status {proc.returncode}"
    tail = " | ".join(line for line in proc.stderr.strip().splitlines()[-3:] if line)
    return (
        f"the llama.cpp CPU backend {how} decoding {model_id} in the self-test's child process; "
        f"CPU: {cpu.summary()}; llama.cpp built with: {info or 'unknown (it crashed before reporting)'}"
        + (f"; last output: {tail}" if tail else "")
        + ". Rebuild llama-cpp-python for this CPU with scripts/install (portable flags chosen from the CPU, "
        "override with EDGED_LLAMA_CMAKE_ARGS); see docs/operations.md"
    )


def selftest_key(model_sha256: str, threads: int) -> str:
    """What a remembered pass is valid for: this library file, this CPU, this model, these threads."""
    cpu = read_cpu_info()
    text = "\n".join([library_identity(), cpu.machine, cpu.model, " ".join(sorted(cpu.flags)), model_sha256])
    return hashlib.sha256(f"{text}\n{threads}".encode()).hexdigest()


def ensure_decodes(
    model: Path, *, model_id: str, model_sha256: str, threads: int, state_dir: Path | None
) -> SelftestResult | None:
    """Run the self-test unless a pass for the same library, CPU and model is remembered in `state_dir`.

    Returns the fresh result, or None when a remembered pass was reused."""
    key = selftest_key(model_sha256, threads)
    cache = state_dir / _CACHE_NAME if state_dir is not None else None
    if cache is not None and _remembered(cache) == key:
        return None
    result = run_selftest(model, model_id=model_id, threads=threads)
    logger.info(
        "decode self-test of %s passed: %d tokens in %.2fs (%s)",
        model_id,
        result.tokens,
        result.seconds,
        result.system_info,
    )
    if cache is not None:
        try:
            write_atomic(cache, json.dumps({"key": key, "model": model_id}).encode())
        except OSError as exc:
            logger.warning("could not remember the self-test in %s: %s", cache, exc)
    return result


def _remembered(cache: Path) -> str | None:
    try:
        value = json.loads(cache.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _child(model: Path, tokens: int, threads: int) -> int:
    """The child's side: report llama.cpp's features first (so a crash still says what was built), then decode."""

    print("system_info: " + llama_cpp.llama_print_system_info().decode(errors="replace").strip(), flush=True)
    started = time.monotonic()
    loaded = NativeModel(model, gpu_layers=0)
    ctx = NativeContext(loaded, n_seq=1, n_ctx=256, n_batch=64, threads=threads, kv_unified=False)
    prompt = loaded.tokenize(_PROMPT, add_special=loaded.add_bos)
    pieces: list[bytes] = []
    position = 0
    token = -1
    for step in range(tokens + 1):
        ctx.clear_batch()
        feed = prompt if step == 0 else [token]
        for offset, fed in enumerate(feed):
            ctx.add(fed, position + offset, 0, want_logits=offset == len(feed) - 1)
        position += len(feed)
        if ctx.decode() != 0:
            print("llama_decode failed", file=sys.stderr)
            return 3
        token = int(ctx.output_logits()[-1].argmax())
        if step < tokens:
            pieces.append(loaded.piece(token))
    seconds = time.monotonic() - started
    text = b"".join(pieces).decode("utf-8", errors="replace")
    print(json.dumps({"tokens": tokens, "seconds": round(seconds, 3), "text": text}), flush=True)
    ctx.close()
    loaded.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edged.engine.selftest")
    parser.add_argument("model", type=Path)
    parser.add_argument("--tokens", type=int, default=4, choices=range(1, 65), metavar="N")
    parser.add_argument("--threads", type=int, default=1, choices=range(1, 257), metavar="N")
    args = parser.parse_args(argv)
    return _child(args.model, args.tokens, args.threads)


if __name__ == "__main__":
    sys.exit(main())
