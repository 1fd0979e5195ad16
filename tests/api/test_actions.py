"""Customers and products through /api/v1, against a real localstripe: the same services as the pages,
recorded locally, inputs validated before anything reaches Stripe."""

from __future__ import annotations

import pytest

from admin.extensions import db
from admin.models import AuditLog, Contact, Product, StripeCustomer

pytestmark = pytest.mark.localstripe


def test_create_customer_makes_a_contact_and_a_linked_customer_with_paydesks_metadata(
    client, writer, reader, processor
):
    resp = client.post(
        "/api/v1/customers", json={"name": "Ada Lovelace", "email": "ada@example.org"}, headers=writer
    )
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["id"].startswith("cus_") and body["email"] == "ada@example.org"
    contact = db.session.get(Contact, body["contact_id"])
    assert contact.display_name == "Ada Lovelace" and contact.source == "api"
    assert body["metadata"]["contact_id"] == str(contact.id)  # the metadata rules of every customer
    assert (
        db.session.query(StripeCustomer).filter_by(customer_id=body["id"], contact_id=contact.id).count() == 1
    )

    got = client.get(f"/api/v1/customers/{body['id']}", headers=reader)
    assert got.status_code == 200
    assert got.json["contact"] == {
        "id": contact.id,
        "display_name": "Ada Lovelace",
        "email": "ada@example.org",
    }


def test_create_customer_for_an_existing_contact(client, writer, processor):
    contact = Contact(display_name="Grace Hopper", email="grace@example.org")
    db.session.add(contact)
    db.session.commit()
    resp = client.post(
        "/api/v1/customers", json={"contact_id": contact.id, "description": "From the CRM"}, headers=writer
    )
    assert resp.status_code == 201, resp.json
    assert resp.json["contact_id"] == contact.id
    assert resp.json["description"] == "From the CRM"
    assert (
        client.post("/api/v1/customers", json={"contact_id": 999999}, headers=writer).json["error"]["field"]
        == "contact_id"
    )


