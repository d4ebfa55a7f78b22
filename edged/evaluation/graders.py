"""Graders of `edged eval` items: does a reply count as a correct answer?

    number    the last number in the reply equals the answer (tolerance 1e-6); "1 + 5 = 6" counts as 6
    contains  the normalised answer occurs as whole words in the normalised reply
    choice    the reply names the answer and no other of the item's choices (whole words, normalised)
    regex     the answer is a pattern that matches somewhere in the reply (Python `re.search`)
    option    multiple choice shown as lettered options (A = the first choice, B = the second, ...): the reply
              names the right option, by its letter or by its text, and names no other option either way

A letter counts when it stands as the reply's first word ("B", "(B)", "B." or "B: ...", "B is"; not "A ..." or
"I ..." followed by a space, which are English words) or after "answer", "option" or "choice" ("the answer is
(C)"), or in brackets anywhere ("(B)"); a capital letter elsewhere is not a letter answer.

Normalising lowercases, turns every run of characters other than letters and digits into one space and strips.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

GraderName = Literal["number", "contains", "choice", "regex", "option"]
GRADERS: tuple[GraderName, ...] = ("number", "contains", "choice", "regex", "option")
OPTION_LETTERS = "ABCDEFGHIJ"
NUMBER_TOLERANCE = 1e-6

# An optional sign, digits with optional thousands separators, an optional decimal part. A sign counts only
# when it does not follow a letter, digit or closing bracket (so "3-4" is 3 and 4, "= -4" is -4).
_NUMBER = re.compile(r"(?<![\w)\]])-?\d+(?:,\d{3})*(?:\.\d+)?|(?<=[\w)\]])\d+(?:,\d{3})*(?:\.\d+)?")
_NON_WORD = re.compile(r"[^0-9a-z]+")
# "A" and "I" followed by a space are English words ("A man walks"), other capitals there are letters ("B is")
_LEADING_LETTER = re.compile(r"^\W*\(?([A-J])(?:[).:,]|$)|^\W*([B-HJ])\s")
_NAMED_LETTER = re.compile(r"(?i:answer|option|choice)\W{0,3}(?:(?i:is)\W{1,3})?\(?([A-J])\b|\(([A-J])\)")


def normalise(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def last_number(text: str) -> float | None:
    """The last number written in `text`, or None when there is none."""
    found = _NUMBER.findall(text)
    if not found:
        return None
    return float(found[-1].replace(",", ""))


def _has_words(haystack: str, needle: str) -> bool:
    """`needle` (normalised) occurs as whole words in `haystack` (normalised)."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def grade_number(reply: str, answer: str) -> bool:
    got = last_number(reply)
    want = last_number(answer)
    return got is not None and want is not None and abs(got - want) <= NUMBER_TOLERANCE


def grade_contains(reply: str, answer: str) -> bool:
    return _has_words(normalise(reply), normalise(answer))


def grade_choice(reply: str, answer: str, choices: Sequence[str]) -> bool:
    text = normalise(reply)
    if not _has_words(text, normalise(answer)):
        return False
    others = (normalise(c) for c in choices if normalise(c) != normalise(answer))
    return not any(_has_words(text, other) for other in others)


def named_options(reply: str, choices: Sequence[str]) -> set[int]:
    """Indexes of the options the reply names, by letter (see the module docstring) or by whole-word text."""
    letters = OPTION_LETTERS[: len(choices)]
    leading = [a or b for a, b in _LEADING_LETTER.findall(reply.strip())]
    named = {letters.index(m) for m in leading if m in letters}
    named |= {letters.index(a or b) for a, b in _NAMED_LETTER.findall(reply) if (a or b) in letters}
    text = normalise(reply)
    named |= {i for i, choice in enumerate(choices) if _has_words(text, normalise(choice))}
    return named


def grade_option(reply: str, answer: str, choices: Sequence[str]) -> bool:
    return answer in choices and named_options(reply, choices) == {list(choices).index(answer)}


def grade_regex(reply: str, pattern: str) -> bool:
    return re.search(pattern, reply) is not None


def grade(grader: GraderName, reply: str, answer: str, choices: Sequence[str] = ()) -> bool:
    """Whether `reply` is a correct answer under `grader`."""
    if grader == "number":
        return grade_number(reply, answer)
    if grader == "contains":
        return grade_contains(reply, answer)
    if grader == "choice":
        return grade_choice(reply, answer, choices)
    if grader == "option":
        return grade_option(reply, answer, choices)
    return grade_regex(reply, answer)
