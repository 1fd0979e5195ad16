"""``flask --app wsgi forms add|list|link``: donation forms from the command line."""

from __future__ import annotations

import json

import click
from flask import Flask

from admin.cli.support import PaydeskGroup, emit, fail, format_option
from admin.errors import ServiceError
from admin.models import FREQUENCIES

forms_cli = PaydeskGroup("forms", help="Donation forms (the public pages at /donate/<slug>).")


@forms_cli.command("add")
@click.option("--slug", required=True, help="The page's address: /donate/<slug>.")
@click.option("--title", required=True)
@click.option("--ppid", help="Payment processor id or name (default: the default processor).")
@click.option(
    "--currency",
    default="usd",
    show_default=True,
    help="A currency Stripe charges in: usd, eur, gbp, jpy, ...",
)
@click.option("--amounts", default="", help="Preset amounts in major units, comma-separated: 10,25,50.")
@click.option(
    "--frequencies",
    default="one-off",
    show_default=True,
    help=f"Comma-separated, from {','.join(FREQUENCIES)}.",
)
@click.option(
    "--postcode-field/--no-postcode-field",
    default=True,
    show_default=True,
    help="A billing-address section with its own postcode field.",
)
@click.option(
    "--other-amount/--no-other-amount",
    default=True,
    show_default=True,
    help="Donors may type their own amount.",
)
@click.option("--min-amount", default="1", show_default=True)
@click.option("--max-amount", help="The largest gift (default: Stripe's largest charge in the currency).")
@click.option("--intro")
@click.option("--thank-you-text")
@click.option("--receipts/--no-receipts", default=True, show_default=True)
@click.option(
    "--stripe-receipt/--no-stripe-receipt",
    default=False,
    show_default=True,
    help="Stripe emails the receipt (receipt_email on the payment); paydesk then sends none.",
)
@click.option("--active/--inactive", default=True, show_default=True)
@format_option
def forms_add(
    slug,
    title,
    ppid,
    currency,
    amounts,
    frequencies,
    postcode_field,
    other_amount,
    min_amount,
    max_amount,
    intro,
    thank_you_text,
    receipts,
    stripe_receipt,
    active,
    fmt,
):
    """Create a donation form; prints its id (and its address)."""
    from admin.services.donations.forms import SETTINGS, FormSettings, create_form, form_dict

    try:
        form = create_form(
            FormSettings(
                slug=slug,
                title=title,
                processor_id=ppid,
                currency=currency,
                amounts=amounts,
                frequencies=[f for f in frequencies.split(",") if f.strip()],
                intro=intro,
                allow_other_amount=other_amount,
                min_amount=min_amount,
                max_amount=max_amount,
                postcode_field=postcode_field,
                thank_you_text=thank_you_text,
                receipts=receipts,
                active=active,
                stripe_receipt=stripe_receipt,
            )
        )
    except ServiceError as err:  # named as the option that was given: "--currency: ..."
        reason = getattr(err, "reason", None)
        fail(ServiceError(f"{SETTINGS[err.field][1]}: {reason}") if reason and err.field in SETTINGS else err)
    if fmt == "json":
        click.echo(json.dumps(form_dict(form)))
    else:
        click.echo(f"{form.id}  {form_dict(form)['url']}")


@forms_cli.command("list")
@format_option
def forms_list(fmt):
    """List donation forms."""
    from admin.services.donations.forms import form_dict, list_forms

    emit(
        [form_dict(f) for f in list_forms()],
        fmt,
        [
            "id",
            "slug",
            "title",
            "active",
            "currency",
            "amounts",
            "frequencies",
            "postcode_field",
            "processor_id",
        ],
    )


@forms_cli.command("link")
@click.option("--slug", required=True)
@click.option("--contact-id", type=int, required=True)
def forms_link(slug, contact_id):
    """A signed link to the form for a known contact (name, email and billing postcode filled in)."""
    from admin.extensions import db
    from admin.models import Contact
    from admin.services.donations.forms import donor_link, public_form

    form = public_form(slug)
    contact = db.session.get(Contact, contact_id)
    if form is None:
        fail(ServiceError(f"no active donation form {slug!r}"))
    if contact is None:
        fail(ServiceError(f"no contact {contact_id}"))
    click.echo(donor_link(form, contact))


def register(app: Flask) -> None:
    app.cli.add_command(forms_cli)
