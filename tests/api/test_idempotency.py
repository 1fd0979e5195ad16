"""A client's Idempotency-Key, as Stripe honours it: the same request again gets the first answer (and
nothing happens twice); the key with another body is 409."""

from __future__ import annotations

import pytest

from admin.extensions import db
from admin.models import ApiIdempotencyKey, Contact, Product, StripeCustomer
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


def test_the_query_string_is_part_of_the_request(client, writer, processor):
    """``ppid`` is a query parameter: the same key and body for another processor is another request (409),
    never the first processor's answer replayed."""
    headers = {**writer, "Idempotency-Key": "order-1005"}
    first = client.post(f"/api/v1/products?ppid={processor.id}", json={"name": "Hat"}, headers=headers)
    assert first.status_code == 201
    other = client.post(f"/api/v1/products?ppid={processor.id + 1}", json={"name": "Hat"}, headers=headers)
    assert other.status_code == 409 and "Idempotent-Replayed" not in other.headers
    assert db.session.query(Product).count() == 1


def test_a_transient_stripe_failure_is_503_and_keeps_no_answer(client, writer, processor):
    localstripe = processor.api_base
    processor.api_base = "http://127.0.0.1:9"  # Stripe unreachable, after the gateway's retries
    db.session.commit()
    headers = {**writer, "Idempotency-Key": "order-1006"}
    down = client.post("/api/v1/products", json={"name": "Gloves"}, headers=headers)
    assert down.status_code == 503 and down.json["error"]["code"] == "unavailable"
    assert down.headers["Retry-After"]
    assert db.session.query(ApiIdempotencyKey).count() == 0  # the key may be tried again
    processor.api_base = localstripe
    db.session.commit()
    from admin.services.settings.processors import forget_processor_ref

    forget_processor_ref(processor.id)
    up = client.post("/api/v1/products", json={"name": "Gloves"}, headers=headers)
    assert up.status_code == 201 and "Idempotent-Replayed" not in up.headers
    assert (
        client.post("/api/v1/products", json={"name": "Gloves"}, headers=headers).headers[
            "Idempotent-Replayed"
        ]
        == "true"
    )


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ({"transient": True}, 503, "unavailable"),
        ({"card": True}, 402, "card_error"),
        ({}, 502, "stripe_error"),
    ],
)
def test_stripe_failures_answer_by_kind_not_by_message(app, failure, status, code):
    from admin.api.errors import api_error_response
    from admin.errors import ServiceError, StripeFailure

    with app.test_request_context():
        resp = api_error_response(StripeFailure("Your card was declined.", **failure))
        assert (resp.status_code, resp.json["error"]["code"]) == (status, code)
        plain = api_error_response(ServiceError("Stripe-like wording from a form check"))
        assert (plain.status_code, plain.json["error"]["code"]) == (400, "invalid_request")


def test_a_definite_stripe_refusal_is_kept_and_replayed(app, client, writer, processor, monkeypatch):
    from admin.errors import StripeFailure
    from admin.services.catalog import products

    calls = []

    def refused(*args, **kwargs):
        calls.append(1)
        raise StripeFailure("Stripe: No such tax code", request_id="req_x")

    monkeypatch.setattr(products, "create_product", refused)
    headers = {**writer, "Idempotency-Key": "order-1007"}
    first = client.post("/api/v1/products", json={"name": "Belt"}, headers=headers)
    again = client.post("/api/v1/products", json={"name": "Belt"}, headers=headers)
    assert first.status_code == again.status_code == 502 and again.headers["Idempotent-Replayed"] == "true"
    assert len(calls) == 1


def test_a_claim_whose_request_died_frees_the_key_after_twice_the_gunicorn_timeout(client, writer, processor):
    from datetime import timedelta

    from sqlalchemy import update

    from admin.timeutil import utcnow

    table = ApiIdempotencyKey.__table__

    def claim_left(age: float | None = None) -> None:  # what a request killed with its worker leaves
        values = {"status_code": None, "response_body": None}
        if age is not None:
            values["created_at"] = utcnow() - timedelta(seconds=age)
        with db.engine.begin() as conn:
            conn.execute(update(table).values(**values))

    stale = float(client.application.config["API_IDEMPOTENCY_STALE_SECONDS"])
    assert stale == 60  # twice gunicorn.conf.py's timeout
    headers = {**writer, "Idempotency-Key": "order-1008"}
    assert client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers).status_code == 201
    claim_left()
    assert (
        client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers).status_code == 409
    )  # running
    claim_left(stale - 5)
    assert client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers).status_code == 409
    claim_left(stale + 5)
    other = client.post("/api/v1/products", json={"name": "Other"}, headers=headers)
    assert other.status_code == 409  # another request still may not take the key
    retried = client.post("/api/v1/products", json={"name": "Scarf"}, headers=headers)
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    db.session.commit()
    assert db.session.query(ApiIdempotencyKey).one().status_code == 201


