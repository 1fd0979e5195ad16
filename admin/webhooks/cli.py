"""CLI for the webhook pipeline: ``worker`` and ``events list``."""

from __future__ import annotations

import click
from flask import Flask, current_app

from ..cli import PaydeskGroup, emit, format_option

events_cli = PaydeskGroup("events", help="Stripe events: the log and the processing queue.")


@events_cli.command("list")
@click.option("--ppid", help="Payment processor id or name (default: the default processor).")
@click.option("--type", "type_", default="invoice.payment_succeeded", show_default=True,
              help="Event type, or 'all'.")
@click.option("--status", type=click.Choice(["logged", "queued", "processing", "success", "error", "ignored"]),
              help="Only events in this state (local source).")
@click.option("--subscription", help="Only events about this subscription.")
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--starting-after", help="Page on: events older than this event id.")
@click.option("--output", type=click.Choice(["brief", "raw"]), default="brief", show_default=True)
@click.option("--source", type=click.Choice(["local", "stripe"]), default="local", show_default=True,
              help="local: what paydesk stored; stripe: what Stripe has (last 30 days).")
@format_option
def events_list(ppid, type_, status, subscription, limit, starting_after, output, source, fmt):
    """List events (CiviCRM's Listevents)."""
    from ..services.processors import get_processor
    from ..services.records import list_local_events

    proc = get_processor(ppid) if (ppid or source == "stripe") else None
    kind = None if type_ == "all" else type_
    if source == "stripe":
        from ..services.events import list_stripe_events

        rows = list_stripe_events(proc, type_=kind, limit=limit, starting_after=starting_after,
                                  raw=output == "raw")
    else:
        rows = list_local_events(processor_id=proc.id if proc else None, type_=kind, status=status,
                                 subscription_id=subscription, starting_after=starting_after, limit=limit,
                                 raw=output == "raw")
    emit(rows, "json" if output == "raw" else fmt,
         ["event_id", "type", "created", "status", "status_reason", "last_error", "invoice_id", "charge_id",
          "payment_intent_id", "subscription_id"])


def register(app: Flask) -> None:
    app.cli.add_command(events_cli)
    app.cli.add_command(worker_command)


@click.command("worker")
@click.option("--once", is_flag=True, help="Process what is due now, then exit.")
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker threads per process (PostgreSQL; SQLite always runs one).")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes (PostgreSQL): threads share one core, processes use them all.")
def worker_command(once, concurrency, processes):
    """Process queued Stripe events into contacts, contributions, recurring contributions and payments."""
    from ..dbutil import is_postgres
    from .worker import run_forever, run_once, run_processes

    if once:
        n = run_once()
        click.echo(f"processed {n} event(s) and task(s)")
        return
    if (concurrency > 1 or processes > 1) and not is_postgres():
        click.echo("SQLite has one writer at a time: running one worker thread (use PostgreSQL to scale out).",
                   err=True)
        concurrency = processes = 1
    click.echo(f"paydesk worker running with {processes} process(es) x {concurrency} thread(s); Ctrl-C stops it.",
               err=True)
    app = current_app._get_current_object()
    if processes > 1:
        run_processes(app, processes, concurrency)
    else:
        run_forever(app, concurrency)
