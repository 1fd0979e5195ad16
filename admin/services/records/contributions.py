"""Contributions and payments, kept in step with Stripe (CiviCRM's mapping).

* one-off: a contribution per PaymentIntent/charge, ``trxn_id`` = charge id;
* recurring: a contribution per invoice, ``trxn_id`` = invoice id;
* payments: one per charge (``trxn_id`` = charge id, fee and net from the
  balance transaction), one Failed payment per failed charge of a recurring
  contribution, and one negative payment per refund (``trxn_id`` = the charge
  id too, the refund's own id in ``refund_id``), as the seeds' FAQ has it.
  The database's unique keys make each of them happen once.

Every function here is idempotent and statuses only move forward
(Pending -> Failed/Cancelled -> Completed -> Partially refunded -> Refunded),
so the same events in any order leave the same records.
"""

from __future__ import annotations

from flask import current_app
from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import joinedload

from admin.dbutil import lock_objects, parse_id
from admin.extensions import db
from admin.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PARTIALLY_REFUNDED,
    PENDING,
    RECUR_CANCELLED,
    RECUR_FAILING,
    RECUR_IN_PROGRESS,
    REFUNDED,
    Contact,
    Contribution,
    ContributionRecur,
    Payment,
    PaymentProcessor,
)
from admin.services.core.outbox import enqueue
from admin.services.core.stripe_reader import StripeReader
from admin.services.records.common import DONE
from admin.services.records.contacts import contact_for_charge, contact_for_customer
from admin.services.records.customer_sync import request_metadata_sync
from admin.services.records.recurring import ensure_recur, sync_subscription
from admin.stripe_gateway import GatewayError
from admin.stripe_shapes import (
    currency_of,
    failure_message,
    invoice_payment_refs,
    minor_units,
    paid_invoice_payment,
    sid,
    subscription_of_invoice,
)
from admin.timeutil import from_unix, to_unix, utcnow

REFUND_COUNTED = ("succeeded", "pending")
PAYMENT_REFUNDED = "Refunded"
PAYMENT_VOID = "Cancelled"


def request_receipt(contribution: Contribution, *, suppressed: bool) -> None:
    """Ask the outbox for a receipt once per contribution (unless suppressed or receipts are off);
    ``donations.receipts.send_receipt`` sends it after the commit."""
    if suppressed or not current_app.config.get("RECEIPTS_ENABLED", True) or contribution.receipt_sent_at:
        return
    enqueue("receipt", str(contribution.id), {"contribution_id": contribution.id}, contribution.processor_id)


def _assign(obj: object, **values: object) -> None:
    """Set the attributes whose value differs: a value written again unchanged still costs a flush."""
    for name, value in values.items():
        if getattr(obj, name) != value:
            setattr(obj, name, value)


# -- finding ----------------------------------------------------------------------
# The lookups every payment event makes are built once, with bound parameters (building a statement and its
# cache key per call cost about as much as running it).

_PROCESSOR = Contribution.processor_id == bindparam("processor_id")
_INTENT = Contribution.payment_intent_id == bindparam("intent_id")
_TRXN = Contribution.trxn_id == bindparam("trxn_id")
_INVOICE = Contribution.invoice_id == bindparam("invoice_id")
_BY_INVOICE = select(Contribution).where(_PROCESSOR, _INVOICE)
_BY_INTENT = select(Contribution).where(_PROCESSOR, _INTENT).order_by(Contribution.id).limit(1)


def _with_payments(*where, recur: bool = False):
    """The contributions found to record a payment on, oldest first, with their payments (the totals are summed
    from them) and, for an invoice's, their recurring contribution (the subscription's, most often)."""
    loads = (
        (joinedload(Contribution.recur), joinedload(Contribution.payments))
        if recur
        else (joinedload(Contribution.payments),)
    )
    return select(Contribution).where(_PROCESSOR, *where).options(*loads).order_by(Contribution.id)


