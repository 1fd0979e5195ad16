"""Signing in with two factors, enrolling from /account/2fa, recovery codes, temporary passwords, idle
sessions and the admins' required two-factor sign-in."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
from conftest import PASSWORD, csrf_token_from
from sqlalchemy import select
from staff_support import enrol, next_code, post_code, post_password

from admin.extensions import db
from admin.models import AuditLog, RecoveryCode, StaffSession
from admin.services.staff.users import find_user
from admin.timeutil import utcnow

EMAIL = "staff@example.org"


def _actions() -> list[str]:
    return list(db.session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.mark.postgres
def test_totp_sign_in_refuses_a_wrong_code_then_takes_the_right_one(app, client, auth):
    auth.create(EMAIL, "operator")
    secret, _ = enrol(EMAIL)

    first = post_password(client, EMAIL)
    assert first.status_code == 302 and first.headers["Location"] == "/login/code"
    assert client.get("/").status_code == 302, "the password alone must not sign in"

    wrong = post_code(client, "000000" if next_code(secret) != "000000" else "111111")
    assert wrong.status_code == 422 and "That code is not right" in wrong.get_data(as_text=True)
    assert client.get("/").status_code == 302

    right = post_code(client, next_code(secret))
    assert right.status_code == 302 and right.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    failed = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sign_in_failed"))
    assert failed.message == "wrong two-factor code" and failed.parameters["step"] == "two-factor code"
    signed = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sign_in"))
    assert signed.parameters["second_factor"] == "authenticator app"


def test_a_code_is_good_once(app, client, auth):
    auth.create(EMAIL, "viewer")
    secret, _ = enrol(EMAIL)
    code = next_code(secret)
    post_password(client, EMAIL)
    assert post_code(client, code).status_code == 302
    auth.logout()
    post_password(client, EMAIL)
    replay = post_code(client, code)
    assert replay.status_code == 422 and client.get("/").status_code == 302


def test_wrong_codes_block_the_code_step(app, client, auth):
    auth.create(EMAIL, "viewer")
    secret, _ = enrol(EMAIL)
    post_password(client, EMAIL)
    bad = "123456" if next_code(secret) != "123456" else "654321"
    for _ in range(app.config["LOGIN_CODE_MAX_FAILURES"] - 1):
        assert post_code(client, bad).status_code == 422
    assert post_code(client, bad).status_code == 429
    blocked = post_code(client, next_code(secret))  # even the right code, while the block lasts
    assert blocked.status_code == 429 and "Too many failed attempts" in blocked.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_a_recovery_code_signs_in_once(app, client, auth):
    auth.create(EMAIL, "viewer")
    _, codes = enrol(EMAIL)
    assert len(codes) == 10 and len(set(codes)) == 10
    post_password(client, EMAIL)
    assert post_code(client, codes[0].upper()).status_code == 302  # as typed, any case
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sign_in"))
    assert entry.parameters["second_factor"] == "recovery code" and "9 left" in entry.message
    auth.logout()
    post_password(client, EMAIL)
    again = post_code(client, codes[0])
    assert again.status_code == 422 and client.get("/").status_code == 302
    assert post_code(client, codes[1]).status_code == 302
    stored = db.session.scalars(select(RecoveryCode.code_hash)).all()
    assert not any(c.replace("-", "") in h for c in codes for h in stored), "recovery codes are stored hashed"


def test_the_code_step_needs_the_password_step_first(client):
    resp = client.get("/login/code")
    assert resp.status_code == 302 and resp.headers["Location"] == "/login"


def test_the_code_step_expires(app, client, auth):
    auth.create(EMAIL, "viewer")
    secret, _ = enrol(EMAIL)
    post_password(client, EMAIL)
    with client.session_transaction() as sess:
        step = dict(sess["paydesk_code_step"])
        step["at"] -= app.config["SECOND_FACTOR_SECONDS"] + 1
        sess["paydesk_code_step"] = step
    late = post_code(client, next_code(secret))
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def _enrol_on_the_page(client) -> tuple[str, str]:
    """Start enrolment on /account/2fa, read the key as a person would, confirm; (secret, codes page)."""
    token = csrf_token_from(client.get("/account/2fa").get_data(as_text=True))
    assert client.post("/account/2fa/start", data={"csrf_token": token}).status_code == 302
    page = client.get("/account/2fa").get_data(as_text=True)
    assert '<svg role="img" aria-label="QR code' in page
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)[1].replace(" ", "")
    done = client.post("/account/2fa/confirm", data={"csrf_token": token, "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200
    return secret, done.get_data(as_text=True)


def test_enrol_from_the_account_page_shows_recovery_codes_once(app, client, auth):
    auth.login(EMAIL, "viewer")
    secret, page = _enrol_on_the_page(client)
    assert "shown only this once" in page
    codes = re.findall(r"<li>([a-z2-9]{5}-[a-z2-9]{5})</li>", page)
    assert len(codes) == 10
    assert find_user(EMAIL).two_factor
    assert "enrolment" not in client.get("/account/2fa").get_data(as_text=True)
    assert not any(c in client.get("/account/2fa").get_data(as_text=True) for c in codes)
    assert {"user.2fa_begin", "user.2fa_enable"} <= set(_actions())
    everything = str(db.session.scalars(select(AuditLog.parameters)).all()) + str(
        db.session.scalars(select(AuditLog.message)).all()
    )
    assert secret not in everything and codes[0] not in everything


def test_a_wrong_code_does_not_turn_it_on(app, client, auth):
    auth.login(EMAIL, "viewer")
    token = auth.token("/account/2fa")
    client.post("/account/2fa/start", data={"csrf_token": token})
    resp = client.post(
        "/account/2fa/confirm", data={"csrf_token": token, "code": "12345"}, follow_redirects=True
    )
    assert "not the one the app shows now" in resp.get_data(as_text=True)
    assert not find_user(EMAIL).two_factor


def test_turning_it_off_needs_a_current_code(app, client, auth):
    auth.login(EMAIL, "viewer")
    secret, _ = _enrol_on_the_page(client)
    token = auth.token("/account/2fa")
    client.post("/account/2fa/disable", data={"csrf_token": token, "code": "000000"})
    assert find_user(EMAIL).two_factor
    client.post("/account/2fa/disable", data={"csrf_token": token, "code": next_code(secret)})
    assert not find_user(EMAIL).two_factor
    assert db.session.scalar(select(RecoveryCode)) is None
    assert "user.2fa_disable" in _actions()


def test_account_posts_need_csrf(app, client, auth):
    auth.login(EMAIL, "viewer")
    for url in ("/account/2fa/start", "/account/2fa/confirm", "/account/password"):
        assert client.post(url, data={"code": "123456"}).status_code == 400, url
    assert find_user(EMAIL).totp_secret is None


# -- admins must use two factors (PAYDESK_REQUIRE_2FA_FOR_ADMINS) ------------------------------------------


def test_an_admin_without_two_factors_must_set_it_up_first(app, client, auth):
    app.config["REQUIRE_2FA_FOR_ADMINS"] = True
    auth.login("admin@example.org", "admin")
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"] == "/account/2fa"
    assert client.get("/settings/users").headers["Location"] == "/account/2fa"
    htmx = client.get("/events", headers={"HX-Request": "true"})
    assert htmx.headers["HX-Redirect"] == "/account/2fa"
    secret, _ = _enrol_on_the_page(client)
    assert client.get("/").status_code == 200
    # ... and cannot turn it off again
    resp = client.post(
        "/account/2fa/disable",
        data={"csrf_token": auth.token("/account/2fa"), "code": next_code(secret)},
        follow_redirects=True,
    )
    assert "must keep two-factor sign-in on" in resp.get_data(as_text=True)
    assert find_user("admin@example.org").two_factor


def test_the_requirement_is_for_admins_only(app, client, auth):
    app.config["REQUIRE_2FA_FOR_ADMINS"] = True
    auth.login("operator@example.org", "operator")
    assert client.get("/").status_code == 200


def test_an_admin_with_two_factors_passes(app, client, auth):
    app.config["REQUIRE_2FA_FOR_ADMINS"] = True
    auth.create("admin@example.org", "admin")
    secret, _ = enrol("admin@example.org")
    post_password(client, "admin@example.org")
    post_code(client, next_code(secret))
    assert client.get("/").status_code == 200


# -- temporary passwords ---------------------------------------------------------------------------------


def test_a_temporary_password_must_be_replaced_before_anything_else(app, client, auth):
    from admin.services.staff.users import invite_user

    _, temporary = invite_user(EMAIL, "operator")
    resp = post_password(client, EMAIL, temporary)
    assert resp.status_code == 302
    assert client.get("/events").headers["Location"] == "/account/password"
    token = auth.token("/account/password")
    same = client.post(
        "/account/password",
        data={"csrf_token": token, "current": temporary, "password": temporary, "confirm": temporary},
    )
    assert same.status_code == 422 and "different from the current password" in same.get_data(as_text=True)
    ok = client.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current": temporary,
            "password": "my own long password",
            "confirm": "my own long password",
        },
    )
    assert ok.status_code == 302
    assert client.get("/events").status_code == 200, "this browser goes on signed in"
    user = find_user(EMAIL)
    assert not user.must_change_password and user.check_password("my own long password")
    assert "user.change_password" in _actions()


def test_an_expired_temporary_password_signs_nobody_in(app, client):
    from admin.services.staff.users import invite_user

    user, temporary = invite_user(EMAIL, "viewer")
    user.password_expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    resp = post_password(client, EMAIL, temporary)
    assert resp.status_code == 422 and "temporary password has expired" in resp.get_data(as_text=True)


# -- sessions ----------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_an_idle_session_ends(app, client, auth):
    auth.login(EMAIL, "viewer")
    assert client.get("/").status_code == 200
    row = db.session.scalar(select(StaffSession))
    row.last_seen_at = utcnow() - timedelta(minutes=app.config["SESSION_IDLE_MINUTES"], seconds=1)
    db.session.commit()
    resp = client.get("/events")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "signed out after 30 minutes without activity" in page
    db.session.expire_all()
    assert db.session.get(StaffSession, row.id).ended_reason == "idle"
    assert "user.session_idle" in _actions()


@pytest.mark.postgres
def test_a_session_in_use_stays(app, client, auth):
    auth.login(EMAIL, "viewer")
    row = db.session.scalar(select(StaffSession))
    row.last_seen_at = utcnow() - timedelta(minutes=app.config["SESSION_IDLE_MINUTES"] - 1)
    db.session.commit()
    assert client.get("/").status_code == 200
    db.session.rollback()  # the touch is written on a connection of its own: read after it
    assert db.session.get(StaffSession, row.id).last_seen_at > utcnow() - timedelta(minutes=1)


def test_sign_out_ends_this_browser_only(app, auth):
    laptop, phone = app.test_client(), app.test_client()
    from conftest import Auth

    Auth(app, laptop).login(EMAIL, "viewer")
    phone_auth = Auth(app, phone)
    phone_auth.login(EMAIL, "viewer")
    phone_auth.logout()
    assert phone.get("/").status_code == 302
    assert laptop.get("/").status_code == 200


def test_password_change_ends_the_other_sessions(app, auth):
    from conftest import Auth

    laptop, phone = app.test_client(), app.test_client()
    laptop_auth = Auth(app, laptop)
    laptop_auth.login(EMAIL, "viewer")
    Auth(app, phone).login(EMAIL, "viewer")
    token = laptop_auth.token("/account/password")
    laptop.post(
        "/account/password",
        data={
            "csrf_token": token,
            "current": PASSWORD,
            "password": "another long password",
            "confirm": "another long password",
        },
    )
    assert laptop.get("/").status_code == 200
    assert phone.get("/").status_code == 302
