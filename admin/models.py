"""All tables. Money is integer minor units plus an ISO currency code.

Datetimes are naive UTC (see ``admin.timeutil``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from . import crypto
from .extensions import db
from .timeutil import utcnow

# Contribution statuses (CiviCRM names).
PENDING = "Pending"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELLED = "Cancelled"
REFUNDED = "Refunded"
PARTIALLY_REFUNDED = "Partially refunded"
CONTRIBUTION_STATUSES = (PENDING, COMPLETED, FAILED, CANCELLED, REFUNDED, PARTIALLY_REFUNDED)

# Recurring contribution statuses.
RECUR_PENDING = "Pending"
RECUR_IN_PROGRESS = "In Progress"
RECUR_FAILING = "Failing"
RECUR_CANCELLED = "Cancelled"
RECUR_COMPLETED = "Completed"

# stripe_event.status
EV_LOGGED = "logged"
EV_QUEUED = "queued"
EV_PROCESSING = "processing"
EV_SUCCESS = "success"
EV_ERROR = "error"
EV_IGNORED = "ignored"
EVENT_STATUSES = (EV_LOGGED, EV_QUEUED, EV_PROCESSING, EV_SUCCESS, EV_ERROR, EV_IGNORED)

ROLES = ("viewer", "operator", "admin")

Money = BigInteger  # minor units


def _ts() -> Mapped[datetime]:
    return mapped_column(DateTime, default=utcnow, nullable=False)


class PaymentProcessor(db.Model):
    """A Stripe account paydesk talks to (the CiviCRM "ppid")."""

    __tablename__ = "payment_processor"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    mode: Mapped[str] = mapped_column(String(4), default="test")  # test | live
    secret_key_enc: Mapped[str] = mapped_column(Text)
    # Publishable keys are public by design (they are sent to every donor's browser).
    publishable_key: Mapped[str | None] = mapped_column(String(255))
    webhook_secrets_enc: Mapped[str | None] = mapped_column(Text)
    api_base: Mapped[str | None] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def livemode(self) -> bool:
        return self.mode == "live"

    @property
    def secret_key(self) -> str:
        return crypto.decrypt(self.secret_key_enc)

    @secret_key.setter
    def secret_key(self, value: str) -> None:
        self.secret_key_enc = crypto.encrypt(value)

    @property
    def webhook_secrets(self) -> list[str]:
        return crypto.decrypt_list(self.webhook_secrets_enc)

    @webhook_secrets.setter
    def webhook_secrets(self, values: list[str]) -> None:
        self.webhook_secrets_enc = crypto.encrypt_list([v for v in values if v])

    def public_dict(self) -> dict[str, Any]:
        """What listings show: secrets masked, never in clear."""
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.mode,
            "secret_key": crypto.mask(self.secret_key),
            "publishable_key": self.publishable_key,
            "webhook_secrets": [crypto.mask(s) for s in self.webhook_secrets],
            "api_base": self.api_base,
            "default": self.is_default,
            "active": self.active,
        }


class Contact(db.Model):
    __tablename__ = "contact"
    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(255), index=True)
    email: Mapped[str | None] = mapped_column(String(255), index=True)
    phone: Mapped[str | None] = mapped_column(String(64))
    postal_code: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(64))
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    stripe_customers: Mapped[list[StripeCustomer]] = relationship(back_populates="contact")


class StripeCustomer(db.Model):
    __tablename__ = "stripe_customer"
    __table_args__ = (UniqueConstraint("processor_id", "customer_id", name="uq_stripe_customer"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255), index=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _ts()

    contact: Mapped[Contact] = relationship(back_populates="stripe_customers")


class ContributionRecur(db.Model):
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
    status: Mapped[str] = mapped_column(String(32), default=RECUR_PENDING, index=True)
    stripe_status: Mapped[str | None] = mapped_column(String(32))
    start_date: Mapped[datetime | None] = mapped_column(DateTime)
    next_sched_date: Mapped[datetime | None] = mapped_column(DateTime)
    cancel_date: Mapped[datetime | None] = mapped_column(DateTime)
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    # Stripe ``created`` of the newest subscription event applied (ignore older ones).
    stripe_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact | None] = relationship()


class Contribution(db.Model):
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
    status: Mapped[str] = mapped_column(String(32), default=PENDING)
    trxn_id: Mapped[str | None] = mapped_column(String(255))
    invoice_id: Mapped[str | None] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    receive_date: Mapped[datetime | None] = mapped_column(DateTime)
    description: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str | None] = mapped_column(String(64))
    fee_amount: Mapped[int] = mapped_column(Money, default=0)
    net_amount: Mapped[int] = mapped_column(Money, default=0)
    refunded_amount: Mapped[int] = mapped_column(Money, default=0)
    failure_message: Mapped[str | None] = mapped_column(String(500))
    receipt_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = _ts()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    contact: Mapped[Contact | None] = relationship()
    recur: Mapped[ContributionRecur | None] = relationship()
    payments: Mapped[list[Payment]] = relationship(back_populates="contribution", order_by="Payment.id")


class Payment(db.Model):
    """A charge (positive) or refund (negative) on a contribution."""

    __tablename__ = "payment"
    __table_args__ = (UniqueConstraint("processor_id", "trxn_id", name="uq_payment_trxn"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    contribution_id: Mapped[int] = mapped_column(ForeignKey("contribution.id"), index=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    trxn_id: Mapped[str] = mapped_column(String(255))  # charge id, or refund id for refunds
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    refund_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int] = mapped_column(Money)
    fee: Mapped[int] = mapped_column(Money, default=0)
    net: Mapped[int] = mapped_column(Money, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32), default=COMPLETED)
    payment_date: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[datetime] = _ts()

    contribution: Mapped[Contribution] = relationship(back_populates="payments")


class StripePaymentIntent(db.Model):
    """Every PaymentIntent paydesk created or heard of (CiviCRM civicrm_stripe_paymentintent)."""

    __tablename__ = "stripe_paymentintent"
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
    stripe_updated: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class StripeEvent(db.Model):
    """Every Stripe event paydesk has seen; also the processing queue."""

    __tablename__ = "stripe_event"
    __table_args__ = (
        UniqueConstraint("processor_id", "event_id", name="uq_stripe_event"),
        Index("ix_stripe_event_queue", "status", "next_attempt_at"),
        Index("ix_stripe_event_type_created", "type", "created"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    created: Mapped[int] = mapped_column(BigInteger, default=0)  # Stripe's unix time
    livemode: Mapped[bool] = mapped_column(Boolean, default=False)
    api_version: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    charge_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    raw: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="webhook")  # webhook | populate | replay
    status: Mapped[str] = mapped_column(String(16), default=EV_QUEUED)
    status_reason: Mapped[str | None] = mapped_column(Text)
    no_receipt: Mapped[bool] = mapped_column(Boolean, default=False)
    refetch: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime)

    processor: Mapped[PaymentProcessor] = relationship()


class OutboxTask(db.Model):
    """Side effects that must follow a committed transaction (Stripe metadata, receipts)."""

    __tablename__ = "outbox_task"
    __table_args__ = (Index("ix_outbox_queue", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    # "<kind>:<what>", e.g. "receipt:42": one task per side effect, however often it is asked for.
    key: Mapped[str] = mapped_column(String(255), unique=True)
    processor_id: Mapped[int | None] = mapped_column(ForeignKey("payment_processor.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=EV_QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _ts()
    done_at: Mapped[datetime | None] = mapped_column(DateTime)


class CardTestingSignal(db.Model):
    """A failed charge with no customer and no known intent: a card-testing probe."""

    __tablename__ = "card_testing_signal"
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    event_id: Mapped[str | None] = mapped_column(String(255))
    amount: Mapped[int | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    card_country: Mapped[str | None] = mapped_column(String(4))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class WebhookRejection(db.Model):
    """Counter of refused webhook deliveries, by processor and reason."""

    __tablename__ = "webhook_rejection"
    __table_args__ = (UniqueConstraint("processor_id", "reason", name="uq_webhook_rejection"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    last_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RateLimit(db.Model):
    """A fixed-window counter: failed sign-ins per address, donation attempts per card or address, ..."""

    __tablename__ = "rate_limit"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime)


class User(UserMixin, db.Model):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="viewer")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = _ts()

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def can(self, role: str) -> bool:
        """True when this user's role is at least ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


class AuditLog(db.Model):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor: Mapped[str] = mapped_column(String(255))  # email, or "cli:<user>" / "system"
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    processor_id: Mapped[int | None] = mapped_column(Integer)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[str] = mapped_column(String(16))  # ok | error
    message: Mapped[str | None] = mapped_column(Text)
    stripe_request_id: Mapped[str | None] = mapped_column(String(255))
