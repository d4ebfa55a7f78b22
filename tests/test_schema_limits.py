"""A request's JSON Schema is bounded before the grammar converter or llama.cpp sees it (issue 17: 12, 13, 18)."""

from __future__ import annotations

import json
import resource
import time

import pytest

from edged.engine.grammar import json_schema_grammar
from edged.errors import InvalidRequest
from edged.schema_limits import (
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_DEPTH,
    MAX_REPETITION,
    check_grammar,
    json_nesting_depth,
)

DEEP = "[" * 30000 + "]" * 30000
REFUSED = [
    # (schema text, what the refusal must say)
    ('{"type": "string", "maxLength": 30000}', "/maxLength 30000 is outside 0..1000"),
    ('{"type": "string", "maxLength": 100000}', "/maxLength 100000 is outside 0..1000"),
    (
        '{"type": "array", "items": {"type": "integer"}, "minItems": 10000000}',
        "/minItems 10000000 is outside",
    ),
    ('{"type": "array", "items": {"type": "integer"}, "maxItems": 5000}', "/maxItems 5000 is outside"),
    ('{"type": "string", "minLength": 5, "maxLength": 3}', "/minLength 5 is greater than /maxLength 3"),
    ('{"type": "array", "minItems": 4, "maxItems": 2}', "/minItems 4 is greater than /maxItems 2"),
    ('{"type": "string", "maxLength": -1}', "/maxLength -1 is outside 0..1000"),
    ('{"type": "string", "maxLength": 2.5}', "/maxLength 2.5 must be a non-negative integer"),
    ('{"type": "string", "maxLength": true}', "/maxLength True must be a non-negative integer"),
    (
        '{"type": "object", "properties": {"a": {"type": "string", "maxLength": 99999}}}',
        "/properties/a/maxLength 99999",
    ),
    ('{"type": "string", "pattern": "^a{0,50000}$"}', "/pattern repeats {0,50000}"),
    ('{"type": "string", "pattern": "^a{' + "9" * 5000 + '}$"}', "a count above 1000"),
    ('{"a":' * 40 + "1" + "}" * 40, "schema nests 40 levels deep, the limit is 32"),
    (DEEP, "schema nests 30000 levels deep, the limit is 32"),
    ('{"x": ' + DEEP + "}", "schema nests 30001 levels deep"),
]


@pytest.mark.parametrize(("schema", "says"), REFUSED)
def test_a_schema_beyond_the_bounds_is_refused_naming_json_schema(schema: str, says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        json_schema_grammar(schema)
    assert info.value.field == "json_schema"
    assert str(info.value).startswith("json_schema: ")
    assert says in str(info.value)


def test_the_largest_counts_allowed_still_convert_quickly_and_small() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    grammar = json_schema_grammar(
        json.dumps({"type": "array", "items": {"type": "integer"}, "minItems": MAX_REPETITION})
    )
    grammar += json_schema_grammar(json.dumps({"type": "string", "maxLength": MAX_REPETITION}))
    assert len(grammar) < 64 * 1024
    assert time.process_time() - started < 5.0  # CPU seconds, a bound far above the ~0.01 s it takes
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: under 100 MB grown


def test_a_property_named_like_a_count_is_a_schema_not_a_count() -> None:
    schema = {"type": "object", "properties": {"maxLength": {"type": "string"}}, "required": ["maxLength"]}
    assert "root" in json_schema_grammar(json.dumps(schema))


def test_a_grammar_too_deep_or_too_large_for_llama_cpp_is_refused() -> None:
    # The schema bounds keep converted grammars within these; the grammar is checked again in case a converter
    # version expands a construct differently. Brackets inside literals and character classes are not groups.
    deep = "root ::= " + '("a" ' * (MAX_GRAMMAR_DEPTH + 1) + ")?" * (MAX_GRAMMAR_DEPTH + 1)
    with pytest.raises(InvalidRequest) as info:
        check_grammar(deep)
    assert f"nests {MAX_GRAMMAR_DEPTH + 1} groups deep, the limit is {MAX_GRAMMAR_DEPTH}" in str(info.value)
    check_grammar('root ::= "(((((" [(((] ' + "(" * MAX_GRAMMAR_DEPTH + ")" * MAX_GRAMMAR_DEPTH)
    with pytest.raises(InvalidRequest) as info:
        check_grammar('root ::= "' + "a" * MAX_GRAMMAR_BYTES + '"')
    assert f"the limit is {MAX_GRAMMAR_BYTES}" in str(info.value)


def test_nesting_depth_skips_brackets_inside_strings() -> None:
    assert json_nesting_depth('{"a": "[[[[{{{{\\"[[["}') == 1
    assert json_nesting_depth('[[], [[]], {"b": [1]}]') == 3
    assert json_nesting_depth("") == 0
