"""Payment intents: capture in full and in part, cancel one and in bulk, Job.process_stripe (what is old
enough, once per period), Stripe answering already cancelled / already succeeded / 404, every filter,
learning of intents Stripe sent nothing about."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
import stripe_objects as so
from localstripe_intents import abandoned, stripe_status, succeeded, track, uncaptured, waiting_for_3ds
from sqlalchemy import func, select

from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Amount
from admin.models import AuditLog, Contact, Contribution, StripePaymentIntent
from admin.models.jobs import Job
from admin.money import money_totals
from admin.services.core import jobs
from admin.services.intents import queries as svc
from admin.services.intents.jobs import period_key, selection_summary
from admin.services.intents.ops import cancel_intent, capture_intent, learn_intent, refresh_intent
from admin.services.settings.processors import gateway
from admin.stripe_shapes import sid
from admin.timeutil import utcnow
from admin.worker import queues


def run_job(kind: str, params: dict, processor_id: int | None = None) -> Job:
    job = jobs.start(kind, params, processor_id=processor_id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    return job


def audit_of(intent_id: str) -> list[AuditLog]:
    return list(
        db.session.scalars(select(AuditLog).where(AuditLog.object_id == intent_id).order_by(AuditLog.id))
    )


def local(intent_id: str) -> StripePaymentIntent:
    db.session.expire_all()
    return svc.by_intent_id(intent_id)


# -- capture ---------------------------------------------------------------------------------


@pytest.mark.localstripe
def test_a_manual_capture_intent_captured_in_full_and_another_in_part(processor):
    full, part = uncaptured(processor, 3000), uncaptured(processor, 3000)
    track(processor, full)
    track(processor, part)
    assert local(full["id"]).status == "requires_capture"

    out = capture_intent(processor, full["id"], amount=None, action_key="form1")
    assert out.ok and out.outcome == "captured" and "Captured 30.00 USD of 30.00 USD." in out.message
    assert stripe_status(processor, full["id"])["status"] == "succeeded"
    assert local(full["id"]).status == "succeeded"

    out = capture_intent(processor, part["id"], amount="12.00", action_key="form2")
    assert out.outcome == "captured" and "the other 18.00 USD is released to the donor" in out.message
    charge = gateway(processor).retrieve(
        "charges", sid(stripe_status(processor, part["id"])["latest_charge"])
    )
    assert charge["captured"] and charge["amount"] - charge["amount_refunded"] == 1200  # 12.00 taken
    entry = audit_of(part["id"])[-1]
    assert entry.action == "intent.capture" and entry.result == "ok"
    assert entry.parameters["amount"] == 1200 and entry.parameters["authorised"] == 3000
    assert entry.parameters["idempotency_key"] == f"paydesk-capture-{part['id']}-form2-1200"

    # Capturing again: Stripe says it has succeeded already; reported as such, not as a failure.
    again = capture_intent(processor, full["id"], action_key="form3")
    assert again.ok and again.outcome == "already_succeeded"


@pytest.mark.localstripe
def test_a_capture_amount_is_checked_against_what_is_authorised_before_stripe_is_asked(processor):
    pi = uncaptured(processor, 3000)
    track(processor, pi)
    for amount, says in (
        ("30.01", "more than the 30.00 USD authorised"),
        ("0", "more than nothing"),
        ("12.345", "at most 2 decimal places"),
        ("twelve", "is not an amount"),
    ):
        with pytest.raises(ServiceError) as err:
            capture_intent(processor, pi["id"], amount=amount)
        assert says in err.value.message and err.value.field == "amount"
    assert stripe_status(processor, pi["id"])["status"] == "requires_capture"  # nothing was captured
    with pytest.raises(ServiceError, match="Only an intent waiting for capture"):
        capture_intent(processor, abandoned(processor)["id"])


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.localstripe
def test_cancel_one_records_it_cancels_its_pending_contribution_and_audits_it(processor):
    pi = abandoned(processor, 2000)
    row = track(processor, pi)
    c = Contribution(
        processor_id=processor.id, amount=2000, currency="usd", status="Pending", payment_intent_id=pi["id"]
    )
    db.session.add(c)
    db.session.commit()
    out = cancel_intent(processor, pi["id"], action_key="abc123")
    assert out.ok and out.outcome == "cancelled"
    theirs = stripe_status(processor, pi["id"])
    assert theirs["status"] == "canceled" and theirs["cancellation_reason"] == "abandoned"
    assert local(pi["id"]).status == "canceled" and row.id == local(pi["id"]).id
    assert db.session.get(Contribution, c.id).status == "Cancelled"
    [entry] = audit_of(pi["id"])
    assert (entry.action, entry.result, entry.parameters["outcome"]) == ("intent.cancel", "ok", "cancelled")
    assert (
        entry.parameters["idempotency_key"] == f"paydesk-cancel-{pi['id']}-abc123"
    )  # the same form: the same key


@pytest.mark.localstripe
def test_an_intent_already_cancelled_in_stripe_is_reported_as_such(processor):
    pi = abandoned(processor)
    track(processor, pi)
    gateway(processor).call("payment_intents", "cancel", pi["id"])  # someone used Stripe's dashboard
    out = cancel_intent(processor, pi["id"])
    assert out.ok and out.outcome == "already_cancelled" and "already cancelled in Stripe" in out.message
    assert local(pi["id"]).status == "canceled"
    assert audit_of(pi["id"])[-1].result == "ok"

    paid = succeeded(processor)  # paydesk still thinks the donor is at the confirm step
    track(processor, paid, status="requires_confirmation", stripe_updated=0)
    out = cancel_intent(processor, paid["id"])
    assert out.ok and out.outcome == "already_succeeded" and "already succeeded" in out.message
    assert local(paid["id"]).status == "succeeded"


def test_stripe_404_for_a_vanished_intent_is_recorded_as_gone(world, offline_processor):
    pi = so.payment_intent(status="requires_payment_method", amount=1500)
    world.add(pi)
    learn_intent(offline_processor, pi)
    del world.objects[pi["id"]]  # deleted with the test data in Stripe

    out = cancel_intent(offline_processor, pi["id"])
    assert out.ok and out.outcome == "gone" and "404" in out.message
    row = local(pi["id"])
    assert row.flags == "gone" and row.status == "requires_payment_method"
    entry = audit_of(pi["id"])[-1]
    assert entry.result == "ok" and entry.parameters["outcome"] == "gone"
    assert entry.stripe_request_id and entry.stripe_request_id.startswith("req_world")
    assert capture_intent(offline_processor, pi["id"]).outcome == "gone"
    assert refresh_intent(offline_processor, pi["id"]).outcome == "gone"
    # Gone intents are left out of bulk cancels and the scheduled job, and count as final for deleting.
    assert selection_summary({"filter": {}})[0] == 0


def test_stripe_down_is_a_failure_that_changes_nothing(world, offline_processor):
    pi = so.payment_intent(status="requires_payment_method")
    world.add(pi)
    learn_intent(offline_processor, pi)
    world.fail(r"/cancel$", [500] * 10)
    out = cancel_intent(offline_processor, pi["id"])
    assert not out.ok and out.outcome == "failed" and out.transient and "Nothing was changed" in out.message
    assert local(pi["id"]).status == "requires_payment_method"
    assert audit_of(pi["id"])[-1].result == "error"


# -- bulk cancel -----------------------------------------------------------------------------


@pytest.mark.localstripe
def test_bulk_cancel_of_ticked_rows_and_of_a_filter(processor):
    usd = [abandoned(processor, 1000), abandoned(processor, 2500)]
    eur = uncaptured(processor, 4000, "eur")
    paid = succeeded(processor, 9900)
    rows = [track(processor, p) for p in (*usd, eur, paid)]
    params = {"ids": [r.id for r in rows]}
    count, totals, left_alone = selection_summary(params)
    assert count == 3 and left_alone == 1
    assert [(t.currency, t.count, t.amount) for t in totals] == [("eur", 1, 4000), ("usd", 2, 3500)]

    job = run_job("intents.cancel", params)
    assert job.status == "done" and job.result["counts"] == {"cancelled": 3}
    assert {stripe_status(processor, p["id"])["status"] for p in (*usd, eur)} == {"canceled"}
    assert stripe_status(processor, paid["id"])["status"] == "succeeded"
    assert all(
        e.parameters["idempotency_key"].endswith(f"-job{job.id}") for p in usd for e in audit_of(p["id"])
    )
    # The same bulk cancel again: nothing left that can be cancelled.
    assert selection_summary(params)[0] == 0

    more = [abandoned(processor, 700) for _ in range(2)]
    for p in more:
        track(processor, p, age=timedelta(hours=2))
    flt = {"status": ["incomplete"], "older_than": "1 hour", "ppid": processor.id}
    assert selection_summary({"filter": flt})[:2][0] == 2
    job = run_job("intents.cancel", {"filter": flt})
    assert job.result["counts"] == {"cancelled": 2}


# -- Job.process_stripe ----------------------------------------------------------------------


@pytest.mark.localstripe
@pytest.mark.postgres
def test_process_stripe_cancels_only_what_is_old_enough_and_deletes_only_what_is_old_enough(processor):
    old_abandoned = abandoned(processor)
    young_abandoned = abandoned(processor)
    old_3ds = waiting_for_3ds(processor)
    old_uncaptured = uncaptured(processor)  # an authorisation staff may still capture: not "incomplete"
    track(processor, old_abandoned, age=timedelta(hours=2))
    track(processor, young_abandoned, age=timedelta(minutes=20))
    track(processor, old_3ds, age=timedelta(minutes=61))
    track(processor, old_uncaptured, age=timedelta(hours=5))
    ancient_paid, recent_paid, ancient_open = succeeded(processor), succeeded(processor), abandoned(processor)
    track(processor, ancient_paid, age=timedelta(days=100))
    track(processor, recent_paid, age=timedelta(days=80))
    db.session.add(
        StripePaymentIntent(
            stripe_intent_id="pi_cancelled_long_ago",
            processor_id=processor.id,
            status="canceled",
            created_date=utcnow() - timedelta(days=95),
        )
    )
    db.session.commit()

    job = run_job(
        "intents.process_stripe",
        {"cancel_incomplete": "1 hour", "delete_old": "3 months", "period": None, "ppid": processor.id},
    )
    assert job.status == "done", job.error
    assert job.result["counts"] == {"cancelled": 2, "deleted": 2}
    status = {
        p["id"]: stripe_status(processor, p["id"])["status"]
        for p in (old_abandoned, young_abandoned, old_3ds, old_uncaptured)
    }
    assert status == {
        old_abandoned["id"]: "canceled",
        young_abandoned["id"]: "requires_payment_method",
        old_3ds["id"]: "canceled",
        old_uncaptured["id"]: "requires_capture",
    }
    assert local(ancient_paid["id"]) is None and local("pi_cancelled_long_ago") is None
    assert local(recent_paid["id"]) is not None and local(old_abandoned["id"]).status == "canceled"
    [deleted] = db.session.scalars(select(AuditLog).where(AuditLog.action == "intent.delete_old"))
    assert deleted.parameters["count"] == 2 and "Stripe is not changed" in deleted.message
    assert stripe_status(processor, ancient_paid["id"])["status"] == "succeeded"

    # "0" disables either part.
    track(processor, ancient_open, age=timedelta(days=100))
    job = run_job(
        "intents.process_stripe",
        {"cancel_incomplete": "0", "delete_old": "0", "period": None, "ppid": processor.id},
    )
    assert job.status == "done" and (job.result or {}).get("counts") in (None, {})
    assert stripe_status(processor, ancient_open["id"])["status"] == "requires_payment_method"


@pytest.mark.localstripe
def test_process_stripe_does_the_work_once_per_period(processor):
    params = {
        "cancel_incomplete": "1 hour",
        "delete_old": "3 months",
        "period": "2026-11-29T08:00",
        "ppid": processor.id,
    }
    first = abandoned(processor)
    track(processor, first, age=timedelta(hours=3))
    one = run_job("intents.process_stripe", params)
    assert one.result["counts"] == {"cancelled": 1}
    later = abandoned(processor)  # a second host's cron starts the same period's job after the first ended
    track(processor, later, age=timedelta(hours=3))
    two = run_job("intents.process_stripe", params)
    assert two.id != one.id and two.status == "done" and two.result["counts"] == {"skipped": 1}
    assert f"job {one.id} already did this period's run" in two.result["messages"][0]
    assert stripe_status(processor, later["id"])["status"] == "requires_payment_method"
    # While one runs, a second start is the same job (the job mechanism's identical-job dedupe).
    a = jobs.start("intents.process_stripe", {**params, "period": "2026-11-29T08:15"})
    b = jobs.start("intents.process_stripe", {**params, "period": "2026-11-29T08:15"})
    assert a.created and not b.created and a.job.id == b.job.id


def test_period_key_rounds_to_the_nearest_period_so_hosts_a_little_apart_agree():
    assert period_key("15 minutes", datetime(2026, 11, 29, 8, 14, 58)) == "2026-11-29T08:15"
    assert period_key("15 minutes", datetime(2026, 11, 29, 8, 15, 3)) == "2026-11-29T08:15"
    assert period_key("1 hour", datetime(2026, 11, 29, 8, 20)) == "2026-11-29T08:00"
    assert period_key("0") is None


# -- learning of intents ---------------------------------------------------------------------


@pytest.mark.localstripe
def test_import_tracks_intents_stripe_sent_nothing_about(processor):
    """localstripe (like Stripe for an abandoned intent) sends no payment_intent.created: the import
    from Stripe's list is how paydesk learns of them; a second import changes nothing."""
    left, stuck = (
        abandoned(processor, 2000, metadata={"description": "Abandoned"}),
        waiting_for_3ds(processor),
    )
    job = run_job("intents.import", {"since": "1 hour"}, processor.id)
    assert job.status == "done" and job.result["counts"].get("new", 0) >= 2
    assert (
        local(left["id"]).status == "requires_payment_method" and local(left["id"]).description == "Abandoned"
    )
    assert local(stuck["id"]).status == "requires_action"
    again = run_job("intents.import", {"since": "1 hour"}, processor.id)
    assert "new" not in again.result["counts"]


