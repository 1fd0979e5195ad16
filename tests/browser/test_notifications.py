"""/settings/notifications in Chromium: add a URL with the keyboard, the secret shown once, and both pages
(with a delivered and a failed delivery) fit a phone and pass axe at 375 and 1280 px."""

from __future__ import annotations

import pytest
from conftest import PASSWORD, make_app
from notify_receiver import Receiver

from admin.extensions import db

from .conftest import axe_violations, needs_axe, serve, sign_in

pytestmark = pytest.mark.browser

ADMIN = "notify-admin@example.org"
SIZES = {"phone": {"width": 375, "height": 812}, "desktop": {"width": 1280, "height": 860}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from admin.models import Contribution, OutboxTask
    from admin.services.notifications import endpoints
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user
    from admin.worker.loop import run_once

    tmp = tmp_path_factory.mktemp("notify")
    app = make_app(f"sqlite:///{tmp / 'paydesk.sqlite3'}", tmp, TESTING=False, NOTIFY_ALLOW_PRIVATE=True)
    with Receiver() as rx, app.app_context():
        db.create_all()
        create_user(ADMIN, PASSWORD, "admin")
        proc = add_processor(
            name="Stripe",
            secret_key="sk_test_x",
            webhook_secrets=["whsec_x"],
            api_base="http://127.0.0.1:9",
            mode="test",
            default=True,
        )
        endpoints.add_endpoint(rx.url + "&" + "long-query-value" * 8, description="The CRM's intake")
        db.session.add(Contribution(processor_id=proc.id, amount=2500, currency="usd", status="Completed"))
        db.session.commit()
        run_once()
        rx.status = 500
        db.session.add(Contribution(processor_id=proc.id, amount=900, currency="usd", status="Failed"))
        db.session.commit()
        run_once()
        db.session.query(OutboxTask).filter(OutboxTask.status == "queued").update({"status": "error"})
        db.session.commit()
        db.session.remove()
    with serve(app) as live:
        yield live


@pytest.fixture
def admin_page(browser, site):
    context = browser.new_context(base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, ADMIN)
    yield page
    context.close()


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@needs_axe
def test_both_pages_fit_and_pass_axe(admin_page):
    page = admin_page
    problems = []
    for label, size in SIZES.items():
        page.set_viewport_size(size)
        for path in ("/settings/notifications", "/settings/notifications/1"):
            page.goto(path)
            if _overflow(page) > 0:
                problems.append(f"{path} at {label}: {_overflow(page)}px wider than the screen")
            for v in axe_violations(page):
                problems.append(f"{path} at {label}: axe {v['id']}: {v['help']}")
    assert problems == []
    page.goto("/settings/notifications/1")
    text = page.locator("main").inner_text()
    assert "delivered" in text and "failed" in text and page.locator("button", has_text="Resend").count() == 2


def test_adding_a_url_with_the_keyboard_shows_its_secret_once(admin_page):
    page = admin_page
    page.set_viewport_size(SIZES["phone"])
    page.goto("/settings/notifications")
    page.focus("#hook-url")
    page.keyboard.type("http://127.0.0.1:9/keyboard")
    page.keyboard.press("Tab")
    page.keyboard.type("Typed in")
    page.keyboard.press("Enter")
    secret = page.input_value("#new-secret")
    assert secret.startswith("pdwhsec_")
    page.goto("/settings/notifications")
    assert secret not in page.content() and "keyboard" in page.content()
