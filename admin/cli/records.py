"""Read-only listings of the records: ``contacts|contributions|payments|recurring list``
(``intents list`` is in ``cli/intents``).

``contacts``, ``contributions``, ``payments`` and ``recurring`` read the same filter objects as
the pages (``ContactFilter``, ``ContributionFilter``, ``PaymentFilter``, ``SubscriptionFilter``):
each option is a filter field, parsed and checked as the page parses its query string.
"""

from __future__ import annotations

from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    filter_from_options,
    filter_options,
    format_option,
    limit_option,
)
from admin.services.records.common import ContributionFilter, PaymentFilter, contribution_rows, payment_rows
from admin.services.records.contacts import ContactFilter, contact_rows
from admin.services.records.subscriptions import SubscriptionFilter, subscription_rows

contacts_cli = PaydeskGroup("contacts", help="Contacts (Stripe customers' people).")
contributions_cli = PaydeskGroup(
    "contributions", help="Contributions (one-off gifts and recurring instalments)."
)
payments_cli = PaydeskGroup("payments", help="Payments: charges and refunds on contributions.")
recurring_cli = PaydeskGroup("recurring", help="Recurring contributions (Stripe subscriptions).")


@contacts_cli.command("list")
@filter_options(ContactFilter)
@limit_option
@format_option
def contacts_list(limit, fmt, **options):
    """Contacts, newest first (the /customers page's filter: linked to a Stripe customer unless --linked)."""
    emit(
        list(contact_rows(filter_from_options(ContactFilter, **options), limit)),
        fmt,
        ["id", "display_name", "email", "stripe_customer_ids", "source", "created_at"],
    )


@contributions_cli.command("list")
@filter_options(ContributionFilter)
@limit_option
@format_option
def contributions_list(limit, fmt, **options):
    """Contributions, newest first (the /contributions page's filter)."""
    emit(
        list(contribution_rows(filter_from_options(ContributionFilter, **options), limit)),
        fmt,
        [
            "id",
            "receive_date",
            "contact",
            "display_amount",
            "status",
            "type",
            "trxn_id",
            "subscription_id",
            "failure_message",
        ],
    )


@payments_cli.command("list")
@filter_options(PaymentFilter)
@limit_option
@format_option
def payments_list(limit, fmt, **options):
    """Payments and refunds, newest first (the /payments page's filter)."""
    emit(
        list(payment_rows(filter_from_options(PaymentFilter, **options), limit)),
        fmt,
        ["id", "payment_date", "contribution_id", "display_amount", "fee", "net", "status", "trxn_id"],
    )


@recurring_cli.command("list")
@filter_options(SubscriptionFilter)
@limit_option
@format_option
def recurring_list(limit, fmt, **options):
    """Recurring contributions, newest first (the /subscriptions page's filter)."""
    emit(
        list(subscription_rows(filter_from_options(SubscriptionFilter, **options), limit)),
        fmt,
        [
            "id",
            "contact",
            "display_amount",
            "interval",
            "status",
            "subscription_id",
            "next_sched_date",
            "differs_from_stripe",
        ],
    )


def register(app: Flask) -> None:
    for group in (contacts_cli, contributions_cli, payments_cli, recurring_cli):
        app.cli.add_command(group)
