"""First answers a new user meets, on the real models: repetition control, the loop guard, named chat templates
for a GGUF that has none, and the decode self-test in a child process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edged.config import parse_config
from edged.config.engine import EngineSettings
from edged.engine import FinishEvent, LlamaEngine
from edged.engine.cpu import CpuInfo, cmake_args, flags_key, read_cpu_info
from edged.engine.repetition import LoopGuard, RecentTokens
from edged.engine.selftest import amx_problem, ensure_decodes, run_selftest
from edged.errors import BackendCrashed, ModelError
from edged.models import ModelRegistry
from edged.routing.load import FakeSystemSource
from edged.service.daemon import Daemon
from edged.service.sdnotify import ServiceNotifier
from tests.engine_parts import submit
from tests.ops_support import NotifyListener

MODEL_ID = "smollm2-135m-instruct-q4_1"
GEMMA_ID = "gemma-3-270m-q4_k_m"
FRANCE = (
    "What is the capital of France?"  # the README's example: greedy without a penalty loops to max_tokens
)


def smollm2() -> Path:
    return ModelRegistry.from_dir().resolve(MODEL_ID).path


def engine_with(path: Path = Path(), model_id: str = MODEL_ID, **settings: object) -> LlamaEngine:
    config = {"threads": 2, "slots": 2, "context_per_slot": 512, **settings}
    engine = LlamaEngine(
        model_id, path if path != Path() else smollm2(), EngineSettings.model_validate(config)
    )
    engine.start()
    return engine


@pytest.fixture(scope="module")
def defaults() -> Iterator[LlamaEngine]:
    engine = engine_with()
    yield engine
    engine.close()


# ------------------------------------------------------------------ the pieces, without a model


def test_loop_guard_sees_a_repeated_span_and_not_ordinary_text() -> None:
    guard = LoopGuard(min_tokens=24)
    assert not any(guard.push(token) for token in range(100))  # no repeats at all
    guard = LoopGuard(min_tokens=24)
    flags = [guard.push(token) for token in [7, 8, 9, 10, 11, 12] * 6]  # a period of 6
    assert flags.index(True) == 23  # stopped once 24 tokens (4 cycles) repeat
    guard = LoopGuard(min_tokens=24)
    assert not any(guard.push(token) for token in [1, 2, 3] * 2 + [4, 5, 6] * 2 + list(range(50, 70)))
    guard = LoopGuard(min_tokens=0)
    assert not any(guard.push(5) for _ in range(500))  # 0 = off


def test_loop_guard_needs_three_cycles_of_a_long_period() -> None:
    guard = LoopGuard(min_tokens=24)
    span = list(range(100, 140))  # a 40-token sentence said twice is not yet a loop; three times is
    flags = [guard.push(token) for token in span * 3]
    assert not any(flags[:80])
    assert flags.index(True) == 119


def test_repeat_penalty_is_llama_cpp_s_and_is_undone() -> None:
    row = np.array([2.0, -2.0, 1.0, 0.5], dtype=np.float32)
    recent = RecentTokens(4, 2.0)
    for token in (0, 1, 0):
        recent.push(token)
    recent.penalize(row)
    assert row.tolist() == [1.0, -4.0, 1.0, 0.5]  # positive divided, negative multiplied, once per token
    recent.restore(row)
    assert row.tolist() == [2.0, -2.0, 1.0, 0.5]


def test_cmake_args_never_enable_amx_and_name_each_isa_level() -> None:
    sapphire = CpuInfo(
        "x86_64", "Intel Xeon", frozenset({"avx", "avx2", "fma", "f16c", "avx512f", "amx_int8"})
    )
    args = cmake_args(sapphire)
    assert args[0] == "-DGGML_NATIVE=OFF"
    assert {"-DGGML_AVX512=ON", "-DGGML_AVX2=ON", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_TILE=OFF"} <= set(args)
    epyc = CpuInfo("x86_64", "AMD EPYC", frozenset({"avx", "avx2", "fma", "f16c"}))
    assert "-DGGML_AVX512=OFF" in cmake_args(epyc)
    assert flags_key(cmake_args(epyc)) != flags_key(args)  # another flag set is another wheel
    arm = CpuInfo("aarch64", "", frozenset({"asimd", "asimddp", "i8mm"}))
    assert cmake_args(arm) == ["-DGGML_NATIVE=OFF", "-DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+i8mm"]


def test_each_isa_flag_is_read_as_the_kernel_spells_it(tmp_path: Path) -> None:
    """The AVX-512 names in /proc/cpuinfo are not regular (avx512vbmi but avx512_vbmi2, avx512_vnni): the flags
    line here is the one an Intel Xeon Sapphire Rapids reported, verbatim but for cut-out unrelated flags."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu sse4_2 avx f16c bmi2 avx2 fma avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl "
        "avx_vnni avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni avx512_bitalg avx512_fp16 amx_bf16 "
        "amx_tile amx_int8\n"
    )
    args = set(cmake_args(read_cpu_info(cpuinfo)))
    wanted = (
        "AVX512",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX512_BF16",
        "AVX_VNNI",
        "AVX2",
        "FMA",
        "F16C",
        "BMI2",
    )
    assert {f"-DGGML_{name}=ON" for name in wanted} <= args
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= args


