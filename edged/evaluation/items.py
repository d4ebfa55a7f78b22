"""Eval items: one JSON object per line, validated field by field.

{"id": str, "prompt": str, "answer": str, "grader": "number"|"contains"|"choice"|"regex"|"option",
 "choices": [str] (choice and option only; an option item lists them in letter order A, B, ...),
 "task": str (optional: a label for per-task breakdowns)}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from edged.errors import InvalidRequest
from edged.evaluation.graders import GRADERS, OPTION_LETTERS, GraderName, grade

MAX_PROMPT_CHARS = 32_000
_KEYS = {"id", "prompt", "answer", "grader", "choices", "task"}
_WITH_CHOICES = ("choice", "option")


@dataclass(frozen=True, slots=True)
class EvalItem:
    id: str
    prompt: str
    answer: str
    grader: GraderName
    choices: tuple[str, ...] = ()
    task: str = ""

    def is_correct(self, reply: str) -> bool:
        return grade(self.grader, reply, self.answer, self.choices)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "answer": self.answer,
            "grader": self.grader,
        }
        if self.grader in _WITH_CHOICES:
            out["choices"] = list(self.choices)
        if self.task:
            out["task"] = self.task
        return out


def _string(raw: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequest(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def parse_item(raw: object, where: str) -> EvalItem:
    """One item from its decoded JSON; InvalidRequest names the line and key of any fault."""
    if not isinstance(raw, dict):
        raise InvalidRequest(where, f"must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise InvalidRequest(f"{where}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
    item_id, prompt, answer = (_string(raw, key, where) for key in ("id", "prompt", "answer"))
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"{where}.prompt", f"{len(prompt)} characters exceeds {MAX_PROMPT_CHARS}")
    grader = raw.get("grader")
    if grader not in GRADERS:
        raise InvalidRequest(f"{where}.grader", f"{grader!r} is not one of {', '.join(GRADERS)}")
    choices = _choices(raw, where, cast(GraderName, grader), answer)
    if grader == "regex":
        try:
            re.compile(answer)
        except re.error as exc:
            raise InvalidRequest(f"{where}.answer", f"{answer!r} is not a valid pattern: {exc}") from None
    task = _string(raw, "task", where, required=False)
    return EvalItem(item_id, prompt, answer, cast(GraderName, grader), choices, task)


def _choices(raw: dict[str, Any], where: str, grader: GraderName, answer: str) -> tuple[str, ...]:
    choices = raw.get("choices")
    if grader not in _WITH_CHOICES:
        if choices is not None:
            raise InvalidRequest(
                f"{where}.choices", f"only a 'choice' or 'option' item has choices, grader is {grader!r}"
            )
        return ()
    if grader == "option" and isinstance(choices, list) and len(choices) > len(OPTION_LETTERS):
        raise InvalidRequest(
            f"{where}.choices", f"{len(choices)} options exceeds {len(OPTION_LETTERS)} (A-J)"
        )
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) and c for c in choices)
    ):
        raise InvalidRequest(
            f"{where}.choices", f"must be a list of at least 2 non-empty strings, got {choices!r}"
        )
    if answer not in choices:
        raise InvalidRequest(f"{where}.answer", f"{answer!r} is not one of the choices {choices!r}")
    return tuple(choices)


def parse_items(lines: Iterable[str], source: str) -> list[EvalItem]:
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(where, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        item = parse_item(raw, where)
        if item.id in seen:
            raise InvalidRequest(f"{where}.id", f"duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise InvalidRequest(source, "holds no items")
    return items


def load_items(path: Path) -> list[EvalItem]:
    """Read an eval set (JSONL); InvalidRequest names the file, line and key of the first fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(str(path), f"cannot be read: {exc}") from None
    return parse_items(text.splitlines(), str(path))
