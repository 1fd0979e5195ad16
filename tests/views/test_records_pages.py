"""The records pages over HTTP: what a viewer sees (and cannot do), the subscription page's
comparison with Stripe and its actions, the contact page, CSV exports equal to the filter."""

from __future__ import annotations

import csv
import io
import re

import pytest
from confirm_support import confirm
from sqlalchemy import func, select

from admin.demo_data import donation_plan, subscribe
from admin.extensions import db
from admin.models import (
    AuditLog,
    Contact,
    Contribution,
    ContributionRecur,
    OutboxTask,
    Payment,
    StripeCustomer,
)
from admin.models.jobs import Job
from admin.services.records import common as rec
from admin.services.records.imports import import_subscription_by_id
from admin.services.settings.processors import gateway
from admin.worker import queues

HX = {"HX-Request": "true"}


@pytest.fixture
def imported(empty_processor):
    """One monthly subscription made in localstripe and imported: recur, contribution, payment, contact."""
    gw = gateway(empty_processor)
    cus = gw.create("customers", {"name": "Katherine Johnson", "email": "kj@example.org"})
    sub = subscribe(gw, cus["id"], donation_plan(gw, 2000))
    done = import_subscription_by_id(empty_processor, sub["id"])
    return {"sub": sub, "recur": done.recur, "customer": cus, "contact": done.recur.contact}


def page(client, url: str, **kw) -> str:
    resp = client.get(url, **kw)
    assert resp.status_code == 200, (url, resp.status_code)
    return resp.get_data(as_text=True)


@pytest.mark.localstripe
def test_every_records_page_for_a_viewer_shows_the_records_and_no_buttons(client, auth, imported):
    auth.login("viewer@example.org", "viewer")
    sub_id, contact = imported["sub"]["id"], imported["contact"]
    c = db.session.scalar(select(Contribution))
    pages = {
        "/subscriptions": [sub_id, "Katherine Johnson", "20.00 USD", "same"],
        f"/subscriptions/{sub_id}": ["Stripe and paydesk agree", "In Stripe", "In paydesk", c.invoice_id],
        "/customers": ["Katherine Johnson", imported["customer"]["id"], "20.00 USD"],
        f"/contacts/{contact.id}": ["kj@example.org", imported["customer"]["id"], sub_id, c.trxn_id],
        "/contributions": ["Katherine Johnson", "20.00 USD", "Export CSV", "recurring"],
        f"/contributions/{c.id}": [c.invoice_id, sub_id, c.payments[0].trxn_id],
        "/payments": [c.payments[0].trxn_id, "Export CSV"],
    }
    for url, needles in pages.items():
        html = page(client, url)
        for needle in needles:
            assert needle in html, (url, needle)
        for button in (
            "Import",
            "Cancel subscription",
            "Create Stripe customer",
            "Remove link",
            "Push to all",
        ):
            assert f">{button}" not in html, (url, button)
    fragment = page(client, "/contributions?status=Completed", headers=HX)
    assert "<html" not in fragment and "Completed gifts for this filter" in fragment
    assert client.get("/contacts/999999").status_code == 404
    assert client.get("/subscriptions/not-a-sub").status_code == 404
    assert client.get("/contributions/999999").status_code == 404


@pytest.mark.localstripe
def test_a_viewer_cannot_import_or_cancel(client, auth, empty_processor):
    gw = gateway(empty_processor)
    sub = subscribe(gw, gw.create("customers", {"email": "v@example.org"})["id"], donation_plan(gw, 900))
    auth.login("viewer@example.org", "viewer")
    token = auth.token()
    for url, data in (
        (f"/subscriptions/{sub['id']}/cancel", {"step": "run"}),
        (f"/subscriptions/{sub['id']}/import", {}),
        ("/subscriptions/import", {}),
        ("/customers/import", {}),
        ("/customers/update_metadata", {}),
        ("/contributions/import-charge", {"charge": "ch_x"}),
    ):
        resp = client.post(url, data={"csrf_token": token, **data}, headers={"X-CSRFToken": token})
        assert resp.status_code == 403, url
    assert gw.retrieve("subscriptions", sub["id"])["status"] == "active"
    assert db.session.scalar(select(func.count()).select_from(ContributionRecur)) == 0
    assert db.session.scalar(select(func.count()).select_from(Job)) == 0


