"""`edged eval` and `edged calibrate` through the real local path: the llama.cpp engine with the bundled
SmolLM2 model, in process, on a tiny set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged.cli.calibrate import MIN_CALIBRATION_ITEMS
from edged.cli.main import main
from edged.config import load_profile

ITEMS = [
    {"id": "a", "prompt": "What is 2 + 3? Answer with just the number.", "answer": "5", "grader": "number"},
    {
        "id": "b",
        "prompt": "What is 4817 × 2309? Answer with just the number.",
        "answer": "11122453",
        "grader": "number",
    },
    {
        "id": "c",
        "prompt": "Is 9 greater than 4? Answer yes or no.",
        "answer": "yes",
        "grader": "choice",
        "choices": ["yes", "no"],
    },
    {
        "id": "d",
        "prompt": "What is the first letter of the word 'apple'?",
        "answer": "(?i)\\ba\\b",
        "grader": "regex",
    },
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    (tmp_path / "edged.toml").write_text("[engine]\nthreads = 2\nslots = 2\ncontext_per_slot = 512\n")
    return tmp_path


@pytest.mark.slow
def test_eval_json_through_the_engine(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["eval", str(workdir / "set.jsonl"), "--json", "--config", str(workdir / "edged.toml")]
    code = main([*args, "--max-tokens", "24", "--records", str(workdir / "records.jsonl")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    for key in ("n", "local_accuracy", "cloud_accuracy", "apgr", "apgr_oracle", "skill", "apgr_by_signal"):
        assert key in summary
    assert {"auroc", "cloud_share_at_95", "cloud_share_at_95_oracle"} <= set(summary)
    assert summary["n"] == 4
    assert summary["cloud_accuracy"] == 1.0
    assert set(summary["auroc"]) == {"router", "confidence", "answer", "auto"}  # the shipped answer model ran
    records = [json.loads(line) for line in (workdir / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c", "d"]
    assert summary["local_accuracy"] == sum(r["local_correct"] for r in records) / 4
    assert not records[1]["local_correct"]  # a 135M model does not multiply 4-digit numbers
    assert all(0.0 < r["router_score"] < 1.0 for r in records)
    assert "eval [" in captured.err  # the progress bar


@pytest.mark.slow
def test_calibrate_writes_a_valid_profile(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = workdir / "profile.toml"
    args = [
        "calibrate",
        str(workdir / "set.jsonl"),
        "--config",
        str(workdir / "edged.toml"),
        "--max-tokens",
        "24",
    ]
    code = main([*args, "--target-cloud-share", "0.5", "--write", str(profile)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "target met" in captured.out
    # issue 17 (23): `--limit 40` wrote router_threshold = 0.0 and said nothing about so small a set
    assert "calibrated on only" in captured.err
    assert f"fewer than {MIN_CALIBRATION_ITEMS} items" in captured.err
    routing = load_profile(profile).routing
    assert routing.score_weights is not None
    assert 0.0 <= routing.router_threshold <= 1.0


def test_eval_reports_a_bad_file_by_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "prompt": "p", "answer": "1", "grader": "fuzzy"}) + "\n")
    assert main(["eval", str(bad)]) == 1
    assert f"{bad}:1.grader: 'fuzzy' is not one of" in capsys.readouterr().err


def test_calibrate_needs_a_target_in_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["calibrate", "x.jsonl", "--target-cloud-share", "1.5", "--write", str(tmp_path / "p.toml")])
    assert "1.5 is outside [0, 1]" in capsys.readouterr().err
