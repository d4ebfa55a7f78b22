"""`edged ask` and `edged status` as a user runs them: subprocesses against a real daemon's socket."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.cli.main import main
from edged.v1 import inference_pb2 as pb
from tests.daemon_harness import RunningDaemon, running_daemon

pytestmark = pytest.mark.slow

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def edged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with running_daemon(tmp_path_factory.mktemp("cli")) as daemon:
        yield daemon


def edged_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `edged` command line in a fresh interpreter (bounded: a hung client fails the test)."""
    command = [sys.executable, "-m", "edged.cli.main", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_ask_json_prints_one_object_with_text_provenance_usage_and_timing(edged: RunningDaemon) -> None:
    done = edged_cli("ask", "--socket", str(edged.socket), "--json", "--max-tokens", "16", QUESTION)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # the whole output is one JSON object
    assert {"text", "provenance", "usage", "timing"} <= set(answer)
    direct = edged.stub.Generate(pb.GenerateRequest(prompt=QUESTION, max_tokens=16), timeout=60)
    assert answer["text"] == direct.text
    assert answer["provenance"]["source"] == "LOCAL"
    assert answer["provenance"]["model"] == "smollm2-135m-instruct-q4_1"
    assert answer["provenance"]["reasons"][-1] == "answered=local"
    assert answer["usage"]["completion_tokens"] == direct.usage.completion_tokens
    assert answer["usage"]["prompt_tokens"] > 0
    assert 0 < answer["timing"]["time_to_first_token_ms"] <= answer["timing"]["total_ms"]


def test_ask_streams_the_text_and_puts_provenance_on_stderr(edged: RunningDaemon) -> None:
    done = edged_cli(
        "ask", "--socket", str(edged.socket), "--max-tokens", "16", "--seed", "4294967295", QUESTION
    )
    assert done.returncode == 0, done.stderr
    direct = edged.stub.Generate(pb.GenerateRequest(prompt=QUESTION, max_tokens=16), timeout=60)
    assert done.stdout == direct.text + "\n"
    assert done.stderr.startswith("[LOCAL smollm2-135m-instruct-q4_1; mode=AUTO;")


def test_a_degraded_answer_says_so_in_plain_output(edged: RunningDaemon) -> None:
    """issue 17 (23): only --json said "degraded"; PREFER_CLOUD with no link is answered here, degraded."""
    done = edged_cli(
        "ask", "--socket", str(edged.socket), "--max-tokens", "4", "--mode", "prefer-cloud", "Hi"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("[LOCAL smollm2-135m-instruct-q4_1; degraded; mode=PREFER_CLOUD;"), (
        done.stderr
    )


def test_status_json_parses(edged: RunningDaemon) -> None:
    done = edged_cli("status", "--socket", str(edged.socket), "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["device_id"], status["state"]) == ("test-device", "serving")
    [model] = [m for m in status["models"] if m["is_default"]]
    assert (model["id"], model["loaded"], model["slots_total"]) == ("smollm2-135m-instruct-q4_1", True, 4)
    # issue 17 (23): protobuf's JSON writes 64-bit integers as strings; every count is a JSON number here
    budget = status["budget"]
    assert all(type(budget[key]) is int for key in budget if key.startswith(("tokens_", "requests_"))), budget
    assert type(status["requests_local"]) is int


def test_status_into_a_closed_pipe_says_nothing(edged: RunningDaemon) -> None:
    """issue 17 (23): `edged status | head -0` printed a BrokenPipeError traceback."""
    command = [sys.executable, "-m", "edged.cli.main", "status", "--socket", str(edged.socket)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the status is printed
        err = proc.stderr.read().decode()
        assert proc.wait(120) == 1
    assert err == ""


def test_a_refused_request_is_one_line_and_exit_1(edged: RunningDaemon) -> None:
    done = edged_cli("ask", "--socket", str(edged.socket), "--max-tokens", "100000", QUESTION)
    assert done.returncode == 1
    assert done.stderr == "INVALID_ARGUMENT: max_tokens: 100000 is outside 1..256\n"


def test_no_daemon_on_the_socket_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = edged_cli("status", "--socket", str(tmp_path / "none.sock"))
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"cannot reach edged at unix:{tmp_path / 'none.sock'}: is `edged serve` running?"
    )


def test_a_seed_out_of_range_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    done = edged_cli("ask", "--socket", str(tmp_path / "none.sock"), "--seed", "-1", QUESTION)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith("edged ask: error: argument --seed: -1 is outside 0..4294967295\n")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--seed", "-1", "argument --seed: -1 is outside 0..4294967295"),
        ("--seed", "4294967296", "argument --seed: 4294967296 is outside 0..4294967295"),
        ("--seed", "1.5", "argument --seed: '1.5' is not an integer"),
        ("--max-tokens", "0", "argument --max-tokens: 0 is outside 1..2147483647"),
        ("--max-tokens", "2147483648", "argument --max-tokens: 2147483648 is outside 1..2147483647"),
        ("--temperature", "-0.5", "argument --temperature: -0.5 is outside 0..2"),
        ("--temperature", "2.01", "argument --temperature: 2.01 is outside 0..2"),
        ("--temperature", "nan", "argument --temperature: nan is outside 0..2"),
        ("--temperature", "hot", "argument --temperature: 'hot' is not a number"),
        ("--timeout", "0", "argument --timeout: 0 is outside (0, 86400] seconds"),
        ("--timeout", "-1", "argument --timeout: -1 is outside (0, 86400] seconds"),
        ("--timeout", "inf", "argument --timeout: inf is outside (0, 86400] seconds"),
        ("--timeout", "soon", "argument --timeout: 'soon' is not a number of seconds"),
    ],
)
def test_ask_numbers_are_checked_before_connecting(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ask", "--socket", "/nonexistent/edged.sock", flag, value, QUESTION])
    assert exited.value.code == 2
    assert capsys.readouterr().err.endswith(f"edged ask: error: {message}\n")
