"""Chromium: filter /intents to the incomplete ones, bulk-cancel them from the page (the confirmation says
how many and how much), watch the job finish; the pages at desktop and phone width.

Set PAYDESK_SCREENSHOT_DIR to keep the screenshots somewhere to look at."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from localstripe_intents import abandoned, stripe_status, succeeded, track, uncaptured
from playwright.sync_api import expect

from admin.extensions import db
from admin.worker import queues

from .conftest import AXE, OPERATOR, axe_violations, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.localstripe]
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def intents_in_stripe(live_server, localstripe):
    """A processor on the session's localstripe with two abandoned intents (40.00 USD together), an
    uncaptured one and a paid one, all two hours old in paydesk."""
    from admin.services.settings.processors import add_processor

    with live_server.app.app_context():
        proc = add_processor(
            name=f"localstripe {uuid.uuid4().hex[:4]}",
            secret_key="sk_test_" + uuid.uuid4().hex,
            webhook_secrets=["whsec_browser"],
            api_base=localstripe,
            mode="test",
        )
        made = {
            "left1": abandoned(proc, 1500, metadata={"description": "Spring appeal"}),
            "left2": abandoned(proc, 2500, metadata={"description": "Spring appeal"}),
            "held": uncaptured(proc, 4000),
            "paid": succeeded(proc, 1000),
        }
        for pi in made.values():
            track(proc, pi, age=timedelta(hours=2), referrer="https://example.org/donate/spring")
        ppid = proc.id
        db.session.remove()
    return ppid, made


@pytest.fixture
def job_runner(live_server):
    """What the worker does for jobs, in a thread: one slice of a due job at a time."""

    stop = threading.Event()

    def loop():
        with live_server.app.app_context():
            while not stop.is_set():
                try:
                    ran = queues.run_jobs("browser-test-worker", seconds=1)
                except Exception:  # noqa: BLE001 - keep the loop alive; the test sees the job's state
                    db.session.rollback()
                    ran = 0
                if not ran:
                    time.sleep(0.2)
            db.session.remove()

    thread = threading.Thread(target=loop, name="job-runner", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def _shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PAYDESK_SCREENSHOT_DIR") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_filter_to_incomplete_and_bulk_cancel_them_from_the_page(
    page, live_server, intents_in_stripe, job_runner, tmp_path
):
    ppid, made = intents_in_stripe
    shots = _shots(tmp_path)
    sign_in(page, OPERATOR)
    page.goto("/intents")
    page.select_option("select[name=ppid]", str(ppid))
    page.check("input[name=status][value=incomplete]")
    page.fill("input[name=older_than]", "1 hour")
    rows = page.locator("table.intents tbody tr")
    expect(rows).to_have_count(2)
    assert set(rows.locator("a.mono").all_inner_texts()) == {made["left1"]["id"], made["left2"]["id"]}
    assert "status=incomplete" in page.url and "older_than=1+hour" in page.url  # a link staff can share
    expect(page.locator(".totals")).to_contain_text("40.00 USD")

    page.check("input.select-all-matching")
    page.click("button:has-text('Cancel in Stripe…')")
    dialog = page.locator("#bulk-dialog .confirm")
    expect(dialog).to_contain_text("Cancel 2 payment intents in Stripe?")
    expect(dialog.locator(".confirm-money")).to_have_text("Together: 40.00 USD.")
    page.screenshot(path=str(shots / "intents-confirm-desktop.png"), full_page=True)
    if AXE.exists():  # the confirmation as it is open on the page: labelled options, no serious violation
        assert [v["id"] for v in axe_violations(page)] == []
    page.set_viewport_size({"width": 375, "height": 812})
    button = dialog.locator("button:has-text('Yes, cancel 2')")
    box = button.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375  # reachable on a phone
    page.set_viewport_size({"width": 1280, "height": 900})

    page.click("button:has-text('Yes, cancel 2')")
    job = page.locator("#bulk-dialog .job")
    expect(job.locator(".badge")).to_have_text("done", timeout=20_000)
    expect(job.locator(".progress-text")).to_have_text("2 of 2 (100%)")
    expect(job.locator(".job-counts")).to_contain_text("cancelled 2")
    page.screenshot(path=str(shots / "intents-job-done-desktop.png"), full_page=True)
    with live_server.app.app_context():
        from admin.models import PaymentProcessor

        proc = db.session.get(PaymentProcessor, ppid)
        assert {stripe_status(proc, made[k]["id"])["status"] for k in ("left1", "left2")} == {"canceled"}
        assert stripe_status(proc, made["held"]["id"])["status"] == "requires_capture"
        db.session.remove()
    page.reload()
    expect(rows).to_have_count(0)
    assert page.console_errors == []


def test_the_pages_at_desktop_and_phone_width(page, live_server, intents_in_stripe, tmp_path):
    ppid, made = intents_in_stripe
    shots = _shots(tmp_path)
    sign_in(page, OPERATOR)
    page.goto(f"/intents?ppid={ppid}")
    expect(page.locator("table.intents tbody tr")).to_have_count(4)
    page.screenshot(path=str(shots / "intents-list-desktop.png"), full_page=True)
    page.goto(f"/intents/{made['held']['id']}")
    expect(page.locator("#stripe-h")).to_have_text("In Stripe now")
    expect(page.locator(".capture-form")).to_be_visible()
    page.screenshot(path=str(shots / "intent-detail-desktop.png"), full_page=True)

    page.fill(".capture-form input[name=amount]", "45")
    page.click(".capture-form button:has-text('Capture')")
    expect(page.locator("#intent-status .flash-error")).to_contain_text("more than the 40.00 USD authorised")
    page.console_errors.clear()  # Chromium logs the 422 above as a failed load
    page.fill(".capture-form input[name=amount]", "25.00")
    page.click(".capture-form button:has-text('Capture')")
    expect(page.locator("#intent-status .flash-success")).to_contain_text("Captured 25.00 USD of 40.00 USD")
    expect(page.locator("#intent-detail")).to_contain_text("intent.capture")

    page.set_viewport_size(PHONE)
    page.goto(f"/intents?ppid={ppid}")
    expect(page.locator("table.intents")).to_be_visible()
    # Nothing but the table scrolls sideways on a phone.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.screenshot(path=str(shots / "intents-list-phone.png"), full_page=True)
    page.goto(f"/intents/{made['left1']['id']}")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"] + 1
    page.screenshot(path=str(shots / "intent-detail-phone.png"), full_page=True)
    assert page.console_errors == []