# -- the filter ------------------------------------------------------------------------------


@pytest.fixture
def tracked(offline_processor):
    """Intents in paydesk only (no Stripe needed to filter them)."""
    now = utcnow()
    ada = Contact(display_name="Ada Lovelace", email="ada@example.org")
    db.session.add(ada)
    db.session.flush()
    gift = Contribution(
        processor_id=offline_processor.id, contact_id=ada.id, amount=2500, currency="usd", status="Completed"
    )
    db.session.add(gift)
    db.session.flush()
    spec = {  # name: (status, amount, currency, capture, age, extra)
        "paid": (
            "succeeded",
            2500,
            "usd",
            "automatic",
            timedelta(minutes=5),
            {
                "contact_id": ada.id,
                "contribution_id": gift.id,
                "description": "Winter appeal",
                "referrer": "https://example.org/donate/winter",
            },
        ),
        "left": ("requires_payment_method", 1000, "usd", "automatic", timedelta(hours=3), {}),
        "held": ("requires_capture", 10000, "jpy", "manual", timedelta(days=2), {"customer_id": "cus_held"}),
        "declined": (
            "requires_payment_method",
            5000,
            "eur",
            "automatic",
            timedelta(minutes=30),
            {
                "last_error": "Your card was declined. (card_declined)",
                "last_error_at": now - timedelta(minutes=10),
            },
        ),
        "old_fail": (
            "canceled",
            700,
            "usd",
            "automatic",
            timedelta(days=40),
            {
                "last_error": "Your card has expired. (expired_card)",
                "last_error_at": now - timedelta(days=40),
            },
        ),
    }
    ids = {}
    for name, (status, amount, currency, capture, age, extra) in spec.items():
        row = StripePaymentIntent(
            stripe_intent_id=f"pi_{name}",
            processor_id=offline_processor.id,
            status=status,
            amount=amount,
            currency=currency,
            capture_method=capture,
            created_date=now - age,
            **extra,
        )
        db.session.add(row)
        ids[name] = row
    db.session.commit()
    return ids


