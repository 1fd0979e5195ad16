"""Webhook endpoints of a processor's Stripe account (``responses``: localstripe has none)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog
from admin.services.settings import webhook_endpoints as we
from admin.stripe_event_types import RECOMMENDED

OURS = "http://127.0.0.1:5000/webhooks/stripe/{}"


def test_the_list_says_which_endpoint_is_ours_and_what_it_lacks(app, connect_world, offline_processor):
    connect_world.endpoint("https://elsewhere.example.org/hook", ["charge.succeeded"])
    mine = connect_world.endpoint(OURS.format(offline_processor.id), ["invoice.paid", "charge.succeeded"])
    listing = we.list_endpoints(offline_processor)
    assert listing.our_url == OURS.format(offline_processor.id)
    assert [e.id for e in listing.ours] == [mine["id"]] and listing.rows[0].id == mine["id"]
    assert "invoice.paid" not in listing.rows[0].missing and "charge.refunded" in listing.rows[0].missing
    assert len(listing.rows[0].missing) == len(RECOMMENDED) - 2
    everything = connect_world.endpoint(OURS.format(offline_processor.id), ["*"])
    assert (
        next(e for e in we.list_endpoints(offline_processor).rows if e.id == everything["id"]).missing == []
    )


def test_create_stores_the_new_secret_beside_the_old_and_audits(app, connect_world, offline_processor):
    made = we.create_endpoint(offline_processor, action_key="k1")
    sent = connect_world.updates[-1][1]
    assert sent["url"] == OURS.format(offline_processor.id) and sorted(sent["enabled_events"]) == sorted(
        RECOMMENDED
    )
    assert connect_world.sent[-1]["key"] == f"paydesk-webhook-endpoint-{offline_processor.id}-k1"
    db.session.refresh(offline_processor)
    secrets = offline_processor.webhook_secrets
    assert (
        len(secrets) == 2 and secrets[0] == "whsec_test_paydesk_primary" and secrets[1].startswith("whsec_")
    )
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "webhook_endpoint.create"))
    assert (
        entry.object_id == made.id
        and entry.stripe_request_id.startswith("req_world")
        and entry.result == "ok"
    )
    assert made.ours and made.missing == []


def test_create_refuses_an_address_that_is_not_this_processors_before_stripe(
    app, connect_world, offline_processor
):
    with pytest.raises(ServiceError, match="must end in /webhooks/stripe/"):
        we.create_endpoint(offline_processor, url="http://127.0.0.1:5000/other")
    with pytest.raises(ServiceError, match="not a web address"):
        we.create_endpoint(offline_processor, url="ftp://x")
    assert connect_world.sent == []


def test_create_refuses_another_host_than_base_urls_before_stripe(app, connect_world, offline_processor):
    path = f"/webhooks/stripe/{offline_processor.id}"
    for url in (
        f"https://attacker.example.net{path}",
        f"http://127.0.0.1:5001{path}",  # BASE_URL's host on another port
        f"http://127.0.0.1.attacker.example.net:5000{path}",
        f"http://someone@127.0.0.1:5000{path}",
        f"http://127.0.0.1:x{path}",
    ):
        with pytest.raises(ServiceError, match=r"this paydesk's host, 127\.0\.0\.1:5000") as refused:
            we.create_endpoint(offline_processor, url=url)
        assert refused.value.field == "url"
    assert connect_world.sent == []
    made = we.create_endpoint(offline_processor, url=f"http://127.0.0.1:5000{path}/")  # BASE_URL's own host
    assert made.ours


def test_stripes_refusal_is_shown_with_its_request_id_and_audited(app, connect_world, offline_processor):
    connect_world.refuse(
        "POST", "/v1/webhook_endpoints", 400, "You have reached the maximum of 16 test webhook endpoints."
    )
    with pytest.raises(
        ServiceError, match=r"Stripe: You have reached the maximum .* \(Stripe request req_world"
    ):
        we.create_endpoint(offline_processor)
    db.session.refresh(offline_processor)
    assert len(offline_processor.webhook_secrets) == 1
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "webhook_endpoint.create"))
    assert entry.result == "error" and entry.stripe_request_id


def test_disable_enable_and_delete(app, connect_world, offline_processor):
    e = connect_world.endpoint(OURS.format(offline_processor.id), list(RECOMMENDED))
    assert we.set_disabled(offline_processor, e["id"], True).status == "disabled"
    assert we.set_disabled(offline_processor, e["id"], False).status == "enabled"
    assert we.delete_endpoint(offline_processor, e["id"]).startswith("req_world")
    assert we.list_endpoints(offline_processor).rows == []
    with pytest.raises(ServiceError, match=f"there is no webhook endpoint {e['id']}.*Stripe request"):
        we.delete_endpoint(offline_processor, e["id"])
    with pytest.raises(ServiceError, match="not a webhook endpoint id"):
        we.set_disabled(offline_processor, "../v1/charges", True)
    actions = db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions[-4:] == [
        "webhook_endpoint.disable",
        "webhook_endpoint.enable",
        "webhook_endpoint.delete",
        "webhook_endpoint.delete",
    ]