_BY_INTENT_OR_TRXN = {  # by (intent given, trxn_id given): the contributions with either
    (True, True): _with_payments(or_(_INTENT, _TRXN)),
    (True, False): _with_payments(_INTENT),
    (False, True): _with_payments(_TRXN),
}
# by intent given: an invoice's contribution, or (with an intent) a pending one made before the invoice existed
_FOR_INVOICE = {
    True: _with_payments(or_(_INVOICE, _INTENT), recur=True),
    False: _with_payments(_INVOICE, recur=True),
}
_GIFT_WAITING = (
    select(Contribution.id)
    .where(
        _PROCESSOR,
        Contribution.customer_id == bindparam("customer_id"),
        Contribution.status == PENDING,
        Contribution.invoice_id.is_(None),
        Contribution.recur_id.is_(None),
        Contribution.donation_form_id.is_not(None),
    )
    .limit(1)
)
_CHARGE_PAYMENT = select(Payment).where(
    Payment.processor_id == bindparam("processor_id"),
    Payment.trxn_id == bindparam("charge_id"),
    Payment.refund_id.is_(None),
)
_REFUND_PAYMENT = select(Payment).where(
    Payment.processor_id == bindparam("processor_id"), Payment.refund_id == bindparam("refund_id")
)


def by_invoice(processor_id: int, invoice_id: str) -> Contribution | None:
    return db.session.scalar(_BY_INVOICE, {"processor_id": processor_id, "invoice_id": invoice_id})


def by_intent(processor_id: int, intent_id: str | None) -> Contribution | None:
    if not intent_id:
        return None
    return db.session.scalar(_BY_INTENT, {"processor_id": processor_id, "intent_id": intent_id})


def by_intent_or_trxn(processor_id: int, intent_id: str | None, trxn_id: str | None) -> Contribution | None:
    """The contribution for an intent (preferred) or, failing that, with this trxn_id: one query."""
    if not intent_id and not trxn_id:
        return None
    found = (
        db.session.scalars(
            _BY_INTENT_OR_TRXN[bool(intent_id), bool(trxn_id)],
            {"processor_id": processor_id, "intent_id": intent_id, "trxn_id": trxn_id},
        )
        .unique()
        .all()
    )
    return next(
        (c for c in found if intent_id and c.payment_intent_id == intent_id), found[0] if found else None
    )


# -- which path: a charge or intent that belongs to an invoice is never a one-off -----


def invoice_of_intent(
    reader: StripeReader,
    processor: PaymentProcessor,
    pi: dict,
    *,
    known: Contribution | None = None,
    looked_up: bool = False,
) -> str | None:
    """The invoice a PaymentIntent pays, in either API shape; None for a one-off. ``looked_up``: the caller has
    just looked the intent's contribution up (``by_intent``): ``known``, None when there is none."""
    if "invoice" in pi:  # older API versions and localstripe: authoritative, even when null
        return sid(pi.get("invoice"))
    if not looked_up:
        known = by_intent(processor.id, pi["id"])
    if known and known.invoice_id:
        return known.invoice_id
    found = reader.list_optional(
        "invoice_payments", **{"payment[type]": "payment_intent", "payment[payment_intent]": pi["id"]}
    )
    return sid(found[0].get("invoice")) if found else None


def invoice_of_charge(reader: StripeReader, processor: PaymentProcessor, charge: dict) -> str | None:
    """The invoice a charge pays, in either API shape; None for a one-off.

    localstripe (and some older versions) leave ``charge.invoice`` null on
    subscription charges, so the charge's PaymentIntent is asked as well.
    """
    if sid(charge.get("invoice")):
        return sid(charge.get("invoice"))
    pi_id = sid(charge.get("payment_intent"))
    if pi_id:
        known = by_intent(processor.id, pi_id)
        if known and known.invoice_id:
            return known.invoice_id
        pi = reader.expanded("payment_intents", charge.get("payment_intent"), required=("status",))
        # not None: it has an id
        return (
            invoice_of_intent(reader, processor, pi, known=known, looked_up=True) if pi is not None else None
        )
    if "invoice" in charge:
        return None
    found = reader.list_optional(
        "invoice_payments", **{"payment[type]": "charge", "payment[charge]": charge["id"]}
    )
    return sid(found[0].get("invoice")) if found else None


# -- statuses ----------------------------------------------------------------------


def _complete(c: Contribution, when: int | None) -> bool:
    """Completed unless already there or past it; True when this call completed it."""
    if c.status in DONE:
        return False
    c.status = COMPLETED
    c.failure_message = None
    if when:
        c.receive_date = from_unix(when)
    return True