def names(**kw) -> list[str]:
    return [r.stripe_intent_id[3:] for r in svc.intent_page(svc.IntentFilter(**kw)).rows]


@pytest.mark.postgres
def test_every_filter(tracked):
    assert names() == ["paid", "declined", "left", "held", "old_fail"]  # newest first
    assert names(status=["incomplete"]) == ["declined", "left"]
    assert names(status=["open"]) == ["declined", "left", "held"]
    assert names(status=["requires_capture", "canceled"]) == ["held", "old_fail"]
    assert names(status=["incomplete"], older_than="1 hour") == ["left"]
    assert names(older_than="1 day") == ["held", "old_fail"]
    assert names(since=utcnow() - timedelta(days=3), until=utcnow() - timedelta(days=1)) == ["held"]
    assert names(min_amount=Amount("25")) == [
        "paid",
        "declined",
        "held",
    ]  # 25 JPY is nothing next to 10,000 JPY
    assert names(min_amount=Amount("20"), max_amount=Amount("30"), currency="usd") == ["paid"]
    assert names(max_amount=Amount("12.5")) == ["left", "old_fail"]  # no yen amount has half a yen
    assert names(capture_method="manual") == ["held"]
    assert names(contact="ADA@example.org") == names(contact="lovelace") == ["paid"]
    assert names(contact="cus_held") == ["held"]
    assert names(contribution="any") == ["paid"] and names(
        contribution=str(tracked["paid"].contribution_id)
    ) == ["paid"]
    assert len(names(contribution="none")) == 4
    assert names(description="winter") == names(referrer="donate/winter") == ["paid"]
    assert names(error="any") == ["declined", "old_fail"] and names(error="expired") == ["old_fail"]
    assert names(failed_within="1 hour") == ["declined"]
    assert names(q="pi_held") == ["held"] and names(q="cus_held") == ["held"]
    assert names(contact="99999999999") == [] and names(description="100%_") == []
    counts = svc.status_counts(svc.IntentFilter(status=["canceled"]))  # counts ignore the status choice
    assert counts["requires_payment_method"] == 2 and counts["succeeded"] == 1 and counts["canceled"] == 1
    totals = money_totals(svc.intents_query(svc.IntentFilter(status=["open"])))
    assert [(t.currency, t.count, t.amount) for t in totals] == [
        ("eur", 1, 5000),
        ("jpy", 1, 10000),
        ("usd", 1, 1000),
    ]


