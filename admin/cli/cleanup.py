"""``cleanup``: apply the retention rules now (``admin.services.core.retention``), or show what would go."""

from __future__ import annotations

import click
from flask import Flask

from admin.cli.support import PaydeskCommand, command_logging, emit, format_option
from admin.services.core import retention


@click.command("cleanup", cls=PaydeskCommand)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice([r.name for r in retention.RULES]),
    help="Only this rule (repeatable).",
)
@format_option
def cleanup_command(dry_run, only, fmt):
    """Delete the rows older than the retention settings (RETENTION_*), as the worker does every 10 minutes,
    but to the end; each rule in batches of RETENTION_BATCH rows."""
    with command_logging():
        outcomes = retention.run(dry_run=dry_run, only=tuple(only))
    rows = [o.as_row(dry_run) for o in outcomes]
    columns = ["rule", "table", "keep", "before", "would_delete" if dry_run else "deleted", "rows"]
    emit(rows, fmt, columns)


def register(app: Flask) -> None:
    app.cli.add_command(cleanup_command)
