"""Prompt features of the pre-generation router: what the prompt alone says about how hard it is.

One float32 vector per prompt, the same at training (scripts/train_router.py) and serving time:

    dense      length, word and number counts, digits of the largest numbers, magnitudes, operators, quotes...
    words      hashed word unigrams and bigrams, numbers replaced by their shape ("<n3>" = a 3-digit number),
               so "what is <n3> times <n2>" is one learnable pattern whatever the numbers are
    chars      hashed character 3-grams of the lowercased prompt (spelling and task cues the words miss)

Hashes are zlib.crc32 (words) and a fixed polynomial (char 3-grams): stable across processes and machines,
unlike Python's hash(). Bump FEATURE_VERSION whenever anything here changes: the router manifest records the
version its model was trained with, and a mismatch is refused at load.
"""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import numpy.typing as npt

FEATURE_VERSION = 1
WORD_BUCKETS = 1024
CHAR_BUCKETS = 1024
MAX_CHARS = 8192  # features read at most this many characters (the end of a long prompt is kept)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_TOKEN = re.compile(r"[a-z]+|\d+(?:[.,]\d+)*|[^\sa-z\d]")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_OPERATORS = ("+", "-", "*", "/", "×", "÷", "times", "plus", "minus", "divided", "multiplied", "%")
_DENSE_NAMES = (
    "log_chars",
    "log_words",
    "log_numbers",
    "max_digits",
    "second_digits",
    "sum_top2_digits",
    "log_max_number",
    "has_decimal",
    "digit_fraction",
    "upper_fraction",
    "quotes",
    "questions",
    "sentences",
    "operators",
    "log_longest_word",
    "bias_one",
)
DENSE_FEATURES = len(_DENSE_NAMES)
N_FEATURES = DENSE_FEATURES + WORD_BUCKETS + CHAR_BUCKETS


def _dense(text: str, tokens: list[str], numbers: list[str]) -> list[float]:
    digits = sorted((len(n.replace(",", "").split(".")[0]) for n in numbers), reverse=True)
    top, second = [*digits, 0, 0][:2]
    values = [float(n.replace(",", "")) if n.count(".") <= 1 else 0.0 for n in numbers]
    lowered = text.lower()
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    alpha = [t for t in tokens if t[0].isalpha() and t[0] != "<"]
    chars = max(1, raw.size)
    return [
        math.log1p(len(text)),
        math.log1p(len(alpha)),
        math.log1p(len(numbers)),
        float(top),
        float(second),
        float(top + second),
        math.log10(1.0 + max(values, default=0.0)),
        1.0 if any("." in n for n in numbers) else 0.0,
        float(np.count_nonzero((raw >= 48) & (raw <= 57))) / chars,
        float(np.count_nonzero((raw >= 65) & (raw <= 90))) / chars,
        float(text.count("'") // 2 + text.count('"') // 2),
        float(text.count("?")),
        float(len(_SENTENCE_END.findall(text))),
        float(sum(lowered.count(op) for op in _OPERATORS)),
        math.log1p(max((len(t) for t in alpha), default=0)),
        1.0,
    ]


def _word_tokens(lowered: str) -> list[str]:
    tokens = _TOKEN.findall(lowered)
    return [f"<n{len(t)}>" if t[0].isdigit() else t for t in tokens]


def _word_hashes(tokens: list[str]) -> npt.NDArray[np.int64]:
    """Bucket ids of the unigrams, then of the bigrams (a bigram mixes its two words' crc32s)."""
    unigrams = np.fromiter(
        (zlib.crc32(t.encode("utf-8")) for t in tokens), dtype=np.uint64, count=len(tokens)
    )
    bigrams = (unigrams[:-1] * np.uint64(1_000_003) + unigrams[1:] + np.uint64(0x9E3779B9)) % np.uint64(2**32)
    both = np.concatenate([unigrams, bigrams]) % np.uint64(WORD_BUCKETS)
    return both.astype(np.int64)


def _char_hashes(lowered: str) -> npt.NDArray[np.int64]:
    raw = np.frombuffer(lowered.encode("utf-8"), dtype=np.uint8).astype(np.uint64)
    if raw.size < 3:
        return np.zeros(0, dtype=np.int64)
    mixed = (raw[:-2] * np.uint64(1_000_003) + raw[1:-1]) * np.uint64(1_000_003) + raw[2:]
    return (mixed % np.uint64(CHAR_BUCKETS)).astype(np.int64)


def prompt_features(prompt: str) -> npt.NDArray[np.float32]:
    """The feature vector (shape (N_FEATURES,), float32) of one prompt."""
    text = prompt[-MAX_CHARS:]
    lowered = text.lower()
    tokens = _word_tokens(lowered)
    numbers = _NUMBER.findall(text)
    out = np.zeros(N_FEATURES, dtype=np.float32)
    out[:DENSE_FEATURES] = _dense(text, tokens, numbers)
    words = np.bincount(_word_hashes(tokens), minlength=WORD_BUCKETS)
    chars = np.bincount(_char_hashes(lowered), minlength=CHAR_BUCKETS)
    out[DENSE_FEATURES : DENSE_FEATURES + WORD_BUCKETS] = np.log1p(words)
    out[DENSE_FEATURES + WORD_BUCKETS :] = np.log1p(chars)
    return out


def feature_names() -> list[str]:
    return [
        *_DENSE_NAMES,
        *(f"word_{i}" for i in range(WORD_BUCKETS)),
        *(f"char_{i}" for i in range(CHAR_BUCKETS)),
    ]
