"""The demo data, made through real flows in localstripe, becomes paydesk records.

create_demo_data() talks to the session's localstripe; the events localstripe
emitted are then stored as the webhook endpoint would store them and the
worker runs in-process.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from admin.demo_data import DONORS, create_demo_data
from admin.extensions import db
from admin.models import COMPLETED, EV_ERROR, Contact, Contribution, ContributionRecur, Payment, StripeEvent
from admin.services.settings.processors import gateway

pytestmark = pytest.mark.localstripe


def _events_since(gw, since: int) -> list[dict]:
    """Every event localstripe has from ``since`` on, oldest first (the session's server is shared)."""
    events, after = [], None
    while True:
        page = gw.list("events", limit=100, starting_after=after)
        data = page["data"]
        events.extend(e for e in data if int(e["created"]) >= since)
        if not page.get("has_more") or not data:
            break
        after = data[-1]["id"]
    return sorted(events, key=lambda e: (e["created"], e["id"]))


def _count(model, *where) -> int:
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


def test_demo_data_becomes_records(app, processor):
    worker = pytest.importorskip(
        "admin.worker.loop", reason="the worker (admin/worker/loop.py) is not built yet"
    )
    from admin.webhooks.ingest import store_event

    gw = gateway(processor)
    since = int(time.time()) - 1
    summary = create_demo_data(gw)

    assert len(summary["customers"]) == len(DONORS)
    assert summary["subscription"].startswith("sub_") and summary["subscription_status"] == "active"
    assert len(summary["succeeded"]) == 3 and summary["refunds"]
    assert gw.retrieve("payment_intents", summary["abandoned"])["status"] == "requires_payment_method"
    assert summary["requires_action_status"] == "requires_action"
    assert summary["declined_error"] == "card_declined"
    declined = gw.retrieve("payment_intents", summary["declined"])
    assert declined["status"] == "requires_payment_method" and declined["last_payment_error"]

    events = _events_since(gw, since)
    types = {e["type"] for e in events}
    assert {
        "customer.created",
        "customer.subscription.created",
        "invoice.payment_succeeded",
        "payment_intent.succeeded",
    } <= types, types
    refunded = summary["events_to_deliver"][0]["data"]["object"]
    assert refunded["amount_refunded"] == 5000 and refunded["refunds"]["data"], (
        "the event carries the real charge"
    )
    for ev in events + summary["events_to_deliver"]:
        store_event(processor, ev)
    worker.run_once()

    errors = db.session.execute(
        select(StripeEvent.type, StripeEvent.event_id, StripeEvent.last_error).where(
            StripeEvent.status == EV_ERROR
        )
    ).all()
    assert not errors, "events the worker could not process:\n" + "\n".join(map(str, errors))

    assert _count(Contact) >= 4, "a contact per paying donor"
    emails = set(db.session.scalars(select(Contact.email)))
    assert {"ada.lovelace@example.org", "grace.hopper@example.org"} <= emails

    recur = db.session.scalar(
        select(ContributionRecur).where(ContributionRecur.subscription_id == summary["subscription"])
    )
    assert recur is not None, "the subscription became a recurring contribution"
    assert recur.amount == 1500 and recur.interval == "month"
    assert _count(Contribution, Contribution.recur_id == recur.id) >= 1, (
        "its first invoice became a contribution"
    )

    completed = set(
        db.session.scalars(select(Contribution.payment_intent_id).where(Contribution.status == COMPLETED))
    )
    kept = set(summary["succeeded"]) - {summary["refunded_intent"]}
    assert kept <= completed, f"one-off payments not Completed: {kept - completed}"

    refund = db.session.scalar(select(Payment).where(Payment.refund_id == summary["refunds"][0]))
    assert refund is not None, "the refund became a (negative) payment"
    assert refund.amount == -5000
    refunded = db.session.scalar(
        select(Contribution).where(Contribution.payment_intent_id == summary["refunded_intent"])
    )
    assert refunded.status == "Refunded"


def test_dashboard_renders_with_the_demo_data(app, client, auth, processor):
    """The first page staff see, after the demo's real flows: counts that match what was made."""
    import re

    from admin.webhooks.ingest import store_event
    from admin.worker.loop import run_once

    gw = gateway(processor)
    time.sleep(1.01 - time.time() % 1)  # localstripe is shared: start on a second no other test used
    since = int(time.time())
    summary = create_demo_data(gw)
    for ev in _events_since(gw, since) + summary["events_to_deliver"]:
        store_event(processor, ev)
    run_once()
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)

    def value(label: str) -> int:
        m = re.search(re.escape(label) + r'</p>\s*<p class="stat-value">\s*(?:<a [^>]*>)?(\d+)', html)
        assert m, f"no card {label!r}"
        return int(m.group(1))

    assert value("Active subscriptions") == 1
    # the subscription's first invoice and the one-offs that were not refunded
    assert value("Contributions this month") == 1 + len(summary["succeeded"]) - 1
    assert value("Events in error, last 24 h") == 0
    assert value("Events waiting for the worker") == 0
    assert value("Events received, last 24 h") >= len(summary["customers"])


