"""``flask --app wsgi forms add|list|link``."""

from __future__ import annotations

import json

from sqlalchemy import select

from admin.extensions import db
from admin.models import Contact, DonationForm


def _add(runner, *extra: str):
    return runner.invoke(
        args=[
            "forms",
            "add",
            "--slug",
            "spring",
            "--title",
            "Spring appeal",
            "--currency",
            "usd",
            "--amounts",
            "10,25,50",
            "--frequencies",
            "one-off,monthly",
            *extra,
        ]
    )


def test_forms_add_and_list(app, runner, offline_processor):
    result = _add(runner, "--ppid", str(offline_processor.id), "--no-postcode-field")
    assert result.exit_code == 0, result.output
    form_id, url = result.output.split()
    assert url == "http://127.0.0.1:5000/donate/spring"
    form = db.session.get(DonationForm, int(form_id))
    assert (form.amounts, form.frequencies, form.postcode_field, form.processor_id) == (
        [1000, 2500, 5000],
        ["one-off", "monthly"],
        False,
        offline_processor.id,
    )

    table = runner.invoke(args=["forms", "list"])
    assert table.exit_code == 0 and "spring" in table.output and "Spring appeal" in table.output
    rows = json.loads(runner.invoke(args=["forms", "list", "--format", "json"]).output)
    assert rows[0]["amounts"] == ["10", "25", "50"] and rows[0]["postcode_field"] is False


def test_forms_add_defaults_to_the_default_processor_and_postcode_field(app, runner, offline_processor):
    result = _add(runner, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["processor_id"] == offline_processor.id and data["postcode_field"] is True


def test_forms_add_explains_bad_input_without_a_traceback(app, runner, offline_processor):
    bad = runner.invoke(args=["forms", "add", "--slug", "Bad Slug!", "--title", "T"])
    assert bad.exit_code == 1 and "Error: --slug: use 1-48 lowercase letters" in bad.output
    assert "Traceback" not in bad.output
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "T", "--frequencies", "weekly"])
    assert bad.exit_code == 1 and "Error: --frequencies: choose from one-off, monthly, yearly" in bad.output
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "T", "--amounts", "ten"])
    assert bad.exit_code == 1 and "Error: --amounts: 'ten' is not an amount" in bad.output
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "T", "--currency", "xyz"])
    assert bad.exit_code == 1 and bad.output == (
        "Error: --currency: “XYZ” is not a currency Stripe charges in: enter its three-letter code, such as usd, "
        "eur or gbp\n"
    )
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "T", "--max-amount", "1000000"])
    assert (
        bad.exit_code == 1
        and "Error: --max-amount: Stripe's largest charge in USD is 999,999.99 USD" in bad.output
    )
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "T", "--ppid", "nope"])
    assert bad.exit_code == 1 and "Error: --ppid: no payment processor 'nope'" in bad.output
    bad = runner.invoke(args=["forms", "add", "--slug", "ok", "--title", "Spring\x1b]0;owned\x07"])
    assert bad.exit_code == 1 and bad.output == (
        "Error: --title: remove the control character (U+001B); only printable text is kept\n"
    )
    assert db.session.scalar(select(DonationForm)) is None


def test_forms_link_for_a_known_contact(app, runner, offline_processor):
    _add(runner)
    contact = Contact(display_name="Ada Lovelace", email="ada@example.org", postal_code="W1 1AA")
    db.session.add(contact)
    db.session.commit()
    result = runner.invoke(args=["forms", "link", "--slug", "spring", "--contact-id", str(contact.id)])
    assert result.exit_code == 0 and result.output.startswith("http://127.0.0.1:5000/donate/spring?donor=")
    missing = runner.invoke(args=["forms", "link", "--slug", "spring", "--contact-id", "999"])
    assert missing.exit_code == 1 and "no contact 999" in missing.output
