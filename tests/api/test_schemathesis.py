"""Property-based run of every operation in the OpenAPI document (schemathesis) with an admin key over
a seeded database, on SQLite and PostgreSQL: no input may make the API answer a 5xx other than the
documented 503 (signer not configured), and every answer must match the documented schema and media type
(problem+json for errors), valid and invalid inputs alike.

Schemathesis' own pytest integration (``from_fixture``) does not run under pytest 9, so the test drives
each operation's Hypothesis strategy itself.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from oracle.api.app import create_app
from oracle.context import Context
from tests.api.conftest import TEST_LIMITS, Keys, seed

EXAMPLES_PER_OPERATION = 5
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def test_the_document_is_served(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "/v1/attestations" in doc["paths"]
    listed = doc["paths"]["/v1/attestations"]["get"]["responses"]
    assert set(listed["401"]["content"]) == {"application/problem+json"}
    assert "413" in doc["paths"]["/v1/attestations"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_no_input_breaks_the_api(ctx: Context, keys: Keys) -> None:
    seed(ctx)
    app = create_app(ctx, limits=TEST_LIMITS)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    statuses: dict[str, set[int]] = {}

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: Any) -> None:
                response = case.call(headers=keys.header("admin"))
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
                if response.status_code == 503 and case.operation.path == "/readyz":
                    # Readiness answers 503 with its checks while no chain or broker is configured.
                    assert response.json()["ready"] is False
                    return
                if response.status_code == 503:
                    # Documented: the signer is not configured in this test; still a problem+json.
                    assert response.headers["content-type"] == ["application/problem+json"]
                    assert response.json()["reason"] == "signer_not_configured"
                    return
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # An operation without inputs (/healthz) has no invalid request to generate.
                assert mode is GenerationMode.NEGATIVE
    # The run reached the handlers, not only the validation layer.
    assert any(200 in s for s in statuses.values())
    assert any(422 in s for s in statuses.values())
