"""Playwright fixtures: the app served by werkzeug in a thread, the system Chromium.

Never runs ``playwright install``: it drives Debian's /usr/bin/chromium (override with
PAYDESK_TEST_CHROMIUM). Tests here are marked ``browser``; they skip when no Chromium exists.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, free_port, make_app
from flask import Blueprint, jsonify, request
from werkzeug.serving import make_server

from admin.extensions import db
from admin.security import role_required

CHROMIUM = os.environ.get("PAYDESK_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWER = "viewer@example.org"
OPERATOR = "operator@example.org"


class LiveServer:
    def __init__(self, app, port: int):
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.seen: list[dict] = []  # requests the probe routes received


def _probe_blueprint(server_state: list[dict]) -> Blueprint:
    """Test-only routes: an htmx POST target that reports what it received."""
    bp = Blueprint("probe", __name__)

    @bp.post("/_probe/echo")
    @role_required("viewer")
    def echo():
        server_state.append(
            {"path": request.path, "headers": dict(request.headers), "form": request.form.to_dict()}
        )
        return '<span class="probe-result">ok</span>'

    @bp.post("/_probe/admin-only")
    @role_required("admin")
    def admin_only():
        return '<span class="probe-result">should not be swapped</span>'

    @bp.get("/_probe/seen")
    def seen():
        return jsonify(server_state)

    return bp


def _seed_demo_rows() -> None:
    """A few realistic rows so the dashboard (and its screenshot) has something to show."""
    from admin.models import Contribution, ContributionRecur, StripeEvent, StripePaymentIntent
    from admin.services.settings.processors import add_processor
    from admin.timeutil import utcnow

    now = utcnow()
    ppid = add_processor(
        name="Stripe (test)",
        secret_key="sk_test_browser",
        publishable_key="pk_test_browser",
        webhook_secrets=["whsec_browser"],
        api_base="http://127.0.0.1:9",
        mode="test",
    ).id
    for n in range(14):
        db.session.add(
            StripeEvent(
                processor_id=ppid,
                event_id=f"evt_b{n}",
                type="invoice.paid",
                raw="{}",
                status="error" if n in (3, 9) else "success",
                received_at=now - timedelta(minutes=37 * n),
            )
        )
    for n, status in enumerate(["requires_payment_method", "requires_action", "succeeded", "processing"]):
        db.session.add(StripePaymentIntent(stripe_intent_id=f"pi_b{n}", processor_id=ppid, status=status))
    for n in range(6):
        db.session.add(
            ContributionRecur(
                processor_id=ppid,
                subscription_id=f"sub_b{n}",
                amount=1500,
                currency="usd",
                status="Cancelled" if n == 5 else "In Progress",
            )
        )
    gifts = [
        (2500, "usd", "Completed"),
        (5000, "usd", "Completed"),
        (1500, "usd", "Completed"),
        (1500, "usd", "Partially refunded"),
        (10000, "eur", "Completed"),
        (2000, "eur", "Completed"),
        (3000, "gbp", "Completed"),
        (1500, "usd", "Failed"),
    ]
    for n, (amount, currency, status) in enumerate(gifts):
        db.session.add(
            Contribution(
                processor_id=ppid,
                amount=amount,
                currency=currency,
                status=status,
                trxn_id=f"ch_b{n}",
                receive_date=now,
            )
        )
    db.session.commit()


@contextmanager
def serve(app):
    """Serve ``app`` with werkzeug in a thread on a free port; yields a LiveServer."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="paydesk-live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(app, port)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    from admin.services.staff.users import create_user

    tmp = tmp_path_factory.mktemp("browser")
    app = make_app(f"sqlite:///{tmp / 'paydesk.sqlite3'}", tmp, TESTING=False)
    seen: list[dict] = []
    app.register_blueprint(_probe_blueprint(seen))
    with app.app_context():
        db.create_all()
        create_user(VIEWER, PASSWORD, "viewer")
        create_user(OPERATOR, PASSWORD, "operator")
        _seed_demo_rows()
        db.session.remove()
    with serve(app) as live:
        live.seen = seen
        yield live


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.console_errors = []
    page.on("console", lambda msg: msg.type == "error" and page.console_errors.append(msg.text))
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


AXE = Path(__file__).resolve().parents[1] / "node_modules" / "axe-core" / "axe.min.js"
needs_axe = pytest.mark.skipif(not AXE.exists(), reason=f"axe-core is not installed ({AXE}): run `make axe`")


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now (the script is run through
    DevTools, which the page's CSP does not govern)."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


def sign_in(page, email: str = VIEWER, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/")
