"""CLI for the webhook pipeline: ``worker``."""

from __future__ import annotations

import click
from flask import Flask, current_app


def register(app: Flask) -> None:
    app.cli.add_command(worker_command)


@click.command("worker")
@click.option("--once", is_flag=True, help="Process what is due now, then exit.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker threads per process (PostgreSQL; SQLite always runs one).",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes (PostgreSQL): threads share one core, processes use them all.",
)
def worker_command(once, concurrency, processes):
    """Process queued Stripe events into contacts, contributions, recurring contributions and payments."""
    from sqlalchemy.exc import DBAPIError

    from admin.dbutil import database_problem, missing_database

    problem = missing_database()
    if problem:
        raise click.ClickException(problem)  # "Error: ...", exit 1; an empty database is not created
    try:
        _work(once, concurrency, processes)
    except DBAPIError as err:  # cannot be opened or reached at all (an outage later is retried, not this)
        problem = database_problem(err)
        if not problem:
            raise
        raise click.ClickException(problem) from None


def _work(once: bool, concurrency: int, processes: int) -> None:
    from admin.dbutil import is_postgres
    from admin.worker.loop import run_forever, run_once
    from admin.worker.supervisor import run_processes

    if once:
        n = run_once()
        click.echo(f"processed {n} event(s) and task(s)")
        return
    if (concurrency > 1 or processes > 1) and not is_postgres():
        click.echo(
            "SQLite has one writer at a time: running one worker thread (use PostgreSQL to scale out).",
            err=True,
        )
        concurrency = processes = 1
    click.echo(
        f"paydesk worker running with {processes} process(es) x {concurrency} thread(s); Ctrl-C stops it.",
        err=True,
    )
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # proxy typed as Flask
    if processes > 1:
        run_processes(app, processes, concurrency)
    else:
        run_forever(app, concurrency)