def test_bad_filters_are_named_and_left_out():
    flt, errors = svc.IntentFilter.from_args(
        {
            "older_than": "an hour",
            "status": "pending",
            "currency": "dollars",
            "contribution": "99999999999",
            "min_amount": "1.2.3",
        }
    )
    assert set(errors) == {"older_than", "status", "currency", "contribution", "min_amount"}
    assert "cannot read 'an hour'" in errors["older_than"]
    assert flt.older_than is None and flt.status == []


def test_sync_dates_each_new_failure_once(offline_processor):
    pi = so.payment_intent(status="requires_payment_method")
    pi["last_payment_error"] = {
        "charge": "ch_fail1",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
    }
    row = svc.sync_intent(offline_processor, pi, stamp=1_800_000_000)
    first = row.last_error_at
    assert row.last_error == "Your card was declined. (generic_decline)" and first is not None
    svc.sync_intent(offline_processor, pi, stamp=1_800_000_100)  # the same failure read again (a refresh)
    assert row.last_error_at == first
    pi["last_payment_error"] = {**pi["last_payment_error"], "charge": "ch_fail2"}  # another attempt failed
    svc.sync_intent(offline_processor, pi, stamp=1_800_000_200)
    assert row.last_error_at > first
    assert json.loads(row.extra_data)["last_error_key"].startswith("ch_fail2")
    assert db.session.scalar(select(func.count()).select_from(StripePaymentIntent)) == 1


