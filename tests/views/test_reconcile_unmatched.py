"""``/reconcile`` lists the payments that named a contribution they do not match, until staff mark them reviewed."""

from __future__ import annotations

import stripe_objects as so
from sqlalchemy import select
from stripe_world import OneOff

from admin.extensions import db
from admin.models import AuditLog, Contribution, UnmatchedPayment
from admin.webhooks.ingest import store_event
from admin.worker.loop import run_once


def _foreign_payment(processor, world) -> UnmatchedPayment:
    """A Payment Link payment of 5.00 USD whose payer named someone else's contribution of 1,000.00 USD."""
    pay = OneOff(world, amount=500)
    named = Contribution(processor_id=processor.id, amount=100000, currency="usd", status="Pending")
    db.session.add(named)
    db.session.commit()
    session = so.obj(
        "checkout.session",
        id=so.new_id("cs"),
        mode="payment",
        payment_status="paid",
        status="complete",
        client_reference_id=str(named.id),
        payment_intent=pay.intent["id"],
        subscription=None,
        invoice=None,
        customer=pay.customer["id"],
        amount_total=500,
        currency="usd",
        livemode=False,
    )
    store_event(processor, so.event("checkout.session.completed", session))
    run_once()
    return db.session.scalar(select(UnmatchedPayment))


def test_unmatched_payments_show_on_reconcile_until_reviewed(client, auth, offline_processor, world):
    kept = _foreign_payment(offline_processor, world)
    auth.login("viewer@example.org", role="viewer")
    page = client.get("/reconcile").get_data(as_text=True)
    assert "Payments that named another contribution" in page and kept.session_id in page
    assert "5.00 USD paid, the contribution is 1,000.00 USD" in page
    assert (
        f"/contributions/{kept.contribution_id}" in page
        and f"/contributions/{kept.named_contribution_id}" in page
    )
    assert "Mark reviewed" not in page
    assert (
        client.post(
            f"/reconcile/unmatched/{kept.id}/reviewed", data={"csrf_token": auth.token("/reconcile")}
        ).status_code
        == 403
    )
    auth.logout()

    auth.login("op@example.org", role="operator")
    assert "Mark reviewed" in client.get("/reconcile").get_data(as_text=True)
    resp = client.post(
        f"/reconcile/unmatched/{kept.id}/reviewed",
        data={"csrf_token": auth.token("/reconcile")},
        headers={"HX-Request": "true"},
    )
    assert resp.status_code == 200 and "is marked reviewed" in resp.get_data(as_text=True)
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "reconcile.unmatched_reviewed"))
    assert (entry.actor, entry.object_id) == ("op@example.org", str(kept.contribution_id))
    assert "Payments that named another contribution" not in client.get("/reconcile").get_data(as_text=True)
    again = client.post(
        f"/reconcile/unmatched/{kept.id}/reviewed",
        data={"csrf_token": auth.token("/reconcile")},
        headers={"HX-Request": "true"},
    )
    assert again.status_code == 422 and "marked reviewed already" in again.get_data(as_text=True)
