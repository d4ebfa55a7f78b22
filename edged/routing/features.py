"""Prompt features of the pre-generation router: what the prompt alone says about how hard it is.

One float32 vector per prompt, the same at training (scripts/train_router.py) and serving time:

    dense      length, word and number counts, digits of the largest numbers, magnitudes, operators, quotes...
    words      hashed word unigrams and bigrams, numbers replaced by their shape ("<n3>" = a 3-digit number),
               so "what is <n3> times <n2>" is one learnable pattern whatever the numbers are
    chars      hashed character 3-grams of the lowercased prompt (spelling and task cues the words miss)
    crosses    hashed (word x property) pairs, where the properties describe the prompt's numbers and quoted
               text: the order of the first two numbers, the last number's parity, last digit and primality,
               how often a quoted letter occurs in a quoted word, the quoted word's length. A linear model
               cannot combine "even" with "the number is odd" by itself; the crossed feature hands it over.

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

FEATURE_VERSION = 3
WORD_BUCKETS = 1024
CHAR_BUCKETS = 1024
CROSS_BUCKETS = 2048
MAX_CHARS = 8192  # features read at most this many characters (the end of a long prompt is kept)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"'([^'\n]{1,40})'|\"([^\"\n]{1,200})\"")
_NAME = re.compile(r"\b[A-Z][a-z]+\b")
_COMMON = frozenset({"The", "What", "Who", "How", "Is", "Answer", "Which", "Does", "Today", "A", "It"})
_EXPRESSION = re.compile(
    r"(\d+(?:,\d{3})*)\s*(\+|-|\*|/|×|÷|x|plus|minus|times|divided by|multiplied by)\s*(\d+(?:,\d{3})*)"
)
_SYMBOLS = {"+": "+", "plus": "+", "-": "-", "minus": "-", "*": "*", "×": "*", "x": "*", "times": "*"}
_SYMBOLS |= {"multiplied by": "*", "/": "/", "÷": "/", "divided by": "/"}
_SMALL_PRIMES = tuple(p for p in range(2, 1001) if all(p % d for d in range(2, int(p**0.5) + 1)))
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
N_FEATURES = DENSE_FEATURES + WORD_BUCKETS + CHAR_BUCKETS + CROSS_BUCKETS


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


def _is_prime(n: int) -> bool | None:
    """Primality for n < 10**6 (None above: not worth the time on the request path)."""
    if n >= 1_000_000:
        return None
    if n < 2:
        return False
    return all(n % p for p in _SMALL_PRIMES if p * p <= n)


def _properties(text: str, numbers: list[str]) -> list[str]:
    """Facts about the prompt's numbers and quoted text, as tokens to cross with its words."""
    props = []
    integers = [int(n.replace(",", "")) for n in numbers if "." not in n.replace(",", "")][:64]
    if len(integers) >= 2:
        a, b = integers[0], integers[1]
        props.append("order=" + ("gt" if a > b else "lt" if a < b else "eq"))
    if integers:
        last = integers[-1]
        props += [f"parity={last % 2}", f"lastdigit={last % 10}", f"prime={_is_prime(last)}"]
        digits = [len(str(i)) for i in integers]
        props += [f"ndigits={min(6, max(digits))}", f"mindigits={min(6, *digits)}"]
        props += [f"has{v}" for v in (0, 1) if v in integers]
    quoted = [a or b for a, b in _QUOTED.findall(text)]
    letters = [q.lower() for q in quoted if len(q) == 1]
    words = [q.lower() for q in quoted if len(q) > 1]
    if words:
        longest = max(words, key=len)
        props.append(f"qlen={min(len(longest), 15)}")
        if letters:
            props.append(f"qcount={min(3, longest.count(letters[0]))}")
    position = _subject_position(text)
    if position:
        sentences = min(6, len(_SENTENCE_END.findall(text)))
        props += [f"subject={position}", f"subject={position}:{sentences}"]
    return props + _expression(text)


