"""``import ...`` and ``customers ...`` on the command line, against a real (emptied) localstripe:
what they print, JSON output, and by-id failures that exit 1 with Stripe's message and no traceback."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from admin.demo_data import donation_plan, subscribe
from admin.extensions import db
from admin.models import Contact, ContributionRecur, StripeCustomer
from admin.services.settings.processors import gateway

pytestmark = pytest.mark.localstripe


def invoke(runner, *args):
    return runner.invoke(args=list(args))


def assert_clean_failure(result, *needles):
    assert result.exit_code == 1, result.output
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    for needle in needles:
        assert needle in result.output, result.output


def test_import_subscriptions_one_some_and_missing(runner, empty_processor):
    gw = gateway(empty_processor)
    plan = donation_plan(gw, 1200)
    subs = [
        subscribe(gw, gw.create("customers", {"email": f"cli{i}@example.org"})["id"], plan) for i in range(3)
    ]

    one = invoke(runner, "import", "subscriptions", "--subscription", subs[0]["id"], "--format", "json")
    assert one.exit_code == 0, one.output
    out = json.loads(one.stdout)
    assert out["outcome"] == "created" and out["status"] == "In Progress" and out["differences"] == []
    table = invoke(runner, "import", "subscriptions", "--subscription", subs[0]["id"])
    assert table.exit_code == 0 and f"{subs[0]['id']}: unchanged" in table.output

    some = invoke(
        runner,
        "import",
        "subscriptions",
        "--limit",
        "1",
        "--starting-after",
        subs[2]["id"],
        "--format",
        "json",
    )  # Stripe lists newest first: after subs[2] comes subs[1]
    assert some.exit_code == 0, some.output
    job = json.loads(some.stdout)
    assert job["status"] == "done" and job["result"]["counts"] == {"created": 1}
    assert set(db.session.scalars(select(ContributionRecur.subscription_id))) == {
        subs[0]["id"],
        subs[1]["id"],
    }

    rest = invoke(runner, "import", "subscriptions")
    assert (
        rest.exit_code == 0
        and "done" in rest.output
        and "created 1" in rest.output
        and "unchanged 2" in rest.output
    )

    missing = invoke(runner, "import", "subscriptions", "--subscription", "sub_nothere")
    assert_clean_failure(missing, "Error: Stripe: ")
    both = invoke(runner, "import", "subscriptions", "--subscription", subs[0]["id"], "--limit", "2")
    assert_clean_failure(both, "either --subscription or --limit")


def test_import_customers_and_charge_by_id_failures(runner, empty_processor):
    gw = gateway(empty_processor)
    cus = gw.create("customers", {"name": "Cli Person", "email": "cli.person@example.org"})
    ok = invoke(runner, "import", "customers", "--customer", cus["id"])
    assert ok.exit_code == 0 and f"{cus['id']}: created" in ok.output
    all_ = invoke(runner, "import", "customers", "--format", "json")
    assert all_.exit_code == 0 and json.loads(all_.stdout)["result"]["counts"] == {"linked": 1}

    assert_clean_failure(
        invoke(runner, "import", "customers", "--customer", "cus_nothere"), "Error: Stripe: "
    )
    assert_clean_failure(invoke(runner, "import", "charge", "--charge", "ch_nothere"), "Error: Stripe: ")
    assert_clean_failure(invoke(runner, "import", "charge", "--charge", "in_123"), "is not a charge id")


def test_customers_create_get_update_metadata_delete(runner, empty_processor):
    contact = Contact(display_name="Grace Hopper", email="grace@example.org")
    db.session.add(contact)
    db.session.commit()
    created = invoke(runner, "customers", "create", "--contact-id", str(contact.id), "--format", "json")
    assert created.exit_code == 0, created.output
    customer_id = json.loads(created.stdout)["customer_id"]
    again = invoke(runner, "customers", "create", "--contact-id", str(contact.id))
    assert_clean_failure(again, "has a Stripe customer already")

    got = json.loads(
        invoke(runner, "customers", "get", "--contact-id", str(contact.id), "--format", "json").stdout
    )
    assert [g["customer_id"] for g in got] == [customer_id]
    assert got[0]["stripe"]["metadata"]["contact_id"] == str(contact.id) and got[0]["linked"]

    contact.display_name = "Rear Admiral Grace Hopper"
    db.session.commit()
    pushed = invoke(runner, "customers", "update-metadata", "--customer", customer_id)
    assert pushed.exit_code == 0 and "updated" in pushed.output
    assert gateway(empty_processor).retrieve("customers", customer_id)["name"] == "Rear Admiral Grace Hopper"

    ids = invoke(runner, "customers", "update-contact-ids", "--customer", customer_id)
    assert ids.exit_code == 0 and f"{customer_id}: unchanged" in ids.output

    removed = invoke(runner, "customers", "delete", "--customer", customer_id)
    assert removed.exit_code == 0 and f"unlinked {customer_id} from contact {contact.id}" in removed.output
    assert db.session.scalar(select(func.count()).select_from(StripeCustomer)) == 0
    assert gateway(empty_processor).retrieve("customers", customer_id)["id"] == customer_id  # still in Stripe
    assert_clean_failure(
        invoke(runner, "customers", "delete", "--customer", customer_id), "no link to remove"
    )
    assert_clean_failure(invoke(runner, "customers", "get"), "either --contact-id or --customer")
    assert_clean_failure(invoke(runner, "customers", "create", "--contact-id", "987654"), "no contact 987654")


def test_listings_read_the_page_filters_and_name_a_bad_option(runner, empty_processor):
    gw = gateway(empty_processor)
    sub = subscribe(gw, gw.create("customers", {"email": "list@example.org"})["id"], donation_plan(gw, 2500))
    assert invoke(runner, "import", "subscriptions", "--subscription", sub["id"]).exit_code == 0

    def rows(*args):
        result = invoke(runner, *args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert len(rows("contributions", "list", "--type", "recurring", "--min-amount", "25")) == 1
    assert rows("contributions", "list", "--type", "one-off") == []
    assert rows("contributions", "list", "--min-amount", "25.01") == []
    assert len(rows("payments", "list", "--search", "list@example.org")) == 1
    assert [r["subscription_id"] for r in rows("recurring", "list", "--status", "In Progress")] == [sub["id"]]
    assert rows("recurring", "list", "--differs") == []
    assert [c["email"] for c in rows("contacts", "list", "--linked", "yes")] == ["list@example.org"]
    bad = invoke(runner, "contributions", "list", "--min-amount", "ten")
    assert_clean_failure(bad, "--min-amount")


@pytest.mark.postgres
def test_contact_ids_no_contact_can_have_are_one_line_errors(runner, offline_processor):
    """3000000000 is past PostgreSQL's int4 ids; 99999999999999999999 past a 64-bit integer."""
    for bad in ("3000000000", "99999999999999999999", "0"):
        for args in (
            ("customers", "get", "--contact-id", bad),
            ("customers", "delete", "--contact-id", bad),
            ("customers", "update-metadata", "--contact-id", bad),
            ("customers", "create", "--contact-id", bad),
            ("import", "charge", "--charge", "ch_1", "--contact-id", bad),
        ):
            result = invoke(runner, *args)
            assert result.exit_code in (1, 2), (args, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                args,
                result.exception,
            )
            assert result.output.startswith("Usage:") or result.output.startswith("Error:"), result.output
            assert "Traceback" not in result.output and bad in result.output, (args, result.output)
