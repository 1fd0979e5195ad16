"""``/connect``: connected accounts (list, create, one account with its requirements, persons and balance,
delete after a confirmation) and their payouts (list; one payout's balance transactions with totals); each
list and table also as CSV."""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain
from typing import Any

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for

from admin.errors import ServiceError
from admin.htmx import is_htmx, is_partial
from admin.listing import Page, page_or_first
from admin.security import role_required
from admin.services.connect import accounts, common, payouts
from admin.services.core.confirmations import ConfirmationRefused
from admin.services.core.idempotency import new_action_key
from admin.services.settings.processors import list_processors
from admin.timeutil import from_unix
from admin.views.actions import labelled, sentence
from admin.views.confirm import JobConfirmation, confirmation, is_run, refused, take_action
from admin.views.export import filter_csv

bp = Blueprint("connect", __name__)

DELETE_KIND = "connect.account_delete"  # a single action confirmed through views/confirm.py


def go(url: str, message: str, tone: str = "success"):
    """After an action: its message flashed and the page at ``url`` (htmx: ``HX-Redirect``, so the answer is
    a whole page, never a page swapped into a confirmation box)."""
    flash(message, tone)
    if is_htmx():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


def _listing(filter_cls, page_fn, template: str, **extra):
    """A Connect list page (the list-page contract: ``index.html`` with ``_filters``, ``_results`` swapped by
    htmx, ``_table`` and ``_row``); a Stripe refusal is said in place of the table."""
    flt, errors = filter_cls.from_args(request.args)
    try:
        page = page_or_first(page_fn, flt, errors)
    except ServiceError as err:
        page, extra["stripe_error"] = Page(rows=[], size=flt.size), err.message
    data = {"flt": flt, "errors": errors, "page": page, **extra}
    if is_partial():
        return render_template(f"connect/{template}/_results.html", **data)
    return render_template(f"connect/{template}/index.html", processors=list_processors(), **data)


# Stripe's times (Unix seconds) as the other CSVs write times
UNIX_TIMES: dict[str, Callable[[Any], Any]] = {"created": from_unix, "arrival_date": from_unix}


def _csv(name: str, columns, rows, back: str, money=("amount",)):
    """A CSV of Stripe rows read as they are written; the first page is read before the file starts, so a
    Stripe refusal is a message on the page at ``back``, not a broken download."""
    try:
        first = next(rows, None)
    except ServiceError as err:
        return go(back, sentence(err.message), "error")
    return filter_csv(name, columns, chain([first] if first else [], rows), money=money, convert=UNIX_TIMES)


def export_listing(filter_cls, page_fn, name: str, columns, endpoint: str, money=("amount",)):
    """The CSV of exactly what a Connect list's filter matches, every page of it (``/…/export.csv``), read
    from Stripe before the file starts: at most ``CONNECT_EXPORT_MAX_ROWS``, so a GET never starts an
    unbounded Stripe scan inside the web request (spending the account's rate limit, cut off by the worker's
    timeout mid-file). More than that, or Stripe refusing any page, is a message on the list instead."""
    flt, _ = filter_cls.from_args(request.args)
    back = url_for(endpoint, **flt.criteria())
    most = int(current_app.config["CONNECT_EXPORT_MAX_ROWS"])
    try:
        rows = list(common.walk_pages(page_fn, flt, most + 1))
    except ServiceError as err:
        return go(back, sentence(err.message), "error")
    if len(rows) > most:
        return go(
            back,
            f"More than {most:,} rows match, and one export reads at most {most:,} from Stripe: narrow "
            "the filter (a shorter period) and export again.",
            "error",
        )
    return filter_csv(name, columns, iter(rows), money=money, convert=UNIX_TIMES)


@bp.get("/connect")
@role_required("viewer")
def index():
    return _listing(
        accounts.AccountFilter,
        accounts.accounts_page,
        "accounts",
        types=accounts.TYPES,
        action_key=new_action_key(),  # the create form's: a double submit creates one account
    )


@bp.get("/connect/export.csv")
@role_required("viewer")
def export():
    return export_listing(
        accounts.AccountFilter, accounts.accounts_page, "connected-accounts", accounts.CSV, "connect.index"
    )