def test_history_from_before_paydesk_is_imported_by_make_demo(runner, empty_processor):
    """``make demo`` makes Stripe data no webhook announced, then imports it with the CLI."""
    from admin.demo_data import EARLIER_DONORS, create_history

    history = create_history(gateway(empty_processor))
    for args in (
        ["import", "customers"],
        ["import", "subscriptions"],
        *(["import", "charge", "--charge", ch] for ch in history["charges"]),
    ):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    assert _count(Contact) == len(EARLIER_DONORS) + 1
    assert _count(ContributionRecur) == len(history["subscriptions"])
    cancelled = db.session.scalar(
        select(ContributionRecur).where(ContributionRecur.subscription_id == history["cancelled"][0])
    )
    assert cancelled.status == "Cancelled"
    assert _count(Contribution) == len(history["subscriptions"]) + len(history["charges"])
    assert _count(Payment) == _count(Contribution)
    currencies = set(db.session.scalars(select(ContributionRecur.currency)))
    assert currencies == {"usd", "eur"}


def test_the_demo_prints_the_line_that_lets_the_cli_act_on_its_data(tmp_path):
    """Its keys are made for each run: without the printed line, ``processor list`` and every command that
    talks to Stripe would say the stored Stripe secrets cannot be decrypted."""
    import base64
    import importlib.util
    import os
    import secrets
    import subprocess
    import sys

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env = {
        **clean,
        "PAYDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "PAYDESK_SECRET_KEY": secrets.token_urlsafe(32),
        "PAYDESK_ENCRYPTION_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    for args in (
        ["db", "upgrade"],
        [
            "processor",
            "add",
            "--name",
            "localstripe demo",
            "--secret-key",
            "sk_test_demo0123456789abcdef1234",
            "--webhook-secret",
            "whsec_demo",
            "--default",
        ],
    ):
        subprocess.run(flask + args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)

    line = demo.export_line(env)
    assert line.startswith("export PAYDESK_DATABASE_URL=") and line in demo.banner("pw", 1, env)
    pasted = subprocess.run(
        ["bash", "-c", f"{line}\n{' '.join(flask)} processor list"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pasted.returncode == 0 and pasted.stderr == "", pasted.stderr
    assert "localstripe demo" in pasted.stdout and "sk_test_…1234" in pasted.stdout
    # the demo's own database is named as the README names it, relative to the project's folder
    assert demo.export_line(
        {**env, "PAYDESK_DATABASE_URL": f"sqlite:///{ROOT}/instance/demo.sqlite3"}
    ).startswith("export PAYDESK_DATABASE_URL=sqlite:///instance/demo.sqlite3 ")


def test_the_demo_prints_a_curl_line_that_lists_new_charges(tmp_path, monkeypatch):
    """``make demo`` makes a read token (``tokens create``) and prints the curl line that polls new charges."""
    import base64
    import importlib.util
    import json
    import os
    import secrets
    import subprocess
    import sys

    from conftest import ROOT, make_app

    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {
        **clean,
        "PAYDESK_DATABASE_URL": url,
        "PAYDESK_SECRET_KEY": secrets.token_urlsafe(32),
        "PAYDESK_ENCRYPTION_KEY": key,
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)

    def run_flask(env_, *args, stdin=None):
        done = subprocess.run(
            flask + list(args), cwd=ROOT, env=env_, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    monkeypatch.setattr(demo, "flask", run_flask)
    token = demo.create_api_token(env)
    line = demo.curl_line(token)
    assert line.startswith("curl ") and line.endswith("/api/v1/triggers/new-charges")
    assert line in demo.banner("pw", 1, env, token)

    app = make_app(url, tmp_path, ENCRYPTION_KEY=key)
    with app.app_context():
        resp = app.test_client().get(
            "/api/v1/triggers/new-charges", headers={"Authorization": f"Bearer {token}"}
        )
    assert resp.status_code == 200 and json.loads(resp.data)["data"] == []


def test_the_demo_registers_a_receiver_that_checks_each_notification(tmp_path, monkeypatch):
    """``make demo`` runs a receiver, registers it (``notifications add``) and logs each notification with its
    signature checked; the banner says how many arrived and where they are."""
    import base64
    import importlib.util
    import os
    import secrets
    import subprocess
    import sys

    from conftest import ROOT, make_app

    from admin.extensions import db
    from admin.models import Contribution
    from admin.services.settings.processors import add_processor
    from admin.worker.loop import run_once

    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    env = {
        **clean,
        "PAYDESK_DATABASE_URL": url,
        "PAYDESK_SECRET_KEY": secrets.token_urlsafe(32),
        "PAYDESK_ENCRYPTION_KEY": key,
    }
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    subprocess.run(flask + ["db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)

    def run_flask(env_, *args, stdin=None):
        done = subprocess.run(
            flask + list(args), cwd=ROOT, env=env_, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    monkeypatch.setattr(demo, "flask", run_flask)
    receiver = demo.DemoReceiver(tmp_path / "notifications.log")
    try:
        receiver.register(env)
        app = make_app(url, tmp_path, ENCRYPTION_KEY=key, NOTIFY_ALLOW_PRIVATE=True)
        with app.app_context():
            proc = add_processor(name="demo", secret_key="sk_test_demo", webhook_secrets=["whsec_demo"])
            db.session.add(
                Contribution(processor_id=proc.id, amount=5000, currency="usd", status="Completed")
            )
            db.session.commit()
            run_once()
            db.engine.dispose()
    finally:
        receiver.stop()
    (line,) = (tmp_path / "notifications.log").read_text().splitlines()
    assert "contribution.completed ntf_" in line and line.endswith("signature ok")
    assert "Notifications: 1 received so far" in demo.banner("pw", 1, env, None, receiver)
