"""``payments charge|capture|refund`` (in the ``payments`` group beside ``payments list``) and
``cards list|add|remove|default``: the staff payment operations on the command line.

The options of ``charge`` and ``refund`` are generated from the same parameter classes the pages read
(``ChargeRequest``, ``RefundRequest``): each field is an option with its page label as help, read by the same
``from_form``, so a bad value is refused with the same message, before Stripe is asked.
"""

from __future__ import annotations

import dataclasses

import click
from flask import Flask

from admin.cli.records import payments_cli
from admin.cli.support import PaydeskGroup, emit, fail, format_option, processor_or_fail
from admin.errors import ServiceError

_SKIP = {"action_key", "contact_id", "payment_id", "metadata"}


def request_options(cls, labels: dict[str, str]):
    """One click option per field of a parameter class (a bool is a flag; metadata is ``--metadata k=v``)."""

    def apply(fn):
        for f in reversed(dataclasses.fields(cls)):
            if f.name in _SKIP:
                continue
            opt = "--" + f.name.replace("_", "-")
            label = labels.get(f.name, f.name.replace("_", " "))
            if f.type in ("bool", bool) and f.name != "capture":
                fn = click.option(opt, f.name, is_flag=True, help=label + ".")(fn)
            elif f.name == "capture":
                fn = click.option(
                    "--capture",
                    type=click.Choice(["now", "authorise"]),
                    default="now",
                    show_default=True,
                    help="Capture now, or authorise only (capture later).",
                )(fn)
            else:
                fn = click.option(opt, f.name, help=label + ".")(fn)
        return click.option(
            "--metadata", multiple=True, metavar="KEY=VALUE", help="Stripe metadata (repeatable)."
        )(fn)

    return apply


def _form(options: dict, metadata: tuple[str, ...]) -> dict:
    keys, values = [], []
    for pair in metadata:
        key, sep, value = pair.partition("=")
        if not sep:
            fail(ServiceError(f"--metadata: {pair!r} is not KEY=VALUE"))
        keys.append(key)
        values.append(value)
    form = {k: ("1" if v is True else v) for k, v in options.items() if v not in (None, False, "")}
    return {**form, "metadata_key": keys, "metadata_value": values}


def _emit_one(row: dict, fmt: str, message: str) -> None:
    if fmt == "json":
        emit([row], "json")
    else:
        click.echo(message)


from admin.services.payments import charges as _charges  # noqa: E402  (options read the classes)
from admin.services.payments import refunds as _refunds  # noqa: E402


@payments_cli.command("charge")
@click.option("--contact-id", required=True, help="The contact to charge (# on its page).")
@click.option("--ppid", help="Payment processor id or name (default: the default processor).")
@request_options(_charges.ChargeRequest, _charges.LABELS)
@format_option
def payments_charge(contact_id, ppid, metadata, fmt, **options):
    """Charge (or authorise) a contact's saved card: the contact page's "Charge a saved card"."""
    proc = processor_or_fail(ppid)
    try:
        req = _charges.ChargeRequest.from_form(_form(options, metadata), contact_id=contact_id)
        out = _charges.charge(proc, req)
    except ServiceError as err:
        fail(err)
    row = {
        "contribution_id": out.contribution.id,
        "payment_intent_id": out.intent_id,
        "status": out.status,
        "amount": out.contribution.amount,
        "currency": out.contribution.currency,
        "message": out.message,
        "stripe_request_id": out.request_id,
    }
    _emit_one(row, fmt, out.message)
    if not out.ok:
        raise SystemExit(1)


@payments_cli.command("capture")
@click.option(
    "--id", "object_id", required=True, help="The PaymentIntent (pi_...) or charge (ch_...) to capture."
)
@click.option("--amount", help="How much, in major units (12.50); default: everything authorised.")
@click.option("--ppid", help="Payment processor id or name (default: the default processor).")
@format_option
def payments_capture(object_id, amount, ppid, fmt):
    """Capture an authorised payment in full or in part, by intent or charge id."""
    from admin.services.intents import ops

    proc = processor_or_fail(ppid)
    try:
        out = ops.capture(proc, object_id, amount=amount or None)
    except ServiceError as err:
        fail(err)
    _emit_one(
        {
            "id": out.intent_id,
            "outcome": out.outcome,
            "message": out.message,
            "stripe_request_id": out.request_id,
        },
        fmt,
        out.message,
    )
    if not out.ok:
        raise SystemExit(1)