@pytest.mark.localstripe
def test_operator_cancels_a_subscription_after_confirming(client, auth, imported, empty_processor):
    auth.login("operator@example.org", "operator")
    sub_id = imported["sub"]["id"]
    html = page(client, f"/subscriptions/{sub_id}")
    assert "Cancel subscription…" in html and "Sync from Stripe" in html
    token = auth.token(f"/subscriptions/{sub_id}")
    ask = client.post(f"/subscriptions/{sub_id}/cancel", data={"csrf_token": token}, headers=HX)
    assert ask.status_code == 200 and "Yes, cancel it in Stripe" in ask.get_data(as_text=True)
    assert gateway(empty_processor).retrieve("subscriptions", sub_id)["status"] == "active"  # nothing yet

    done = client.post(
        f"/subscriptions/{sub_id}/cancel", data={"csrf_token": token, "step": "run"}, headers=HX
    )
    text = done.get_data(as_text=True)
    assert (
        done.status_code == 200
        and "Cancelled in Stripe and here" in text
        and "Stripe and paydesk agree" in text
    )
    assert gateway(empty_processor).retrieve("subscriptions", sub_id)["status"] == "canceled"
    db.session.refresh(imported["recur"])
    assert imported["recur"].status == "Cancelled"
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "subscription.cancel"))
    assert entry.actor == "operator@example.org" and entry.object_id == sub_id and entry.result == "ok"
    again = client.post(
        f"/subscriptions/{sub_id}/cancel", data={"csrf_token": token, "step": "run"}, headers=HX
    )
    assert again.status_code == 422 and "has ended already" in again.get_data(as_text=True)


@pytest.mark.localstripe
def test_the_subscription_page_names_every_difference_and_sync_repairs_them(client, auth, imported):
    recur = imported["recur"]
    c = db.session.scalar(select(Contribution).where(Contribution.recur_id == recur.id))
    invoice_id, charge_id = c.invoice_id, c.payments[0].charge_id
    recur.amount, c.status = 999, "Pending"
    db.session.delete(c.payments[0])
    db.session.add(
        Contribution(
            processor_id=recur.processor_id,
            recur_id=recur.id,
            amount=2000,
            currency="usd",
            status="Completed",
            trxn_id="in_madeup",
        )
    )
    db.session.commit()
    auth.login("operator@example.org", "operator")
    sub_id = imported["sub"]["id"]
    html = page(client, f"/subscriptions/{sub_id}")
    assert "4 differences between Stripe and paydesk" in html
    for needle in (
        "9.99 USD",
        "contribution status",
        invoice_id,
        charge_id,
        "charge succeeded",
        "in_madeup",
        "not in Stripe",
    ):
        assert needle in html, needle
    listed = page(client, "/subscriptions?differs=1")
    assert sub_id in listed and "4 differences" in listed

    token = auth.token(f"/subscriptions/{sub_id}")
    synced = client.post(f"/subscriptions/{sub_id}/import", data={"csrf_token": token}, headers=HX)
    text = synced.get_data(as_text=True)
    assert (
        synced.status_code == 200 and "Synced" in text and "1 difference between Stripe and paydesk" in text
    )
    assert "in_madeup" in text  # paydesk's own extra contribution is shown, not deleted
    db.session.expire_all()
    assert db.session.get(ContributionRecur, recur.id).amount == 2000
    assert db.session.get(Contribution, c.id).status == "Completed"
    assert [p.trxn_id for p in db.session.get(Contribution, c.id).payments] == [charge_id]


@pytest.mark.localstripe
def test_import_from_the_list_page_is_a_job(client, auth, empty_processor):
    gw = gateway(empty_processor)
    plan = donation_plan(gw, 700)
    for i in range(3):
        subscribe(gw, gw.create("customers", {"email": f"page{i}@example.org"})["id"], plan)
    auth.login("operator@example.org", "operator")
    html = page(client, "/subscriptions")
    assert "Import subscriptions" in html and "No subscriptions in paydesk yet" in html
    token = auth.token("/subscriptions")
    resp = client.post(
        "/subscriptions/import",
        data={"csrf_token": token, "ppid": empty_processor.id, "limit": "2"},
        headers=HX,
    )
    assert resp.status_code == 200 and "Import up to 2 subscriptions from" in resp.get_data(as_text=True)
    resp = confirm(client, "/subscriptions/import", resp, {"csrf_token": token}, headers=HX)
    assert resp.status_code == 202 and "Import 2 subscriptions" in resp.get_data(as_text=True)
    bad = client.post("/subscriptions/import", data={"csrf_token": token, "limit": "lots"}, headers=HX)
    assert bad.status_code == 422 and "whole number" in bad.get_data(as_text=True)
    while queues.run_jobs("test", seconds=60):
        pass
    assert db.session.scalar(select(func.count()).select_from(ContributionRecur)) == 2
    one = client.post(
        "/subscriptions/import", data={"csrf_token": token, "subscription": "sub_nope"}, headers=HX
    )
    assert one.status_code == 422 and "Stripe: there is no subscription sub_nope" in one.get_data(
        as_text=True
    )


