"""Reconciliation: Stripe's charges, refunds and paid invoices next to paydesk's records; each kind of
difference found, each fixed (by replay, import, settle or cancelling the local record), and a second
look shows nothing left."""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe_objects as so
from sqlalchemy import func, select
from stripe_world import OneOff, Renewal

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import AuditLog, Contribution, Payment
from admin.services.core import jobs
from admin.services.reconcile import fix as rc_fix
from admin.services.reconcile import scan as rc_scan
from admin.services.reconcile.filter import ReconcileFilter
from admin.services.records.imports import import_charge
from admin.stripe_gateway import Gateway
from admin.timeutil import utcnow
from admin.webhooks.ingest import store_event
from admin.worker import queues
from admin.worker.loop import run_once


def differences(proc, **filters) -> dict[str, str]:
    """{stripe id: problem} of every row that differs."""
    return {r.stripe_id: r.problem for r in rc_scan.take(proc, ReconcileFilter(**filters)).differences}


def payment(stripe_id: str) -> Payment | None:
    """The payment row of a charge (ch_) or of a refund (re_: its trxn_id is the charge id, as the FAQ says)."""
    if stripe_id.startswith("re_"):
        return db.session.scalar(select(Payment).where(Payment.refund_id == stripe_id))
    return db.session.scalar(select(Payment).where(Payment.trxn_id == stripe_id, Payment.refund_id.is_(None)))


def ghost(proc, amount: int = 999, trxn_id: str = "ch_ghost0001") -> Contribution:
    """A completed one-off payment paydesk has and Stripe never had."""
    c = Contribution(
        processor_id=proc.id,
        amount=amount,
        currency="usd",
        status="Completed",
        trxn_id=trxn_id,
        receive_date=utcnow(),
    )
    db.session.add(c)
    db.session.flush()
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=proc.id,
            trxn_id=trxn_id,
            charge_id=trxn_id,
            amount=amount,
            net=amount,
            currency="usd",
            status="Completed",
            payment_date=utcnow(),
        )
    )
    db.session.commit()
    return c


@pytest.fixture
def books(world, offline_processor):
    """Stripe and paydesk in step: two one-off payments (one partly refunded) and a renewal, all
    recorded from their webhooks."""
    a, b = OneOff(world, amount=2500), OneOff(world, amount=4000)
    refund = b.refund(world, 1500)
    renewal = Renewal(world, amount=1200)
    for e in (
        a.event("charge.succeeded"),
        b.event("charge.succeeded"),
        b.event("charge.refunded"),
        renewal.events["invoice.paid"],
    ):
        store_event(offline_processor, e)
    run_once()
    return {"a": a, "b": b, "refund": refund, "renewal": renewal}


def test_books_in_step_show_no_difference_and_every_row_compared(books, offline_processor):
    scan = rc_scan.take(offline_processor, ReconcileFilter())
    assert scan.differences == []
    compared = {(r.object, r.stripe_id) for r in scan.rows}
    assert compared == {
        ("charge", books["a"].charge["id"]),
        ("charge", books["b"].charge["id"]),
        ("charge", books["renewal"].charge["id"]),
        ("refund", books["refund"]["id"]),
        ("invoice", books["renewal"].invoice["id"]),
    }
    assert scan.counts() == {"missing": 0, "amount": 0, "status": 0, "absent": 0, "in step": 5}


