"""Sign-in, sign-out, throttling and the safe ``next``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import PASSWORD, csrf_token_from

from admin.extensions import db
from admin.models import RateLimit
from admin.services.users import find_user
from admin.timeutil import utcnow

EMAIL = "staff@example.org"


def post_login(client, email=EMAIL, password=PASSWORD, next_url=None, addr=None):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token},
                       **({"environ_base": {"REMOTE_ADDR": addr}} if addr else {}))


def test_login_page_renders_with_csrf(client):
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="csrf_token"' in html and "Sign in" in html


def test_sign_in_and_out(app, client, auth):
    auth.create(EMAIL, "viewer")
    resp = post_login(client)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    html = home.get_data(as_text=True)
    assert EMAIL in html and "viewer" in html and "Sign out" in html
    assert find_user(EMAIL).last_login_at is not None

    out = auth.logout()
    assert out.status_code == 302 and out.headers["Location"].startswith("/login")
    again = client.get("/")
    assert again.status_code == 302 and "/login?next=" in again.headers["Location"]


def test_signed_in_user_visiting_login_goes_home(client, auth):
    auth.login(EMAIL, "viewer")
    assert client.get("/login").headers["Location"] == "/"


def test_wrong_password_and_unknown_email_get_the_same_message(client, auth):
    auth.create(EMAIL, "viewer")
    wrong = post_login(client, password="not the password")
    unknown = post_login(client, email="nobody@example.org")
    assert wrong.status_code == unknown.status_code == 422
    msg = "That email and password do not match an account."
    assert msg in wrong.get_data(as_text=True) and msg in unknown.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still signed out
    assert find_user(EMAIL).failed_logins == 1


def test_empty_form_is_a_validation_error(client):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"email": "", "password": "", "csrf_token": token})
    assert resp.status_code == 422
    assert "This field is required." in resp.get_data(as_text=True)


@pytest.mark.postgres
def test_locked_out_after_repeated_failures(app, client, auth):
    auth.create(EMAIL, "viewer")
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        assert post_login(client, password="wrong password!").status_code == 422
    locked = post_login(client, password="wrong password!")
    assert locked.status_code == 429
    assert "Too many failed attempts. Try again in 1 minute." in locked.get_data(as_text=True)  # 60 s in tests

    # Even the right password is refused while locked, from any address.
    refused = post_login(client, addr="192.0.2.99")
    assert refused.status_code == 429
    assert "Try again in" in refused.get_data(as_text=True)
    assert client.get("/").status_code == 302

    # When the lock has passed, the right password works and the counters are cleared.
    user = find_user(EMAIL)
    user.locked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert post_login(client).status_code == 302
    user = find_user(EMAIL)
    assert user.failed_logins == 0 and user.locked_until is None


def test_unknown_email_is_locked_out_too(app, client):
    """A lock-out must not reveal which addresses have accounts."""
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        assert post_login(client, email="ghost@example.org").status_code == 422
    assert post_login(client, email="ghost@example.org").status_code == 429


@pytest.mark.postgres
def test_too_many_failures_from_one_address(app, client, auth):
    app.config["LOGIN_IP_MAX_FAILURES"] = 3
    auth.create(EMAIL, "viewer")
    for i in range(2):
        assert post_login(client, email=f"guess{i}@example.org", addr="203.0.113.5").status_code == 422
    assert post_login(client, email="guess9@example.org", addr="203.0.113.5").status_code == 429
    assert db.session.get(RateLimit, "login-ip:203.0.113.5").blocked_until is not None
    # A real account from that address is refused while it is blocked; elsewhere it works.
    assert post_login(client, addr="203.0.113.5").status_code == 429
    assert post_login(client, addr="203.0.113.6").status_code == 302


def test_inactive_user_cannot_sign_in(client, auth):
    auth.create(EMAIL, "viewer")
    user = find_user(EMAIL)
    user.active = False
    db.session.commit()
    resp = post_login(client)
    assert resp.status_code == 422
    assert "do not match" in resp.get_data(as_text=True)


@pytest.mark.parametrize("next_url, expected", [
    ("/healthz", "/healthz"),
    ("/healthz?x=1", "/healthz"),
    ("http://localhost/healthz", "/healthz"),
    ("https://evil.example/phish", "/"),
    ("//evil.example/phish", "/"),
    ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("healthz", "/"),
])
def test_next_is_followed_only_within_the_site(client, auth, next_url, expected):
    from urllib.parse import quote

    auth.create(EMAIL, "viewer")
    resp = post_login(client, next_url=quote(next_url, safe=""))
    assert resp.status_code == 302
    assert resp.headers["Location"].split("?")[0] == expected


def test_login_redirect_keeps_next(client, auth):
    auth.create(EMAIL, "viewer")
    first = client.get("/?tab=x")
    assert first.status_code == 302
    login_url = first.headers["Location"]
    assert login_url.startswith("/login?next=")
    page = client.get(login_url)
    token = csrf_token_from(page.get_data(as_text=True))
    resp = client.post(login_url, data={"email": EMAIL, "password": PASSWORD, "csrf_token": token})
    assert resp.headers["Location"] == "/?tab=x"


def test_logout_needs_csrf(client, auth):
    auth.login(EMAIL, "viewer")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in


def test_htmx_logout_answers_with_hx_redirect(client, auth):
    auth.login(EMAIL, "viewer")
    token = auth.token()
    resp = client.post("/logout", headers={"HX-Request": "true", "X-CSRFToken": token})
    assert resp.status_code == 200 and resp.headers["HX-Redirect"] == "/login"
    assert client.get("/").status_code == 302


def test_htmx_request_when_signed_out_gets_hx_redirect(client):
    resp = client.get("/", headers={"HX-Request": "true", "HX-Current-URL": "http://localhost/?a=1"})
    assert resp.status_code == 401
    assert resp.headers["HX-Redirect"] == "/login?next=%2F%3Fa%3D1"


def test_session_protection_is_strong(app, client, auth):
    assert app.config["SESSION_PROTECTION"] == "strong"
    auth.login(EMAIL, "viewer")
    assert client.get("/").status_code == 200
    # The same session cookie from another address / browser is no longer signed in.
    assert client.get("/", environ_base={"REMOTE_ADDR": "192.0.2.1"}).status_code == 302
    assert client.get("/").status_code == 302