@pytest.mark.localstripe
def test_contact_page_actions(client, auth, empty_processor):
    contact = Contact(display_name="Edsger Dijkstra", email="ewd@example.org")
    db.session.add(contact)
    db.session.commit()
    auth.login("operator@example.org", "operator")
    url = f"/contacts/{contact.id}"
    assert "Not linked to a Stripe customer" in page(client, url)
    token = auth.token(url)
    made = client.post(f"{url}/customers", data={"csrf_token": token, "ppid": empty_processor.id}, headers=HX)
    assert made.status_code == 200 and "Created Stripe customer" in made.get_data(as_text=True)
    link = db.session.scalar(select(StripeCustomer))
    assert gateway(empty_processor).retrieve("customers", link.customer_id)["metadata"]["contact_id"] == str(
        contact.id
    )

    edited = client.post(
        f"{url}/edit",
        data={"csrf_token": token, "name": "E. W. Dijkstra", "email": "ewd@example.org"},
        headers=HX,
    )
    assert edited.status_code == 200 and "name changed" in edited.get_data(as_text=True)
    assert db.session.scalar(select(OutboxTask.payload)) == {
        "customer_id": link.customer_id,
        "contact_id": contact.id,
    }
    invalid = client.post(f"{url}/edit", data={"csrf_token": token, "name": "", "email": ""}, headers=HX)
    assert invalid.status_code == 422 and "Name: give the contact a name" in invalid.get_data(as_text=True)

    pushed = client.post(f"{url}/customers/{link.customer_id}/push", data={"csrf_token": token}, headers=HX)
    assert pushed.status_code == 200
    assert gateway(empty_processor).retrieve("customers", link.customer_id)["name"] == "E. W. Dijkstra"
    unlinked = client.post(
        f"{url}/customers/{link.customer_id}/unlink", data={"csrf_token": token}, headers=HX
    )
    assert unlinked.status_code == 200 and "no longer linked" in unlinked.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(StripeCustomer)) == 0
    assert (
        client.post(f"{url}/customers/cus_other/push", data={"csrf_token": token}, headers=HX).status_code
        == 404
    )
    actions = list(db.session.scalars(select(AuditLog.action).where(AuditLog.object_type == "contact")))
    assert actions == ["customer.create", "contact.update", "customer.update_metadata", "customer.unlink"]


def _csv(client, url: str) -> list[dict]:
    resp = client.get(url)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


@pytest.mark.postgres
def test_csv_export_is_exactly_what_is_filtered(client, auth, offline_processor):
    p = offline_processor.id
    ada = Contact(display_name='Ada, "the" Countess', email="ada@example.org")
    evil = Contact(display_name='=HYPERLINK("http://x")', email="evil@example.org")
    db.session.add(evil)
    db.session.add(ada)
    db.session.flush()
    statuses = ("Completed", "Completed", "Failed", "Refunded")
    for n in range(1203):
        c = Contribution(
            processor_id=p,
            contact_id=ada.id if n % 2 else None,
            amount=100 * (n % 50),
            currency="eur" if n % 5 == 0 else "usd",
            status=statuses[n % 4],
            trxn_id=f"ch_csv{n}",
        )
        db.session.add(c)
        db.session.flush()
        db.session.add(
            Payment(
                contribution_id=c.id,
                processor_id=p,
                trxn_id=f"ch_csv{n}",
                charge_id=f"ch_csv{n}",
                amount=c.amount,
                fee=3,
                net=c.amount - 3,
                currency=c.currency,
            )
        )
    db.session.commit()
    auth.login("viewer@example.org", "viewer")

    query = "status=Completed&status=Refunded&currency=usd&min_amount=5"
    rows = _csv(client, f"/contributions/export.csv?{query}")
    flt, _ = rec.ContributionFilter.from_args(
        {"status": ["Completed", "Refunded"], "currency": "usd", "min_amount": "5"}
    )
    expected = db.session.scalars(rec.contribution_query(flt).with_only_columns(Contribution.id)).all()
    assert sorted(int(r["id"]) for r in rows) == sorted(expected) and len(rows) > 400
    assert [int(r["id"]) for r in rows] == [d["id"] for d in rec.contribution_rows(flt)]  # the page's order
    assert all(
        r["currency"] == "usd" and float(r["amount"]) >= 5 and r["status"] in ("Completed", "Refunded")
        for r in rows
    )
    sample = next(r for r in rows if r["contact_id"])
    assert sample["contact"] == 'Ada, "the" Countess' and sample["amount"].count(".") == 1
    # the page's link carries the same filter
    html = page(client, f"/contributions?{query}")
    import html as html_lib
    import re
    from urllib.parse import parse_qsl, urlsplit

    href = html_lib.unescape(re.search(r'href="(/contributions/export\.csv\?[^"]*)"', html).group(1))
    assert sorted(parse_qsl(urlsplit(href).query)) == sorted(
        [("status", "Completed"), ("status", "Refunded"), ("min_amount", "5"), ("currency", "usd")]
    )

    db.session.add(
        Contribution(
            processor_id=p,
            contact_id=evil.id,
            amount=-500,
            currency="gbp",
            status="Completed",
            trxn_id="ch_evil",
        )
    )
    db.session.commit()
    [row] = _csv(client, "/contributions/export.csv?currency=gbp")
    assert row["contact"] == '\'=HYPERLINK("http://x")' and row["amount"] == "-5.00"  # text, not a formula

    pay_rows = _csv(client, "/payments/export.csv?currency=eur")
    assert len(pay_rows) == 241 and {r["currency"] for r in pay_rows} == {"eur"}
    assert _csv(client, "/payments/export.csv?q=nobody-at-all") == []


