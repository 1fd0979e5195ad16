"""``intents list|cancel|capture|cancel-incomplete|import`` and ``jobs process-stripe`` (CiviCRM's
StripePaymentintents API and Job.process_stripe on the command line). Cancelling and importing run as
jobs in the foreground (they show on /jobs); capture is one call."""

from __future__ import annotations

import json
import sys

import click
from flask import Flask

from admin.cli.jobs import jobs_cli, run_job
from admin.cli.support import (
    PaydeskGroup,
    emit,
    fail,
    filter_from_options,
    filter_options,
    format_option,
    limit_option,
    ppid_option,
    processor_or_fail,
)
from admin.errors import ServiceError
from admin.services.intents.jobs import DEFAULT_PERIOD, ImportIntents, ProcessStripe
from admin.services.intents.queries import IntentFilter

intents_cli = PaydeskGroup(
    "intents", help="Stripe PaymentIntents paydesk tracks: list, cancel, capture, import."
)

COLUMNS = [
    "payment_intent_id",
    "created_date",
    "age",
    "display_amount",
    "status",
    "capture_method",
    "contact",
    "contribution_id",
    "description",
    "last_error",
]


@intents_cli.command("list")
@filter_options(IntentFilter)
@limit_option
@format_option
def intents_list(limit, fmt, **options):
    """Tracked intents, newest first: the same filters as /intents."""
    from admin.services.intents import queries as svc

    emit(list(svc.intent_rows(filter_from_options(IntentFilter, **options), limit)), fmt, COLUMNS)


def _intent_ids(ids: tuple[str, ...]) -> list[str]:
    from admin.services.intents.ops import check_intent_id

    try:
        return [check_intent_id(i) for i in ids]
    except ServiceError as err:
        fail(err)
        raise  # unreachable


def _exit_for(job) -> None:
    if ((job.result or {}).get("counts") or {}).get("failed"):
        sys.exit(1)


@intents_cli.command("cancel")
@ppid_option
@click.argument("intent_ids", nargs=-1, required=True)
@format_option
def intents_cancel(ppid, intent_ids, fmt):
    """Cancel intents in Stripe (cancellation_reason abandoned), tracked by paydesk or not.

    Already cancelled, already succeeded and gone (404) are reported as such; exits 1 only when
    Stripe could not be asked or refused for another reason."""
    proc = processor_or_fail(ppid)
    job = run_job("intents.cancel", {"intent_ids": _intent_ids(intent_ids)}, processor_id=proc.id, fmt=fmt)
    _exit_for(job)


@intents_cli.command("capture")
@ppid_option
@click.argument("intent_id")
@click.option("--amount", help="Capture this much (major units, e.g. 12.50); default everything authorised.")
@format_option
def intents_capture(ppid, intent_id, amount, fmt):
    """Capture an uncaptured (requires_capture) intent, in full or in part."""
    from admin.services.core.idempotency import new_action_key
    from admin.services.intents.ops import capture_intent

    proc = processor_or_fail(ppid)
    try:
        out = capture_intent(proc, intent_id, amount=amount, action_key=f"cli{new_action_key()}")
    except ServiceError as err:
        fail(err)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "payment_intent_id": out.intent_id,
                    "outcome": out.outcome,
                    "message": out.message,
                    "status": out.row.status if out.row else None,
                    "stripe_request_id": out.request_id,
                },
                indent=2,
            )
        )
    else:
        click.echo(f"{out.intent_id}: {out.outcome}: {out.message}")
    if not out.ok:
        sys.exit(1)


@intents_cli.command("cancel-incomplete")
@ppid_option
@click.option("--older-than", required=True, help='Age, e.g. "30 minutes", "1 hour", "3 days".')
@format_option
def intents_cancel_incomplete(ppid, older_than, fmt):
    """Cancel in Stripe the tracked intents still waiting for the donor (requires_payment_method,
    requires_confirmation, requires_action) that were created more than --older-than ago."""
    from admin.services.intents.jobs import check_age

    try:
        if check_age(older_than, "older_than") == "0":
            raise ServiceError('--older-than: give an age such as "1 hour"')
    except ServiceError as err:
        fail(err)
    criteria = {"status": ["incomplete"], "older_than": older_than}
    if ppid:
        criteria["ppid"] = processor_or_fail(ppid).id
    _exit_for(run_job("intents.cancel", {"filter": criteria}, fmt=fmt))


@intents_cli.command("import")
@ppid_option
@click.option(
    "--since", default=ImportIntents.since, show_default=True, help=ImportIntents.meta("since", "help")
)
@format_option
def intents_import(ppid, since, fmt):
    """Track the intents Stripe lists (Stripe sends no webhook for one created and then abandoned)."""
    from admin.services.intents.jobs import check_age

    try:
        since = check_age(since, "since")
    except ServiceError as err:
        fail(err)
    proc = processor_or_fail(ppid)
    run_job("intents.import", {"since": since if since != "0" else None}, processor_id=proc.id, fmt=fmt)


@jobs_cli.command("process-stripe")
@click.option(
    "--delete-old",
    default=ProcessStripe.delete_old,
    show_default=True,
    help=ProcessStripe.meta("delete_old", "help"),
)
@click.option(
    "--cancel-incomplete",
    default=ProcessStripe.cancel_incomplete,
    show_default=True,
    help=ProcessStripe.meta("cancel_incomplete", "help"),
)
@click.option("--ppid", help="Only this processor (default: every processor).")
@click.option(
    "--period",
    default=DEFAULT_PERIOD,
    show_default=True,
    help="How often cron starts it: one run per period does the work, however many hosts start it; "
    "0: every run works.",
)
@format_option
def jobs_process_stripe(delete_old, cancel_incomplete, ppid, period, fmt):
    """CiviCRM's Job.process_stripe: cancel abandoned intents, delete old records. Safe from cron on
    several hosts at once."""
    from admin.services.intents.jobs import check_age, period_key

    try:
        params = {
            "delete_old": check_age(delete_old, "delete_old"),
            "cancel_incomplete": check_age(cancel_incomplete, "cancel_incomplete"),
            "period": period_key(check_age(period, "period")),
            "ppid": processor_or_fail(ppid).id if ppid else None,
        }
    except ServiceError as err:
        fail(err)
    _exit_for(run_job("intents.process_stripe", params, fmt=fmt, leave_to_runner=True))


def register(app: Flask) -> None:
    app.cli.add_command(intents_cli)
