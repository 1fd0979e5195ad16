"""Chromium through Playwright: sign in, the dashboard, and htmx POSTs carrying the CSRF token."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import VIEWER, sign_in

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_sign_in_shows_dashboard_and_screenshot(page, tmp_path):
    page.goto("/")
    assert "/login" in page.url  # signed out: sent to sign in
    page.fill("input[name=email]", VIEWER)
    page.fill("input[name=password]", "wrong password!!")
    page.click("input[type=submit]")
    assert page.locator(".form-error").inner_text() == "That email and password do not match an account."

    page.console_errors.clear()  # the 422 above is logged by Chromium as a failed load
    sign_in(page)
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator(".user-email").inner_text() == VIEWER
    assert page.locator(".badge").inner_text() == "viewer"
    cards = page.locator(".stat")
    assert cards.count() == 12  # 9 counts, 3 of queue health
    assert page.locator(".stat", has_text="Workers running").locator(".stat-value").inner_text() == "0"
    assert (
        page.locator(".stat", has_text="Events in error, last 24 h").locator(".stat-value").inner_text()
        == "2"
    )
    assert page.locator(".stat", has_text="Active subscriptions").locator(".stat-value").inner_text() == "5"
    assert "100.00 EUR" not in page.content() and "120.00 EUR" in page.content()
    # app.css applied (not blocked by the CSP): the cards are laid out as a grid.
    assert page.locator(".stats").first.evaluate("el => getComputedStyle(el).display") == "grid"
    # htmx loaded from /static and configured; no CSP violations or script errors.
    assert page.evaluate("() => htmx.version").startswith("4.")
    assert page.console_errors == []

    # docs/dashboard.png (the README's screenshot) is rewritten only on request or when missing,
    # so a test run does not leave the working tree changed.
    target = DOCS / "dashboard.png"
    if target.exists() and os.environ.get("PAYDESK_UPDATE_SCREENSHOT") != "1":
        target = tmp_path / "dashboard.png"
    target.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def _add_probe(page, html: str) -> None:
    """Put an htmx element on the page (via DevTools, which the page's CSP does not govern)."""
    page.evaluate(
        """html => {
        const box = document.createElement('div');
        box.id = 'probe-box';
        box.innerHTML = html;
        document.querySelector('main').appendChild(box);
        htmx.process(box);
    }""",
        html,
    )


def test_htmx_post_carries_csrf_token(page, live_server):
    sign_in(page)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    sent = []
    page.on("request", lambda r: r.method == "POST" and "/_probe/" in r.url and sent.append(r.headers))

    # A plain htmx button, no form and no hidden field: the token can only come from the header.
    _add_probe(
        page,
        '<button id="probe-a" hx-post="/_probe/echo" hx-target="#out-a">go</button>'
        '<div id="out-a"></div>'
        # An element with its own hx-headers replaces the inherited ones; app.js re-adds the token.
        '<button id="probe-b" hx-post="/_probe/echo" hx-target="#out-b" '
        'hx-headers=\'{"X-Extra": "1"}\'>go</button><div id="out-b"></div>',
    )
    page.click("#probe-a")
    page.locator("#out-a .probe-result").wait_for()
    page.click("#probe-b")
    page.locator("#out-b .probe-result").wait_for()

    assert [h.get("x-csrftoken") for h in sent] == [token, token]
    assert sent[1].get("x-extra") == "1"
    received = live_server.seen[-2:]
    assert all(
        r["headers"].get("X-Csrftoken") == token and r["headers"].get("Hx-Request") == "true"
        for r in received
    )
    assert all("csrf_token" not in r["form"] for r in received)


def test_htmx_error_is_a_toast_not_a_swap(page):
    sign_in(page)  # a viewer: the admin-only probe answers 403
    _add_probe(
        page,
        '<button id="probe-c" hx-post="/_probe/admin-only" hx-target="#out-c">go</button>'
        '<div id="out-c">unchanged</div>',
    )
    page.click("#probe-c")
    toast = page.locator("#toasts .toast")
    toast.wait_for()
    assert "needs the admin role" in toast.inner_text()
    assert page.locator("#out-c").inner_text() == "unchanged"


def test_refresh_swaps_counts_partial(page):
    sign_in(page)
    with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true") as info:
        page.click("button:has-text('Refresh')")
    assert info.value.status == 200
    assert page.locator("#dashboard-counts .stat").count() == 12  # 9 counts, 3 of queue health
    assert page.locator("header.topbar").count() == 1  # the fragment did not nest a second page


def test_sign_out_is_an_htmx_post_with_csrf(page):
    sign_in(page)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    with page.expect_request(lambda r: r.url.endswith("/logout")) as info:
        page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")
    assert info.value.headers.get("x-csrftoken") == token
    assert info.value.headers.get("hx-request") == "true"
    assert "You are signed out." in page.content()
    page.goto("/")
    assert "/login" in page.url
