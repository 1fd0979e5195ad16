"""Chromium through Playwright on the records pages: import subscriptions from the page and watch
the job's progress bar finish, open a contact and see its records, export CSV; every records page
at desktop and phone width without sideways scrolling.

Screenshots go to the test's tmp dir, or to ``$PAYDESK_SCREENSHOTS`` when set (to look at them).
"""

from __future__ import annotations

import csv
import io
import os
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from admin.demo_data import donation_plan, subscribe
from admin.extensions import db
from admin.stripe_gateway import Gateway
from admin.worker import queues

from .conftest import OPERATOR, VIEWER, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.localstripe]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def shots_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("PAYDESK_SCREENSHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def stripe_account(live_server, empty_localstripe):
    """A processor of the live server on an emptied localstripe, three donors subscribed there, and a
    worker thread running jobs while the test lasts (as ``flask worker`` would)."""
    from admin.services.settings.processors import add_processor

    app = live_server.app
    with app.app_context():
        proc = add_processor(
            name=f"Browser Stripe {uuid.uuid4().hex[:4]}",
            secret_key="sk_test_browser_" + uuid.uuid4().hex,
            webhook_secrets=["whsec_b"],
            api_base=empty_localstripe,
            mode="test",
        )
        ppid, name = proc.id, proc.name
        db.session.remove()
    gw = Gateway("sk_test_browser", empty_localstripe)
    plan = donation_plan(gw, 2500)
    subs = [
        subscribe(
            gw,
            gw.create("customers", {"name": f"Browser Donor {i}", "email": f"bd{i}@example.org"})["id"],
            plan,
        )
        for i in range(3)
    ]
    stop = threading.Event()

    def work():
        with app.app_context():
            while not stop.is_set():
                if not queues.run_jobs("browser-worker", seconds=0.5):
                    stop.wait(0.2)
                db.session.remove()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield {"ppid": ppid, "name": name, "subs": subs}
    finally:
        stop.set()
        thread.join(timeout=10)
        _forget(app, ppid)


def _forget(app, ppid: int) -> None:
    """Remove what this test put into the session's live server (other tests count its rows)."""
    from sqlalchemy import delete

    from admin.models import (
        Contact,
        Contribution,
        ContributionRecur,
        OutboxTask,
        Payment,
        PaymentProcessor,
        StripeCustomer,
        SubscriptionCheck,
    )
    from admin.models.jobs import Job

    with app.app_context():
        contacts = list(
            db.session.scalars(select(StripeCustomer.contact_id).where(StripeCustomer.processor_id == ppid))
        )
        for model in (
            Payment,
            Contribution,
            ContributionRecur,
            SubscriptionCheck,
            StripeCustomer,
            OutboxTask,
            Job,
        ):
            db.session.execute(delete(model).where(model.processor_id == ppid))
        db.session.execute(delete(Contact).where(Contact.id.in_(contacts)))
        db.session.execute(delete(PaymentProcessor).where(PaymentProcessor.id == ppid))
        db.session.commit()
        db.session.remove()


def test_import_from_the_page_then_a_contact_then_csv(page, live_server, stripe_account, tmp_path):
    shots = shots_dir(tmp_path)
    sign_in(page, OPERATOR)
    page.goto("/subscriptions")
    page.locator("summary", has_text="Import from Stripe, compare").click()
    form = page.locator("#import-subscriptions")
    form.locator("select[name=ppid]").select_option(label=f"{stripe_account['name']} (test)")
    form.locator("button", has_text="Import").click()
    confirm = page.locator("#tool-result .confirm")
    confirm.wait_for()
    assert "Import all subscriptions from" in confirm.locator("h2").inner_text()
    confirm.locator("button", has_text="Yes, import").click()
    job = page.locator("#tool-result .job")
    job.wait_for()
    page.locator("#tool-result .job .badge", has_text="done").wait_for(timeout=30_000)
    assert job.locator("progress").get_attribute("value") == "100"
    assert "3 of 3 (100%)" in job.locator(".progress-text").inner_text()
    assert "created 3" in " ".join(job.locator(".job-counts").inner_text().split())
    page.screenshot(path=str(shots / "import-done.png"), full_page=True)

    page.goto("/subscriptions")
    rows = page.locator("table.records tbody tr")
    for sub in stripe_account["subs"]:
        assert page.locator("tr", has_text=sub["id"]).count() == 1
    assert rows.filter(has_text="same").count() >= 3

    # a contact and everything about it
    page.goto("/customers?q=bd1%40example.org")
    page.get_by_role("link", name="Browser Donor 1").click()
    page.wait_for_url("**/contacts/*")
    assert page.locator("h1").inner_text().startswith("Browser Donor 1")
    assert page.locator("#contact-customers .mono").first.inner_text().startswith("cus_")
    giving = page.locator("section", has=page.locator("#giving-h"))
    assert "25.00 USD" in giving.inner_text() and giving.locator("tbody tr").count() == 1
    assert (
        stripe_account["subs"][1]["id"] in page.locator("section", has=page.locator("#recur-h")).inner_text()
    )
    assert page.locator("section", has=page.locator("#payments-h")).locator("tbody tr").count() == 1
    page.screenshot(path=str(shots / "contact.png"), full_page=True)

    # export exactly what is filtered
    page.goto("/contributions?q=Browser+Donor")
    assert page.locator("table.records tbody tr").count() == 3
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("contributions-") and download.suggested_filename.endswith(
        ".csv"
    )
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert sorted(r["email"] for r in rows) == ["bd0@example.org", "bd1@example.org", "bd2@example.org"]
    assert {r["amount"] for r in rows} == {"25.00"} and {r["type"] for r in rows} == {"recurring"}
    assert page.console_errors == []


def test_records_pages_fit_desktop_and_phone(browser, live_server, tmp_path):
    """Each page at 1280 and 390 pixels wide: nothing makes the page scroll sideways (wide tables scroll
    inside their own box), and the filter form stays usable."""
    from admin.models import Contact, Contribution

    with live_server.app.app_context():
        contact_id = db.session.scalar(select(func.min(Contact.id)))
        contribution_id = db.session.scalar(select(func.min(Contribution.id)))
        db.session.remove()
    urls = ["/", "/subscriptions", "/customers", "/contributions", "/payments", "/customers?linked=any"]
    if contact_id:
        urls.append(f"/contacts/{contact_id}")
    if contribution_id:
        urls.append(f"/contributions/{contribution_id}")
    shots = shots_dir(tmp_path)
    for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=size, base_url=live_server.url)
        page = context.new_page()
        sign_in(page, VIEWER)
        for url in urls:
            page.goto(url)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{url} at {size_name} width scrolls sideways by {overflow}px"
            name = url.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "dashboard"
            page.screenshot(path=str(shots / f"{size_name}-{name}.png"), full_page=True)
        context.close()
