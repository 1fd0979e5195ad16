"""The public donation form: forms, the plans their regular gifts use, spent form tokens, refusals."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from admin.extensions import Model
from admin.models.base import Money, created_column
from admin.timeutil import utcnow

if TYPE_CHECKING:
    from admin.models.processors import PaymentProcessor

# Frequencies a form may offer: name shown to donors -> Stripe plan interval (None: one-off).
FREQUENCIES = {"one-off": None, "monthly": "month", "yearly": "year"}
FREQUENCY_LABELS = {"one-off": "One-off", "monthly": "Monthly", "yearly": "Yearly"}


class DonationForm(Model):
    """A public donation page at ``/donate/<slug>``."""

    __tablename__ = "donation_form"
    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    intro: Mapped[str | None] = mapped_column(Text)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    amounts: Mapped[list[int]] = mapped_column(JSON, default=list)  # preset amounts, minor units
    allow_other_amount: Mapped[bool] = mapped_column(Boolean, default=True)
    min_amount: Mapped[int] = mapped_column(Money, default=100)
    max_amount: Mapped[int | None] = mapped_column(Money)
    frequencies: Mapped[list[str]] = mapped_column(JSON, default=list)  # keys of FREQUENCIES
    postcode_field: Mapped[bool] = mapped_column(Boolean, default=True)
    thank_you_text: Mapped[str | None] = mapped_column(Text)
    receipts: Mapped[bool] = mapped_column(Boolean, default=True)
    # "Stripe sends the receipt": the PaymentIntent carries receipt_email, and paydesk sends none.
    stripe_receipt: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    processor: Mapped[PaymentProcessor] = relationship()


class DonationPlan(Model):
    """A Stripe plan for regular gifts of one amount, currency and interval: created once, then reused."""

    __tablename__ = "donation_plan"
    __table_args__ = (
        UniqueConstraint(
            "processor_id", "currency", "amount", "interval", "interval_count", name="uq_donation_plan"
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    processor_id: Mapped[int] = mapped_column(ForeignKey("payment_processor.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(Money)
    interval: Mapped[str] = mapped_column(String(16))
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    plan_id: Mapped[str] = mapped_column(String(255))
    product_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = created_column()


class DonorLink(Model):
    """A signed donor link staff made for one contact and one form (``forms link``): one gift, then spent.

    The link's token names this row; the row says whether it may still be used: not revoked (from the
    contact's page), not spent (a gift through it reached Stripe), and younger than ``DONATE_LINK_MAX_AGE``.
    A declined card leaves it usable, so the donor can try another card.
    """

    __tablename__ = "donor_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"), index=True)
    form_id: Mapped[int] = mapped_column(ForeignKey("donation_form.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = created_column()
    created_by: Mapped[str | None] = mapped_column(String(255))
    # The gift it was spent on (set when a gift through it starts; cleared again when that gift is declined).
    contribution_id: Mapped[int | None] = mapped_column(Integer)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(255))

    form: Mapped[DonationForm] = relationship()


class SpentFormToken(Model):
    """A one-time form token that has been used (a second use is a replay). Kept for the token's lifetime."""

    __tablename__ = "spent_form_token"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    spent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class DonationRefusal(Model):
    """One refused or failed donation attempt: what the card-testing alarm and the dashboard count.

    ``reason`` is one of ``REFUSAL_REASONS``; ``payment_failed`` is an attempt that reached Stripe
    and was declined (or failed 3-D Secure), every other reason is a request paydesk refused
    before calling Stripe. One row stands for ``count`` refusals: a flood of them from one address
    is tallied and written together (``services.donations.guard``), ``at`` being the latest.
    """

    __tablename__ = "donation_refusal"
    __table_args__ = (
        Index("ix_donation_refusal_reason_at", "reason", "at"),
        Index("ix_donation_refusal_ip_at", "client_ip", "at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    form_id: Mapped[int | None] = mapped_column(ForeignKey("donation_form.id", ondelete="SET NULL"))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(500))
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


REFUSAL_REASONS = (
    "token_missing",  # no form token, or one that does not verify (forged, other form, expired)
    "token_replayed",  # a token that was used before
    "rate_limit_ip",  # Flask-Limiter: too many payment requests from one address
    "rate_limit_form",  # Flask-Limiter: too many payment requests to one form
    "ip_blocked",  # the address had too many failed payments within the hour
    "below_minimum",  # an amount under the form's minimum (card testers like small amounts)
    "honeypot",  # the hidden field humans never fill was filled
    "captcha",  # the captcha hook said no
    "payment_failed",  # the card was declined, or 3-D Secure failed (counts towards ip_blocked)
)