def fail(c: Contribution, message: str | None) -> None:
    if c.status in (PENDING, FAILED):
        c.status = FAILED
        c.failure_message = (message or "payment failed")[:500]


def cancel(c: Contribution, reason: str | None = None) -> None:
    if c.status == PENDING:
        c.status = CANCELLED
        c.failure_message = (reason or "payment cancelled")[:500]


def _after_completed(c: Contribution, customer_id: str | None, no_receipt: bool) -> None:
    request_receipt(c, suppressed=no_receipt)
    request_metadata_sync(c.processor_id, customer_id, c.contact)


# -- one-off ----------------------------------------------------------------------


def record_one_off_charge(
    reader: StripeReader,
    processor: PaymentProcessor,
    charge: dict,
    *,
    no_receipt: bool = False,
    contact: Contact | None = None,
) -> Contribution:
    """Complete the one-off contribution for a captured, succeeded charge and add its payment.
    ``contact``: whom a new contribution belongs to (an import may say); else found from the charge."""
    return one_off_charge(reader, processor, charge, no_receipt=no_receipt, contact=contact)[0]


def one_off_charge(
    reader: StripeReader,
    processor: PaymentProcessor,
    charge: dict,
    *,
    no_receipt: bool = False,
    contact: Contact | None = None,
) -> tuple[Contribution, bool]:
    """``record_one_off_charge``, and whether the contribution was made now (its contact then is
    ``contact``, else the charge's customer's, else the one its billing details name)."""
    pi_id = sid(charge.get("payment_intent"))
    lock_objects([k for k in (pi_id, charge["id"]) if k])
    c = by_intent_or_trxn(processor.id, pi_id, charge["id"])
    made = c is None
    if c is None:
        c = Contribution(
            processor_id=processor.id,
            contact=contact or contact_for_charge(reader, processor, charge),
            amount=captured_amount(charge),  # partial capture
            currency=currency_of(charge),
            status=PENDING,
            payment_intent_id=pi_id,
            customer_id=sid(charge.get("customer")),
            receive_date=from_unix(charge.get("created")),
            description=charge.get("description"),
            source="stripe",
            payments=[],  # none yet: its payments are not loaded from the database
        )
        db.session.add(c)
    if c.status not in DONE:
        _assign(c, trxn_id=charge["id"])
    _assign(
        c,
        payment_intent_id=c.payment_intent_id or pi_id,
        customer_id=c.customer_id or sid(charge.get("customer")),
    )
    completed = _complete(c, charge.get("created"))
    add_charge_payment(reader, c, charge)
    db.session.flush()  # a new contribution is inserted once, with its payment and totals (its id: the receipt)
    if completed:
        _after_completed(c, c.customer_id, no_receipt)
    return c, made


def record_failed_one_off(
    reader: StripeReader, processor: PaymentProcessor, charge: dict, message: str | None
) -> Contribution:
    """A donor's failed attempt: fail its contribution, or record one so staff can see it."""
    pi_id = sid(charge.get("payment_intent"))
    return _failed_attempt(
        processor, pi_id, charge["id"], message, charge, lambda: contact_for_charge(reader, processor, charge)
    )


def record_failed_intent(
    reader: StripeReader, processor: PaymentProcessor, pi: dict, message: str | None
) -> Contribution | None:
    """An intent whose payment failed: as a failed charge, when the intent names a customer."""
    customer_id = sid(pi.get("customer"))
    if by_intent(processor.id, pi["id"]) is None and not customer_id:
        return None
    charge_id = sid((pi.get("last_payment_error") or {}).get("charge")) or sid(pi.get("latest_charge"))
    return _failed_attempt(
        processor,
        pi["id"],
        charge_id,
        message,
        pi,
        lambda: contact_for_customer(reader, processor, customer_id),
    )


def _failed_attempt(
    processor: PaymentProcessor,
    pi_id: str | None,
    charge_id: str | None,
    message: str | None,
    obj: dict,
    contact,
) -> Contribution:
    lock_objects([k for k in (pi_id, charge_id) if k])
    c = by_intent_or_trxn(processor.id, pi_id, charge_id)
    if c is not None:
        fail(c, message)
        return c
    c = Contribution(
        processor_id=processor.id,
        contact=contact(),
        amount=minor_units(obj, "amount"),
        currency=currency_of(obj),
        status=FAILED,
        trxn_id=charge_id,
        payment_intent_id=pi_id,
        customer_id=sid(obj.get("customer")),
        receive_date=from_unix(obj.get("created")),
        description=obj.get("description"),
        source="stripe",
        failure_message=(message or "payment failed")[:500],
    )
    db.session.add(c)
    db.session.flush()
    return c


