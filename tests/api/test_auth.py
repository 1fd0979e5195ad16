"""Every /api/v1 route: no token 401, the wrong scope 403, the right one through; tokens that stop working;
writes audited with the token's name; no CSRF token needed (there is no cookie)."""

from __future__ import annotations

import re

import pytest

from admin.extensions import db
from admin.models import ApiToken, AuditLog
from admin.timeutil import utcnow
from tests.api.conftest import bearer

EXAMPLE_IDS = {"customer_id": "cus_notthere", "product_id": "prod_notthere"}


def api_routes(app) -> list[tuple[str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: EXAMPLE_IDS[m.group(1)], rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return sorted(out)


def call(client, method: str, path: str, headers: dict | None = None):
    kwargs = {"json": {}} if method == "POST" else {}
    return client.open(path, method=method, headers=headers or {}, **kwargs)


def test_the_api_has_the_routes_the_issue_asks_for(app):
    routes = set(api_routes(app))
    for path in (
        "contributions",
        "payments",
        "subscriptions",
        "intents",
        "events",
        "jobs",
        "audit",
        "products",
        "triggers/new-customers",
        "triggers/new-orders",
        "triggers/new-charges",
        "triggers/new-invoice-items",
    ):
        assert ("GET", f"/api/v1/{path}") in routes
    assert {
        ("POST", "/api/v1/customers"),
        ("GET", "/api/v1/customers/cus_notthere"),
        ("POST", "/api/v1/customers/cus_notthere"),
        ("POST", "/api/v1/products"),
        ("GET", "/api/v1/products/prod_notthere"),
        ("POST", "/api/v1/products/prod_notthere"),
    } <= routes


def test_no_token_or_an_unknown_one_is_401_everywhere(app, client):
    for method, path in api_routes(app):
        for headers in ({}, bearer("pdk_not-a-real-token"), {"Authorization": "Basic dXNlcjpwYXNz"}):
            resp = call(client, method, path, headers)
            assert resp.status_code == 401, (method, path, headers)
            assert resp.json["error"]["code"] == "unauthorized"
            assert set(resp.json["error"]) == {"code", "message", "field"}
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_wrong_scope_is_403_everywhere(app, client, make_token):
    read_only, write_only = bearer(make_token("read")), bearer(make_token("write"))
    for method, path in api_routes(app):
        resp = call(client, method, path, write_only if method == "GET" else read_only)
        assert resp.status_code == 403, (method, path)
        assert resp.json["error"]["code"] == "forbidden"
        assert ("read" if method == "GET" else "write") in resp.json["error"]["message"]


def test_the_right_scope_gets_through_everywhere(app, client, make_token, processor):
    read_only, write_only = bearer(make_token("read")), bearer(make_token("write"))
    for method, path in api_routes(app):
        resp = call(client, method, path, read_only if method == "GET" else write_only)
        assert resp.status_code not in (401, 403, 405, 500), (method, path, resp.get_data(as_text=True))
        assert resp.is_json
        if resp.status_code >= 400:  # a customer or product that is not there: the one error shape
            assert set(resp.json["error"]) == {"code", "message", "field"}


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_revoked_and_expired_tokens_stop_working(app, client, make_token, state):
    secret = make_token("read")
    assert client.get("/api/v1/jobs", headers=bearer(secret)).status_code == 200
    db.session.rollback()  # the test shares the request's session: start a fresh transaction
    token = db.session.query(ApiToken).one()
    if state == "revoked":
        token.revoked_at = utcnow()
    else:
        token.expires_at = utcnow()
    db.session.commit()
    resp = client.get("/api/v1/jobs", headers=bearer(secret))
    assert resp.status_code == 401
    assert state in resp.json["error"]["message"]


def test_last_used_is_noted(app, client, make_token):
    secret = make_token("read")
    assert db.session.query(ApiToken).one().last_used_at is None
    client.get("/api/v1/jobs", headers=bearer(secret))
    db.session.rollback()
    assert db.session.query(ApiToken).one().last_used_at is not None


def test_writes_are_audited_with_the_tokens_name_and_need_no_csrf_token(app, client, make_token, processor):
    assert app.config["WTF_CSRF_ENABLED"] is not False
    secret = make_token("write", name="website shop")
    resp = client.post("/api/v1/products", json={"name": "Poster"}, headers=bearer(secret))
    assert resp.status_code == 201, resp.json
    entry = db.session.query(AuditLog).filter_by(action="product.create").one()
    assert entry.actor == "api:website shop"
    assert entry.object_id == resp.json["id"]


def test_a_body_that_is_not_json_is_refused_before_any_work(app, client, writer, processor):
    resp = client.post(
        "/api/v1/products",
        data="name=Poster",
        headers=writer,
        content_type="application/x-www-form-urlencoded",
    )
    assert resp.status_code == 415
    resp = client.post("/api/v1/products", data="[1, 2]", headers=writer, content_type="application/json")
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "invalid_request"
    assert db.session.query(AuditLog).filter_by(action="product.create").count() == 0


def test_unknown_api_paths_answer_in_the_error_shape(client, reader):
    resp = client.get("/api/v1/nothing-here", headers=reader)
    assert resp.status_code == 404
    assert resp.json == {
        "error": {"code": "not_found", "message": resp.json["error"]["message"], "field": None}
    }
