"""The events console in Chromium: live filters in the address bar (and the back button), an event
replayed in place, a bulk replay whose job a real worker runs to 100 %, and every console page checked
with axe-core and looked at on a desktop and a phone screen.

The app is served with its own database; its processor's Stripe account is a ``responses``-backed
``StripeWorld`` (fixtures3-shaped objects), and ``admin.worker.loop.run_forever`` runs in a thread
with a stop event, as the worker process would.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import responses
from conftest import PASSWORD, make_app
from playwright.sync_api import expect
from sqlalchemy import select
from stripe_world import OneOff, Renewal

from admin.extensions import db
from admin.models import Payment, StripeEvent

from .conftest import OPERATOR, VIEWER, axe_violations, needs_axe, serve, sign_in

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-results" / "screens"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    """A paydesk with a Stripe account behind ``responses``, six charges whose webhooks failed, a renewal,
    customer updates, local records that drifted from Stripe, and a worker thread."""
    from admin.services.reconcile import scan as rc_scan
    from admin.services.reconcile.filter import ReconcileFilter
    from admin.services.settings.processors import add_processor
    from admin.services.staff.users import create_user
    from admin.webhooks.ingest import store_event
    from admin.worker.loop import run_forever, run_once

    tmp = tmp_path_factory.mktemp("console")
    app = make_app(
        f"sqlite:///{tmp / 'paydesk.sqlite3'}",
        tmp,
        TESTING=False,
        WORKER_IDLE_SLEEP=0.2,
        JOB_SLICE_SECONDS=0.5,
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        from stripe_world import StripeWorld

        world = StripeWorld(rsps)
        with app.app_context():
            db.create_all()
            create_user(VIEWER, PASSWORD, "viewer")
            create_user(OPERATOR, PASSWORD, "operator")
            proc = add_processor(
                name="Stripe (test)",
                secret_key="sk_test_console",
                publishable_key="pk_test_c",
                webhook_secrets=["whsec_console"],
                api_base="http://127.0.0.1:9",
                mode="test",
            )
            recorded = [OneOff(world, amount=1000 + 100 * n) for n in range(3)]
            renewal = Renewal(world, amount=1500)
            for p in recorded:
                store_event(proc, p.event("charge.succeeded"))
            store_event(proc, renewal.events["invoice.paid"])
            run_once()
            for n in range(6):  # webhooks that failed: Stripe still has the events, paydesk has no records
                pay = OneOff(world, amount=2000 + 250 * n)
                event = pay.event("charge.succeeded", created=pay.now - 60 * n)
                world.add(event)
                store_event(proc, event, status="error")
                db.session.scalar(
                    select(StripeEvent).where(StripeEvent.event_id == event["id"])
                ).last_error = "Stripe API error (500) while fetching the balance transaction"
            for _ in range(3):
                store_event(proc, OneOff(world).event("payment_intent.created"), status="ignored")
            db.session.delete(
                db.session.scalar(select(Payment).where(Payment.trxn_id == recorded[0].charge["id"]))
            )  # drift for /reconcile
            db.session.scalar(select(Payment).where(Payment.trxn_id == recorded[1].charge["id"])).amount = 999
            db.session.commit()
            rc_scan.take(proc, ReconcileFilter())  # /reconcile shows the kept scan (an operator's job)
            db.session.remove()
        stop = threading.Event()
        worker = threading.Thread(target=run_forever, args=(app,), kwargs={"stop": stop}, daemon=True)
        worker.start()
        try:
            with serve(app) as live:
                live.world = world
                yield live
        finally:
            stop.set()
            worker.join(timeout=20)


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport=DESKTOP, base_url=console.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


ROWS = "#results table.events tbody tr"


def event_rows(page) -> list[str]:
    return [page.locator(ROWS).nth(i).get_attribute("id") for i in range(page.locator(ROWS).count())]


def test_filters_live_in_the_address_bar_and_the_back_button_restores_them(page):
    sign_in(page, VIEWER)
    page.goto("/events")
    everything = event_rows(page)
    assert len(everything) == 13
    page.fill("input[name=type]", "charge.succeeded")
    page.wait_for_url(re.compile(r"/events\?type=charge\.succeeded$"))
    expect(page.locator(ROWS)).to_have_count(9)
    page.check("input[name=status][value=error]")
    page.wait_for_url(re.compile(r"/events\?type=charge\.succeeded&status=error$"))
    expect(page.locator(ROWS)).to_have_count(6)
    assert page.locator(".count-chip.active").inner_text().split() == ["error", "6"]
    assert page.locator("header.topbar").count() == 1  # the results were swapped, not the page nested

    page.go_back()
    page.wait_for_url(re.compile(r"/events\?type=charge\.succeeded$"))
    expect(page.locator(ROWS)).to_have_count(9)
    assert page.input_value("input[name=type]") == "charge.succeeded"
    assert not page.is_checked("input[name=status][value=error]")
    page.go_back()
    page.wait_for_url(re.compile(r"/events$"))
    expect(page.locator(ROWS)).to_have_count(13)
    page.go_forward()
    page.wait_for_url(re.compile(r"/events\?type=charge\.succeeded$"))
    assert page.errors == []


def test_open_an_event_and_replay_it_in_place(page):
    sign_in(page, OPERATOR)
    page.goto("/events?status=error")
    first = page.locator("#results table.events tbody tr").first
    event_id = first.locator(".mono").first.inner_text()
    first.locator("a", has_text="charge.succeeded").click()
    page.wait_for_url(re.compile(r"/events/\d+$"))
    url = page.url
    assert event_id in page.locator("h1").inner_text()
    assert page.locator("#event-status .badge").inner_text() == "error"
    page.evaluate("window.__still_here = true")  # gone if the page reloads
    page.check("#event-status input[name=no_receipt]")
    page.click("#event-status button:has-text('Replay')")
    page.locator("#event-status .flash").wait_for()
    assert page.locator("#event-status .flash").inner_text().startswith("Replayed: success")
    assert page.locator("#event-status .badge").first.inner_text() == "success"
    assert "Replayed without receipts." in page.locator("#event-status").inner_text()
    assert page.evaluate("window.__still_here") is True and page.url == url
    page.reload()
    assert page.locator("#event-status .badge").inner_text() == "success"
    assert OPERATOR in page.locator("section", has_text="Processing attempts").inner_text()  # who replayed
    assert page.errors == []


def test_bulk_replay_of_a_selection_runs_to_100_percent(page):
    sign_in(page, OPERATOR)
    page.goto("/events?type=charge.succeeded&status=error")
    rows = page.locator("#results table.events tbody tr")
    assert rows.count() >= 3
    for i in range(3):
        rows.nth(i).locator("input[name=ids]").check()
    page.click("button:has-text('Replay…')")
    dialog = page.locator("#bulk-dialog .confirm")
    dialog.wait_for()
    assert re.sub(r"\s+", " ", dialog.locator("h2").inner_text()) == "Replay 3 events?"
    dialog.get_by_label("Do not send receipts").check()  # the confirmation's own option, sent with its token
    page.click("#bulk-dialog button:has-text('Yes, replay 3')")
    progress = page.locator("#bulk-dialog .job")
    progress.wait_for()
    expect(page.locator("#bulk-dialog .progress-text")).to_contain_text("3 of 3 (100%)", timeout=30_000)
    assert page.locator("#bulk-dialog progress").get_attribute("value") == "100"
    assert page.locator("#bulk-dialog .job-title .badge").inner_text() == "done"
    assert re.sub(r"\s+", " ", page.locator("#bulk-dialog .job-counts").inner_text()) == "success 3"
    page.goto("/jobs")
    assert "Replay 3 selected events (no receipts)" in page.locator("#results").inner_text()
    assert page.errors == []


def test_reconcile_fixes_a_row_in_place(page):
    sign_in(page, OPERATOR)
    page.goto("/reconcile?problem=amount")
    row = page.locator("#results tbody tr")
    assert row.count() == 1 and "amount differs" in row.inner_text()
    assert "11.00 USD" in row.inner_text() and "9.99 USD" in row.inner_text()
    row_id = row.get_attribute("id")
    page.click(f"#{row_id} button:has-text('Fix')")
    page.locator(f"#{row_id} .flash").wait_for()
    fixed = page.locator(f"#{row_id}")
    assert "Fixed (replayed" in fixed.inner_text() and "in step" in fixed.inner_text()
    assert page.url.endswith("/reconcile?problem=amount")  # swapped in place
    # the summary above no longer counts the row just fixed
    expect(page.locator("#reconcile-summary .period strong")).to_have_text(re.compile(r"^\d+ differs?$"))
    assert page.locator(".count-chip", has_text="amount").locator(".num").inner_text() == "0"
    page.fill("input[name=days]", "30")
    page.wait_for_url(re.compile(r"/reconcile\?(ppid=\d+&)?days=30&problem=amount$"))
    page.locator("#results .empty").wait_for()
    assert page.errors == []


def test_an_operator_compares_a_period_and_the_results_arrive_when_the_job_is_done(page):
    """The scan is a job the worker runs: the button posts (with its CSRF token), the results poll its
    progress and then show the kept comparison in place."""
    sign_in(page, OPERATOR)
    page.goto("/reconcile?days=60")
    expect(page.locator("#results .empty")).to_contain_text(
        "Nothing compared with Stripe for this period yet."
    )
    page.click("#results button:has-text('Compare with Stripe')")
    page.locator("#results table.reconcile tbody tr").first.wait_for(timeout=30_000)
    assert page.url.endswith("/reconcile?days=60")
    expect(page.locator("#reconcile-summary .period strong")).to_have_text(re.compile(r"^\d+ differs?$"))
    expect(page.locator("#results button:has-text('Compare again')")).to_be_visible()
    assert page.errors == []


PAGES = [
    ("events", "/events"),
    ("event", None),
    ("jobs", "/jobs"),
    ("audit", "/audit"),
    ("reconcile", "/reconcile"),
    ("reconcile-not-compared", "/reconcile?days=90"),
]


@needs_axe
@pytest.mark.parametrize("name, path", PAGES)
def test_pages_pass_axe_and_fit_a_phone(page, console, name, path):
    sign_in(page, OPERATOR)
    if path is None:
        page.goto("/events?type=charge.succeeded")
        path = page.locator("#results table.events tbody tr a").first.get_attribute("href")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        if name == "event":
            page.click("summary:has-text('Raw JSON')")
        violations = [
            {
                "id": v["id"],
                "impact": v["impact"],
                "help": v["help"],
                "nodes": [n["target"] for n in v["nodes"]][:5],
            }
            for v in axe_violations(page)
        ]
        assert violations == [], json.dumps(violations, indent=1)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        wide = page.evaluate("""() => { const w = document.documentElement.clientWidth + 1;
            return [...document.querySelectorAll('body *')].filter(el => el.getBoundingClientRect().right > w
                && el.parentElement.getBoundingClientRect().right <= w).slice(0, 5)
                .map(el => el.tagName + '.' + el.className + ' in ' + el.parentElement.className); }""")
        assert overflow <= 0, f"{name} at {label}: the page is {overflow}px wider than the screen: {wide}"
    assert page.errors == []
