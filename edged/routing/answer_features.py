"""Answer features of the answer model: what the prompt, the local reply and its confidence say together.

Known only after local generation, at no extra model call. One float32 vector per (prompt, reply), the same
at training (scripts/train_router.py) and serving time:

    prompt     the pre-router's prompt features (edged.routing.features), unchanged
    dense      the confidence summary (mean / min / p10 log-probability, first-token and mean margin, mean
               entropy, log tokens), the reply's length in characters, and whether it hit the token limit
    words      hashed word unigrams and bigrams of the reply (numbers replaced by their shape) plus the reply's
               properties below
    crosses    hashed (property x prompt word) pairs, so "the reply's last number is one of the prompt's
               numbers" can mean "right" after "How old is..." and "wrong" after "What is ... times ..."
    cues       the 12 transfer cues of edged.routing.cues (task shape: options offered and named, yes/no,
               passage, reply length and overlap), standardised like the dense values (version 2)

Reply properties: how many numbers it holds, whether its last number is one of the prompt's (first, last,
any), that number's digit count, whether it shows a calculation ("="), whether it hit the token limit, how
many of the options the prompt lists ("x, y or z") it names, how much of it repeats the prompt's words, how
repetitive it is, and a few hedging words ("neutral", "approximately", "need", "cannot", ...).

Bump ANSWER_FEATURE_VERSION whenever anything here (or the prompt features) changes; the router manifest
records the version its answer model was trained with, and a mismatch is refused at load.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib

import numpy as np
import numpy.typing as npt

from edged.domain import ConfidenceSummary
from edged.routing.cues import N_CUES, transfer_cues
from edged.routing.features import DENSE_FEATURES, N_FEATURES, prompt_features
from edged.routing.score import SIGNALS, signal_values

ANSWER_FEATURE_VERSION = 2
LIMIT_TOKENS = 48  # the token limit the answer model was trained with (edged eval's default max_tokens)
REPLY_BUCKETS = 512
CROSS_BUCKETS = 2048
MAX_REPLY_CHARS = 4096
# The AUTO score's signals (in its order), then the reply's length.
_DENSE_NAMES = (*SIGNALS, "log_reply_chars")
ANSWER_DENSE = len(_DENSE_NAMES)
_CUES_START = N_FEATURES + ANSWER_DENSE + REPLY_BUCKETS + CROSS_BUCKETS
N_ANSWER_FEATURES = _CUES_START + N_CUES
# Columns a trainer should standardise: the prompt's dense block, the answer's dense block and the cues.
DENSE_COLUMNS = (
    *range(DENSE_FEATURES),
    *range(N_FEATURES, N_FEATURES + ANSWER_DENSE),
    *range(_CUES_START, N_ANSWER_FEATURES),
)

_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[a-z]+|\d+")
_PROMPT_WORD = re.compile(r"[a-z]+")
_OPTION_LIST = re.compile(r"((?:\b\w+, )+\w+,? or \w+|\b\w+ or \w+)")
_ARTICLE = re.compile(r"\ban? ")
_HEDGES = ("neutral", "not", "approximately", "need", "sorry", "cannot", "yes", "no")


def _options(prompt: str) -> set[str]:
    """The options a prompt lists as "x or y" / "x, y or z" (articles dropped), lowercased."""
    found: set[str] = set()
    for segment in _OPTION_LIST.findall(_ARTICLE.sub("", prompt)):
        found.update(w.lower() for w in re.findall(r"\w+", segment.replace(" or ", ",")))
    found.discard("or")
    return found


def reply_properties(prompt: str, reply: str, tokens: int) -> list[str]:
    """Facts about the reply (and how it relates to the prompt), as tokens to hash and cross."""
    lowered = reply.lower()
    prompt_numbers = [n.replace(",", "") for n in _NUMBER.findall(prompt)]
    numbers = [n.replace(",", "") for n in _NUMBER.findall(reply)]
    props = [
        f"rnum={min(3, len(numbers))}",
        f"eq={int('=' in reply)}",
        f"maxed={int(tokens >= LIMIT_TOKENS)}",
    ]
    if numbers:
        last = numbers[-1]
        props += [f"echo={int(last in prompt_numbers)}", f"lastlen={min(6, len(last.lstrip('-')))}"]
        if prompt_numbers:
            props += [
                f"echofirst={int(last == prompt_numbers[0])}",
                f"echolast={int(last == prompt_numbers[-1])}",
            ]
    options = _options(prompt)
    if options:
        named = sum(1 for w in options if re.search(rf"\b{re.escape(w)}\b", lowered))
        props.append(f"named={min(2, named)}")
    words = _WORD.findall(lowered)
    if words:
        prompt_words = set(_WORD.findall(prompt.lower()))
        props.append(f"overlap={int(4 * sum(w in prompt_words for w in words) / len(words))}")
        props.append(f"distinct={int(4 * len(set(words)) / len(words))}")
    props += [f"has_{h}" for h in _HEDGES if re.search(rf"\b{h}\b", lowered)]
    return props


def _crc(token: str) -> int:
    return zlib.crc32(token.encode("utf-8"))


def _reply_counts(reply: str, props: list[str]) -> npt.NDArray[np.float32]:
    words = [f"<n{len(t)}>" if t[0].isdigit() else t for t in _WORD.findall(reply.lower())]
    tokens = [*words, *(f"{a}_{b}" for a, b in itertools.pairwise(words)), *props]
    counts = np.bincount([_crc(t) % REPLY_BUCKETS for t in tokens], minlength=REPLY_BUCKETS)
    return np.log1p(counts).astype(np.float32)


def _cross_counts(prompt: str, props: list[str]) -> npt.NDArray[np.float32]:
    words = sorted(set(_PROMPT_WORD.findall(prompt.lower())))
    ids = [(_crc(p) * 1_000_033 + _crc(w)) % CROSS_BUCKETS for p in props for w in words]
    return np.log1p(np.bincount(ids, minlength=CROSS_BUCKETS)).astype(np.float32)


def answer_features(
    prompt: str,
    reply: str,
    confidence: ConfidenceSummary,
    prompt_vector: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """The feature vector (shape (N_ANSWER_FEATURES,), float32) of a finished local answer. `prompt_vector`
    may pass the prompt's features when the caller has them already (the router computed them)."""
    reply = reply[:MAX_REPLY_CHARS]
    tokens = confidence.tokens if confidence.available else 0
    props = reply_properties(prompt, reply, tokens)
    out = np.zeros(N_ANSWER_FEATURES, dtype=np.float32)
    out[:N_FEATURES] = prompt_features(prompt) if prompt_vector is None else prompt_vector
    start = N_FEATURES
    values = signal_values(confidence)
    out[start : start + ANSWER_DENSE] = [*(values[name] for name in SIGNALS), math.log1p(len(reply))]
    start += ANSWER_DENSE
    out[start : start + REPLY_BUCKETS] = _reply_counts(reply, props)
    start += REPLY_BUCKETS
    out[start:_CUES_START] = _cross_counts(prompt, props)
    out[_CUES_START:] = transfer_cues(prompt, reply)
    return out
