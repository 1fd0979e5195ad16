"""``/forms``: viewers see the list, admins create and edit donation forms (with an audit entry)."""

from __future__ import annotations

import re

import pytest
from conftest import csrf_token_from
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, DonationForm


@pytest.fixture
def proc(app, offline_processor):
    return offline_processor


def _fields(token: str, proc_id: int, **changes) -> dict:
    data = {
        "csrf_token": token,
        "title": "Winter appeal",
        "slug": "winter",
        "processor_id": str(proc_id),
        "currency": "eur",
        "amounts": "15, 30, 60",
        "allow_other_amount": "y",
        "min_amount": "5",
        "max_amount": "",
        "frequencies": ["one-off", "monthly"],
        "postcode_field": "y",
        "receipts": "y",
        "active": "y",
        "intro": "Keep people warm.",
        "thank_you_text": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_admin_creates_a_form_and_it_is_listed(client, auth, proc):
    auth.login("admin@example.org", "admin")
    page = client.get("/forms/new")
    assert page.status_code == 200 and "Payment processor" in page.get_data(as_text=True)
    resp = client.post("/forms/new", data=_fields(csrf_token_from(page.get_data(as_text=True)), proc.id))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/forms")
    form = db.session.scalar(select(DonationForm))
    assert (form.slug, form.currency, form.amounts, form.frequencies, form.min_amount) == (
        "winter",
        "eur",
        [1500, 3000, 6000],
        ["one-off", "monthly"],
        500,
    )
    assert form.postcode_field and form.receipts and form.active and form.allow_other_amount
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "form.create"))
    assert entry.actor == "admin@example.org" and entry.object_id == str(form.id)
    listing = client.get("/forms").get_data(as_text=True)
    assert "Winter appeal" in listing and "/donate/winter" in listing and "15, 30, 60 + other" in listing


def test_admin_edits_a_form_and_errors_are_shown_on_the_field(client, auth, proc):
    auth.login("admin@example.org", "admin")
    page = client.get("/forms/new")
    client.post("/forms/new", data=_fields(csrf_token_from(page.get_data(as_text=True)), proc.id))
    form = db.session.scalar(select(DonationForm))
    edit = client.get(f"/forms/{form.id}/edit").get_data(as_text=True)
    assert 'value="15, 30, 60"' in edit and 'value="winter"' in edit
    token = csrf_token_from(edit)
    bad = client.post(f"/forms/{form.id}/edit", data=_fields(token, proc.id, amounts="15, 2"))
    assert bad.status_code == 422
    assert re.search(
        r'<p class="field-error" id="amounts-error">Preset amounts: 2 EUR is outside the minimum and '
        r"maximum \(5.00 EUR to 999,999.99 EUR\)</p>",
        bad.get_data(as_text=True),
    )
    ok = client.post(
        f"/forms/{form.id}/edit",
        data=_fields(token, proc.id, postcode_field=None, active=None, frequencies=["yearly"]),
    )
    assert ok.status_code == 302
    db.session.refresh(form)
    assert (form.postcode_field, form.active, form.frequencies) == (False, False, ["yearly"])
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "form.update"))
    assert entry.parameters == {"postcode_field": False, "active": False, "frequencies": ["yearly"]}
    assert client.get("/donate/winter").status_code == 404  # inactive now


def test_viewer_sees_the_list_but_cannot_create_or_edit(client, auth, proc):
    auth.login("viewer@example.org", "viewer")
    assert client.get("/forms").status_code == 200
    assert "New form" not in client.get("/forms").get_data(as_text=True)
    assert client.get("/forms/new").status_code == 403
    token = auth.token("/forms")
    assert client.post("/forms/new", data=_fields(token, proc.id)).status_code == 403
    auth.logout()
    assert client.get("/forms").status_code == 302


def test_duplicate_slug_is_refused(client, auth, proc):
    auth.login("admin@example.org", "admin")
    token = csrf_token_from(client.get("/forms/new").get_data(as_text=True))
    client.post("/forms/new", data=_fields(token, proc.id))
    again = client.post("/forms/new", data=_fields(token, proc.id, title="Other"))
    assert again.status_code == 422 and "exists already" in again.get_data(as_text=True)


def test_nav_links_to_forms(client, auth, proc):
    auth.login("viewer@example.org", "viewer")
    assert '<a href="/forms"' in client.get("/").get_data(as_text=True)


