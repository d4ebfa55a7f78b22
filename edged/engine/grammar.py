"""JSON Schema -> GBNF grammar for constrained decoding, validated before a request reaches the engine."""

from __future__ import annotations

import json

from edged.errors import InvalidRequest

MAX_SCHEMA_BYTES = 64 * 1024


def json_schema_grammar(schema_text: str, field: str = "json_schema") -> str:
    """The GBNF grammar for a JSON Schema; InvalidRequest names what is wrong with the schema."""
    if len(schema_text.encode()) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(
            field, f"schema is {len(schema_text.encode())} bytes, the limit is {MAX_SCHEMA_BYTES}"
        )
    try:
        schema = json.loads(schema_text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(field, f"not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise InvalidRequest(field, f"must be a JSON object, got {type(schema).__name__}")
    # llama-cpp-python's converter is pure Python; it signals unsupported or inconsistent schemas with assorted
    # exceptions (assertions among them), all of which mean "this schema cannot constrain decoding".
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # noqa: PLC0415 - heavy import, needed only here

    try:
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
    except (AssertionError, AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(field, f"unsupported or invalid JSON Schema: {exc}") from None
    return grammar
