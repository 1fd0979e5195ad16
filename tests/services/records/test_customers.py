"""Stripe customers against a real localstripe: what paydesk writes on a customer is exactly the
FAQ's list; it is pushed after a payment, when a contact's name or email changes, and on demand;
creating, unlinking and reading the contact id back."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from admin.config import VERSION
from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contact, OutboxTask, StripeCustomer
from admin.services.core import jobs
from admin.services.records.contacts import update_contact
from admin.services.records.customers import (
    create_customer,
    push_customer_metadata,
    remove_link,
    update_contact_id_by_id,
)
from admin.services.settings.processors import gateway
from admin.worker import queues

pytestmark = pytest.mark.localstripe

# The seeds' FAQ: "Contact Name, Email address; Description (CiviCRM: + site name); Contact ID; Link to
# CiviCRM contact record; CiviCRM version info" -- name and email as the customer's own fields.
FAQ_METADATA = {"contact_id", "contact_url", "site_name", "paydesk_version"}


def _contact(name="Mary Somerville", email="mary@example.org") -> Contact:
    c = Contact(display_name=name, email=email)
    db.session.add(c)
    db.session.commit()
    return c


def test_metadata_pushed_is_exactly_the_faq_list(app, client, auth, empty_processor):
    app.config.update(SITE_NAME="Friends of the Library", BASE_URL="https://paydesk.example.org/")
    contact = _contact()
    link = create_customer(empty_processor, contact)
    cus = gateway(empty_processor).retrieve("customers", link.customer_id)
    assert (cus["name"], cus["email"]) == ("Mary Somerville", "mary@example.org")
    assert cus["description"] == "paydesk: Friends of the Library"  # the FAQ
    assert set(cus["metadata"]) == FAQ_METADATA
    assert cus["metadata"]["contact_id"] == str(contact.id)
    assert cus["metadata"]["site_name"] == "Friends of the Library"
    assert cus["metadata"]["paydesk_version"] == VERSION
    url = urlsplit(cus["metadata"]["contact_url"])
    assert (url.scheme, url.netloc) == ("https", "paydesk.example.org")
    auth.login("viewer@example.org", "viewer")
    page = client.get(url.path)  # the link opens the contact's page
    assert page.status_code == 200 and "Mary Somerville" in page.get_data(as_text=True)
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "customer.create"))
    assert entry.object_id == str(contact.id) and entry.parameters == {"customer": link.customer_id}


def test_name_or_email_changed_in_paydesk_is_pushed_to_stripe(empty_processor):
    contact = _contact()
    link = create_customer(empty_processor, contact)
    assert update_contact(contact, name="Mary Fairfax Somerville", email="mary.s@example.org") == [
        "name",
        "email",
    ]
    tasks = list(db.session.scalars(select(OutboxTask).where(OutboxTask.kind == "customer_metadata")))
    assert [t.payload["customer_id"] for t in tasks] == [link.customer_id]
    assert (
        update_contact(contact, name="Mary Fairfax Somerville", email="mary.s@example.org") == []
    )  # no change
    assert db.session.scalar(select(func.count()).select_from(OutboxTask)) == 1
    queues.run_outbox("test")
    cus = gateway(empty_processor).retrieve("customers", link.customer_id)
    assert (cus["name"], cus["email"], cus["description"]) == (
        "Mary Fairfax Somerville",
        "mary.s@example.org",
        "paydesk: paydesk",
    )
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "contact.update"))
    assert entry.parameters["email"] == ["mary@example.org", "mary.s@example.org"]
    with pytest.raises(ServiceError, match="not an email"):
        update_contact(contact, name="Mary", email="not-an-address")


def test_push_on_demand_one_and_all(empty_processor):
    gw = gateway(empty_processor)
    a, b = _contact("A One", "a@example.org"), _contact("B Two", "b@example.org")
    links = [create_customer(empty_processor, c) for c in (a, b)]
    for link in links:  # someone edits the customers in Stripe's dashboard
        gw.update("customers", link.customer_id, {"name": "edited", "metadata": {"contact_id": "0"}})
    push_customer_metadata(empty_processor, links[0])
    assert gw.retrieve("customers", links[0].customer_id)["name"] == "A One"
    job = jobs.start("customers.update_metadata", {}, processor_id=empty_processor.id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    assert (job.status, job.done, job.total, job.result["counts"]) == ("done", 2, 2, {"updated": 2})
    assert [gw.retrieve("customers", x.customer_id)["metadata"]["contact_id"] for x in links] == [
        str(a.id),
        str(b.id),
    ]


def test_create_refused_twice_unlink_and_contact_ids_read_back(empty_processor):
    gw = gateway(empty_processor)
    contact, other = _contact(), _contact("Other Person", "other@example.org")
    link = create_customer(empty_processor, contact)
    with pytest.raises(ServiceError, match="has a Stripe customer already"):
        create_customer(empty_processor, contact)
    assert update_contact_id_by_id(empty_processor, link.customer_id) == "unchanged"
    gw.update("customers", link.customer_id, {"metadata": {"contact_id": str(other.id)}})
    assert update_contact_id_by_id(empty_processor, link.customer_id) == "relinked"
    assert db.session.get(StripeCustomer, link.id).contact_id == other.id

    remove_link(db.session.get(StripeCustomer, link.id))
    assert db.session.scalar(select(func.count()).select_from(StripeCustomer)) == 0
    assert gw.retrieve("customers", link.customer_id)["id"] == link.customer_id  # Stripe keeps it
    again = create_customer(empty_processor, contact)  # a new one may be made once the link is gone
    assert again.customer_id != link.customer_id
    actions = list(
        db.session.scalars(
            select(AuditLog.action).where(AuditLog.action.like("customer.%")).order_by(AuditLog.id)
        )
    )
    assert actions == ["customer.create", "customer.update_contact_id", "customer.unlink", "customer.create"]


def test_the_create_keys_keep_their_shape(empty_processor, monkeypatch):
    """Made by core.idempotency, the keys Stripe saw before keep their shape: paydesk-customer-<ppid>-<contact>-
    <customers made before> for a contact, paydesk-api-customer-<ppid>-<fresh> for the API's new contact."""
    import re

    from admin.services.records.customers import create_for_api
    from admin.stripe_gateway import Gateway

    keys: list[str] = []
    create = Gateway.create

    def recording(self, resource, params, **kw):
        keys.append(kw.get("idempotency_key"))
        return create(self, resource, params, **kw)

    monkeypatch.setattr(Gateway, "create", recording)
    contact = _contact()
    remove_link(create_customer(empty_processor, contact))
    create_customer(empty_processor, contact)
    create_for_api(empty_processor, name="New Person", email="new@example.org")
    pid = empty_processor.id
    assert keys[:2] == [f"paydesk-customer-{pid}-{contact.id}-0", f"paydesk-customer-{pid}-{contact.id}-1"]
    assert re.fullmatch(f"paydesk-api-customer-{pid}-[0-9a-f]{{32}}", keys[2]), keys


@pytest.mark.postgres
def test_metadata_naming_an_id_no_contact_can_have_is_no_contact_id(empty_processor):
    """Metadata is anyone's text: past PostgreSQL's int4 (3000000000), past 64 bits, or digits that
    Python's isdigit() takes but int() does not (a superscript two) name no contact, and break nothing."""
    from admin.services.records.contacts import CustomerMatcher

    gw = gateway(empty_processor)
    contact = _contact()
    link = create_customer(empty_processor, contact)
    for bad in ("3000000000", "99999999999999999999", "\u00b2", "0"):
        gw.update("customers", link.customer_id, {"metadata": {"contact_id": bad, "civicrm_contact_id": bad}})
        assert update_contact_id_by_id(empty_processor, link.customer_id) == "no contact id", bad
        assert db.session.get(StripeCustomer, link.id).contact_id == contact.id
        stranger = {"id": "cus_stranger", "email": "mary@example.org", "metadata": {"contact_id": bad}}
        assert CustomerMatcher(empty_processor, [stranger]).link(stranger) == (contact, "email"), bad
        db.session.rollback()