# -- recurring ----------------------------------------------------------------------


def _invoice_contribution(
    reader: StripeReader, processor: PaymentProcessor, inv: dict
) -> tuple[Contribution, ContributionRecur | None]:
    """The invoice's contribution (a new one Pending) and its subscription's recurring contribution (made on
    first sight of the subscription)."""
    lock_objects([inv["id"]])
    pi_id = invoice_payment_refs(inv)[1]
    # the invoice's contribution, else a pending one made before the invoice existed (donation form): one query
    found = (
        db.session.scalars(
            _FOR_INVOICE[bool(pi_id)],
            {"processor_id": processor.id, "invoice_id": inv["id"], "intent_id": pi_id},
        )
        .unique()
        .all()
    )
    c = next((x for x in found if x.invoice_id == inv["id"]), None)
    if c is None and pi_id:
        c = next((x for x in found if x.payment_intent_id == pi_id), None)
        if c is not None and c.invoice_id not in (None, inv["id"]):
            c = None
    sub_id = subscription_of_invoice(inv)
    recur = c.recur if c is not None else None  # loaded with it
    if recur is None or (recur.processor_id, recur.subscription_id) != (processor.id, sub_id):
        recur = ensure_recur(reader, processor, sub_id) if sub_id else None
    if c is None:
        c = _gift_named_by_subscription(reader, processor, inv, recur)
    if c is None:
        customer_id = sid(inv.get("customer"))
        c = Contribution(
            processor_id=processor.id,
            amount=minor_units(inv, "amount_due") or minor_units(inv, "total"),
            currency=currency_of(inv),
            status=PENDING,
            customer_id=customer_id,
            contact=(
                recur.contact
                if recur and recur.contact
                else contact_for_customer(reader, processor, customer_id)
            ),
            receive_date=from_unix(inv.get("created")),
            source="stripe",
            description=inv.get("description") or _line_description(inv),
            payments=[],  # none yet: its payments are not loaded from the database
        )
        db.session.add(c)
    _assign(c, invoice_id=inv["id"], trxn_id=inv["id"])
    if recur is not None:
        _assign(c, recur_id=recur.id, contact_id=c.contact_id or recur.contact_id)
    _assign(c, payment_intent_id=c.payment_intent_id or pi_id)
    db.session.flush()
    return c, recur


def _gift_named_by_subscription(
    reader: StripeReader, processor: PaymentProcessor, inv: dict, recur: ContributionRecur | None
) -> Contribution | None:
    """A donation-form gift still waiting for its subscription (the form could not find out whether Stripe made
    it): the Pending contribution the subscription's metadata names, when it is that customer's. Stripe is asked
    only when such a contribution exists."""
    customer_id = sid(inv.get("customer"))
    if recur is None or not customer_id:
        return None
    waiting = db.session.scalar(_GIFT_WAITING, {"processor_id": processor.id, "customer_id": customer_id})
    if waiting is None:
        return None
    sub = reader.get("subscriptions", recur.subscription_id)
    named = parse_id(str((sub.get("metadata") or {}).get("contribution_id") or ""))
    c = db.session.get(Contribution, named) if named is not None else None
    if (
        c is None
        or c.processor_id != processor.id
        or c.customer_id != customer_id
        or c.status != PENDING
        or c.invoice_id is not None
    ):
        return None
    return c


def _line_description(inv: dict) -> str | None:
    for line in (inv.get("lines") or {}).get("data") or []:
        if line.get("description"):
            return line["description"][:500]
    return None


def record_invoice_finalized(reader: StripeReader, processor: PaymentProcessor, inv: dict) -> Contribution:
    """The pending contribution for a recurring payment that is about to be collected."""
    return _invoice_contribution(reader, processor, inv)[0]


