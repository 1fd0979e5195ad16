"""``connect accounts|persons|transfers|payouts``: Stripe Connect from the command line, with the same filters
and checks as ``/connect``."""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    fail,
    filter_from_options,
    filter_options,
    format_option,
    ppid_option,
    processor_or_fail,
)
from admin.errors import ServiceError
from admin.services.connect.accounts import TYPES, AccountFilter
from admin.services.connect.payouts import STATUSES, PayoutFilter
from admin.services.connect.transfers import TransferFilter

connect_cli = PaydeskGroup("connect", help="Stripe Connect: connected accounts, persons, transfers, payouts.")
accounts_cli = PaydeskGroup("accounts", help="Connected accounts.")
transfers_cli = PaydeskGroup("transfers", help="Transfers to connected accounts.")
connect_cli.add_command(accounts_cli)
connect_cli.add_command(transfers_cli)

ACCOUNT_COLUMNS = [
    "id",
    "email",
    "type",
    "country",
    "charges_enabled",
    "payouts_enabled",
    "currently_due",
    "created",
]
TRANSFER_COLUMNS = ["id", "account", "amount", "currency", "transfer_group", "created"]
PAYOUT_COLUMNS = ["id", "amount", "currency", "status", "arrival_date", "created"]
TXN_COLUMNS = ["id", "type", "amount", "fee", "net", "currency", "source", "created"]
limit_option = click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=25,
    show_default=True,
    help="How many rows (read from Stripe 100 at a time).",
)


def _one(row: dict, fmt: str, columns: list[str] | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(row, indent=2, default=str))
    else:
        emit([row], fmt, columns)


@accounts_cli.command("list")
@filter_options(AccountFilter)
@limit_option
@format_option
def accounts_list(limit, fmt, **options):
    """Connected accounts, newest first (the same filters as /connect)."""
    from admin.services.connect import accounts, common

    emit(
        list(common.walk_pages(accounts.accounts_page, filter_from_options(AccountFilter, **options), limit)),
        fmt,
        ACCOUNT_COLUMNS,
    )


@accounts_cli.command("create")
@ppid_option
@click.option("--email")
@click.option("--type", "kind", type=click.Choice(TYPES), default="express", show_default=True)
@click.option("--country", default="US", show_default=True, help="Two-letter country code.")
@format_option
def accounts_create(ppid, email, kind, country, fmt):
    """Create a connected account; prints its id."""
    from admin.services.connect.accounts import NewAccount, create_account

    made = create_account(processor_or_fail(ppid), NewAccount(email=email, type=kind, country=country))
    if fmt == "json":
        _one(made, fmt)
    else:
        click.echo(made["id"])


@accounts_cli.command("get")
@click.argument("account")
@ppid_option
@format_option
def accounts_get(account, ppid, fmt):
    """One account: requirements, charges and payouts enabled, persons, balance."""
    from admin.services.connect.accounts import get_account

    d = get_account(processor_or_fail(ppid), account)
    if fmt == "json":
        _one({**d.summary, "requirements": d.requirements, "persons": d.persons, "balance": d.balance}, fmt)
        return
    emit([d.summary], fmt, ACCOUNT_COLUMNS)
    for key in ("currently_due", "past_due", "eventually_due"):
        if d.requirements[key]:
            click.echo(f"{key.replace('_', ' ')}: {', '.join(d.requirements[key])}")
    if d.requirements.get("disabled_reason"):
        click.echo(f"disabled reason: {d.requirements['disabled_reason']}")
    click.echo(f"persons: {len(d.persons)}")


@accounts_cli.command("delete")
@click.argument("account")
@ppid_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@format_option
def accounts_delete(account, ppid, yes, fmt):
    """Delete a connected account (test mode: any time; live mode: only with a zero balance)."""
    from admin.services.connect import common
    from admin.services.connect.accounts import delete_account

    proc = processor_or_fail(ppid)
    account = common.check_id(account, "account", "account")
    if not yes:
        click.confirm(
            f"Delete connected account {account} ({proc.mode} mode)? This cannot be undone",
            abort=True,
            err=True,
        )
    rid = delete_account(proc, account)
    if fmt == "json":
        _one({"id": account, "deleted": True, "request_id": rid}, fmt)
    else:
        click.echo(f"deleted {account}")


@connect_cli.command("persons")
@click.argument("account")
@ppid_option
@format_option
def persons(account, ppid, fmt):
    """The persons of a connected account."""
    from admin.services.connect.accounts import list_persons

    emit(
        list_persons(processor_or_fail(ppid), account), fmt, ["id", "name", "email", "roles", "verification"]
    )


@transfers_cli.command("list")
@filter_options(TransferFilter)
@limit_option
@format_option
def transfers_list(limit, fmt, **options):
    """Transfers to connected accounts, newest first."""
    from admin.services.connect import common, transfers

    emit(
        list(
            common.walk_pages(transfers.transfers_page, filter_from_options(TransferFilter, **options), limit)
        ),
        fmt,
        TRANSFER_COLUMNS,
    )


@transfers_cli.command("create")
@ppid_option
@click.option("--account", required=True, help="The connected account (acct_...).")
@click.option("--amount", required=True, help="In major units, e.g. 12.50.")
@click.option("--currency", default="usd", show_default=True)
@click.option("--transfer-group")
@click.option("--description")
@click.option("--metadata", multiple=True, help="key=value (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@format_option
def transfers_create(ppid, account, amount, currency, transfer_group, description, metadata, yes, fmt):
    """Move money from the platform's balance to a connected account (asks first unless --yes)."""
    from admin.services.connect.transfers import NewTransfer, check_new, create_transfer
    from admin.services.payments.common import metadata_pairs

    proc = processor_or_fail(ppid)
    try:
        new = NewTransfer(
            account=account,
            amount=amount,
            currency=currency,
            transfer_group=transfer_group,
            description=description,
            metadata=metadata_pairs(metadata),
        )
        checked = check_new(new)
    except ServiceError as err:
        fail(err)
    if not yes:
        click.confirm(f"Transfer {checked.money} to {checked.account}?", abort=True, err=True)
    made = create_transfer(proc, new)
    if fmt == "json":
        _one(made, fmt)
    else:
        click.echo(made["id"])


@connect_cli.command("payouts")
@click.option("--account", required=True, help="The connected account (acct_...).")
@click.option("--payout", help="One payout (po_...): its balance transactions and totals per currency.")
@click.option("--status", type=click.Choice(STATUSES))
@ppid_option
@limit_option
@format_option
def payouts_cmd(account, payout, status, ppid, limit, fmt):
    """Payouts of a connected account, or the balance transactions included in one payout."""
    from admin.services.connect import common, payouts

    if not payout:
        flt = filter_from_options(PayoutFilter, ppid=ppid, account=account, status=status)
        emit(list(common.walk_pages(payouts.payouts_page, flt, limit)), fmt, PAYOUT_COLUMNS)
        return
    txns = payouts.payout_transactions(processor_or_fail(ppid), account, payout)
    if fmt == "json":
        _one(
            {"payout": txns.payout, "transactions": txns.rows, "totals": txns.totals, "more": txns.more}, fmt
        )
        return
    emit(txns.rows, fmt, TXN_COLUMNS)
    click.echo("")
    emit(txns.totals, fmt, ["currency", "count", "amount", "fee", "net"])
    if txns.more:
        click.echo(f"(the first {len(txns.rows)} transactions only)")


def register(app: Flask) -> None:
    app.cli.add_command(connect_cli)
