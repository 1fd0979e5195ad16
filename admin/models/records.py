"""The organisation's records: contacts, contributions, recurring contributions, payments, intents."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from admin.extensions import Model
from admin.models.base import COMPLETED, PENDING, RECUR_PENDING, Money, created_column
from admin.timeutil import utcnow


class Contact(Model):
    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(255), index=True)
    email: Mapped[str | None] = mapped_column(String(255), index=True)
    phone: Mapped[str | None] = mapped_column(String(64))
    postal_code: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64))
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    stripe_customers: Mapped[list[StripeCustomer]] = relationship(back_populates="contact")


class StripeCustomer(Model):
    __tablename__ = "stripe_customer"
    __table_args__ = (UniqueConstraint("processor_id", "customer_id", name="uq_stripe_customer"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Made for a public donation-form gift that matched this contact by its email alone (no proof that
    # the giver is the contact): paydesk never reuses it for the contact's other gifts or donor links.
    unverified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = created_column()

    contact: Mapped[Contact] = relationship(back_populates="stripe_customers")


class ContributionRecur(Model):
    """A recurring contribution: a Stripe subscription."""

    __tablename__ = "contribution_recur"
    __table_args__ = (UniqueConstraint("processor_id", "subscription_id", name="uq_recur_subscription"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    subscription_id: Mapped[str] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(Money, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    interval: Mapped[str] = mapped_column(String(16), default="month")
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    # active_history: the old value is known when it is set (outgoing notifications say what it was)
    status: Mapped[str] = mapped_column(String(32), default=RECUR_PENDING, index=True, active_history=True)
    stripe_status: Mapped[str | None] = mapped_column(String(32))
    start_date: Mapped[datetime | None] = mapped_column(DateTime)
    next_sched_date: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_date: Mapped[datetime | None] = mapped_column(DateTime)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    # The donation form the donor signed up on (None: made in Stripe or elsewhere).
    donation_form_id: Mapped[int | None] = mapped_column(
        ForeignKey("donation_form.id", ondelete="SET NULL"), index=True
    )
    # Stripe ``created`` of the newest subscription event applied (ignore older ones).
    stripe_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact | None] = relationship()


class Contribution(Model):
    """One gift or payment: a Stripe invoice (recurring) or charge (one-off)."""

    __tablename__ = "contribution"
    __table_args__ = (
        UniqueConstraint("processor_id", "trxn_id", name="uq_contribution_trxn"),
        UniqueConstraint("processor_id", "invoice_id", name="uq_contribution_invoice"),
        Index("ix_contribution_status_date", "status", "receive_date"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    recur_id: Mapped[int | None] = mapped_column(ForeignKey("contribution_recur.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default=PENDING, active_history=True)
    trxn_id: Mapped[str | None] = mapped_column(String(255))
    invoice_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    receive_date: Mapped[datetime | None] = mapped_column(DateTime)
    description: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str | None] = mapped_column(String(64))
    fee_amount: Mapped[int] = mapped_column(Money, default=0)
    net_amount: Mapped[int] = mapped_column(Money, default=0)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0, active_history=True)
    failure_message: Mapped[str | None] = mapped_column(String(500))
    receipt_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The donation form the gift was given on (None: made in Stripe or elsewhere).
    donation_form_id: Mapped[int | None] = mapped_column(
        ForeignKey("donation_form.id", ondelete="SET NULL"), index=True
    )
    # How often the donor chose to give on that form (one-off, monthly, yearly): kept when a regular
    # gift's first payment failed before any subscription existed.
    frequency: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact | None] = relationship()
    recur: Mapped[ContributionRecur | None] = relationship()
    payments: Mapped[list[Payment]] = relationship(back_populates="contribution", order_by="Payment.id")


class Payment(Model):
    """A charge (positive), a failed charge (status Failed) or a refund (negative) on a contribution.

    As the seeds' FAQ has it, ``trxn_id`` is the Stripe charge id on every row; a refund's own ``re_`` id is
    in ``refund_id``, so several partial refunds of one charge are several rows. Each charge is recorded once
    (``uq_payment_charge``: one row per charge id among the rows that are not refunds), each refund once."""

    __tablename__ = "payment"
    __table_args__ = (
        UniqueConstraint("processor_id", "refund_id", name="uq_payment_refund"),
        Index(
            "uq_payment_charge",
            "processor_id",
            "trxn_id",
            unique=True,
            sqlite_where=text("refund_id IS NULL"),
            postgresql_where=text("refund_id IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    contribution_id: Mapped[int] = mapped_column(ForeignKey("contribution.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    trxn_id: Mapped[str] = mapped_column(String(255))  # the charge id (refunds too)
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    refund_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(Money)
    fee: Mapped[int] = mapped_column(Money, default=0)
    net: Mapped[int] = mapped_column(Money, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default=COMPLETED)
    payment_date: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[datetime] = created_column()
    # a charge's row: when a refund of it was claimed, while Stripe is asked (services/payments/refunds.py);
    # None when none is in flight. Two refunds of one charge at once: the second waits for the first's record
    refund_claimed_at: Mapped[datetime | None] = mapped_column(DateTime)

    contribution: Mapped[Contribution] = relationship(back_populates="payments")


# The list pages' sort keys (newest first): an expression index each, so that keyset pages, date filters and
# per-status pages read an index range instead of sorting the table (bench/list_pages.py).
CONTRIBUTION_WHEN = func.coalesce(Contribution.receive_date, Contribution.created_at)
PAYMENT_WHEN = func.coalesce(Payment.payment_date, Payment.created_at)
RECUR_WHEN = func.coalesce(ContributionRecur.start_date, ContributionRecur.created_at)
Index("ix_contribution_when_id", CONTRIBUTION_WHEN, Contribution.id)
Index("ix_contribution_status_when_id", Contribution.status, CONTRIBUTION_WHEN, Contribution.id)
Index("ix_payment_when_id", PAYMENT_WHEN, Payment.id)
Index("ix_payment_status_when_id", Payment.status, PAYMENT_WHEN, Payment.id)
Index("ix_contribution_recur_when_id", RECUR_WHEN, ContributionRecur.id)
# One processor's rows per status (the ``ppid`` choice): its capped status counts and per-status pages read a
# bounded range of one index, no table row each (bench/list_statements.py).
Index(
    "ix_contribution_processor_status_when_id",
    Contribution.processor_id,
    Contribution.status,
    CONTRIBUTION_WHEN,
    Contribution.id,
)
Index("ix_payment_processor_status_when_id", Payment.processor_id, Payment.status, PAYMENT_WHEN, Payment.id)
# Refunds (``kind=refund``, a few per cent of the payments): their pages, counts and totals read only refunds.
# ``refund_id IS NOT NULL`` has no literal, so SQLite and PostgreSQL match it to the filter's condition however bound.
# SQLite 3.40 costs a partial index like a whole-table one and, between two that serve a statement alike, takes the
# one made last: the migration makes these after ix_payment_processor_status_when_id (tests/query_plans.py).
REFUNDS = Payment.refund_id.is_not(None)
Index("ix_payment_refund_when_id", PAYMENT_WHEN, Payment.id, sqlite_where=REFUNDS, postgresql_where=REFUNDS)
Index(
    "ix_payment_refund_processor_when_id",
    Payment.processor_id,
    PAYMENT_WHEN,
    Payment.id,
    sqlite_where=REFUNDS,
    postgresql_where=REFUNDS,
)
Index(
    "ix_payment_refund_status_processor_when_id",
    Payment.status,
    Payment.processor_id,
    PAYMENT_WHEN,
    Payment.id,
    sqlite_where=REFUNDS,
    postgresql_where=REFUNDS,
)


class StripePaymentIntent(Model):
    """Every PaymentIntent paydesk created or heard of (CiviCRM civicrm_stripe_paymentintent)."""

    __tablename__ = "stripe_paymentintent"
    __table_args__ = (
        Index("ix_stripe_paymentintent_created_id", "created_date", "id"),
        Index("ix_stripe_paymentintent_status_created_id", "status", "created_date", "id"),
        Index(
            "ix_stripe_paymentintent_processor_status_created_id",
            "processor_id",
            "status",
            "created_date",
            "id",
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_intent_id: Mapped[str] = mapped_column(String(255), unique=True)
    contribution_id: Mapped[int | None] = mapped_column(ForeignKey("contribution.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str | None] = mapped_column(String(32), index=True)
    identifier: Mapped[str | None] = mapped_column(String(255))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    customer_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    capture_method: Mapped[str | None] = mapped_column(String(16))
    created_date: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    flags: Mapped[str | None] = mapped_column(String(100))
    referrer: Mapped[str | None] = mapped_column(String(255))
    extra_data: Mapped[str | None] = mapped_column(Text)
    # Stripe's last_payment_error (message), and when paydesk learned of it: failed attempts in the
    # last hour feed the card-testing alarm (admin.services.monitoring.alarms).
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    stripe_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
