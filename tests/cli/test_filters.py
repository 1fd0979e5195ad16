"""CLI listings take their page's filter as options: same names as the query string, same choices, same
defaults (admin.cli.support.filter_options), and `audit list` exists because /audit has a filter."""

from __future__ import annotations

import dataclasses
import json

import pytest

from admin.services.core import audit
from admin.services.core.audit import AuditFilter
from admin.services.core.jobs import JobFilter
from admin.services.events.queries import EventFilter
from admin.services.intents.queries import IntentFilter
from admin.services.records.common import ContributionFilter, PaymentFilter
from admin.services.records.contacts import ContactFilter
from admin.services.records.subscriptions import SubscriptionFilter

LISTINGS = [
    (("contacts", "list"), ContactFilter),
    (("contributions", "list"), ContributionFilter),
    (("payments", "list"), PaymentFilter),
    (("recurring", "list"), SubscriptionFilter),
    (("events", "list"), EventFilter),
    (("intents", "list"), IntentFilter),
    (("jobs", "list"), JobFilter),
    (("audit", "list"), AuditFilter),
]


def _command(app, path):
    group = app.cli.get_command(None, path[0])
    return group.get_command(None, path[1])


@pytest.mark.parametrize("path,flt", LISTINGS, ids=[" ".join(p) for p, _ in LISTINGS])
def test_every_filter_field_is_an_option_of_the_same_name(app, path, flt):
    cmd = _command(app, path)
    options = {opt for param in cmd.params for opt in param.opts}
    for f in dataclasses.fields(flt):
        if f.name in flt.PAGING:
            continue
        assert "--" + f.name.replace("_", "-") in options, f"{' '.join(path)} lacks --{f.name}"
        choices = f.metadata.get("choices")
        param = next(p for p in cmd.params if p.name == f.name)
        if choices and not param.multiple:
            assert list(param.type.choices) == list(choices)
    assert "--search" in options if any(f.name == "q" for f in dataclasses.fields(flt)) else True


def test_search_is_q_on_the_cli_too(app, runner):
    audit.record(
        "events.replay", object_type="event", object_id="evt_needle", parameters={"no_receipt": True}
    )
    audit.record("intents.cancel", object_type="payment_intent", object_id="pi_other")
    for flag in ("--q", "--search"):
        out = runner.invoke(args=["audit", "list", flag, "evt_needle", "--format", "json"])
        assert out.exit_code == 0, out.output
        assert [r["object_id"] for r in json.loads(out.output)] == ["evt_needle"]


def test_audit_list_filters_as_the_page_and_names_a_bad_option(app, runner):
    audit.record("events.replay", object_type="event", object_id="evt_1")
    audit.record(
        "intents.cancel", object_type="payment_intent", object_id="pi_1", ok=False, message="Stripe: no"
    )
    rows = json.loads(runner.invoke(args=["audit", "list", "--format", "json"]).output)
    assert [r["action"] for r in rows] == ["intents.cancel", "events.replay"]  # newest first
    rows = json.loads(runner.invoke(args=["audit", "list", "--result", "error", "--format", "json"]).output)
    assert [(r["object_id"], r["message"]) for r in rows] == [("pi_1", "Stripe: no")]
    rows = json.loads(
        runner.invoke(args=["audit", "list", "--action", "events.*", "--format", "json"]).output
    )
    assert [r["object_id"] for r in rows] == ["evt_1"]
    bad = runner.invoke(args=["audit", "list", "--since", "yesterday-ish"])
    assert bad.exit_code != 0 and "--since" in bad.output and "Traceback" not in bad.output


def test_contacts_list_defaults_to_linked_contacts_as_the_customers_page(app, runner):
    from admin.extensions import db
    from admin.models import Contact

    db.session.add(Contact(display_name="Ada Unlinked", email="ada@example.org"))
    db.session.commit()
    listed = json.loads(runner.invoke(args=["contacts", "list", "--format", "json"]).output)
    assert listed == []  # /customers shows contacts linked to a Stripe customer; so does the CLI
    listed = json.loads(
        runner.invoke(args=["contacts", "list", "--linked", "any", "--format", "json"]).output
    )
    assert [c["email"] for c in listed] == ["ada@example.org"]
