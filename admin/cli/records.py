"""Read-only listings of the records: ``contacts|contributions|payments|recurring list``
(``intents list`` is in ``cli/intents``).

``contacts``, ``contributions``, ``payments`` and ``recurring`` read the same filter objects as
the pages (``ContactFilter``, ``ContributionFilter``, ``PaymentFilter``, ``SubscriptionFilter``):
each option is a filter field, parsed and checked as the page parses its query string.
"""

from __future__ import annotations

import click
from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    filter_from_options,
    format_option,
    limit_option,
    with_options,
)
from admin.models import CONTRIBUTION_STATUSES
from admin.services.records import common as records

DATE = "YYYY-MM-DD (UTC)"


def _group(name: str, help_: str) -> PaydeskGroup:
    return PaydeskGroup(name, help=help_)


contacts_cli = _group("contacts", "Contacts (Stripe customers' people).")
contributions_cli = _group("contributions", "Contributions (one-off gifts and recurring instalments).")
payments_cli = _group("payments", "Payments: charges and refunds on contributions.")
recurring_cli = _group("recurring", "Recurring contributions (Stripe subscriptions).")


def money_options(what: str) -> list:
    return [
        click.option("--min-amount", help=f"{what} at least this much, in major units (12.50)."),
        click.option("--max-amount", help=f"{what} at most this much, in major units."),
        click.option("--currency", multiple=True, help="Only this currency (repeatable)."),
    ]


common = [
    click.option("--ppid", help="Payment processor id or name."),
    click.option("--search", "q", help="Part of a contact's name or email, or a Stripe id."),
    click.option("--contact-id", help="Only this contact's."),
]


@contacts_cli.command("list")
@click.option("--search", "q", help="Part of a name or email, or a Stripe customer id.")
@click.option("--customer", help="Stripe customer id.")
@click.option("--linked", type=click.Choice(["yes", "no", "any"]), default="any", show_default=True,
              help="Linked to a Stripe customer (the /customers page shows 'yes').")
@click.option("--ppid", help="Linked on this payment processor (id or name).")
@click.option("--since", help=f"Added on or after {DATE}.")
@click.option("--until", help=f"Added on or before {DATE}.")
@limit_option
@format_option
def contacts_list(limit, fmt, **options):
    """Contacts, newest first (the /customers page's filter)."""
    from admin.services.records.contacts import ContactFilter, contact_rows

    emit(list(contact_rows(filter_from_options(ContactFilter, **options), limit)), fmt,
         ["id", "display_name", "email", "stripe_customer_ids", "source", "created_at"])


@contributions_cli.command("list")
@click.option("--status", multiple=True, type=click.Choice(CONTRIBUTION_STATUSES), help="Repeatable.")
@click.option("--type", type=click.Choice(["one-off", "recurring"]))
@click.option("--since", help=f"Received on or after {DATE}.")
@click.option("--until", help=f"Received on or before {DATE}.")
@click.option("--month", help="Received in this month (YYYY-MM).")
@with_options(money_options("Contributions of"))
@with_options(common)
@click.option("--recur-id", help="Only this recurring contribution's.")
@click.option("--trxn-id", help="Charge, invoice or payment intent id.")
@limit_option
@format_option
def contributions_list(limit, fmt, **options):
    """Contributions, newest first (the /contributions page's filter)."""
    flt = filter_from_options(records.ContributionFilter, **options)
    emit(list(records.contribution_rows(flt, limit)), fmt,
         ["id", "receive_date", "contact", "display_amount", "status", "type", "trxn_id", "subscription_id",
          "failure_message"])


@payments_cli.command("list")
@click.option("--kind", type=click.Choice(["charge", "refund"]))
@click.option("--status", multiple=True, type=click.Choice(records.PAYMENT_STATUSES), help="Repeatable.")
@click.option("--type", type=click.Choice(["one-off", "recurring"]))
@click.option("--since", help=f"Paid on or after {DATE}.")
@click.option("--until", help=f"Paid on or before {DATE}.")
@click.option("--month", help="Paid in this month (YYYY-MM).")
@with_options(money_options("Payments of"))
@with_options(common)
@click.option("--contribution-id", help="Only this contribution's.")
@click.option("--charge", help="Stripe charge id.")
@limit_option
@format_option
def payments_list(limit, fmt, **options):
    """Payments and refunds, newest first (the /payments page's filter)."""
    flt = filter_from_options(records.PaymentFilter, **options)
    emit(list(records.payment_rows(flt, limit)), fmt,
         ["id", "payment_date", "contribution_id", "display_amount", "fee", "net", "status", "trxn_id"])


@recurring_cli.command("list")
@click.option("--status", multiple=True, help="In Progress, Pending, Failing, Cancelled, Completed (repeatable).")
@click.option("--subscription", help="Stripe subscription id.")
@click.option("--interval", multiple=True, type=click.Choice(["day", "week", "month", "year"]))
@click.option("--since", help=f"Started on or after {DATE}.")
@click.option("--until", help=f"Started on or before {DATE}.")
@click.option("--differs", is_flag=True, default=None, help="Only those that differed from Stripe when last compared.")
@with_options(money_options("Subscriptions of"))
@with_options(common)
@limit_option
@format_option
def recurring_list(limit, fmt, **options):
    """Recurring contributions, newest first (the /subscriptions page's filter)."""
    from admin.services.records.subscriptions import SubscriptionFilter, subscription_rows

    emit(list(subscription_rows(filter_from_options(SubscriptionFilter, **options), limit)), fmt,
         ["id", "contact", "display_amount", "interval", "status", "subscription_id", "next_sched_date",
          "differs_from_stripe"])


def register(app: Flask) -> None:
    for group in (contacts_cli, contributions_cli, payments_cli, recurring_cli):
        app.cli.add_command(group)