def test_finds_a_deleted_payment_a_changed_amount_and_a_payment_stripe_lacks_and_fix_puts_them_right(
    books, offline_processor
):
    a, b = books["a"].charge["id"], books["b"].charge["id"]
    db.session.delete(payment(a))  # a payment lost locally
    payment(b).amount = 3900  # an amount changed locally
    db.session.commit()
    fake = ghost(offline_processor)  # a payment Stripe never had

    assert differences(offline_processor) == {a: "missing", b: "amount", "ch_ghost0001": "absent"}

    res = rc_fix.fix(offline_processor, "charge", a)  # its charge.succeeded event is stored: replayed
    assert res.in_step and res.actions[0].startswith("replayed") and payment(a).amount == 2500
    res = rc_fix.fix(offline_processor, "charge", b)
    assert res.in_step and payment(b).amount == 4000
    with pytest.raises(ServiceError, match="Cancelled"):
        rc_fix.fix(offline_processor, "charge", "ch_ghost0001")  # changes the books: not without saying so
    res = rc_fix.fix(offline_processor, "charge", "ch_ghost0001", cancel_local=True)
    assert res.in_step
    db.session.refresh(fake)
    assert payment("ch_ghost0001").status == "Cancelled" and fake.status == "Cancelled"
    assert (
        "Stripe has no charge ch_ghost0001" in fake.failure_message
        and "(reconciliation)" in fake.failure_message
    )

    assert differences(offline_processor) == {}
    assert rc_fix.fix(offline_processor, "charge", a).message == "Already in step: nothing to do."
    actions = list(
        db.session.scalars(
            select(AuditLog.action).where(AuditLog.action != "processor.add").order_by(AuditLog.id)
        )
    )
    assert actions == ["event.replay", "event.replay", "reconcile.cancel_local"]
    cancel = db.session.scalar(select(AuditLog).where(AuditLog.action == "reconcile.cancel_local"))
    assert cancel.object_id == str(fake.id) and cancel.parameters["was"]["status"] == "Completed"


def test_without_a_stored_event_the_charge_is_imported(world, offline_processor):
    pay = OneOff(world, amount=7700)  # paid in Stripe; its webhook never arrived
    assert differences(offline_processor) == {pay.charge["id"]: "missing"}
    res = rc_fix.fix(offline_processor, "charge", pay.charge["id"])
    assert res.in_step and res.actions == [f"imported {pay.charge['id']}"]
    assert payment(pay.charge["id"]).amount == 7700
    assert (
        db.session.scalar(select(AuditLog.action).where(AuditLog.action != "processor.add"))
        == "import.charge"
    )


def test_a_missing_renewal_an_unrecorded_refund_and_a_refund_amount(books, offline_processor):
    renewal, refund = books["renewal"], books["refund"]
    c = db.session.scalar(select(Contribution).where(Contribution.invoice_id == renewal.invoice["id"]))
    for p in c.payments:
        db.session.delete(p)
    db.session.delete(c)
    db.session.delete(payment(refund["id"]))
    db.session.commit()
    assert differences(offline_processor) == {
        renewal.invoice["id"]: "missing",
        renewal.charge["id"]: "missing",
        refund["id"]: "missing",
    }
    assert differences(offline_processor, object=["invoice"]) == {renewal.invoice["id"]: "missing"}

    res = rc_fix.fix(offline_processor, "invoice", renewal.invoice["id"])  # invoice.paid is stored: replayed
    assert res.in_step
    assert (
        rc_fix.fix(offline_processor, "charge", renewal.charge["id"]).message
        == "Already in step: nothing to do."
    )
    res = rc_fix.fix(offline_processor, "refund", refund["id"])  # charge.refunded is stored: replayed
    assert res.in_step and payment(refund["id"]).amount == -1500

    payment(refund["id"]).amount = -1000
    db.session.commit()
    assert differences(offline_processor) == {refund["id"]: "amount"}
    assert rc_fix.fix(offline_processor, "refund", refund["id"]).in_step
    assert payment(refund["id"]).amount == -1500
    assert (
        db.session.scalar(
            select(Contribution.refunded_amount).where(Contribution.trxn_id == books["b"].charge["id"])
        )
        == 1500
    )


