"""``events list|populate-log|populate-queue|replay|retry-all|cleanup`` (CiviCRM's Stripe
troubleshooting API, on the command line). The long ones run as jobs in the foreground."""

from __future__ import annotations

import click
from flask import Flask

from admin.cli.jobs import run_job
from admin.cli.support import (
    PaydeskGroup,
    emit,
    fail,
    filter_from_options,
    filter_options,
    format_option,
    param_options,
    ppid_option,
    processor_or_fail,
    with_options,
)
from admin.dbutil import parse_id
from admin.errors import ServiceError, StripeFailure
from admin.services.events.jobs import Cleanup, RetryAll
from admin.services.events.queries import EventFilter

events_cli = PaydeskGroup("events", help="Stripe events: the log and the processing queue.")

BRIEF = [
    "event_id",
    "type",
    "created",
    "status",
    "status_reason",
    "last_error",
    "invoice_id",
    "charge_id",
    "payment_intent_id",
    "subscription_id",
]


def _types(values: tuple[str, ...], default: str | None) -> list[str]:
    types = [t.strip() for v in values for t in v.split(",") if t.strip()] or ([default] if default else [])
    return [] if "all" in types else types


@events_cli.command("list")
@filter_options(EventFilter)
@click.option(
    "--expected-charges",
    is_flag=True,
    help="With --subscription: the charges its invoices say there should be, found or missing here.",
)
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--starting-after", help="Page on: events after (older than) this event id.")
@click.option("--output", type=click.Choice(["brief", "raw"]), default="brief", show_default=True)
@format_option
def events_list(expected_charges, limit, starting_after, output, fmt, **options):
    """List events (CiviCRM's Listevents), newest first: the /events page's filter (every type unless --type;
    --source stripe lists what Stripe has, last 30 days)."""
    from admin.services.events import queries as ev
    from admin.services.records.common import event_dict

    ppid, source, subscription = (
        options.get("ppid"),
        options.get("source") or "local",
        options.get("subscription"),
    )
    proc = processor_or_fail(ppid) if (ppid or source == "stripe" or expected_charges) else None
    flt = filter_from_options(EventFilter, **{**options, "ppid": proc.id if proc else None})
    flt.size = limit  # the CLI pages by any size up to 100, not only the page's 25 or 100
    raw = output == "raw"
    try:
        if expected_charges:
            if not subscription:
                raise ServiceError("--expected-charges needs --subscription")
            rows = [
                {
                    "invoice_id": x.id,
                    "created": x.created,
                    "amount": x.amount,
                    "currency": x.currency,
                    "invoice_status": x.status,
                    "charge_id": x.charge_id,
                    "found": "found" if x.found else "MISSING",
                    "contribution_id": x.contribution.id if x.contribution else None,
                }
                for x in ev.expected_charges(proc, subscription)
            ]
            emit(rows, fmt)
            return
        if source == "stripe":
            found, _ = ev.stripe_page(proc, flt, starting_after=starting_after, limit=limit)
            rows = [
                {
                    "event_id": r.event_id,
                    "type": r.type,
                    "created": r.created,
                    "status": r.status,
                    "status_reason": r.local.status_reason if r.local else None,
                    "last_error": r.local.last_error if r.local else None,
                    "object_id": r.object_id,
                    **({"raw": r.raw} if raw else {}),
                }
                for r in found
            ]
        else:
            if starting_after:
                anchor = ev.find_by_event_id(starting_after, flt.ppid)
                if anchor is None:
                    raise ServiceError(f"no stored event {starting_after[:60]!r} to page on from")
                flt.after = ev.cursor_after(anchor)
            flt.size = limit
            rows = [event_dict(e, raw) for e in ev.local_page(flt).rows]
    except StripeFailure as err:  # Stripe failed after the gateway's retries: one line, not a traceback
        fail(ServiceError(f"Stripe: {err.detail}"))
    except ServiceError as err:
        fail(err)
    emit(rows, "json" if raw else fmt, BRIEF)


def _populate(ppid, types, limit, fmt, queue: bool) -> None:
    from admin.services.events.jobs import Populate

    proc = processor_or_fail(ppid)
    try:
        chosen = [t.strip() for v in types for t in v.split(",") if t.strip()]
        params = Populate.of(
            {"types": chosen or Populate.default("types"), "limit": limit, "queue": queue}, options=True
        )
    except ServiceError as err:
        fail(err)
    run_job("events.populate", params, processor_id=proc.id, fmt=fmt)