def _editor_errors(html: str) -> list[str]:
    return re.findall(r'<p class="(?:field|form)-error"[^>]*>([^<]*)</p>', html)


@pytest.mark.parametrize(
    "changes, error",
    [
        (
            {"currency": "xyz"},
            "Currency: “XYZ” is not a currency Stripe charges in: enter its three-letter code, "
            "such as usd, eur or gbp",
        ),
        (
            {"currency": ""},
            "Currency: enter a currency Stripe charges in: enter its three-letter code, such as usd, "
            "eur or gbp",
        ),
        ({"processor_id": "abc"}, "Payment processor: no payment processor 'abc'"),
        ({"processor_id": "999"}, "Payment processor: no payment processor '999'"),
        ({"frequencies": ["weekly"]}, "Frequencies: choose from one-off, monthly, yearly"),
        ({"frequencies": None}, "Frequencies: choose from one-off, monthly, yearly"),
        ({"title": ""}, "Title: enter a title of at most 200 characters"),
        ({"title": "x" * 201}, "Title: enter a title of at most 200 characters"),
        ({"slug": ""}, "Slug: use 1-48 lowercase letters, digits and hyphens (it becomes /donate/<slug>)"),
        (
            {"min_amount": "lots"},
            "Minimum amount: 'lots' is not an amount: write digits with at most one decimal "
            "point, such as 12.50",
        ),
        ({"max_amount": "99999999999"}, "Maximum amount: Stripe's largest charge in EUR is 999,999.99 EUR"),
        (
            {"max_amount": "12,50"},
            "Maximum amount: '12,50' is not an amount: write digits with at most one decimal "
            "point, such as 12.50",
        ),
        (
            {"currency": "jpy", "amounts": "1000, 2.5"},
            "Preset amounts: JPY amounts have at most 0 decimal places",
        ),
        ({"currency": "kwd", "amounts": "1.005"}, "Preset amounts: KWD amounts go in steps of 0.010 KWD"),
        ({"intro": "x" * 5001}, "Introduction: at most 5,000 characters"),
        (
            {"title": "Winter \x1b[31mappeal"},
            "Title: remove the control character (U+001B); only printable text is kept",
        ),
        (
            {"title": "Winter\nappeal"},
            "Title: remove the control character (U+000A); only printable text is kept",
        ),
        (
            {"intro": "Keep people\x00 warm."},
            "Introduction: remove the control character (U+0000); only printable text is kept",
        ),
        (
            {"thank_you_text": "Thank you\x07!"},
            "Thank-you text: remove the control character (U+0007); only printable text is kept",
        ),
        (
            {"currency": "eu\x08r"},
            "Currency: remove the control character (U+0008); only printable text is kept",
        ),
    ],
)
def test_every_editor_error_names_its_setting_and_says_why(client, auth, proc, changes, error):
    auth.login("admin@example.org", "admin")
    token = csrf_token_from(client.get("/forms/new").get_data(as_text=True))
    resp = client.post("/forms/new", data=_fields(token, proc.id, **changes))
    assert resp.status_code == 422
    assert _editor_errors(resp.get_data(as_text=True)) == [
        error.replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
    ]
    assert db.session.scalar(select(DonationForm)) is None


def test_a_form_without_a_maximum_stops_at_stripes_largest_charge(client, auth, proc):
    auth.login("admin@example.org", "admin")
    token = csrf_token_from(client.get("/forms/new").get_data(as_text=True))
    assert (
        client.post(
            "/forms/new", data=_fields(token, proc.id, currency="jpy", amounts="1000", min_amount="500")
        ).status_code
        == 302
    )
    form = db.session.scalar(select(DonationForm))
    assert form.max_amount is None  # kept empty: the limit follows Stripe's
    listing = client.get("/forms").get_data(as_text=True)
    assert '<td data-label="Range">500 to 99999999</td>' in listing


def test_the_texts_keep_their_line_breaks_as_a_browser_sends_them(client, auth, proc):
    auth.login("admin@example.org", "admin")
    token = csrf_token_from(client.get("/forms/new").get_data(as_text=True))
    resp = client.post(
        "/forms/new",
        data=_fields(
            token,
            proc.id,
            intro="Keep people warm.\r\n\r\nThank you.",
            thank_you_text="Thank you!\r\n\tThe team",
        ),
    )
    assert resp.status_code == 302
    form = db.session.scalar(select(DonationForm))
    assert (form.intro, form.thank_you_text) == ("Keep people warm.\n\nThank you.", "Thank you!\n\tThe team")