def _jobs() -> list[str]:
    return list(db.session.scalars(select(Job.kind).order_by(Job.id)))


def test_push_to_all_and_update_all_say_how_many_before_starting_a_job(client, auth, offline_processor):
    for n in range(3):
        contact = Contact(display_name=f"Linked {n}", email=f"linked{n}@example.org")
        db.session.add(contact)
        db.session.flush()
        db.session.add(
            StripeCustomer(
                customer_id=f"cus_linked{n}",
                contact_id=contact.id,
                processor_id=offline_processor.id,
                deleted=n == 2,
            )
        )
    db.session.commit()
    auth.login("operator@example.org", "operator")
    token = auth.token("/customers")
    form = {"csrf_token": token, "ppid": offline_processor.id}
    ask = client.post("/customers/update_metadata", data=form, headers=HX)
    text = ask.get_data(as_text=True)
    assert ask.status_code == 200 and "Push contact details to 2 linked Stripe customers?" in text
    assert "Yes, push to 2" in text and 'name="step" value="run"' in text and _jobs() == []
    ask = client.post("/customers/update_contact_ids", data=form, headers=HX)
    assert "Read contact ids from 2 linked Stripe customers?" in ask.get_data(as_text=True) and _jobs() == []
    run = confirm(client, "/customers/update_metadata", text, form, headers=HX)
    assert run.status_code == 202 and _jobs() == ["customers.update_metadata"]
    # without JavaScript the confirmation is a page of its own, and its button starts the job
    plain = client.post("/customers/update_contact_ids", data=form)
    html = plain.get_data(as_text=True)
    assert plain.status_code == 200 and "<html" in html and "Yes, update 2" in html
    assert 'action="/customers/update_contact_ids"' in html and _jobs() == ["customers.update_metadata"]
    started = confirm(client, "/customers/update_contact_ids", html, form)
    assert started.status_code == 302 and "/jobs/" in started.headers["Location"]
    assert _jobs() == ["customers.update_metadata", "customers.update_contact_ids"]


def test_push_to_all_with_no_linked_customer_offers_nothing_to_confirm(client, auth, offline_processor):
    auth.login("operator@example.org", "operator")
    token = auth.token("/customers")
    ask = client.post(
        "/customers/update_metadata", data={"csrf_token": token, "ppid": offline_processor.id}, headers=HX
    )
    text = ask.get_data(as_text=True)
    assert "is linked to a contact yet" in text and 'value="run"' not in text and _jobs() == []


def test_compare_all_says_how_many_before_starting_a_job(client, auth, offline_processor):
    db.session.add_all(
        [
            ContributionRecur(
                processor_id=offline_processor.id,
                subscription_id=f"sub_cmp{n}",
                amount=500,
                currency="usd",
                interval="month",
                interval_count=1,
            )
            for n in range(2)
        ]
    )
    db.session.commit()
    auth.login("operator@example.org", "operator")
    token = auth.token("/subscriptions")
    form = {"csrf_token": token, "ppid": offline_processor.id}
    ask = client.post("/subscriptions/compare", data=form, headers=HX)
    text = ask.get_data(as_text=True)
    assert (
        ask.status_code == 200
        and "Compare 2 subscriptions with Stripe?" in text
        and "Yes, compare all" in text
    )
    assert _jobs() == []
    run = confirm(client, "/subscriptions/compare", text, form, headers=HX)
    assert run.status_code == 202 and _jobs() == ["subscriptions.compare"]


