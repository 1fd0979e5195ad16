"""/connect, /settings/processors and /settings/webhooks in Chromium at 1280 and 375 px: no page wider than the
screen, axe-core finds no serious or critical violation, and the htmx actions work (test connection, a
transfer confirmed then made). Stripe is a ``ConnectWorld`` behind ``responses``."""

from __future__ import annotations

import json

import pytest
import responses
from conftest import PASSWORD, make_app
from connect_world import ConnectWorld
from playwright.sync_api import expect
from stripe_world import BASE

from admin.extensions import db

from .conftest import axe_violations, needs_axe, serve, sign_in

pytestmark = pytest.mark.browser
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 860}
ADMIN = "admin@example.org"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user

    tmp = tmp_path_factory.mktemp("connect")
    app = make_app(f"sqlite:///{tmp / 'paydesk.sqlite3'}", tmp, TESTING=False)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world = ConnectWorld(rsps)
        with app.app_context():
            db.create_all()
            create_user(ADMIN, PASSWORD, "admin")
            proc = add_processor(
                name="Stripe (test)",
                secret_key="sk_test_connect_pages",
                publishable_key="pk_test_c",
                webhook_secrets=["whsec_connect_pages_secret"],
                api_base=BASE,
                mode="test",
                default=True,
            )
            acct = world.account(
                email="bookshop-with-a-rather-long-address@example.org", charges_enabled=True
            )
            acct["business_profile"]["name"] = "The Very Long Named Community Bookshop Cooperative"
            world.person(acct["id"], "Ada", "Lovelace")
            world.account(email="cafe@example.org")
            po = world.payout(acct["id"], amount=4200)
            world.transaction(acct["id"], po["id"], amount=4500, fee=300)
            world.endpoint(f"http://127.0.0.1:5000/webhooks/stripe/{proc.id}", ["invoice.paid"])
            world.endpoint("https://elsewhere.example.org/a/very/long/path/for/hooks", ["charge.succeeded"])
            db.session.remove()
        with serve(app) as live:
            live.world, live.acct, live.payout = world, acct["id"], po["id"]
            yield live


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport=DESKTOP, base_url=site.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def _overflow(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


@needs_axe
def test_connect_and_settings_pages_fit_and_pass_axe(page, site):
    sign_in(page, ADMIN)
    paths = [
        "/connect",
        f"/connect/accounts/{site.acct}",
        "/connect/transfers",
        f"/connect/payouts?account={site.acct}",
        f"/connect/payouts/{site.payout}?account={site.acct}",
        "/settings/processors",
        "/settings/processors/new",
        "/settings/processors/1/edit",
        "/settings/webhooks",
    ]
    problems = []
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        for path in paths:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            if _overflow(page) > 0:
                problems.append(f"{path} at {label}: {_overflow(page)}px wider than the screen")
            for v in axe_violations(page):
                problems.append(
                    f"{path} at {label}: axe {v['id']} ({v['impact']}): {v['help']}: "
                    f"{[n['target'] for n in v['nodes']][:3]}"
                )
    assert problems == [], json.dumps(problems, indent=1)
    assert page.errors == []


def test_test_connection_button_shows_the_account_name(page, site):
    sign_in(page, ADMIN)
    page.goto("/settings/processors")
    page.get_by_role("button", name="Test connection of Stripe (test)").click()
    expect(page.locator("#connection-1")).to_contain_text(
        "Friends of the Earthworm (acct_platform0001, test mode)"
    )


def test_a_transfer_is_confirmed_then_made(page, site):
    sign_in(page, ADMIN)
    page.set_viewport_size(PHONE)
    page.goto(f"/connect/accounts/{site.acct}")
    page.get_by_text(f"New transfer to {site.acct}").click()
    page.get_by_label("Amount").fill("7.50")
    page.get_by_label("Transfer group").fill("SPRING")
    page.get_by_label("Key 1").fill("fund")
    page.get_by_label("Value 1").fill("books")
    page.get_by_role("button", name="Review transfer").click()
    page.get_by_role("button", name="Yes, transfer 7.50 USD").click()
    page.wait_for_url("**/connect/transfers?**")
    expect(page.locator("main")).to_contain_text("Transferred 7.50 USD to " + site.acct)
    assert "SPRING" in page.locator("#results").inner_text()
    assert site.world.count("POST", r"^/v1/transfers$") == 1
    assert page.errors == []