def _populate_options() -> list:
    from admin.services.events.jobs import Populate

    [types, limit] = param_options(Populate, "types", "limit")
    return [
        ppid_option,
        click.option(
            "--type",
            "types",
            multiple=True,
            help=(f"Event type (repeatable, or 'all'). Default: {', '.join(Populate.default('types'))}."),
        ),
        limit,
        format_option,
    ]


populate_options = _populate_options()


@events_cli.command("populate-log")
@with_options(populate_options)
def populate_log(ppid, types, limit, fmt):
    """Copy Stripe's past events into the log, without duplicates (CiviCRM's Populatelog)."""
    _populate(ppid, types, limit, fmt, queue=False)


@events_cli.command("populate-queue")
@with_options(populate_options)
def populate_queue(ppid, types, limit, fmt):
    """Copy Stripe's past events into the log and queue them for processing (Populatewebhookqueue)."""
    _populate(ppid, types, limit, fmt, queue=True)


@events_cli.command("replay")
@click.option("--id", "row_id", help="The stored event's id in paydesk (the number on /events).")
@click.option("--event-id", help="Stripe's event id (evt_...).")
@ppid_option
@click.option("--no-receipt", is_flag=True, help="Do not send a receipt for what the replay completes.")
@format_option
def replay_cmd(row_id, event_id, ppid, no_receipt, fmt):
    """Fetch an event from Stripe again and process it now (CiviCRM's Stripe.Ipn)."""
    import json

    from admin.services.events import queries as ev
    from admin.services.events.ops import replay
    from admin.services.settings.processors import get_processor

    if bool(row_id) == bool(event_id):
        fail(ServiceError("give either --id or --event-id"))
    try:
        row = None
        if row_id:
            if not (row_id.isascii() and row_id.isdigit()):
                raise ServiceError(f"--id {row_id!r} is not a number (the id shown on /events)")
            if parse_id(row_id) is None:  # 0, or more than an id column holds
                raise ServiceError(f"no stored event with id {row_id}")
            row = ev.find_event(parse_id(row_id))
            proc = get_processor(row.processor_id)
        else:
            if not event_id.startswith("evt_"):
                raise ServiceError(f"--event-id {event_id!r} is not a Stripe event id (they start with evt_)")
            proc = get_processor(ppid)
        res = replay(proc, row=row, event_id=event_id, no_receipt=no_receipt)
    except ServiceError as err:
        fail(err)
    out = {
        "id": res.event.id,
        "event_id": res.event.event_id,
        "type": res.event.type,
        "status": res.status,
        "message": res.message,
        "fetched_from_stripe": res.fetched,
        "stripe_request_id": res.request_id,
    }
    if fmt == "json":
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(
            f"{res.event.event_id} ({res.event.type}): {res.status}"
            + (f": {res.message}" if res.message else "")
        )
    if not res.ok:
        raise SystemExit(1)


@events_cli.command("retry-all")
@ppid_option
@with_options(param_options(RetryAll))
@format_option
def retry_all_cmd(ppid, fmt, **params):
    """Replay the events of payments completed in Stripe but not in paydesk (CiviCRM's Retryall)."""
    proc = processor_or_fail(ppid)
    run_job("events.retry_all", RetryAll(**params), processor_id=proc.id, fmt=fmt)


@events_cli.command("cleanup")
@click.option("--older-than", required=True, help=Cleanup.__dataclass_fields__["older_than"].metadata["help"])
@with_options(param_options(Cleanup, "include_errors"))
@click.option("--ppid", help="Only this processor's events (default: all).")
@format_option
def cleanup_cmd(older_than, include_errors, ppid, fmt):
    """Delete processed (success, ignored, logged) events older than an age."""
    try:
        Cleanup.of({"older_than": older_than}, options=True)
    except ServiceError as err:
        fail(err)
    proc = processor_or_fail(ppid) if ppid else None
    run_job("events.cleanup", Cleanup(older_than, include_errors, proc.id if proc else None), fmt=fmt)


def register(app: Flask) -> None:
    app.cli.add_command(events_cli)
