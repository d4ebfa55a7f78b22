"""JSON Schema -> GBNF grammar for constrained decoding, validated before a request reaches the engine."""

from __future__ import annotations

import json

from edged.errors import InvalidRequest
from edged.schema_limits import check_grammar, check_json_schema


def json_schema_grammar(schema_text: str, field: str = "json_schema") -> str:
    """The GBNF grammar for a JSON Schema; InvalidRequest names what is wrong with the schema.

    The schema's nesting, counts and size are bounded before the converter runs, and the grammar's size and depth
    before llama.cpp parses it (see edged.schema_limits for what each bound prevents)."""
    schema = check_json_schema(schema_text, field)
    # llama-cpp-python's converter is pure Python; it signals unsupported or inconsistent schemas with assorted
    # exceptions (assertions among them), all of which mean "this schema cannot constrain decoding".
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # noqa: PLC0415 - heavy import, needed only here

    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(field, f"unsupported or invalid JSON Schema: {exc}") from None
    check_grammar(grammar, field)
    return grammar
