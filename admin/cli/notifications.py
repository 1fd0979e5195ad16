"""``flask --app wsgi notifications list|add|remove|rotate|deliveries|resend``: the URLs that receive signed
notifications (the same services as /settings/notifications)."""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.support import (
    PaydeskGroup,
    emit,
    filter_from_options,
    filter_options,
    format_option,
    limit_option,
)
from admin.models import NOTIFICATION_TYPES
from admin.services.notifications.delivery import DeliveryFilter

notifications_cli = PaydeskGroup(
    "notifications",
    help="URLs that receive signed JSON when contributions and recurring contributions change.",
)


def endpoint_dict(endpoint) -> dict:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.event_list,
        "secret": endpoint.secret_hint,
        "previous_secret_until": endpoint.previous_expires_at.isoformat(timespec="seconds")
        if endpoint.previous_expires_at
        else None,
        "created_at": endpoint.created_at.isoformat(timespec="seconds"),
    }


def _with_secret(made, fmt: str, what: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({**endpoint_dict(made.endpoint), "secret": made.secret}))
    else:
        click.echo(made.secret)
        click.echo(
            f"{what} {made.endpoint.id} ({made.endpoint.url}); copy the signing secret now: it is not shown "
            "again.",
            err=True,
        )


@notifications_cli.command("list")
@format_option
def notifications_list(fmt):
    """List the URLs (secrets masked)."""
    from admin.services.notifications.endpoints import list_endpoints

    emit([endpoint_dict(e) for e in list_endpoints()], fmt, ["id", "url", "events", "secret", "created_at"])


@notifications_cli.command("add")
@click.option("--url", required=True, help="The http(s) URL that receives notifications.")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(list(NOTIFICATION_TYPES)),
    help="A type to send (repeatable; default: every type).",
)
@click.option("--description", help="What receives them (shown on the page).")
@format_option
def notifications_add(url, events, description, fmt):
    """Register a URL; prints its signing secret once."""
    from admin.services.notifications.endpoints import add_endpoint

    _with_secret(add_endpoint(url, list(events), description), fmt, "Notification URL")


@notifications_cli.command("remove")
@click.argument("endpoint")
@format_option
def notifications_remove(endpoint, fmt):
    """Remove a URL (by id) and its history; queued deliveries to it are not sent."""
    from admin.services.notifications.endpoints import remove_endpoint

    removed = remove_endpoint(endpoint)
    if fmt == "json":
        click.echo(json.dumps({"id": removed.id, "url": removed.url, "removed": True}))
    else:
        click.echo(f"Notification URL {removed.id} ({removed.url}) removed.")


@notifications_cli.command("rotate")
@click.argument("endpoint")
@click.option(
    "--keep-old-hours",
    type=click.IntRange(0, 168),
    default=None,
    help="Hours the old secret keeps signing beside the new one (0: stops now) [default: 24].",
)
@format_option
def notifications_rotate(endpoint, keep_old_hours, fmt):
    """A new signing secret for a URL; prints it once."""
    from admin.services.notifications.endpoints import rotate_secret

    _with_secret(rotate_secret(endpoint, keep_old_hours), fmt, "New secret for notification URL")


@notifications_cli.command("deliveries")
@click.argument("endpoint")
@filter_options(DeliveryFilter)
@limit_option
@format_option
def notifications_deliveries(endpoint, limit, fmt, **options):
    """A URL's deliveries, newest first: status, attempts, response code, times."""
    from admin.services.notifications.delivery import delivery_page
    from admin.services.notifications.endpoints import find_endpoint

    hook = find_endpoint(endpoint)
    flt = filter_from_options(DeliveryFilter, **options)
    flt.size = limit
    rows = [r.as_dict() for r in delivery_page(hook.id, flt).rows]
    emit(
        rows,
        fmt,
        [
            "id",
            "status",
            "type",
            "notification_id",
            "object_type",
            "object_id",
            "attempts",
            "response_code",
            "last_attempt_at",
            "next_attempt_at",
            "error",
        ],
    )


@notifications_cli.command("resend")
@click.argument("delivery")
@format_option
def notifications_resend(delivery, fmt):
    """Send a delivered or failed notification again (by delivery id; the worker sends it)."""
    from admin.services.notifications.delivery import resend

    row = resend(delivery)
    if fmt == "json":
        click.echo(json.dumps(row.as_dict(), default=str))
    else:
        click.echo(f"Delivery {row.delivery.id} ({row.delivery.notification_id}) queued to be sent again.")


def register(app: Flask) -> None:
    app.cli.add_command(notifications_cli)