def _expression(text: str) -> list[str]:
    """The shape of the first binary arithmetic expression: operation, operand digits, result digits and
    the trivial cases (equal operands, an operand of 0 or 1)."""
    match = _EXPRESSION.search(text)
    if match is None:
        return []
    a, b = (int(match.group(i).replace(",", "")) for i in (1, 3))
    op = _SYMBOLS.get(match.group(2), "?")
    result = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}.get(op, 0)
    shape = f"{op}:{min(len(str(a)), 6)}x{min(len(str(b)), 6)}"
    props = [f"op={op}", f"expr={shape}", f"expr={shape}:{min(len(str(abs(result))), 8)}"]
    if a == b or {a, b} & {0, 1}:
        props.append(f"trivial={op}")
    return props


def _subject_position(text: str) -> str:
    """Where the question's subject (the last capitalised name) was first mentioned among the names before
    it: "first", "middle" or "last", or "" when it was not mentioned before (or there is no context)."""
    names = [n for n in _NAME.findall(text) if n not in _COMMON]
    if len(names) < 3:
        return ""
    subject, context = names[-1], names[:-1]
    if subject not in context:
        return ""
    where = context.index(subject) / max(1, len(context) - 1)
    return "first" if where < 0.2 else "last" if where > 0.8 else "middle"


def _word_tokens(lowered: str) -> list[str]:
    tokens = _TOKEN.findall(lowered)
    return [f"<n{len(t)}>" if t[0].isdigit() else t for t in tokens]


_CRC_CACHE: dict[str, int] = {}
_CRC_CACHE_MAX = 200_000


def _crc32s(tokens: list[str]) -> npt.NDArray[np.uint64]:
    """zlib.crc32 of each token, memoised (prompts repeat the same words; a dict lookup beats encode + crc).
    Dict reads and writes are atomic under the GIL, so concurrent callers are safe; the cache stops growing
    at _CRC_CACHE_MAX entries."""
    cache = _CRC_CACHE
    out = np.empty(len(tokens), dtype=np.uint64)
    for i, token in enumerate(tokens):
        value = cache.get(token)
        if value is None:
            value = zlib.crc32(token.encode("utf-8"))
            if len(cache) < _CRC_CACHE_MAX:
                cache[token] = value
        out[i] = value
    return out


def _word_hashes(tokens: list[str]) -> npt.NDArray[np.int64]:
    """Bucket ids of the unigrams, then of the bigrams (a bigram mixes its two words' crc32s)."""
    unigrams = _crc32s(tokens)
    bigrams = (unigrams[:-1] * np.uint64(1_000_003) + unigrams[1:] + np.uint64(0x9E3779B9)) % np.uint64(2**32)
    both = np.concatenate([unigrams, bigrams]) % np.uint64(WORD_BUCKETS)
    return both.astype(np.int64)


def _cross_hashes(tokens: list[str], props: list[str]) -> npt.NDArray[np.int64]:
    """Bucket ids of every (distinct word, property) pair."""
    words = [t for t in set(tokens) if t[0].isalpha() or t in _SYMBOLS]  # order is irrelevant to the counts
    if not words or not props:
        return np.zeros(0, dtype=np.int64)
    w = _crc32s(words)
    p = _crc32s(props)
    mixed = (w[:, None] * np.uint64(1_000_033) + p[None, :] + np.uint64(0x7F4A7C15)) % np.uint64(2**32)
    return (mixed.ravel() % np.uint64(CROSS_BUCKETS)).astype(np.int64)


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
    props = _properties(text, numbers)
    words = np.bincount(_word_hashes([*tokens, *props]), minlength=WORD_BUCKETS)
    chars = np.bincount(_char_hashes(lowered), minlength=CHAR_BUCKETS)
    crosses = np.bincount(_cross_hashes(tokens, props), minlength=CROSS_BUCKETS)
    start = DENSE_FEATURES
    out[start : start + WORD_BUCKETS] = np.log1p(words)
    start += WORD_BUCKETS
    out[start : start + CHAR_BUCKETS] = np.log1p(chars)
    start += CHAR_BUCKETS
    out[start:] = np.log1p(crosses)
    return out


def feature_names() -> list[str]:
    return [
        *_DENSE_NAMES,
        *(f"word_{i}" for i in range(WORD_BUCKETS)),
        *(f"char_{i}" for i in range(CHAR_BUCKETS)),
        *(f"cross_{i}" for i in range(CROSS_BUCKETS)),
    ]
