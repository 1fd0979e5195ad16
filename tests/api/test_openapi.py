"""The OpenAPI 3.1 document is generated from the schemas that validate, covers every route, and the API
keeps to it (schemathesis: every operation, no 5xx, answers match their schemas); /api/docs shows it
from the server, with nothing loaded from elsewhere."""

from __future__ import annotations

import re

import pytest

from tests.api.test_auth import api_routes


def test_the_document_is_openapi_3_1_and_covers_every_route(app, client):
    resp = client.get("/api/v1/openapi.json")  # no token needed
    assert resp.status_code == 200
    doc = resp.json
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for method, path in api_routes(app):
        templated = re.sub(
            r"/(cus|prod)_notthere",
            lambda m: "/{customer_id}" if m.group(1) == "cus" else "/{product_id}",
            path,
        )
        assert (method, templated) in documented
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    # The list filters are the pages' filter fields, documented with their labels.
    params = {p["name"]: p for p in doc["paths"]["/api/v1/contributions"]["get"]["parameters"]}
    assert {
        "status",
        "ppid",
        "since",
        "until",
        "min_amount",
        "max_amount",
        "currency",
        "q",
        "after",
        "size",
    } <= set(params)
    assert "Received from" in params["since"]["description"]
    # Errors are one shape everywhere.
    err = doc["components"]["schemas"]["ErrorBody"]
    assert set(err["properties"]) == {"code", "message", "field"}


def test_the_document_changes_with_the_schemas(app, client):
    """Never written by hand: a field of a request model is in the document."""
    from admin.api.schemas import CreateProductBody

    doc = client.get("/api/v1/openapi.json").json
    body = doc["components"]["schemas"]["CreateProductBody"]
    assert set(body["properties"]) == set(CreateProductBody.model_fields)
    assert body["required"] == ["name"]


def test_the_docs_page_renders_the_document_without_scripts_from_elsewhere(client):
    resp = client.get("/api/docs")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "/api/v1/triggers/new-charges" in html and "CreateProductBody" in html
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']https?://""", html)
    assert "cdn" not in html.lower()


@pytest.mark.localstripe
@pytest.mark.timeout(600)
def test_schemathesis_every_operation_no_5xx_and_answers_match(app, make_token, processor):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    app.config["API_RATE_LIMIT"] = "100000 per 60 seconds"
    headers = {"Authorization": f"Bearer {make_token('read', 'write')}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    checks = [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
        content_type_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=checks)

        run()
