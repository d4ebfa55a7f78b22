"""The checks of an EscalationRequest a worker makes before it takes it: each failure is an InvalidRequest naming
the field, its value (bounded) and the limit; the messages' text is never quoted."""

from __future__ import annotations

import re

from google.protobuf.message import DecodeError

from edged.domain import ROLES
from edged.errors import InvalidRequest
from edged.schema_limits import check_json_schema
from edged.v1.escalation_pb2 import EscalationRequest

MAX_MESSAGES = 256
MAX_STOPS = 16
MAX_STOP_CHARS = 256
MAX_MODEL_CHARS = 256
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:\-]{0,128}$")  # edged's ids (1-128 of these), or empty


def decode_request(payload: bytes) -> EscalationRequest:
    try:
        return EscalationRequest.FromString(payload)
    except DecodeError:
        raise InvalidRequest("payload", f"not an EscalationRequest ({len(payload)} bytes)") from None


def check_request_id(value: str) -> None:
    """Before the id is logged or echoed: bounded, and nothing that could forge a log line."""
    if not _REQUEST_ID.match(value):
        raise InvalidRequest("request_id", f"{value[:40]!r} must be 0-128 characters of [A-Za-z0-9_.:-]")


def check_fields(request: EscalationRequest, device: str, max_tokens_cap: int) -> None:
    if request.device_id and request.device_id != device:
        raise InvalidRequest(
            "device_id", f"{request.device_id[:80]!r} does not match the topic's device {device!r}"
        )
    _check_messages(request)
    if not 1 <= request.max_tokens <= max_tokens_cap:
        raise InvalidRequest(
            "max_tokens", f"{request.max_tokens} is outside 1..{max_tokens_cap} (max_tokens_cap)"
        )
    if not 0 <= request.temperature <= 2:
        raise InvalidRequest("temperature", f"{request.temperature} is outside [0, 2]")
    if not 0 <= request.top_p <= 1:
        raise InvalidRequest("top_p", f"{request.top_p} is outside (0, 1] (0 means unset)")
    _check_stops(request)
    if len(request.model) > MAX_MODEL_CHARS:
        raise InvalidRequest("model", f"{len(request.model)} characters, at most {MAX_MODEL_CHARS}")
    if request.json_schema:
        _check_json_schema(request.json_schema)


def _check_messages(request: EscalationRequest) -> None:
    if not 1 <= len(request.messages) <= MAX_MESSAGES:
        raise InvalidRequest("messages", f"{len(request.messages)} messages, allowed 1..{MAX_MESSAGES}")
    for index, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequest(f"messages[{index}].role", f"{message.role[:40]!r} is not one of {ROLES}")


def _check_stops(request: EscalationRequest) -> None:
    if len(request.stop) > MAX_STOPS:
        raise InvalidRequest("stop", f"{len(request.stop)} stop strings, at most {MAX_STOPS}")
    for index, stop in enumerate(request.stop):
        if not 1 <= len(stop) <= MAX_STOP_CHARS:
            raise InvalidRequest(f"stop[{index}]", f"length {len(stop)} is outside 1..{MAX_STOP_CHARS}")


def _check_json_schema(text: str) -> None:
    """The daemon's bounds (nesting, counts, size; see edged.schema_limits), so every backend gets a JSON object a
    grammar converter can take (the error names the position, never the text)."""
    check_json_schema(text)