def record_invoice_paid(
    reader: StripeReader, processor: PaymentProcessor, inv: dict, *, no_receipt: bool = False
) -> Contribution:
    """Complete the invoice's contribution (creating it for a renewal) and add the charge as its payment."""
    c, recur = _invoice_contribution(reader, processor, inv)
    charge = _invoice_charge(reader, inv)
    paid_at = (inv.get("status_transitions") or {}).get("paid_at") or (charge or {}).get("created")
    completed = _complete(c, paid_at or inv.get("created"))
    if charge is not None:
        _assign(c, payment_intent_id=c.payment_intent_id or sid(charge.get("payment_intent")))
        add_charge_payment(reader, c, charge)
    if recur is not None and recur.status == RECUR_FAILING:
        recur.status = RECUR_IN_PROGRESS
        recur.failure_count = 0
    if recur is not None and recur.stripe_status == "incomplete":
        _subscription_after_first_payment(reader, processor, recur)
    if completed:
        _after_completed(c, c.customer_id, no_receipt)
    return c


def _subscription_after_first_payment(
    reader: StripeReader, processor: PaymentProcessor, recur: ContributionRecur
) -> None:
    """A subscription's first invoice is paid while paydesk still has it waiting for that payment (incomplete,
    as when the first payment needed 3-D Secure): Stripe has made it active by now, and may send
    ``customer.subscription.updated`` after the invoice's events or not at all. Read it again and apply it."""
    sync_subscription(
        reader, processor, reader.get("subscriptions", recur.subscription_id), stamp=to_unix(utcnow())
    )


def record_invoice_failed(reader: StripeReader, processor: PaymentProcessor, inv: dict) -> Contribution:
    c, recur = _invoice_contribution(reader, processor, inv)
    charge = _invoice_charge(reader, inv, succeeded_only=False)
    fail(c, failure_message(charge or {}) or failure_message(inv) or "invoice payment failed")
    add_failed_payment(c, charge)
    if recur is not None and c.status == FAILED and recur.status != RECUR_CANCELLED:
        recur.status = RECUR_FAILING
        recur.failure_count = max(recur.failure_count or 0, int(inv.get("attempt_count") or 1))
    return c


def settle_invoice(
    reader: StripeReader, processor: PaymentProcessor, invoice_id: str, *, no_receipt: bool = False
) -> Contribution | None:
    """Record an invoice's payment as Stripe has it now; None while it is unpaid (its own events record that)."""
    inv = reader.get("invoices", invoice_id)
    if inv.get("status") != "paid":
        return None
    return record_invoice_paid(reader, processor, inv, no_receipt=no_receipt)


def fail_invoice_attempt(reader: StripeReader, processor: PaymentProcessor, invoice_id: str) -> None:
    """A failed attempt to pay an invoice, unless Stripe has it paid by now (a later attempt succeeded)."""
    inv = reader.get("invoices", invoice_id)
    if inv.get("status") != "paid":
        record_invoice_failed(reader, processor, inv)


def _invoice_charge(reader: StripeReader, inv: dict, succeeded_only: bool = True) -> dict | None:
    """The charge that paid (or tried to pay) an invoice, in either API shape."""
    charge_ref, pi_id = invoice_payment_refs(inv)
    if charge_ref is None and pi_id is None and "charge" not in inv:
        payments = reader.list_optional("invoice_payments", invoice=inv["id"]) or []
        charge_ref, pi_id = paid_invoice_payment(payments)
    if charge_ref is None and pi_id:
        pi = reader.get("payment_intents", pi_id)
        charge_ref = pi.get("latest_charge")
    if charge_ref is None:
        return None
    charge = reader.expanded(
        "charges",
        inv.get("charge") if isinstance(inv.get("charge"), dict) else charge_ref,
        required=("balance_transaction", "amount_refunded", "status"),
    )
    if succeeded_only and (charge or {}).get("status") != "succeeded":
        return None
    return charge


