"""Read-only listings of the records: ``contacts|contributions|payments|recurring list``
(``intents list`` is in ``cli_intents``)."""

from __future__ import annotations

import click
from flask import Flask

from .cli import ID, PaydeskGroup, emit, format_option, limit_option
from .models import CONTRIBUTION_STATUSES
from .services import records


def _group(name: str, help_: str) -> PaydeskGroup:
    return PaydeskGroup(name, help=help_)


contacts_cli = _group("contacts", "Contacts (Stripe customers' people).")
contributions_cli = _group("contributions", "Contributions (one-off gifts and recurring instalments).")
payments_cli = _group("payments", "Payments: charges and refunds on contributions.")
recurring_cli = _group("recurring", "Recurring contributions (Stripe subscriptions).")


@contacts_cli.command("list")
@click.option("--search", help="Part of a name or email.")
@click.option("--customer", help="Stripe customer id.")
@limit_option
@format_option
def contacts_list(search, customer, limit, fmt):
    emit(records.list_contacts(search=search, customer_id=customer, limit=limit), fmt,
         ["id", "display_name", "email", "stripe_customer_ids", "source", "created_at"])


@contributions_cli.command("list")
@click.option("--status", type=click.Choice(CONTRIBUTION_STATUSES))
@click.option("--contact-id", type=ID)
@click.option("--recur-id", type=ID)
@click.option("--trxn-id", help="Charge, invoice or payment intent id.")
@click.option("--ppid", type=ID)
@click.option("--since", type=click.DateTime(), help="Received on or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Received before (UTC).")
@limit_option
@format_option
def contributions_list(status, contact_id, recur_id, trxn_id, ppid, since, until, limit, fmt):
    emit(records.list_contributions(status=status, contact_id=contact_id, recur_id=recur_id, trxn_id=trxn_id,
                                    processor_id=ppid, since=since, until=until, limit=limit), fmt,
         ["id", "receive_date", "contact", "display_amount", "status", "trxn_id", "subscription_id",
          "failure_message"])


@payments_cli.command("list")
@click.option("--contribution-id", type=ID)
@click.option("--charge", help="Stripe charge id.")
@click.option("--ppid", type=ID)
@limit_option
@format_option
def payments_list(contribution_id, charge, ppid, limit, fmt):
    emit(records.list_payments(contribution_id=contribution_id, charge_id=charge, processor_id=ppid, limit=limit),
         fmt, ["id", "payment_date", "contribution_id", "display_amount", "fee", "net", "status", "trxn_id"])


@recurring_cli.command("list")
@click.option("--status")
@click.option("--subscription", help="Stripe subscription id.")
@click.option("--ppid", type=ID)
@limit_option
@format_option
def recurring_list(status, subscription, ppid, limit, fmt):
    emit(records.list_recurring(status=status, subscription_id=subscription, processor_id=ppid, limit=limit), fmt,
         ["id", "contact", "display_amount", "interval", "status", "subscription_id", "next_sched_date"])


def register(app: Flask) -> None:
    for group in (contacts_cli, contributions_cli, payments_cli, recurring_cli):
        app.cli.add_command(group)
