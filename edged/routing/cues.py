"""Transfer cues: task-shape features of a prompt and its local reply that mean the same on any dataset.

The hashed word features of the router and the answer model learn the vocabulary of the tasks they were
trained on, which does not carry over to traffic of another kind (docs/routing.md, leave-one-dataset-out).
These cues describe only the shape of the exchange, so they are meant to transfer:

    log_prompt_chars      the prompt's length
    options               how many lettered options the prompt lists ("A. ...", "B) ..."), 0 when none
    asks_yes_no           the prompt asks for yes or no
    asks_number           the prompt asks for a number
    has_passage           the prompt carries a passage of 400+ characters before its last line
    names_one             the reply names exactly one of the options (or of yes / no), by letter or text
    names_several         the reply names more than one
    names_none            options were offered and the reply names none of them
    short_reply           the reply has at most 3 words
    log_reply_chars       the reply's length
    reply_in_prompt       the share of the reply's words that occur in the prompt
    number_from_prompt    the reply's last number is one of the prompt's numbers (copied, not computed)
"""

from __future__ import annotations

import math
import re

from edged.evaluation.graders import named_options, normalise

CUE_NAMES = (
    "log_prompt_chars",
    "options",
    "asks_yes_no",
    "asks_number",
    "has_passage",
    "names_one",
    "names_several",
    "names_none",
    "short_reply",
    "log_reply_chars",
    "reply_in_prompt",
    "number_from_prompt",
)
N_CUES = len(CUE_NAMES)
PASSAGE_CHARS = 400

_OPTION_LINE = re.compile(r"^\s*\(?([A-J])[.):]\s+(\S.*)$", re.MULTILINE)
_YES_NO = re.compile(r"\byes or no\b|\byes/no\b", re.IGNORECASE)
_ASKS_NUMBER = re.compile(r"\b(?:the|a|just the|only the) number\b|\bhow (?:many|much)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def prompt_options(prompt: str) -> list[str]:
    """The lettered options the prompt lists, in order from A; empty unless they run A, B, C... unbroken."""
    found = _OPTION_LINE.findall(prompt)
    options: list[str] = []
    for letter, text in found:
        if ord(letter) - ord("A") == len(options):
            options.append(text.strip())
        elif letter == "A":  # a new list starts: keep the last one
            options = [text.strip()]
    return options if len(options) >= 2 else []


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in _NUMBER.findall(text)]


def transfer_cues(prompt: str, reply: str) -> list[float]:
    """The cues above, in CUE_NAMES order."""
    options = prompt_options(prompt)
    yes_no = bool(_YES_NO.search(prompt))
    offered = options or (["yes", "no"] if yes_no else [])
    named = len(named_options(reply, offered)) if offered else 0
    reply_words = normalise(reply).split()
    prompt_words = set(normalise(prompt).split())
    last_line_start = prompt.rstrip().rfind("\n")
    reply_numbers, prompt_numbers = _numbers(reply), set(_numbers(prompt))
    return [
        math.log1p(len(prompt)),
        float(len(options)),
        float(yes_no),
        float(bool(_ASKS_NUMBER.search(prompt))),
        float(last_line_start >= PASSAGE_CHARS),
        float(named == 1),
        float(named > 1),
        float(bool(offered) and named == 0),
        float(len(reply_words) <= 3),
        math.log1p(len(reply)),
        sum(w in prompt_words for w in reply_words) / len(reply_words) if reply_words else 0.0,
        float(bool(reply_numbers) and reply_numbers[-1] in prompt_numbers),
    ]