def test_cpu_flags_script_runs_with_a_bare_python() -> None:
    """scripts/install runs edged/engine/cpu.py before anything is installed: standard library only."""
    script = Path(__file__).resolve().parent.parent / "edged" / "engine" / "cpu.py"
    out = subprocess.run(
        [sys.executable, "-S", "-I", str(script), "--cmake-args"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("-DGGML_NATIVE=OFF")
    assert "AMX_INT8=OFF" in out.stdout


def test_an_amx_build_on_an_amx_cpu_is_refused() -> None:
    amx_cpu = CpuInfo("x86_64", "Intel Xeon", frozenset({"avx512f", "amx_tile", "amx_int8"}))
    built_with_amx = "CPU : SSE3 = 1 | AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    assert "llama.cpp #20824" in (amx_problem(amx_cpu, built_with_amx) or "")
    assert amx_problem(amx_cpu, "CPU : SSE3 = 1 | AVX512 = 1 | REPACK = 1 |") is None
    assert amx_problem(CpuInfo("x86_64", "AMD EPYC", frozenset({"avx2"})), built_with_amx) is None


# ------------------------------------------------------------------ the decode self-test, in a child process


@pytest.mark.slow
def test_the_installed_library_decodes_in_a_child_process() -> None:
    """The test that fails on a build that crashes on this CPU (e.g. AMX kernels on an AMX CPU)."""
    result = run_selftest(smollm2(), model_id=MODEL_ID, threads=2)
    assert result.tokens == 4
    assert result.text.strip()
    assert result.system_info.startswith("CPU :")
    assert amx_problem(read_cpu_info(), result.system_info) is None


@pytest.mark.slow
def test_a_crashing_child_is_named_with_signal_and_cpu(tmp_path: Path) -> None:
    """A child killed by a signal (here SIGSEGV from the kernel, as a faulting kernel would be) is BackendCrashed."""
    crash = tmp_path / "crash.gguf"
    crash.write_bytes(b"not a model")
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -c '{code}'\n")
    wrapper.chmod(0o755)
    original = sys.executable
    sys.executable = str(wrapper)
    try:
        with pytest.raises(BackendCrashed) as caught:
            run_selftest(crash, model_id="crashy", threads=1)
    finally:
        sys.executable = original
    message = str(caught.value)
    assert "killed by SIGSEGV decoding crashy" in message
    assert read_cpu_info().summary() in message
    assert "scripts/install" in message


@pytest.mark.slow
def test_a_bad_model_file_is_a_model_error_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(ModelError) as caught:
        run_selftest(bad, model_id="bad", threads=1)
    assert not isinstance(caught.value, BackendCrashed)


@pytest.mark.slow
def test_a_pass_is_remembered_for_the_same_library_cpu_and_model(tmp_path: Path) -> None:
    first = ensure_decodes(smollm2(), model_id=MODEL_ID, model_sha256="a" * 64, threads=2, state_dir=tmp_path)
    assert first is not None
    again = ensure_decodes(smollm2(), model_id=MODEL_ID, model_sha256="a" * 64, threads=2, state_dir=tmp_path)
    assert again is None  # reused
    other = ensure_decodes(smollm2(), model_id=MODEL_ID, model_sha256="b" * 64, threads=2, state_dir=tmp_path)
    assert other is not None  # another model file is tested again


# ------------------------------------------------------------------ answers on the real model


@pytest.mark.slow
def test_the_readme_question_gets_a_short_answer_not_a_loop(defaults: LlamaEngine) -> None:
    answer = submit(defaults, FRANCE, max_tokens=256)
    end = answer.wait()
    assert isinstance(end, FinishEvent)
    assert end.finish_reason == "stop"
    assert end.completion_tokens < 100
    assert "Paris" in answer.text


@pytest.mark.slow
def test_without_a_penalty_the_loop_guard_stops_the_loop() -> None:
    """The prompt that looped to max_tokens with no repetition control is cut and reported as 'repetition'."""
    engine = engine_with(repeat_penalty=1.0, loop_guard_tokens=64)
    try:
        end = submit(engine, FRANCE, max_tokens=256).wait()
    finally:
        engine.close()
    assert isinstance(end, FinishEvent)
    assert end.finish_reason == "repetition"
    assert end.completion_tokens < 128


@pytest.mark.slow
def test_a_sampled_answer_gets_the_penalty_too(defaults: LlamaEngine) -> None:
    end = submit(defaults, FRANCE, max_tokens=256, temperature=0.7, seed=3).wait()
    assert isinstance(end, FinishEvent)
    assert end.finish_reason in {"stop", "repetition"}
    assert end.completion_tokens < 256


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    registry = ModelRegistry.from_dir(cache_dir=tmp_path_factory.mktemp("models"))
    return registry.resolve(GEMMA_ID).path


@pytest.mark.slow
def test_a_gguf_without_a_template_is_refused_with_the_choices(gemma_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        engine_with(gemma_path, GEMMA_ID)
    message = str(caught.value)
    assert "has no chat template" in message
    assert "engine.chat_template" in message
    assert "gemma" in message
    assert "chatml" in message


@pytest.mark.slow
def test_a_gguf_without_a_template_is_served_with_a_named_one(gemma_path: Path) -> None:
    engine = engine_with(gemma_path, GEMMA_ID, chat_template="gemma")
    try:
        answer = submit(engine, FRANCE, max_tokens=48)
        end = answer.wait()
    finally:
        engine.close()
    assert isinstance(end, FinishEvent)
    assert end.finish_reason in {"stop", "length"}
    assert answer.text.strip()
    assert "<start_of_turn>" not in answer.text


@pytest.mark.slow
def test_an_unknown_template_name_lists_the_built_in_ones(gemma_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        engine_with(gemma_path, GEMMA_ID, chat_template="gemmaa")
    assert "'gemmaa' is not one of llama.cpp's built-in templates" in str(caught.value)
    assert "llama3" in str(caught.value)


@pytest.mark.slow
def test_a_jinja_template_file_replaces_the_embedded_one(tmp_path: Path) -> None:
    template = tmp_path / "plain.jinja"
    template.write_text(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    engine = engine_with(chat_template_file=str(template))
    try:
        end = submit(engine, "Say hello.", max_tokens=8).wait()
    finally:
        engine.close()
    assert isinstance(end, FinishEvent)
    # "user: Say hello.\nassistant:" is about 10 tokens; SmolLM2's embedded template, with its system prompt, 30+
    assert end.prompt_tokens < 16
    missing = tmp_path / "missing.jinja"
    with pytest.raises(ModelError, match=r"engine\.chat_template_file"):
        engine_with(chat_template_file=str(missing))


@pytest.mark.slow
def test_a_daemon_whose_self_test_crashes_never_reports_ready_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No READY=1, no SERVING; the journal gets the reason and the exit code is the one the unit won't restart."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import os, signal; os.kill(os.getpid(), 11)'\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))  # the self-test's child is this crashing "python"
    listener = NotifyListener(tmp_path)
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "api": {"socket": str(tmp_path / "edged.sock")},
            "engine": {"threads": 1, "slots": 1, "context_per_slot": 256},
        }
    )
    notifier = ServiceNotifier.from_environment({"NOTIFY_SOCKET": listener.env_value})
    try:
        daemon = Daemon(config, notifier=notifier, load_source=FakeSystemSource())
        code = asyncio.run(daemon.run(handle_signals=False))
    finally:
        notifier.close()
        listener.close()
    assert code == BackendCrashed.EXIT_CODE == 78
    assert listener.find("READY") is None
    assert any("killed by SIGSEGV" in m.get("STATUS", "") for m in listener.messages), listener.messages
    assert "startup failed, not restarting" in caplog.text
    assert (
        "RestartPreventExitStatus=78"
        in (Path(__file__).parent.parent / "systemd" / "edged.service").read_text()
    )