def test_contribution_totals_add_up_and_customers_given_is_never_blank(client, auth, offline_processor):
    """The totals count completed money (amount - fees - refunded = net) with failed gifts apart; a donor whose
    only gift failed has given 0.00 (shown, with the failed money apart), as one whose gift was refunded."""
    p = offline_processor.id
    lost, refunded = Contact(display_name="Only Failed"), Contact(display_name="All Refunded")
    db.session.add_all([lost, refunded])
    db.session.flush()
    db.session.add_all(
        [
            Contribution(
                processor_id=p,
                contact_id=lost.id,
                amount=4000,
                currency="usd",
                status="Failed",
                trxn_id="ch_f",
            ),
            Contribution(
                processor_id=p,
                contact_id=refunded.id,
                amount=2000,
                currency="usd",
                status="Refunded",
                trxn_id="ch_r",
                fee_amount=100,
                refunded_amount=2000,
                net_amount=-100,
            ),
        ]
    )
    db.session.commit()
    auth.login("viewer@example.org", "viewer")
    html = page(client, "/contributions")
    cells = dict(re.findall(r'<td class="num" data-label="(\w+)">\s*([^<]+?)\s*<', html))
    assert cells == {
        "Count": "1",
        "Amount": "20.00 USD",
        "Fees": "1.00 USD",
        "Refunded": "20.00 USD",
        "Net": "-1.00 USD",
        "Failed": "40.00 USD",
    }, cells
    customers = page(client, "/customers?linked=any")
    given = dict(
        re.findall(r'>(Only Failed|All Refunded)</a>.*?data-label="Given">([^<]+)<', customers, re.S)
    )
    assert given == {"Only Failed": "0.00 USD", "All Refunded": "0.00 USD"}
    assert "failed 40.00 USD" in customers


def test_saving_a_contact_refuses_control_characters_and_renames_the_heading(client, auth, offline_processor):
    contact = Contact(display_name="Grace Hopper", email="grace@example.org")
    db.session.add(contact)
    db.session.commit()
    auth.login("operator@example.org", "operator")
    url = f"/contacts/{contact.id}"
    token = auth.token(url)
    nul = client.post(
        f"{url}/edit", data={"csrf_token": token, "name": "Grace\x00Hopper", "email": ""}, headers=HX
    )
    assert nul.status_code == 422 and "Name: remove the control character (U+0000)" in nul.get_data(
        as_text=True
    )
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).display_name == "Grace Hopper"

    saved = client.post(
        f"{url}/edit", data={"csrf_token": token, "name": "Rear Admiral Hopper", "email": ""}, headers=HX
    )
    text = saved.get_data(as_text=True)
    heading = re.search(
        r'<div class="page-head" id="contact-heading" hx-swap-oob="true">\s*<h1>([^<]+)<', text
    )
    assert saved.status_code == 200 and heading and heading.group(1).strip() == "Rear Admiral Hopper"
    assert "Rear Admiral Hopper" in re.search(r"<h1>[^<]+", page(client, url)).group(0)


def test_stripe_ids_are_checked_first_and_not_found_names_the_object(client, auth, world, offline_processor):
    auth.login("operator@example.org", "operator")
    token = auth.token("/contributions")
    ghost = client.post(
        "/contributions/import-charge", data={"csrf_token": token, "charge": "ch_ghost77"}, headers=HX
    )
    text = ghost.get_data(as_text=True)
    assert (
        ghost.status_code == 422
        and "Stripe: there is no charge ch_ghost77" in text
        and "Not Found" not in text
    )
    calls = len(world.calls)
    long = client.post(
        "/contributions/import-charge", data={"csrf_token": token, "charge": "ch_" + "9" * 3000}, headers=HX
    )
    text = long.get_data(as_text=True)
    assert long.status_code == 422 and "Charge id: at most 255 characters" in text and "9" * 300 not in text
    assert len(world.calls) == calls  # refused before Stripe was asked
    html = page(client, "/customers?customer=" + "c" * 3000)
    assert "<strong>Stripe customer id</strong>: at most 255 characters" in html and "c" * 300 not in html


def test_no_cancel_confirmation_for_a_subscription_stripe_does_not_have(
    client, auth, world, offline_processor
):
    auth.login("operator@example.org", "operator")
    token = auth.token("/subscriptions")
    ask = client.post("/subscriptions/sub_unknown1/cancel", data={"csrf_token": token}, headers=HX)
    text = ask.get_data(as_text=True)
    assert ask.status_code == 404 and "Stripe: there is no subscription sub_unknown1" in text
    assert "Yes, cancel it" not in text