@bp.post("/connect/accounts")
@role_required("operator")
def create():
    f = request.form
    try:
        proc = common.processor_of(f.get("ppid") or None)
        made = accounts.create_account(
            proc,
            accounts.NewAccount(
                email=f.get("email"), type=f.get("type") or "", country=f.get("country") or ""
            ),
            action_key=f.get("action_key"),
        )
    except ServiceError as err:
        return go(
            url_for("connect.index", ppid=f.get("ppid") or None),
            sentence(labelled(err, accounts.LABELS)),
            "error",
        )
    return go(
        url_for("connect.account", account_id=made["id"], ppid=proc.id),
        f"Created connected account {made['id']}.",
    )


@bp.get("/connect/accounts/<account_id>")
@role_required("viewer")
def account(account_id: str):
    try:
        proc = common.processor_of(request.args.get("ppid") or None)
        detail, error = accounts.get_account(proc, account_id), None
    except ServiceError as err:
        proc, detail, error = None, None, err.message
    return render_template(
        "connect/account.html",
        account_id=account_id,
        proc=proc,
        d=detail,
        error=error,
    ), (200 if detail else 404)


@bp.get("/connect/accounts/<account_id>/persons.csv")
@role_required("viewer")
def persons_export(account_id: str):
    """The persons of a connected account (as its page lists them) as CSV."""
    ppid = request.args.get("ppid") or None
    back = url_for("connect.account", account_id=account_id, ppid=ppid)

    def rows():
        yield from accounts.list_persons(common.processor_of(ppid), account_id)

    return _csv(f"persons-{account_id}", accounts.PERSON_CSV, rows(), back, money=())


@bp.post("/connect/accounts/<account_id>/delete")
@role_required("admin")
def delete(account_id: str):
    ppid = request.form.get("ppid") or None
    back = url_for("connect.account", account_id=account_id, ppid=ppid)
    try:
        if is_run():
            try:
                row = take_action(DELETE_KIND)
            except ConfirmationRefused as err:
                return refused(err, back)
            proc, account_id = common.processor_of(row.processor_id), row.params["account"]
            rid = accounts.delete_account(proc, account_id)
        else:
            proc = common.processor_of(ppid)
            account_id = common.check_id(account_id, "account", "account")
            return confirmation(
                JobConfirmation(
                    title=f"Delete connected account {account_id}?",
                    detail=(
                        "Stripe deletes it for good; in live mode only when all its balances are zero."
                        if proc.livemode
                        else "Test mode: Stripe deletes it for good."
                    ),
                    confirm=f"Yes, delete {account_id}",
                    action=url_for("connect.delete", account_id=account_id),
                    back=back,
                    back_label=account_id,
                    kind=DELETE_KIND,
                    params={"account": account_id},
                    processor_id=proc.id,
                    single=True,
                    attention=True,
                    target="#account-actions",
                )
            )
    except ServiceError as err:
        return go(back, sentence(err.message), "error")
    return go(
        url_for("connect.index", ppid=proc.id),
        f"Deleted connected account {account_id} (Stripe request {rid}).",
    )


@bp.get("/connect/payouts")
@role_required("viewer")
def payouts_index():
    return _listing(payouts.PayoutFilter, payouts.payouts_page, "payouts", statuses=payouts.STATUSES)


@bp.get("/connect/payouts/export.csv")
@role_required("viewer")
def payouts_export():
    return export_listing(
        payouts.PayoutFilter, payouts.payouts_page, "payouts", payouts.CSV, "connect.payouts_index"
    )


@bp.get("/connect/payouts/<payout_id>/transactions.csv")
@role_required("viewer")
def payout_export(payout_id: str):
    """The balance transactions one payout includes (as its page lists them) as CSV."""
    account_id, ppid = request.args.get("account") or "", request.args.get("ppid") or None
    back = url_for("connect.payout", payout_id=payout_id, account=account_id or None, ppid=ppid)

    def rows():
        yield from payouts.payout_transactions(common.processor_of(ppid), account_id, payout_id).rows

    return _csv(f"payout-{payout_id}", payouts.TRANSACTION_CSV, rows(), back, money=("amount", "fee", "net"))


@bp.get("/connect/payouts/<payout_id>")
@role_required("viewer")
def payout(payout_id: str):
    account_id = request.args.get("account") or ""
    try:
        proc = common.processor_of(request.args.get("ppid") or None)
        txns, error = payouts.payout_transactions(proc, account_id, payout_id), None
    except ServiceError as err:
        proc, txns, error = None, None, err.message
    return render_template(
        "connect/payout.html", payout_id=payout_id, account_id=account_id, proc=proc, t=txns, error=error
    ), (200 if txns else 404)