def test_update_customer_changes_stripe_and_the_linked_contact_and_empty_unsets(
    client, writer, reader, processor
):
    made = client.post(
        "/api/v1/customers", json={"name": "Ada", "email": "ada@example.org"}, headers=writer
    ).json
    resp = client.post(
        f"/api/v1/customers/{made['id']}",
        json={"email": "ada@lovelace.example", "description": "VIP"},
        headers=writer,
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["email"] == "ada@lovelace.example" and resp.json["description"] == "VIP"
    db.session.rollback()
    assert db.session.get(Contact, made["contact_id"]).email == "ada@lovelace.example"
    resp = client.post(f"/api/v1/customers/{made['id']}", json={"description": ""}, headers=writer)
    assert resp.json["description"] in (None, "")
    actions = [a for (a,) in db.session.query(AuditLog.action).filter(AuditLog.actor.like("api:%"))]
    assert "customer.update" in actions and "contact.update" in actions


def test_update_customer_changes_nothing_here_when_stripe_refuses_or_a_value_is_wrong(
    client, writer, processor, monkeypatch
):
    from admin.stripe_gateway import Gateway, GatewayError

    made = client.post(
        "/api/v1/customers", json={"name": "Ada", "email": "ada@example.org"}, headers=writer
    ).json
    sent = []

    def refused(self, resource, obj_id, params):
        sent.append(params)
        raise GatewayError(
            "This customer cannot be updated.",
            kind="invalid_request_error",
            http_status=400,
            request_id="req_refused",
        )

    monkeypatch.setattr(Gateway, "update", refused)
    resp = client.post(
        f"/api/v1/customers/{made['id']}",
        json={"name": "Grace", "email": "grace@example.org"},
        headers=writer,
    )
    assert resp.status_code == 502 and resp.json["error"]["code"] == "stripe_error"
    assert (
        sent and sent[0]["name"] == "Grace" and sent[0]["metadata"]["contact_id"] == str(made["contact_id"])
    )
    db.session.rollback()
    contact = db.session.get(Contact, made["contact_id"])
    assert (contact.display_name, contact.email) == ("Ada", "ada@example.org")  # Stripe said no: nothing here
    assert db.session.query(AuditLog).filter(AuditLog.action == "contact.update").count() == 0
    sent.clear()
    bad = client.post(f"/api/v1/customers/{made['id']}", json={"email": "not an address"}, headers=writer)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "email"
    assert sent == []  # checked before Stripe is asked


def test_unknown_customer_is_404_in_the_error_shape(client, reader, processor):
    resp = client.get("/api/v1/customers/cus_doesnotexist", headers=reader)
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "not_found"
    assert "cus_doesnotexist" in resp.json["error"]["message"]


def test_products_create_update_get_list(client, writer, reader, processor):
    resp = client.post(
        "/api/v1/products",
        headers=writer,
        json={
            "name": "Tote bag",
            "description": "Organic cotton",
            "images": ["https://example.org/tote.png"],
            "shippable": True,
            "url": "https://example.org/shop/tote",
        },
    )
    assert resp.status_code == 201, resp.json
    made = resp.json
    assert made["id"].startswith("prod_") and made["images"] == ["https://example.org/tote.png"]
    row = db.session.query(Product).one()
    assert (row.product_id, row.name, row.shippable, row.url) == (
        made["id"],
        "Tote bag",
        True,
        "https://example.org/shop/tote",
    )

    resp = client.post(
        f"/api/v1/products/{made['id']}", json={"active": False, "name": "Tote bag (old)"}, headers=writer
    )
    assert resp.status_code == 200, resp.json
    assert resp.json["active"] is False and resp.json["name"] == "Tote bag (old)"
    assert resp.json["description"] == "Organic cotton"  # only the fields sent change

    got = client.get(f"/api/v1/products/{made['id']}", headers=reader).json
    assert got["active"] is False and got["paydesk_id"] == row.id
    listed = client.get("/api/v1/products?active=no", headers=reader).json
    assert [p["id"] for p in listed["data"]] == [made["id"]]
    assert client.get("/api/v1/products?active=yes", headers=reader).json["data"] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "name"),
        ({"name": "Mug", "images": ["not a url"]}, "images"),
        ({"name": "Mug", "images": [f"https://example.org/{i}.png" for i in range(9)]}, "images"),
        ({"name": "Mug", "colour": "blue"}, "colour"),
        ({"name": "Mug", "active": "perhaps"}, "active"),
        ({"name": ""}, "name"),
    ],
)
def test_product_input_is_validated_before_any_work(client, writer, processor, body, field):
    resp = client.post("/api/v1/products", json=body, headers=writer)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["code"] == "invalid_request"
    assert resp.json["error"]["field"] == field
    assert db.session.query(Product).count() == 0
    assert db.session.query(AuditLog).filter_by(action="product.create").count() == 0


def test_unknown_product_is_404(client, reader, writer, processor):
    assert client.get("/api/v1/products/prod_nothere", headers=reader).status_code == 404
    assert client.post("/api/v1/products/prod_nothere", json={"name": "x"}, headers=writer).status_code == 404
    assert client.get("/api/v1/products/bad%20id", headers=reader).status_code == 404


def test_caption_is_kept_by_paydesk_not_sent_to_stripe(client, writer, reader, processor):
    """Stripe refuses ``caption`` (an old field the connector still lists): paydesk keeps it itself."""
    made = client.post("/api/v1/products", json={"name": "Badge", "caption": "Enamel, 2 cm"}, headers=writer)
    assert made.status_code == 201, made.json
    assert made.json["caption"] == "Enamel, 2 cm"
    assert client.get(f"/api/v1/products/{made.json['id']}", headers=reader).json["caption"] == "Enamel, 2 cm"
    changed = client.post(f"/api/v1/products/{made.json['id']}", json={"caption": "Enamel"}, headers=writer)
    assert changed.status_code == 200, changed.json
    assert changed.json["caption"] == "Enamel"
