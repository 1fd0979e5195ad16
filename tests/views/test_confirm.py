"""The one confirmation (views/confirm.py, services/core/confirmations.py): every action over a filter, a
selection or everything starts its job only with the token of the confirmation it showed, from the user it
was shown to, once, before it expires; and it runs what was shown, whatever else the request carries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from confirm_support import token_of
from sqlalchemy import func, select, update

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import (
    AuditLog,
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    StripeCustomer,
    StripeEvent,
    StripePaymentIntent,
)
from admin.models.jobs import Confirmation, Job
from admin.services.core import jobs as jobs_service
from admin.timeutil import utcnow

HX = {"HX-Request": "true"}
WIDE = {
    "since": "1970-01-01T00:00:00",
    "until": "2100-01-01T00:00:00",
    "object": [],
    "problem": [],
    "cancel_local": True,
}


@pytest.fixture
def things(world, offline_processor):
    """Something for every bulk action and tool to act on, without asking Stripe for more than its lists."""
    from stripe_world import OneOff

    from admin.webhooks.ingest import store_event

    ppid = offline_processor.id
    pay = OneOff(world, amount=1200)
    store_event(offline_processor, pay.event("charge.succeeded"))
    event_id = db.session.scalar(select(StripeEvent.id))
    db.session.add_all(
        [
            StripePaymentIntent(
                stripe_intent_id="pi_open1",
                processor_id=ppid,
                status="requires_payment_method",
                amount=1500,
                currency="usd",
                created_date=utcnow() - timedelta(hours=2),
            ),
            ContributionRecur(
                processor_id=ppid,
                subscription_id="sub_cf1",
                amount=500,
                currency="usd",
                interval="month",
                interval_count=1,
            ),
        ]
    )
    contact = Contact(display_name="Ada L", email="ada@example.org")
    db.session.add(contact)
    db.session.flush()
    db.session.add(StripeCustomer(customer_id="cus_cf1", contact_id=contact.id, processor_id=ppid))
    c = Contribution(
        processor_id=ppid,
        amount=700,
        currency="usd",
        status="Completed",
        trxn_id="ch_ghost0099",
        receive_date=utcnow(),
    )
    db.session.add(c)
    db.session.flush()
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=ppid,
            trxn_id="ch_ghost0099",
            charge_id="ch_ghost0099",
            amount=700,
            net=700,
            currency="usd",
            status="Completed",
            payment_date=utcnow(),
        )
    )
    db.session.commit()
    from admin.services.reconcile import scan as rc_scan
    from admin.services.reconcile.filter import ReconcileFilter

    rc_scan.take(offline_processor, ReconcileFilter())  # /reconcile's kept comparison, which fix-all counts
    intent = db.session.scalar(select(StripePaymentIntent.id))
    return {"ppid": ppid, "event": event_id, "intent": intent}


# (name, URL, what its form posts first, the job kind it starts)
ACTIONS = [
    ("replay", "/events/bulk", lambda t: {"action": "replay", "ids": [t["event"]]}, "events.replay"),
    (
        "ignore",
        "/events/bulk",
        lambda t: {"action": "ignore", "all": "1", "criteria": "{}", "reason": "test"},
        "events.ignore",
    ),
    ("cancel", "/intents/bulk", lambda t: {"action": "cancel", "ids": [t["intent"]]}, "intents.cancel"),
    (
        "fix-all",
        "/reconcile/fix-all",
        lambda t: {"ppid": t["ppid"], "criteria": "{}", "cancel_local": "1"},
        "reconcile.fix_all",
    ),
    (
        "retry-all",
        "/events/tools/retry-all",
        lambda t: {"ppid": t["ppid"], "limit": "5", "days": "2"},
        "events.retry_all",
    ),
    (
        "populate",
        "/events/tools/populate-queue",
        lambda t: {"ppid": t["ppid"], "types": "all", "limit": "3"},
        "events.populate",
    ),
    ("import", "/customers/import", lambda t: {"ppid": t["ppid"], "limit": "10"}, "imports.customers"),
    ("push", "/customers/update_metadata", lambda t: {"ppid": t["ppid"]}, "customers.update_metadata"),
    ("compare", "/subscriptions/compare", lambda t: {"ppid": t["ppid"]}, "subscriptions.compare"),
]


def _post(client, auth, url, data):
    return client.post(url, data=data, headers={**HX, "X-CSRFToken": auth.token()})


def _jobs() -> int:
    return db.session.scalar(select(func.count()).select_from(Job))


def _job_starts() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "job.start"))


@pytest.mark.postgres
@pytest.mark.parametrize("name,url,form,kind", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_a_job_starts_only_with_its_own_confirmation_once(client, auth, things, name, url, form, kind):
    auth.login("operator@example.org", "operator")
    data = form(things)
    shown = _post(client, auth, url, data)
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and 'name="step" value="run"' in html, html[:500]
    token = token_of(html)
    stored = db.session.scalar(select(Confirmation))
    assert stored.kind == kind and stored.used_at is None and _jobs() == 0

    # without the confirmation's token: refused, nothing started, nothing audited as started
    for bare in (
        {**data, "step": "run"},
        {**data, "step": "run", "token": "forged"},
        {"step": "run", "params": json.dumps(WIDE), "ppid": things["ppid"], "cancel_local": "1"},
    ):
        refused = _post(client, auth, url, bare)
        assert refused.status_code == 400, bare
        assert "Nothing was started" in refused.get_data(as_text=True)
    assert _jobs() == 0 and _job_starts() == 0

    # another user's confirmation: refused (an admin may do everything an operator may, but not with this)
    auth.logout()
    auth.login("admin@example.org", "admin")
    other = _post(client, auth, url, {"step": "run", "token": token, "reason": "test"})
    assert other.status_code == 400 and "shown to someone else" in other.get_data(as_text=True)
    assert _jobs() == 0 and _job_starts() == 0
    auth.logout()

    # its own user, with tampered criteria alongside: the job runs what the confirmation stored
    auth.login("operator@example.org", "operator")
    tampered = {
        "criteria": json.dumps({"status": ["error"]}),
        "ids": [999],
        "all": "1",
        "params": json.dumps(WIDE),
        "limit": "10000",
        "days": "365",
        "ppid": "999",
        "action": "ignore",
        "reason": "test",
    }
    started = _post(client, auth, url, {**tampered, "step": "run", "token": token})
    assert started.status_code == 202, started.get_data(as_text=True)[:500]
    job = db.session.scalar(select(Job))
    db.session.refresh(stored)
    assert job.kind == kind and job.processor_id == stored.processor_id and stored.used_at is not None
    options = {"reason": "test"} if name == "ignore" else {}
    assert job.params == {**stored.params, **options}
    assert _job_starts() == 1

    # once only
    again = _post(client, auth, url, {"step": "run", "token": token, "reason": "test"})
    assert again.status_code == 400 and "used already" in again.get_data(as_text=True)
    assert _jobs() == 1 and _job_starts() == 1


def test_an_expired_confirmation_is_refused(client, auth, things):
    auth.login("operator@example.org", "operator")
    shown = _post(client, auth, "/intents/bulk", {"action": "cancel", "ids": [things["intent"]]})
    db.session.execute(update(Confirmation).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    late = _post(
        client, auth, "/intents/bulk", {"step": "run", "token": token_of(shown.get_data(as_text=True))}
    )
    assert late.status_code == 400 and "expired (they last 15 minutes)" in late.get_data(as_text=True)
    assert _jobs() == 0


def test_the_skipped_fix_all_of_the_review_is_refused(client, auth, things):
    """The review's request: step=run, a 1970-2100 window and cancel_local, with no confirmation."""
    auth.login("operator@example.org", "operator")
    resp = _post(
        client,
        auth,
        "/reconcile/fix-all",
        {
            "ppid": things["ppid"],
            "step": "run",
            "cancel_local": "1",
            "params": json.dumps(WIDE),
            "criteria": json.dumps({"since": "1970-01-01", "until": "2100-01-01"}),
        },
    )
    assert resp.status_code == 400 and _jobs() == 0
    assert db.session.scalar(select(Payment.status).where(Payment.trxn_id == "ch_ghost0099")) == "Completed"


