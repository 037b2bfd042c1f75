"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis).

The schema describes the multipart body and the error shape, so the generated
requests include real uploads. Every response must be a non-5xx whose status and body
match the schema. The stack behind it is the real one (API, workers, Redis).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.stack import Stack

pytestmark = pytest.mark.integration

# 5xx responses are checked below instead of with schemathesis's not_a_server_error:
# the local backend rejects direct-upload requests with a documented 501.
CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 60


def check_operation(operation) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def exercise(case) -> None:
        response = case.call(timeout=30)
        case.validate_response(response, checks=CHECKS)
        if response.status_code >= 400:
            error = response.json()["error"]
            if response.status_code >= 500:
                assert error["code"] == "not_supported", case.as_curl_command()
            assert set(error) == {"code", "message", "request_id"}
            # schemathesis keeps every header as a list of its values.
            assert [error["request_id"]] == response.headers["x-request-id"]

    exercise()


def test_api_conforms_to_schema(local_stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{local_stack.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]

    assert len(operations) >= 9
    for operation in operations:
        check_operation(operation)
