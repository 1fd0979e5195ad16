"""A client's Idempotency-Key, as Stripe honours it: the same request again gets the first answer (and
nothing happens twice); the key with another body is 409."""

from __future__ import annotations

import pytest

from admin.extensions import db
from admin.models import ApiIdempotencyKey, Contact, Product
from tests.api.conftest import bearer

pytestmark = pytest.mark.localstripe


def test_same_key_and_body_replays_the_first_answer(client, writer, processor):
    headers = {**writer, "Idempotency-Key": "order-1001"}
    first = client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers)
    again = client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert db.session.query(Product).count() == 1


def test_same_key_other_body_is_409_and_does_nothing(client, writer, processor):
    headers = {**writer, "Idempotency-Key": "order-1002"}
    assert client.post("/api/v1/customers", json={"name": "Ada"}, headers=headers).status_code == 201
    resp = client.post("/api/v1/customers", json={"name": "Grace"}, headers=headers)
    assert resp.status_code == 409
    assert resp.json["error"] == {
        "code": "conflict",
        "field": "Idempotency-Key",
        "message": resp.json["error"]["message"],
    }
    assert db.session.query(Contact).count() == 1
    other_path = client.post("/api/v1/products", json={"name": "Ada"}, headers=headers)
    assert other_path.status_code == 409


def test_keys_belong_to_their_token(client, make_token, processor):
    one, two = bearer(make_token("write")), bearer(make_token("write"))
    for headers in (one, two):
        resp = client.post(
            "/api/v1/products", json={"name": "Cap"}, headers={**headers, "Idempotency-Key": "k"}
        )
        assert resp.status_code == 201
        assert "Idempotent-Replayed" not in resp.headers
    assert db.session.query(Product).count() == 2


def test_a_refused_request_keeps_no_answer(client, writer, processor):
    headers = {**writer, "Idempotency-Key": "order-1003"}
    assert client.post("/api/v1/products", json={"name": ""}, headers=headers).status_code == 400
    assert db.session.query(ApiIdempotencyKey).count() == 0  # validation comes first, as at Stripe
    assert client.post("/api/v1/products", json={"name": "Fixed"}, headers=headers).status_code == 201


def test_a_service_refusal_is_kept_and_replayed(client, writer, processor):
    headers = {**writer, "Idempotency-Key": "order-1004"}
    first = client.post("/api/v1/products/prod_missing", json={"name": "x"}, headers=headers)
    again = client.post("/api/v1/products/prod_missing", json={"name": "x"}, headers=headers)
    assert first.status_code == again.status_code == 404
    assert again.headers["Idempotent-Replayed"] == "true"
