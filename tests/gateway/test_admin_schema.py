"""Schemathesis against the admin API's own OpenAPI document, in-process: requests valid and
invalid by the document, for every operation, with the admin token. No response may be a
5xx; each must have a documented status, content type and schema (errors OpenAI-shaped),
and invalid data must be refused. The run is derandomized, so a failure reproduces."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.schemas import APIOperation
from starlette.testclient import TestClient

from tests.gateway.conftest import ADMIN

Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES = 70  # per operation and mode; an operation without inputs has one case
MIN_CALLS = 1000  # so that the check cannot quietly shrink to nothing
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def request_of(case: schemathesis.Case[Operation], base_url: str) -> dict[str, Any]:
    """The case as keyword arguments of `TestClient.request`, with the admin token."""
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=ADMIN)
    request = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "params": kwargs.get("params"),
        "headers": kwargs["headers"],
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        request["content"] = kwargs["data"]
    return request


def has_inputs(operation: Operation) -> bool:
    """Parameters or a body to vary (the token is fixed); else its one case is valid."""
    names = {p.name.lower() for p in operation.iter_parameters()} - {"authorization"}
    return bool(names) or bool(list(operation.body))


def fuzz(
    client: TestClient, operation: Operation, mode: GenerationMode, calls: Counter[str]
) -> None:
    @settings(
        max_examples=EXAMPLES if has_inputs(operation) else 1,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],  # depends on the machine, not the code
    )
    @given(case=operation.as_strategy(generation_mode=mode, headers=ADMIN))
    def run(case: schemathesis.Case[Operation]) -> None:
        response = client.request(**request_of(case, str(client.base_url)))
        calls[f"{operation.label} {mode.value}"] += 1
        case.validate_response(response, checks=CHECKS)

    run()


def test_no_admin_request_is_a_server_error(seeded_admin_client: TestClient) -> None:
    document = seeded_admin_client.get("/admin/openapi.json", headers=ADMIN).json()
    schema = schemathesis.openapi.from_dict(document)
    calls: Counter[str] = Counter()
    for path, methods in document["paths"].items():
        for method in methods:
            operation = schema[path][method.upper()]
            fuzz(seeded_admin_client, operation, GenerationMode.POSITIVE, calls)
            if has_inputs(operation):
                fuzz(seeded_admin_client, operation, GenerationMode.NEGATIVE, calls)
    assert sum(calls.values()) >= MIN_CALLS, calls