def read_invoice(reader: StripeReader, processor_id: int, inv: dict) -> dict | None:
    """Ask Stripe now for what recording this invoice reads (its charge, the charge's balance transaction
    and refunds), so the write transaction that records it need not (``write_after_reading``). Its charge.
    The balance transaction only when the payment is not recorded as Stripe has it (``add_charge_payment``
    reads it then alone): importing unchanged data again does not read it again."""
    charge = _invoice_charge(reader, inv, succeeded_only=False)
    if charge is not None and charge.get("status") == "succeeded" and charge.get("captured") is not False:
        recorded = db.session.execute(
            select(Payment.amount, Payment.status).where(
                Payment.processor_id == processor_id,
                Payment.trxn_id == charge["id"],
                Payment.refund_id.is_(None),
            )
        ).first()
        if recorded is None or tuple(recorded) != (captured_amount(charge), COMPLETED):
            _fee_and_net(reader, charge, captured_amount(charge))  # add_charge_payment will write them
        refunds_recorded = (
            db.session.scalar(
                select(Payment.id)
                .where(
                    Payment.processor_id == processor_id,
                    Payment.charge_id == charge["id"],
                    Payment.refund_id.is_not(None),
                )
                .limit(1)
            )
            is not None
        )
        _refunds_of(reader, charge, refunds_recorded)
    return charge


# -- payments and refunds ---------------------------------------------------------------


def captured_amount(charge: dict) -> int:
    """What a charge took: the captured amount (a partial capture), else its amount. Integers only."""
    amount = minor_units(charge, "amount")  # checked even when the captured amount is what counts
    return minor_units(charge, "amount_captured") or amount


def add_charge_payment(reader: StripeReader, c: Contribution, charge: dict) -> Payment | None:
    """The charge as a payment on ``c`` (once per charge id), then its refunds."""
    if charge.get("status") != "succeeded" or charge.get("captured") is False:
        return None
    with db.session.no_autoflush:  # a contribution made just now is inserted later, once, with its totals
        # its payments are read anyway (refunds, totals): the charge's is looked for elsewhere only when not there
        pay = next(
            (
                p
                for p in c.payments
                if p.trxn_id == charge["id"] and p.refund_id is None and p.processor_id == c.processor_id
            ),
            None,
        ) or charge_payment(c.processor_id, charge["id"])
    if pay is None:
        amount = captured_amount(charge)
        fee, net = _fee_and_net(reader, charge, amount)
        pay = Payment(
            contribution=c,
            processor_id=c.processor_id,
            trxn_id=charge["id"],
            charge_id=charge["id"],
            amount=amount,
            fee=fee,
            net=net,
            currency=currency_of(charge),
            status=COMPLETED,
            payment_date=from_unix(charge.get("created")),
        )
        db.session.add(pay)
    else:
        amount = captured_amount(charge)
        if pay.amount != amount or pay.status != COMPLETED:  # corrected to Stripe's (reconciliation)
            pay.fee, pay.net = _fee_and_net(reader, charge, amount)
            pay.amount, pay.status = amount, COMPLETED
    apply_refunds(reader, c, charge)
    _totals(c)
    db.session.flush()
    return pay


def charge_payment(processor_id: int, charge_id: str) -> Payment | None:
    """The payment row of a charge (not one of its refunds), if recorded."""
    return db.session.scalar(_CHARGE_PAYMENT, {"processor_id": processor_id, "charge_id": charge_id})


def add_failed_payment(c: Contribution, charge: dict | None) -> Payment | None:
    """A failed charge as a Failed payment row on ``c`` (once per charge id), as the FAQ records a recurring
    contribution's failed attempts. Counts for nothing in the totals."""
    if not charge or charge.get("status") != "failed" or not charge.get("id"):
        return None
    pay = charge_payment(c.processor_id, charge["id"])
    if pay is None:
        amount = minor_units(charge, "amount")
        pay = Payment(
            contribution=c,
            processor_id=c.processor_id,
            trxn_id=charge["id"],
            charge_id=charge["id"],
            amount=amount,
            fee=0,
            net=0,
            currency=currency_of(charge),
            status=FAILED,
            payment_date=from_unix(charge.get("created")),
        )
        db.session.add(pay)
        db.session.flush()
    return pay


def record_refund(c: Contribution, charge_id: str, refund: dict) -> tuple[Payment, bool]:
    """One refund as a negative payment on ``c`` (once per refund id): what staff's refund writes at once and
    what ``charge.refunded`` / ``refund.*`` find already there. Returns (payment, made now)."""
    lock_objects([refund["id"]])
    pay = db.session.scalar(_REFUND_PAYMENT, {"processor_id": c.processor_id, "refund_id": refund["id"]})
    counted = refund.get("status") in REFUND_COUNTED
    made = pay is None
    if pay is None:
        pay = Payment(
            contribution=c,
            processor_id=c.processor_id,
            trxn_id=charge_id,
            charge_id=charge_id,
            refund_id=refund["id"],
            amount=-minor_units(refund, "amount"),
            fee=0,
            net=-minor_units(refund, "amount"),
            currency=(refund.get("currency") or c.currency).lower(),
            status=PAYMENT_REFUNDED if counted else PAYMENT_VOID,
            payment_date=from_unix(refund.get("created")),
        )
        db.session.add(pay)
    else:
        _assign(pay, status=PAYMENT_REFUNDED if counted else PAYMENT_VOID)
    db.session.flush()
    recompute(c)
    return pay, made