def test_a_fix_all_window_past_the_limit_is_refused_when_starting_too(app, things):
    """The bound the page's filter applies holds for the job itself, whoever starts it (page, CLI, API)."""
    with pytest.raises(ServiceError, match="at most 366 days"):
        jobs_service.start("reconcile.fix_all", WIDE, processor_id=things["ppid"])
    year = {**WIDE, "since": "2026-01-01T00:00:00", "until": "2026-12-31T00:00:00"}
    assert jobs_service.start("reconcile.fix_all", year, processor_id=things["ppid"]).created
    assert _jobs() == 1


def test_a_viewer_cannot_run_a_confirmation(client, auth, things):
    auth.login("operator@example.org", "operator")
    shown = _post(client, auth, "/events/tools/retry-all", {"ppid": things["ppid"]})
    token = token_of(shown.get_data(as_text=True))
    auth.logout()
    auth.login("viewer@example.org", "viewer")
    assert _post(client, auth, "/events/tools/retry-all", {"step": "run", "token": token}).status_code == 403
    assert _jobs() == 0


def test_cleanup_stays_an_admins_job(client, auth, things):
    """An operator cannot start it from the page (it has no confirmation: the browser asks)."""
    auth.login("operator@example.org", "operator")
    assert _post(client, auth, "/events/tools/cleanup", {"older_than": "90 days"}).status_code == 403
    assert _jobs() == 0
