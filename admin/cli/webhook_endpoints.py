"""``webhook-endpoints list|create|enable|disable|delete``: the Stripe account's webhook endpoints."""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.support import PaydeskGroup, emit, format_option, ppid_option, processor_or_fail

webhook_endpoints_cli = PaydeskGroup("webhook-endpoints", help="The Stripe account's webhook endpoints.")
COLUMNS = ["id", "status", "ours", "url", "missing"]


def _row(e) -> dict:
    row = e.as_dict()
    return row


def _table_row(e) -> dict:
    row = _row(e)
    row["missing"] = len(e.missing)
    return row


@webhook_endpoints_cli.command("list")
@ppid_option
@format_option
def endpoints_list(ppid, fmt):
    """The account's endpoints: which points at this paydesk (ours) and how many recommended types each lacks."""
    from admin.services.settings.webhook_endpoints import list_endpoints

    listing = list_endpoints(processor_or_fail(ppid))
    if fmt == "json":
        emit([_row(e) for e in listing.rows], fmt)
        return
    click.echo(f"paydesk's address for this processor: {listing.our_url}")
    if not listing.ours:
        click.echo("No endpoint points at it: paydesk receives no events (webhook-endpoints create).")
    emit([_table_row(e) for e in listing.rows], fmt, COLUMNS)


@webhook_endpoints_cli.command("create")
@ppid_option
@click.option("--url", help="The address (default: BASE_URL + /webhooks/stripe/<ppid>).")
@format_option
def endpoints_create(ppid, url, fmt):
    """Create an endpoint at this paydesk with the recommended event types; its signing secret is stored
    beside the processor's old ones."""
    from admin.services.settings.webhook_endpoints import create_endpoint

    made = create_endpoint(processor_or_fail(ppid), url=url)
    if fmt == "json":
        click.echo(json.dumps(_row(made)))
    else:
        click.echo(f"created {made.id} for {made.url}; its signing secret is stored with the processor")


def _toggle(ppid, endpoint_id, fmt, disabled: bool):
    from admin.services.settings.webhook_endpoints import set_disabled

    done = set_disabled(processor_or_fail(ppid), endpoint_id, disabled)
    if fmt == "json":
        click.echo(json.dumps(_row(done)))
    else:
        click.echo(f"{done.id} is {done.status}")


@webhook_endpoints_cli.command("disable")
@click.argument("endpoint_id")
@ppid_option
@format_option
def endpoints_disable(endpoint_id, ppid, fmt):
    """Stop Stripe sending events to an endpoint (it can be enabled again)."""
    _toggle(ppid, endpoint_id, fmt, True)


@webhook_endpoints_cli.command("enable")
@click.argument("endpoint_id")
@ppid_option
@format_option
def endpoints_enable(endpoint_id, ppid, fmt):
    """Send events to a disabled endpoint again."""
    _toggle(ppid, endpoint_id, fmt, False)


@webhook_endpoints_cli.command("delete")
@click.argument("endpoint_id")
@ppid_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@format_option
def endpoints_delete(endpoint_id, ppid, yes, fmt):
    """Delete an endpoint in Stripe (asks first unless --yes)."""
    from admin.services.settings.webhook_endpoints import check_endpoint_id, delete_endpoint

    proc = processor_or_fail(ppid)
    endpoint_id = check_endpoint_id(endpoint_id)
    if not yes:
        click.confirm(
            f"Delete webhook endpoint {endpoint_id} of {proc.name}? Stripe stops sending events to it",
            abort=True,
            err=True,
        )
    rid = delete_endpoint(proc, endpoint_id)
    if fmt == "json":
        click.echo(json.dumps({"id": endpoint_id, "deleted": True, "request_id": rid}))
    else:
        click.echo(f"deleted {endpoint_id}")


def register(app: Flask) -> None:
    app.cli.add_command(webhook_endpoints_cli)
