"""CSV exports (``admin/views/export.py``): text a spreadsheet would run as a formula is written as text,
whatever character starts it; numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io

import pytest

from admin.extensions import db
from admin.models import Contact, Contribution

# Every character a spreadsheet reads as the start of a formula (OWASP's CSV injection list).
FORMULAS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]


@pytest.fixture
def export_rows(client, auth, offline_processor):
    """One contribution per contact named like a formula, and one refund-like negative amount."""
    for n, name in enumerate(FORMULAS):
        contact = Contact(display_name=name, email=f"formula{n}@example.org")
        db.session.add(contact)
        db.session.flush()
        db.session.add(
            Contribution(
                processor_id=offline_processor.id,
                contact_id=contact.id,
                amount=1000 + n,
                currency="usd",
                status="Completed",
                trxn_id=f"ch_formula{n}",
            )
        )
    db.session.add(
        Contribution(
            processor_id=offline_processor.id,
            amount=-500,
            currency="usd",
            status="Completed",
            trxn_id="ch_negative",
        )
    )
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    resp = client.get("/contributions/export.csv?currency=usd")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True), newline="")))


@pytest.mark.parametrize("name", FORMULAS, ids=["equals", "plus", "minus", "at", "tab", "carriage-return"])
def test_a_name_that_starts_like_a_formula_is_exported_as_text(export_rows, name):
    [row] = [r for r in export_rows if r["contact"].lstrip("'") == name]
    assert row["contact"] == "'" + name  # the apostrophe makes a spreadsheet show it, not run it


def test_a_negative_amount_stays_a_number(export_rows):
    [row] = [r for r in export_rows if r["trxn_id"] == "ch_negative"]
    assert row["amount"] == "-5.00"