def test_a_bulk_cancel_waits_out_stripe_being_down_and_asks_again_with_the_same_key(world, offline_processor):
    pis = [so.payment_intent(status="requires_payment_method") for _ in range(2)]
    world.add(*pis)
    for pi in pis:
        learn_intent(offline_processor, pi)
    world.fail(r"/cancel$", [503] * 4)  # the gateway's own retries (4 attempts) all fail on the first intent
    job = jobs.start("intents.cancel", {"filter": {}}).job
    queues.run_jobs("test", seconds=60)
    db.session.refresh(job)
    assert job.status == "running" and job.done == 0
    assert job.error.startswith("retrying: ") and "injected 503. Nothing was changed." in job.error
    job.locked_until = utcnow()  # the runner's backoff has passed
    db.session.commit()
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    assert job.status == "done" and job.done == 2
    assert world.count("POST", r"/cancel$") == 4 + 2  # four refused attempts, then one for each intent
    entries = [e for pi in pis for e in audit_of(pi["id"]) if e.action == "intent.cancel"]
    first_keys = {e.parameters["idempotency_key"] for e in entries}
    assert first_keys == {
        f"paydesk-cancel-{pi['id']}-job{job.id}" for pi in pis
    }  # the retry used the same key


def test_one_processors_incomplete_intents_read_their_own_index(offline_processor):
    """``/intents?ppid=..&status=incomplete``: each capped status count and the totals' "is it narrow?" count read a
    bounded range of the (processor, status, created, id) index, the counts from the index alone (before, every
    count read a whole status range with a table row per intent)."""
    from query_plans import analyze, plans_of, statement

    from admin.services.settings.processors import add_processor

    other = add_processor(
        name="Second account",
        secret_key="sk_test_other",
        webhook_secrets=["whsec_x"],
        api_base="http://127.0.0.1:9",
    )
    mix = ["succeeded"] * 16 + [
        "requires_payment_method",
        "requires_payment_method",
        "canceled",
        "requires_action",
    ]
    start = utcnow() - timedelta(days=30)
    db.session.execute(
        db.insert(StripePaymentIntent),
        [
            dict(
                stripe_intent_id=f"pi_{i}",
                processor_id=offline_processor.id if i % 4 else other.id,
                status=mix[i % len(mix)],
                amount=1000,
                currency="usd",
                created_date=start + timedelta(hours=i),
                stripe_updated=0,
                updated_at=start,
            )
            for i in range(400)
        ],
    )
    analyze()
    flt = svc.IntentFilter(ppid=offline_processor.id, status=["incomplete"])
    out: dict = {}
    plans = plans_of(
        lambda: out.update(
            rows=svc.intent_page(flt).rows, totals=svc.intent_summary(flt), counts=svc.status_counts(flt)
        )
    )

    assert {r.status for r in out["rows"]} == {"requires_payment_method", "requires_action"}
    assert out["counts"]["succeeded"] == 240 and out["counts"]["requires_action"] == 20
    index = "ix_stripe_paymentintent_processor_status_created_id"
    counts = statement(plans, "AS status, count(*)", "FROM stripe_paymentintent")
    assert counts.plan.count(f"USING COVERING INDEX {index} (processor_id=? AND status=?)") == len(
        svc.STATUSES
    ), counts
    narrow = statement(plans, "AS anon_2 FROM stripe_paymentintent")
    assert f"INDEX {index} (processor_id=? AND status=?)" in narrow.plan, narrow
