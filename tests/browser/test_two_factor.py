"""Chromium: set up two-factor sign-in from the account page, sign out, sign in with a wrong then the right
code; the account, code and users pages fit a phone and pass axe-core at 375 and 1280 px."""

from __future__ import annotations

import json
import time

import pyotp
import pytest
from conftest import PASSWORD

from admin.extensions import db
from admin.services.staff.users import create_user

from .conftest import axe_violations, needs_axe, sign_in

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}


def _check(page, problems: list[str], where: str) -> None:
    """No sideways scrolling and no serious axe-core finding, at both widths."""
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 0:
            wide = page.evaluate("""() => { const w = document.documentElement.clientWidth + 1;
                return [...document.querySelectorAll('body *')].filter(el => el.getBoundingClientRect().right > w
                    && el.parentElement.getBoundingClientRect().right <= w).slice(0, 5)
                    .map(el => el.tagName + '.' + el.className + ' in ' + el.parentElement.className); }""")
            problems.append(f"{where} at {label}: {overflow}px wider than the screen: {wide}")
        for v in axe_violations(page):
            problems.append(
                f"{where} at {label}: axe {v['id']} ({v['impact']}): {v['help']}: "
                f"{[n['target'] for n in v['nodes']][:3]}"
            )
    page.set_viewport_size(DESKTOP)


@pytest.fixture
def accounts(live_server):
    stamp = str(time.time_ns())[-8:]
    person, admin = f"twofactor{stamp}@example.org", f"boss{stamp}@example.org"
    with live_server.app.app_context():
        create_user(person, PASSWORD, "operator")
        create_user(admin, PASSWORD, "admin")
        db.session.remove()
    return person, admin


@needs_axe
def test_enrol_two_factor_and_sign_in_with_it(page, accounts):
    person, admin = accounts
    problems: list[str] = []
    sign_in(page, person)
    page.click(".user-email")  # the account page, from the user box
    page.click("text=Set up two-factor sign-in")
    page.click("button:has-text('Set up two-factor sign-in')")
    assert page.locator("svg.qr-code").is_visible()
    _check(page, problems, "/account/2fa (QR code)")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.click("button:has-text('Turn two-factor sign-in on')")
    assert page.locator("h1").inner_text() == "Two-factor sign-in is on"
    codes = page.locator(".recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    _check(page, problems, "recovery codes")

    page.click("text=Sign out")
    page.wait_for_url("**/login")
    page.fill("input[name=email]", person)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/login/code")
    _check(page, problems, "/login/code")
    page.console_errors.clear()
    page.get_by_label("Code from your authenticator app, or a recovery code").fill("000000")
    page.click("input[type=submit]")
    assert "That code is not right" in page.locator(".field-error").inner_text()
    assert page.locator("#code").get_attribute("aria-invalid") == "true"
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(
        pyotp.TOTP(secret).at(time.time() + 30)
    )
    page.click("input[type=submit]")
    page.wait_for_url("**/")
    assert page.locator(".user-email").inner_text() == person
    page.goto("/account")
    assert "10 recovery codes left" in page.locator(".facts").inner_text()
    _check(page, problems, "/account")

    page.click("text=Sign out")
    page.wait_for_url("**/login")
    sign_in(page, admin)
    page.click("nav >> text=Staff")
    page.wait_for_url("**/settings/users")
    _check(page, problems, "/settings/users")
    page.click(f"text={person}")
    assert "on since" in page.content() and page.locator("text=No open sessions").is_visible()  # signed out
    _check(page, problems, "/settings/users/<id>")
    assert problems == [], json.dumps(problems, indent=1)