def test_an_invoice_amount_is_corrected_by_settling_it(books, offline_processor):
    inv = books["renewal"].invoice["id"]
    c = db.session.scalar(select(Contribution).where(Contribution.invoice_id == inv))
    c.amount = 1000
    db.session.commit()
    assert differences(offline_processor) == {inv: "amount"}
    res = rc_fix.fix(offline_processor, "invoice", inv)
    assert res.in_step and res.actions[-1] == f"settled {inv} and corrected its amount"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "reconcile.settle_invoice"))
    assert entry.parameters == {"invoice": inv, "amount_was": 1000} and entry.object_id == str(c.id)


def test_a_local_refund_stripe_lacks_gives_the_money_back(books, offline_processor):
    b = books["b"]
    c = db.session.scalar(select(Contribution).where(Contribution.trxn_id == b.charge["id"]))
    db.session.add(
        Payment(
            contribution_id=c.id,
            processor_id=offline_processor.id,
            trxn_id="re_ghost01",
            charge_id=b.charge["id"],
            refund_id="re_ghost01",
            amount=-500,
            net=-500,
            currency="usd",
            status="Refunded",
            payment_date=utcnow(),
        )
    )
    db.session.commit()
    assert differences(offline_processor) == {"re_ghost01": "absent"}
    rc_fix.fix(offline_processor, "refund", "re_ghost01", cancel_local=True)
    db.session.refresh(c)
    assert c.refunded_amount == 1500 and c.status == "Partially refunded"
    assert differences(offline_processor) == {}


def test_the_period_bounds_what_is_compared(world, offline_processor):
    old = so.charge(customer=None, payment_intent=None, amount=100)
    old["created"] -= 20 * 86400
    world.add(old)
    assert differences(offline_processor) == {}  # the last 7 days
    assert differences(offline_processor, days=30) == {old["id"]: "missing"}
    day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    assert differences(offline_processor, since=day - timedelta(days=21), until=day - timedelta(days=19)) == {
        old["id"]: "missing"
    }


def test_fix_all_is_a_job_that_leaves_cancelling_to_staff_unless_told(books, offline_processor):
    a, b = books["a"].charge["id"], books["b"].charge["id"]
    db.session.delete(payment(a))
    payment(b).amount = 1
    db.session.commit()
    ghost(offline_processor)
    params = rc_fix.job_params(ReconcileFilter(), cancel_local=False)
    job = jobs.start("reconcile.fix_all", params, processor_id=offline_processor.id).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    assert job.status == "done", job.error
    assert (job.done, job.total) == (2, 2)
    assert job.result["counts"] == {"fixed": 2, "left for staff (need confirmation)": 1}
    assert differences(offline_processor) == {"ch_ghost0001": "absent"}

    job = jobs.start(
        "reconcile.fix_all",
        rc_fix.job_params(ReconcileFilter(), cancel_local=True),
        processor_id=offline_processor.id,
    ).job
    while queues.run_jobs("test", seconds=60):
        pass
    db.session.refresh(job)
    assert job.result["counts"] == {"fixed": 1} and differences(offline_processor) == {}


def test_bad_ids_and_unknown_objects_are_refused(offline_processor, world):
    for obj, sid_ in (("charge", "in_123"), ("payout", "po_1"), ("charge", "ch_<script>"), ("invoice", "")):
        with pytest.raises(ServiceError):
            rc_fix.fix(offline_processor, obj, sid_)
    with pytest.raises(ServiceError, match="neither Stripe nor paydesk"):
        rc_fix.fix(offline_processor, "charge", "ch_nowhere")


def test_filter_reads_the_query_string():
    flt, errors = ReconcileFilter.from_args({"days": "0", "object": "charge,refund", "problem": "lost"})
    assert errors == {
        "problem": "'lost' is not one of missing, amount, status, absent",
        "days": "must be from 1 to 366",
    }
    assert flt.days == 7 and flt.object == ["charge", "refund"]
    flt, errors = ReconcileFilter.from_args({"since": "2026-01-01", "until": "2026-12-31"})
    assert not errors and flt.window()[1] - flt.window()[0] < timedelta(days=366)
    _, errors = ReconcileFilter.from_args({"since": "2024-01-01", "until": "2026-12-31"})
    assert "since" in errors


