"""Authorisations nobody captures: ``jobs process-stripe --cancel-incomplete`` also cancels the ones paydesk's
own donation forms made once they are older than the limit, and a staff "authorise only" charge only when
staff gave it an expiry that has passed (against localstripe)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from donate_support import make_form
from localstripe_intents import stripe_status, track, uncaptured
from payments_support import saved_customer

from admin.extensions import db
from admin.models import Contribution
from admin.services.core import jobs
from admin.services.intents.queries import by_intent_id, release_date
from admin.services.payments import charges
from admin.timeutil import utcnow
from admin.worker import queues


def run_job(kind: str, params: dict):
    job = jobs.start(kind, params).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    return job


def staff_authorisation(processor, expires_after: str = "") -> str:
    contact = saved_customer(processor)
    out = charges.charge(
        processor,
        charges.ChargeRequest.from_form(
            {"amount": "30", "currency": "usd", "capture": "authorise", "expires_after": expires_after},
            contact_id=contact.id,
        ),
    )
    assert out.status == "requires_capture"
    return out.intent_id


@pytest.mark.postgres
def test_cancel_incomplete_takes_old_form_authorisations_and_expired_staff_ones(processor):
    form = make_form(processor)
    from_form = uncaptured(processor)
    row = track(processor, from_form, age=timedelta(hours=2))
    c = Contribution(
        processor_id=processor.id,
        amount=3000,
        currency="usd",
        status="Pending",
        donation_form_id=form.id,
        payment_intent_id=from_form["id"],
    )
    db.session.add(c)
    db.session.flush()
    row.contribution_id = c.id
    young_form = uncaptured(processor)
    young_row = track(processor, young_form, age=timedelta(minutes=10))
    young_row.contribution_id = c.id
    db.session.commit()

    kept_staff = staff_authorisation(processor)  # no expiry: never the job's
    expired_staff = staff_authorisation(processor, "1")
    later_staff = staff_authorisation(processor, "48")
    for pi in (kept_staff, expired_staff, later_staff):
        by_intent_id(pi).created_date = utcnow() - timedelta(hours=3)
    extra = json.loads(by_intent_id(expired_staff).extra_data)
    extra["cancel_after"] = (utcnow() - timedelta(minutes=5)).isoformat(timespec="seconds")
    by_intent_id(expired_staff).extra_data = json.dumps(extra)
    db.session.commit()

    job = run_job(
        "intents.process_stripe",
        {"cancel_incomplete": "1 hour", "delete_old": "0", "period": None, "ppid": processor.id},
    )
    assert job.status == "done", job.error
    status = {
        pi: stripe_status(processor, pi)["status"]
        for pi in (from_form["id"], young_form["id"], kept_staff, expired_staff, later_staff)
    }
    assert status == {
        from_form["id"]: "canceled",
        young_form["id"]: "requires_capture",
        kept_staff: "requires_capture",
        expired_staff: "canceled",
        later_staff: "requires_capture",
    }


def test_release_date_says_when_stripe_lets_go():
    made = utcnow() - timedelta(days=2, minutes=-30)
    text = release_date(made)
    assert (made + timedelta(days=7)).strftime("%Y-%m-%d") in text and "(in 5 d" in text
    assert "past" in release_date(utcnow() - timedelta(days=8))
