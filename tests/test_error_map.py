"""The one error map: a status the daemon sends comes back, through the client's error, as the same status."""

from __future__ import annotations

import grpc
import pytest

from edged import errors
from edged.api.error_map import error_from_status, http_status, status_code
from edged.cli.client import describe_error

SENT = [
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INTERNAL,
]


@pytest.mark.parametrize("code", SENT, ids=lambda code: code.name)
def test_the_clients_error_for_a_status_maps_back_to_that_status(code: grpc.StatusCode) -> None:
    """`edged ask` during model load printed "INTERNAL: the local model is still loading": the client's
    Unavailable (the base NotReady's status decodes to) was missing from the map, which named only subclasses."""
    assert status_code(error_from_status(code, "field: detail")) == code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotReady("the local model is still loading; retry shortly"), grpc.StatusCode.UNAVAILABLE),
        (errors.ShuttingDown("draining"), grpc.StatusCode.UNAVAILABLE),
        (errors.CloudUnavailable("no worker"), grpc.StatusCode.UNAVAILABLE),
        (errors.Overloaded("slots and queue full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.BudgetExhausted("spent"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.CloudRefused("max_tokens", "over the worker's cap"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.EngineError("llama_decode returned -1"), grpc.StatusCode.INTERNAL),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.name,
)
def test_each_domain_error_has_its_documented_status(error: errors.EdgedError, code: grpc.StatusCode) -> None:
    assert status_code(error) == code


def test_a_refusal_during_model_load_reads_unavailable_on_the_command_line() -> None:
    received = error_from_status(
        grpc.StatusCode.UNAVAILABLE, "the local model is still loading; retry shortly"
    )
    assert describe_error(received) == "UNAVAILABLE: the local model is still loading; retry shortly"
    assert http_status(received) == (503, "unavailable")