# -- against localstripe -----------------------------------------------------------------------------


@pytest.mark.localstripe
def test_against_localstripe_a_deleted_payment_is_found_and_imported_back(processor):
    gw = Gateway.for_processor(processor)
    cus = gw.create("customers", {"email": "recon@example.org", "name": "Recon Donor"})
    pm = gw.create(
        "payment_methods",
        {
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        },
    )
    pi = gw.create(
        "payment_intents",
        {
            "amount": 3300,
            "currency": "usd",
            "customer": cus["id"],
            "payment_method": pm["id"],
            "confirm": True,
        },
    )
    charge_id = gw.retrieve("payment_intents", pi["id"])["latest_charge"]
    charge_id = charge_id["id"] if isinstance(charge_id, dict) else charge_id
    import_charge(processor, charge_id)
    assert charge_id not in differences(processor)
    db.session.delete(payment(charge_id))
    db.session.commit()
    assert differences(processor)[charge_id] == "missing"
    assert rc_fix.fix(processor, "charge", charge_id).in_step
    assert charge_id not in differences(processor)
    assert (
        db.session.scalar(select(func.count()).select_from(Payment).where(Payment.trxn_id == charge_id)) == 1
    )


def test_a_server_that_cannot_filter_by_period_is_read_only_until_the_period_is_past(
    world, offline_processor
):
    """localstripe answers 400 to ``created``; the charges are then read newest first, and reading stops at the
    first page older than the period instead of going through the whole account."""
    recent = [so.charge(customer=None, payment_intent=None, amount=100 + n) for n in range(100)]
    old = [so.charge(customer=None, payment_intent=None, amount=100) for _ in range(250)]
    for ch in old:
        ch["created"] -= 20 * 86400
    world.add(*recent, *old)
    world.fail(r"^/v1/charges$", [400], method="GET")
    found = differences(offline_processor, object=["charge"])
    assert found == {ch["id"]: "missing" for ch in recent}
    assert (
        world.count("GET", r"^/v1/charges$") == 3
    )  # the refused filter, the recent page, one page of old ones


def test_fix_all_resumed_after_its_scan_is_gone_compares_again_and_fixes_the_rest(books, offline_processor):
    from admin.models import ReconcileScan

    a, b = books["a"].charge["id"], books["b"].charge["id"]
    db.session.delete(payment(a))
    payment(b).amount = 1
    db.session.commit()
    job = jobs.start(
        "reconcile.fix_all",
        rc_fix.job_params(ReconcileFilter(), cancel_local=False),
        processor_id=offline_processor.id,
    ).job
    jobs.run_slice(queues.claim_job("w"), "w", seconds=0)  # the scan, kept
    jobs.run_slice(queues.claim_job("w"), "w", seconds=0)  # the first row fixed
    db.session.refresh(job)
    assert (job.done, job.total) == (1, 2) and job.cursor["i"] >= 1  # an index into the kept scan's rows
    db.session.execute(ReconcileScan.__table__.delete())  # e.g. cleaned up while the job was paused
    db.session.commit()
    while queues.run_jobs("w", seconds=60):
        pass
    db.session.refresh(job)
    assert job.status == "done" and job.result["counts"] == {"fixed": 2} and (job.done, job.total) == (2, 2)
    assert differences(offline_processor) == {}


def test_a_fix_updates_the_row_in_the_kept_scan(books, offline_processor):
    a = books["a"].charge["id"]
    db.session.delete(payment(a))
    db.session.commit()
    assert differences(offline_processor) == {a: "missing"}
    assert rc_fix.fix(offline_processor, "charge", a).in_step
    kept = rc_scan.latest(offline_processor, ReconcileFilter())
    assert kept.row("charge", a).problem is None and kept.differences == []