def test_customer_create_reaches_stripe_with_a_key_from_the_token_and_the_clients_key(
    client, make_token, processor, monkeypatch
):
    """A client retrying after Stripe failed sends its key again: Stripe gets the same idempotency key (so it
    makes the customer once), another token's same key another one, and the failed try left no contact."""
    from admin.stripe_gateway import Gateway

    keys: list[tuple[str, str | None]] = []
    real_create = Gateway.create

    def create(self, resource, params, idempotency_key=None, **kwargs):
        keys.append((resource, idempotency_key))
        return real_create(self, resource, params, idempotency_key=idempotency_key, **kwargs)

    monkeypatch.setattr(Gateway, "create", create)
    one, two = bearer(make_token("write")), bearer(make_token("write"))
    localstripe = processor.api_base
    processor.api_base = "http://127.0.0.1:9"  # Stripe unreachable
    db.session.commit()
    from admin.services.settings.processors import forget_processor_ref

    body = {"name": "Ada", "email": "ada@example.org"}
    down = client.post("/api/v1/customers", json=body, headers={**one, "Idempotency-Key": "signup-7"})
    assert down.status_code == 503
    db.session.commit()
    assert db.session.query(Contact).count() == 0  # no orphan contact
    assert db.session.query(ApiIdempotencyKey).count() == 0
    processor.api_base = localstripe
    db.session.commit()
    forget_processor_ref(processor.id)
    up = client.post("/api/v1/customers", json=body, headers={**one, "Idempotency-Key": "signup-7"})
    assert up.status_code == 201
    other = client.post("/api/v1/customers", json=body, headers={**two, "Idempotency-Key": "signup-7"})
    assert other.status_code == 201
    first_key, retry_key, other_key = [k for resource, k in keys if resource == "customers"]
    assert first_key == retry_key and first_key.startswith("paydesk-api-customer-") and other_key != first_key
    assert "signup-7" not in first_key  # the client's key is hashed, whatever it holds
    db.session.commit()
    assert db.session.query(Contact).count() == 2 and db.session.query(StripeCustomer).count() == 2
    assert up.json["metadata"]["contact_id"] == str(up.json["contact_id"])  # the contact's id reaches Stripe


def test_customer_create_without_a_client_key_still_leaves_no_contact_when_stripe_fails(
    client, writer, processor
):
    processor.api_base = "http://127.0.0.1:9"
    db.session.commit()
    resp = client.post("/api/v1/customers", json={"name": "Grace"}, headers=writer)
    assert resp.status_code == 503
    db.session.commit()
    assert db.session.query(Contact).count() == 0


def test_product_create_reaches_stripe_with_a_bounded_key_from_the_token_and_the_clients_key(
    client, make_token, processor, monkeypatch
):
    """As for customers: the client's key (up to 255 printable characters) is hashed into Stripe's key, so
    Stripe's key stays within Stripe's 255 characters and holds nothing the client typed; another token's
    same key is another Stripe key."""
    from admin.stripe_gateway import Gateway

    keys: list[str | None] = []
    real_create = Gateway.create

    def create(self, resource, params, idempotency_key=None, **kwargs):
        if resource == "products":
            keys.append(idempotency_key)
        return real_create(self, resource, params, idempotency_key=idempotency_key, **kwargs)

    monkeypatch.setattr(Gateway, "create", create)
    long_key = "order " + "x" * 249
    for secret in (make_token("write"), make_token("write")):
        resp = client.post(
            "/api/v1/products", json={"name": "Cap"}, headers={**bearer(secret), "Idempotency-Key": long_key}
        )
        assert resp.status_code == 201, resp.json
    first, other = keys
    assert first and len(first) <= 255 and "order " not in first and first.startswith("paydesk-")
    assert other != first