@payments_cli.command("refund")
@click.option("--payment-id", required=True, help="The charge's payment (# on /payments).")
@request_options(_refunds.RefundRequest, _refunds.LABELS)
@format_option
def payments_refund(payment_id, metadata, fmt, **options):
    """Refund a charge in full (no --amount) or in part. More than is left to refund is refused here."""
    from admin.extensions import db
    from admin.models import Payment

    try:
        req = _refunds.RefundRequest.from_form(_form(options, metadata), payment_id=payment_id)
        pay = db.session.get(Payment, req.payment_id)
        if pay is None:
            raise ServiceError(f"Payment: paydesk has no payment #{req.payment_id}")
        out = _refunds.refund(processor_or_fail(pay.processor_id), req)
    except ServiceError as err:
        fail(err)
    _emit_one(
        {
            "payment_id": out.payment.id,
            "refund_id": out.refund_id,
            "amount": out.payment.amount,
            "currency": out.payment.currency,
            "recorded_now": out.recorded_now,
            "message": out.message,
            "stripe_request_id": out.request_id,
        },
        fmt,
        out.message,
    )


cards_cli = PaydeskGroup("cards", help="A contact's saved cards in Stripe: list, add, remove, make default.")


def _contact_and_processor(contact_id: str, ppid: str | None):
    from admin.dbutil import parse_id
    from admin.services.records.contacts import find_contact

    cid = parse_id(contact_id)
    contact = find_contact(cid) if cid is not None else None
    if contact is None:
        fail(ServiceError(f"--contact-id: paydesk has no contact {contact_id!r}"))
    return contact, processor_or_fail(ppid)


def _card_command(name: str, help_: str):
    def wrap(fn):
        fn = click.option("--ppid", help="Payment processor id or name (default: the default processor).")(fn)
        fn = click.option(
            "--customer", help="Which of the contact's Stripe customers (when it has several)."
        )(fn)
        fn = click.option("--contact-id", required=True, help="The contact (# on its page).")(fn)
        return cards_cli.command(name, help=help_)(fn)

    return wrap


@_card_command("list", "The contact's saved cards (brand, last four, expiry, default), as Stripe has them.")
@format_option
def cards_list(contact_id, customer, ppid, fmt):
    from admin.services.payments import cards

    contact, proc = _contact_and_processor(contact_id, ppid)
    try:
        link = cards.link_of(contact, proc, customer)
        found, _ = cards.list_cards(proc, link.customer_id)
    except ServiceError as err:
        fail(err)
    emit(
        [{**c.as_dict(), "customer": link.customer_id} for c in found],
        fmt,
        ["id", "brand", "last4", "expiry", "default", "customer"],
    )


@_card_command("add", "Attach a card (a pm_ made by Stripe.js or the Dashboard) to the contact's customer.")
@click.option("--card", "card_id", required=True, help="The PaymentMethod (pm_...).")
@click.option("--default", "make_default", is_flag=True, help="Make it the default card.")
def cards_add(contact_id, customer, ppid, card_id, make_default):
    from admin.services.payments import cards

    contact, proc = _contact_and_processor(contact_id, ppid)
    try:
        click.echo(cards.add_card(proc, contact, card_id, make_default=make_default, customer_id=customer))
    except ServiceError as err:
        fail(err)


@_card_command("remove", "Remove (detach) a saved card from the contact's customer.")
@click.option("--card", "card_id", required=True, help="The saved card (pm_...).")
def cards_remove(contact_id, customer, ppid, card_id):
    from admin.services.payments import cards

    contact, proc = _contact_and_processor(contact_id, ppid)
    try:
        click.echo(cards.remove_card(proc, contact, card_id, customer_id=customer))
    except ServiceError as err:
        fail(err)


@_card_command("default", "Make a saved card the default (what a staff charge uses).")
@click.option("--card", "card_id", required=True, help="The saved card (pm_...).")
def cards_default(contact_id, customer, ppid, card_id):
    from admin.services.payments import cards

    contact, proc = _contact_and_processor(contact_id, ppid)
    try:
        click.echo(cards.make_default(proc, contact, card_id, customer_id=customer))
    except ServiceError as err:
        fail(err)


def register(app: Flask) -> None:
    app.cli.add_command(cards_cli)
