"""The bounds on a request's JSON Schema, checked before any grammar converter or llama.cpp sees it.

The daemon (edged.engine.grammar) and the cloud worker (cloud_bridge.checks) apply the same checks. What they guard
against, measured on llama.cpp 0.3.36's converter and parser:
  - nesting: json.loads and the pure-Python converter recurse once per level (RecursionError past ~1000 levels);
  - repetition counts: `maxLength: N` becomes N nested optional groups; llama.cpp's recursive grammar parser refuses
    ~1200 and overflows the C stack (SIGSEGV, the whole daemon) at 30000; `minItems: N` makes the converter join N
    copies of the item rule (10,000,000 took 1.36 GB and 3 s);
  - contradictions (`minLength` > `maxLength`, negative counts), which the converter accepts and turns into a grammar
    that matches nothing or fails later with an opaque message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edged.errors import InvalidRequest

MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32  # JSON nesting of the schema text; real response schemas stay under ~10
MAX_REPETITION = 1000  # any count; llama.cpp parses the grammar of maxLength 1000 and refuses 1200
MAX_GRAMMAR_BYTES = 256 * 1024
MAX_GRAMMAR_DEPTH = (
    1024  # parenthesis nesting of the converted grammar, the depth llama.cpp's parser recurses
)

# (minimum key, maximum key) of each count the converter expands into repetitions.
COUNT_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties"))
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_nesting_depth(text: str) -> int:
    """How deep brackets nest in a JSON text (strings skipped), without recursing; for untrusted input that
    json.loads would otherwise answer with RecursionError."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def check_json_schema(text: str, field: str = "json_schema") -> dict[str, Any]:
    """The parsed schema, within every bound above; InvalidRequest names the field, the value and the limit."""
    size = len(text.encode())
    if size > MAX_SCHEMA_BYTES:
        raise InvalidRequest(field, f"schema is {size} bytes, the limit is {MAX_SCHEMA_BYTES}")
    depth = json_nesting_depth(text)
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequest(field, f"schema nests {depth} levels deep, the limit is {MAX_SCHEMA_DEPTH}")
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(field, f"not valid JSON ({len(text)} characters): {exc}") from None
    if not isinstance(schema, dict):
        raise InvalidRequest(field, f"must be a JSON object, got {type(schema).__name__}")
    _check_node(schema, field, "")
    return schema


def check_grammar(grammar: str, field: str = "json_schema") -> None:
    """The converted grammar is small and shallow enough for llama.cpp's recursive parser."""
    size = len(grammar.encode())
    if size > MAX_GRAMMAR_BYTES:
        raise InvalidRequest(field, f"the schema's grammar is {size} bytes, the limit is {MAX_GRAMMAR_BYTES}")
    depth = deepest = 0
    for char in re.sub(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]', "", grammar):
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_GRAMMAR_DEPTH:
        raise InvalidRequest(
            field, f"the schema's grammar nests {deepest} groups deep, the limit is {MAX_GRAMMAR_DEPTH}"
        )


def _check_node(node: object, field: str, path: str) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _check_node(item, field, f"{path}[{index}]")
        return
    if not isinstance(node, dict):
        return
    for low_key, high_key in COUNT_PAIRS:
        low = _count(node, low_key, field, path)
        high = _count(node, high_key, field, path)
        if low is not None and high is not None and low > high:
            raise InvalidRequest(
                field, f"{path}/{low_key} {low} is greater than {path}/{high_key} {high}: nothing can match"
            )
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        _check_pattern(pattern, field, f"{path}/pattern")
    for key, value in node.items():
        _check_node(value, field, f"{path}/{key}")


def _count(node: dict[str, Any], key: str, field: str, path: str) -> int | None:
    value = node.get(key)
    if value is None or isinstance(value, dict):  # absent, or a property that happens to be named so
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"{path}/{key} {value!r} must be a non-negative integer")
    if not 0 <= value <= MAX_REPETITION:
        raise InvalidRequest(field, f"{path}/{key} {value} is outside 0..{MAX_REPETITION}")
    return value


def _check_pattern(pattern: str, field: str, path: str) -> None:
    for match in _QUANTIFIER.finditer(pattern):
        for number in match.groups():
            if number and (len(number) > 6 or int(number) > MAX_REPETITION):
                raise InvalidRequest(
                    field, f"{path} repeats {match.group(0)}: a count above {MAX_REPETITION}"
                )
