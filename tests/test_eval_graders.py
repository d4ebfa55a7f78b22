"""Graders exactly as the issue defines them, and eval-file validation that names line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edged.errors import InvalidRequest
from edged.evaluation.graders import grade, last_number, normalise
from edged.evaluation.items import load_items, parse_items


@pytest.mark.parametrize(
    ("reply", "answer", "expected"),
    [
        ("1 + 5 = 6", "6", True),
        ("The answer is 6.", "6", True),
        ("6 apples, then 7", "6", False),  # the last number counts
        ("It is 1,234 in total", "1234", True),
        ("3.5000000001", "3.5", True),  # within 1e-6
        ("3.501", "3.5", False),
        ("x = -4", "-4", True),
        ("3-4", "4", True),  # a hyphen after a digit is not a sign
        ("no digits here", "0", False),
    ],
)
def test_number(reply: str, answer: str, expected: bool) -> None:
    assert grade("number", reply, answer) is expected


@pytest.mark.parametrize(
    ("reply", "answer", "expected"),
    [
        ("The capital is Sindra.", "Sindra", True),
        ("The capital is SINDRA!", "sindra", True),
        ("The capital is Sindrakar.", "Sindra", False),  # whole words only
        ("It is New  York, of course", "new york", True),
    ],
)
def test_contains(reply: str, answer: str, expected: bool) -> None:
    assert grade("contains", reply, answer) is expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Positive.", True),
        ("The sentiment is positive", True),
        ("It is positive, not negative", False),  # names another choice too
        ("Neutral", False),
        ("positively", False),
    ],
)
def test_choice(reply: str, expected: bool) -> None:
    assert grade("choice", reply, "positive", ("positive", "negative")) is expected


_OPTIONS = ("Dyslexia", "Epilepsy", "Hydrocephalus", "Narcolepsy")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("D", True),
        ("(D)", True),
        ("D. Narcolepsy", True),
        ("d", False),  # a lower-case letter alone is not an option letter
        ("The answer is D.", True),
        ("Answer: (D)", True),
        ("Narcolepsy is a disorder of sleep.", True),  # the option's text
        ("A person with narcolepsy falls asleep.", True),  # "A" as an article is not option A
        ("B", False),
        ("The answer is B: Epilepsy", False),
        ("D, or maybe (B)", False),  # names another option by letter
        ("Narcolepsy or epilepsy", False),  # names another option by text
        ("I am not sure.", False),
    ],
)
def test_option(reply: str, expected: bool) -> None:
    assert grade("option", reply, "Narcolepsy", _OPTIONS) is expected


def test_option_letters_beyond_the_choices_do_not_count() -> None:
    assert grade("option", "C", "yes", ("yes", "no")) is False
    assert grade("option", "A", "yes", ("yes", "no")) is True


def test_regex() -> None:
    assert grade("regex", "It is March 15.", r"(?i)\bmarch\s+15(?!\d)")
    assert not grade("regex", "It is March 150.", r"(?i)\bmarch\s+15(?!\d)")


def test_helpers() -> None:
    assert normalise("  Hello, World!! ") == "hello world"
    assert last_number("a 1 b 2.5") == 2.5
    assert last_number("none") is None


def _line(**fields: object) -> str:
    return json.dumps(fields)


def test_items_parse_and_keep_choices_and_task() -> None:
    items = parse_items(
        [
            _line(id="a", prompt="2+2?", answer="4", grader="number", task="arithmetic"),
            "",
            _line(id="b", prompt="yes?", answer="yes", grader="choice", choices=["yes", "no"]),
        ],
        "set.jsonl",
    )
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].task == "arithmetic"
    assert items[1].choices == ("yes", "no")
    assert items[1].is_correct("Yes.")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "set.jsonl:1: not valid JSON"),
        (_line(id="a", prompt="p", answer="1", grader="fuzzy"), "set.jsonl:1.grader: 'fuzzy' is not one of"),
        (_line(id="a", prompt="", answer="1", grader="number"), "set.jsonl:1.prompt: must be a non-empty"),
        (_line(id="a", prompt="p", answer="x", grader="choice"), "set.jsonl:1.choices: must be a list"),
        (
            _line(id="a", prompt="p", answer="x", grader="choice", choices=["y", "z"]),
            "set.jsonl:1.answer: 'x' is not one of the choices",
        ),
        (
            _line(id="a", prompt="p", answer="(", grader="regex"),
            "set.jsonl:1.answer: '(' is not a valid pattern",
        ),
        (_line(id="a", prompt="p", answer="1", grader="number", extra=1), "set.jsonl:1.extra: unknown key"),
        (
            _line(id="a", prompt="p", answer="1", grader="number", choices=["1"]),
            "only a 'choice' or 'option' item",
        ),
    ],
)
def test_bad_items_name_line_key_and_value(line: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_items([line], "set.jsonl")
    assert message in str(caught.value)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    line = _line(id="a", prompt="p", answer="1", grader="number")
    with pytest.raises(InvalidRequest, match=r"set\.jsonl:2\.id: duplicate id 'a'"):
        parse_items([line, line], "set.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InvalidRequest, match="holds no items"):
        load_items(empty)
    with pytest.raises(InvalidRequest, match="cannot be read"):
        load_items(tmp_path / "missing.jsonl")


def test_the_shipped_dev_sets_load_and_are_disjoint() -> None:
    root = Path(__file__).resolve().parents[1] / "bench" / "evalsets"
    train, heldout = load_items(root / "train.jsonl"), load_items(root / "heldout.jsonl")
    assert len(train) == 1400
    assert len(heldout) == 600
    assert not {i.prompt for i in train} & {i.prompt for i in heldout}
    assert {i.task for i in heldout} >= {
        "arithmetic",
        "units",
        "dates",
        "facts",
        "letters",
        "classify",
        "yes_no",
    }
