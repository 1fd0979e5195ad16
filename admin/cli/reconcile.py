"""``reconcile``: Stripe's charges, refunds and paid invoices next to paydesk's records, from the
command line; ``--fix`` runs the "fix all" job in the foreground."""

from __future__ import annotations

import click
from flask import Flask

from admin.cli.jobs import run_job
from admin.cli.support import (
    PaydeskCommand,
    command_logging,
    database_error,
    emit,
    fail,
    format_option,
    ppid_option,
)
from admin.errors import ServiceError


class _OneLineCommand(PaydeskCommand):
    """A top-level command (not in a ``PaydeskGroup``) whose usage errors are one line too, as are a
    database that is missing, cannot be opened or has no tables."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            err.ctx = None  # "Error: ..." without the usage text
            raise

    def invoke(self, ctx: click.Context):
        from sqlalchemy.exc import DBAPIError

        try:
            with command_logging():
                return super().invoke(ctx)
        except DBAPIError as err:
            problem = database_error(ctx, err)
            if not problem:
                raise
            click.echo(f"Error: {problem}", err=True)
            ctx.exit(1)


COLUMNS = [
    "object",
    "id",
    "created",
    "stripe_amount",
    "local_amount",
    "currency",
    "stripe_status",
    "local_status",
    "problem",
    "detail",
]


@click.command("reconcile", cls=_OneLineCommand)
@ppid_option
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=7,
    show_default=True,
    help="The last N days (unless --since is given).",
)
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]), help="From (UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="To this day, inclusive (UTC).")
@click.option(
    "--object",
    "objects",
    multiple=True,
    type=click.Choice(["charge", "refund", "invoice"]),
    help="Compare only these (repeatable). Default: all three.",
)
@click.option(
    "--problem",
    "problems",
    multiple=True,
    type=click.Choice(["missing", "amount", "status", "absent"]),
    help="Only rows with this difference (repeatable).",
)
@click.option("--all", "matching", is_flag=True, help="List the rows in step too.")
@click.option(
    "--fix", is_flag=True, help="Fix every difference listed (a job, run here with a progress bar)."
)
@click.option(
    "--cancel-local",
    is_flag=True,
    help="With --fix: also mark Cancelled paydesk's records that Stripe does not have (or has as unpaid).",
)
@format_option
def reconcile_cmd(ppid, days, since, until, objects, problems, matching, fix, cancel_local, fmt):
    """Compare Stripe and paydesk for a processor and period (the reconcile.scan job the page starts, run
    here with a progress bar; Ctrl-C pauses it, running the command again continues it); with --fix, put
    the differences right."""
    from admin.services.reconcile import fix as rc_fix
    from admin.services.reconcile import scan as rc_scan
    from admin.services.reconcile.filter import ReconcileFilter
    from admin.services.settings.processors import get_processor

    args = {"days": days, "object": list(objects), "problem": list(problems), "matching": matching}
    if since:
        args["since"] = since.isoformat(timespec="minutes")
    if until:
        args["until"] = until.date().isoformat()
    try:
        flt = ReconcileFilter.parse_or_raise(args, options=True)
        if cancel_local and not fix:
            raise ServiceError("--cancel-local goes with --fix")
        proc = get_processor(ppid)
        run_job(
            rc_scan.KIND,
            rc_scan.ScanParams.of(flt).as_dict(),
            processor_id=proc.id,
            fmt=fmt,
            print_result=False,
        )
        scan = rc_scan.latest(proc, flt)
        if scan is None:
            raise ServiceError("the comparison was not kept; run the command again")
        if fix:
            run_job(
                "reconcile.fix_all",
                rc_fix.job_params(flt, cancel_local=cancel_local, scan=scan),
                processor_id=proc.id,
                fmt=fmt,
            )
            return
    except ServiceError as err:
        fail(err)
    rows = [r.as_dict() for r in scan.shown(flt)]
    emit(rows, fmt, COLUMNS)
    if fmt != "json":
        counts = ", ".join(f"{k} {v}" for k, v in scan.counts().items() if v)
        click.echo(
            f"{proc.name}, {scan.since:%Y-%m-%d %H:%M} to {scan.until:%Y-%m-%d %H:%M} UTC: "
            f"{counts or 'nothing to compare'}",
            err=True,
        )


def register(app: Flask) -> None:
    app.cli.add_command(reconcile_cmd)