def _fee_and_net(reader: StripeReader, charge: dict, amount: int) -> tuple[int, int]:
    ref = charge.get("balance_transaction")
    if not ref:
        return 0, amount
    try:
        bt = reader.expanded("balance_transactions", ref, required=("fee", "net"))
    except GatewayError as err:
        if err.not_found:
            return 0, amount
        raise
    if bt is None:  # a reference without an id: as without one
        return 0, amount
    return minor_units(bt, "fee"), minor_units(bt, "net", default=amount)


def apply_refunds(reader: StripeReader, c: Contribution, charge: dict) -> None:
    """One negative payment per refund id (the totals, ``_totals``, and the flush are the caller's)."""
    recorded = {p.refund_id: p for p in c.payments if p.refund_id and p.charge_id == charge["id"]}
    for r in _refunds_of(reader, charge, bool(recorded)):
        pay = recorded.get(r["id"])
        if pay is None:  # recorded on another contribution of this processor? (never twice)
            pay = db.session.scalar(_REFUND_PAYMENT, {"processor_id": c.processor_id, "refund_id": r["id"]})
        counted = r.get("status") in REFUND_COUNTED
        if pay is None and counted:
            db.session.add(
                Payment(
                    contribution=c,
                    processor_id=c.processor_id,
                    trxn_id=charge["id"],
                    charge_id=charge["id"],
                    refund_id=r["id"],
                    amount=-minor_units(r, "amount"),
                    fee=0,
                    net=-minor_units(r, "amount"),
                    currency=(r.get("currency") or c.currency).lower(),
                    status=PAYMENT_REFUNDED,
                    payment_date=from_unix(r.get("created")),
                )
            )
        elif pay is not None:
            # a refund that failed or was cancelled gives the money back
            _assign(pay, status=PAYMENT_REFUNDED if counted else PAYMENT_VOID)
            if counted and pay.amount != -int(r["amount"]):  # corrected to Stripe's (reconciliation)
                pay.amount = pay.net = -int(r["amount"])


def _refunds_of(reader: StripeReader, charge: dict, have_recorded: bool) -> list[dict]:
    """The charge's refunds: the embedded list when it is complete (older API versions), else Stripe's list.

    Current API versions do not embed refunds, so a charge whose refunds paydesk
    recorded before is always asked about: one of them may have failed since.
    """
    listing = charge.get("refunds") or {}
    embedded = listing.get("data")
    refunded = minor_units(charge, "amount_refunded")
    if embedded is not None and not listing.get("has_more"):
        if sum(minor_units(r, "amount") for r in embedded if r.get("status") in REFUND_COUNTED) == refunded:
            return embedded
    elif not refunded and not have_recorded:
        return []
    return reader.list("refunds", charge=charge["id"])


def recompute(c: Contribution) -> None:
    """Fee, net, refunded amount and refund status again from the payments (after staff corrected one)."""
    db.session.flush()
    db.session.refresh(c, ["payments"])
    _totals(c)


def _totals(c: Contribution) -> None:
    pays = c.payments
    charges = [p for p in pays if p.amount > 0 and p.status == COMPLETED]
    refunds = [p for p in pays if p.amount < 0 and p.status == PAYMENT_REFUNDED]
    refunded = -sum(p.amount for p in refunds)
    _assign(
        c,
        fee_amount=sum(p.fee for p in charges),
        net_amount=sum(p.net for p in charges) + sum(p.net for p in refunds),
        refunded_amount=refunded,
    )
    if c.status in DONE:
        paid = sum(p.amount for p in charges) or c.amount
        if refunded <= 0:
            _assign(c, status=COMPLETED)
        else:
            _assign(c, status=REFUNDED if refunded >= paid else PARTIALLY_REFUNDED)
