"""Sign-in, sign-out, throttling and the safe ``next``."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from conftest import PASSWORD, csrf_token_from
from sqlalchemy import select

from admin.extensions import db
from admin.models import AuditLog, RateLimit
from admin.services.staff.users import find_user
from admin.timeutil import utcnow

EMAIL = "staff@example.org"
ATTACKER = "203.0.113.5"
OWNER = "198.51.100.7"


def post_login(client, email=EMAIL, password=PASSWORD, next_url=None, addr=None):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(
        url,
        data={"email": email, "password": password, "csrf_token": token},
        **({"environ_base": {"REMOTE_ADDR": addr}} if addr else {}),
    )


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


def test_empty_form_is_a_validation_error(client):
    token = csrf_token_from(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"email": "", "password": "", "csrf_token": token})
    assert resp.status_code == 422
    assert "This field is required." in resp.get_data(as_text=True)


@pytest.mark.postgres
def test_failing_address_is_blocked_for_that_account_but_the_owner_signs_in_elsewhere(app, client, auth):
    """Five wrong passwords from one address block that address for the account, not the account."""
    auth.create(EMAIL, "viewer")
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        assert post_login(client, password="wrong password!", addr=ATTACKER).status_code == 422
    locked = post_login(client, password="wrong password!", addr=ATTACKER)
    assert locked.status_code == 429
    assert "Too many failed attempts. Try again in 1 minute." in locked.get_data(
        as_text=True
    )  # 60 s in tests

    # From the failing address even the right password is refused while the block lasts ...
    refused = post_login(client, addr=ATTACKER)
    assert refused.status_code == 429 and "Try again in" in refused.get_data(as_text=True)
    assert client.get("/", environ_base={"REMOTE_ADDR": ATTACKER}).status_code == 302
    # ... while the owner, from their own address, signs in at once.
    owner = app.test_client()
    assert post_login(owner, addr=OWNER).status_code == 302
    assert owner.get("/", environ_base={"REMOTE_ADDR": OWNER}).status_code == 200

    # When the block has passed, the right password works from the failing address too.
    for row in db.session.scalars(select(RateLimit)):
        row.blocked_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert post_login(client, addr=ATTACKER).status_code == 302


@pytest.mark.postgres
def test_a_successful_sign_in_clears_its_own_counter(app, client, auth):
    auth.create(EMAIL, "viewer")
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit - 1):
        assert post_login(client, password="wrong password!", addr=OWNER).status_code == 422
    assert post_login(client, addr=OWNER).status_code == 302
    # the count started again: another limit - 1 mistakes (in another browser) are still only mistakes
    other = app.test_client()
    for _ in range(limit - 1):
        assert post_login(other, password="wrong password!", addr=OWNER).status_code == 422


def test_unknown_email_is_locked_out_too(app, client):
    """A lock-out must not reveal which addresses have accounts."""
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        assert post_login(client, email="ghost@example.org").status_code == 422
    assert post_login(client, email="ghost@example.org").status_code == 429


@pytest.mark.postgres
def test_too_many_failures_from_one_address_block_that_address_only(app, client, auth):
    app.config["LOGIN_IP_MAX_FAILURES"] = 3
    auth.create(EMAIL, "viewer")
    for i in range(2):
        assert post_login(client, email=f"guess{i}@example.org", addr=ATTACKER).status_code == 422
    assert post_login(client, email="guess9@example.org", addr=ATTACKER).status_code == 429
    # A real account from that address is refused while it is blocked; elsewhere it works.
    assert post_login(client, addr=ATTACKER).status_code == 429
    assert post_login(app.test_client(), addr=OWNER).status_code == 302


def test_guesses_from_fifteen_addresses_of_one_ipv6_64_share_one_budget(app, client, auth):
    """A /64 is one home or one server: each of its addresses must not get a fresh budget."""
    app.config["LOGIN_IP_MAX_FAILURES"] = 10
    auth.create(EMAIL, "viewer")
    codes = [
        post_login(
            client, email=f"guess{n}@example.org", password="x", addr=f"2001:db8:aa:bb::{n:x}"
        ).status_code
        for n in range(1, 16)
    ]
    assert codes == [422] * 9 + [429] * 6
    assert post_login(client, addr="2001:db8:aa:bb:ffff:1:2:3").status_code == 429  # the owner's password too
    assert post_login(app.test_client(), addr="2001:db8:aa:bc::1").status_code == 302  # the next /64 is not
    assert db.session.get(RateLimit, "login-ip:2001:db8:aa:bb::/64") is not None


def test_one_mechanism_counts_sign_in_failures(app, client, auth):
    """Failures live in rate_limit only: the user row has no counters of its own any more."""
    auth.create(EMAIL, "viewer")
    post_login(client, password="wrong password!", addr=ATTACKER)
    keys = set(db.session.scalars(select(RateLimit.key)))
    assert keys == {f"login-ip:{ATTACKER}", f"login-account:{EMAIL}|{ATTACKER}"}
    assert not hasattr(find_user(EMAIL), "failed_logins") and not hasattr(find_user(EMAIL), "locked_until")


def test_an_address_or_email_of_any_length_makes_a_key_that_fits(app, client):
    long_email = "x" * 250 + "@example.org"
    assert post_login(client, email=long_email[:255], addr="2001:db8::" + "f" * 40).status_code == 422
    assert all(len(k) <= 255 for k in db.session.scalars(select(RateLimit.key)))


def test_sign_ins_and_failures_are_audited_without_the_password(app, client, auth):
    auth.create(EMAIL, "viewer")
    post_login(client, password="my secret guess 42", addr=ATTACKER)
    post_login(client, email="nobody@example.org", password="another guess 43", addr=ATTACKER)
    post_login(client, addr=OWNER)
    user = find_user(EMAIL)
    entries = db.session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    failed = [e for e in entries if e.action == "user.sign_in_failed"]
    assert [(e.parameters["email"], e.parameters["address"], e.result, e.actor) for e in failed] == [
        (EMAIL, ATTACKER, "error", "anonymous"),
        ("nobody@example.org", ATTACKER, "error", "anonymous"),
    ]
    (signed_in,) = [e for e in entries if e.action == "user.sign_in"]
    assert (signed_in.user_id, signed_in.actor, signed_in.parameters["address"]) == (user.id, EMAIL, OWNER)
    everything = json.dumps([[e.parameters, e.message] for e in entries])
    assert "my secret guess 42" not in everything and "another guess 43" not in everything


def test_inactive_user_cannot_sign_in(client, auth):
    auth.create(EMAIL, "viewer")
    user = find_user(EMAIL)
    user.active = False
    db.session.commit()
    resp = post_login(client)
    assert resp.status_code == 422
    assert "do not match" in resp.get_data(as_text=True)


@pytest.mark.parametrize(
    "next_url, expected",
    [
        ("/healthz", "/healthz"),
        ("/healthz?x=1", "/healthz"),
        ("http://localhost/healthz", "/healthz"),
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("healthz", "/"),
    ],
)
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


# -- sessions that end -----------------------------------------------------------------


def _saved_session(client) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return cookie.value


def test_a_cookie_saved_before_sign_out_no_longer_works(app, client, auth):
    auth.login(EMAIL, "viewer")
    saved = _saved_session(client)
    assert auth.logout().status_code == 302
    client.set_cookie("session", saved)  # the copy an attacker (or a shared computer) kept
    assert client.get("/").status_code == 302
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sign_out"))
    assert entry.actor == EMAIL and entry.user_id == find_user(EMAIL).id


def test_new_password_or_revoke_from_the_cli_ends_every_session(app, runner, auth):
    auth.create(EMAIL, "viewer")
    first, second = app.test_client(), app.test_client()
    for c in (first, second):
        assert post_login(c).status_code == 302
        assert c.get("/").status_code == 200
    result = runner.invoke(args=["user", "revoke-sessions", "--email", EMAIL])
    assert result.exit_code == 0, result.output
    assert first.get("/").status_code == 302 and second.get("/").status_code == 302

    assert post_login(first).status_code == 302 and first.get("/").status_code == 200
    result = runner.invoke(
        args=["user", "set-password", "--email", EMAIL, "--password-stdin"], input="a brand new passphrase\n"
    )
    assert result.exit_code == 0, result.output
    assert first.get("/").status_code == 302
    assert post_login(first).status_code == 422  # the old password is gone
    assert post_login(first, password="a brand new passphrase").status_code == 302

    entries = db.session.scalars(
        select(AuditLog)
        .where(AuditLog.action.in_(["user.revoke_sessions", "user.set_password"]))
        .order_by(AuditLog.id)
    ).all()
    assert [e.action for e in entries] == ["user.revoke_sessions", "user.set_password"]
    assert all(e.actor.startswith("cli:") and e.object_id == str(find_user(EMAIL).id) for e in entries)
    assert "a brand new passphrase" not in json.dumps([e.parameters for e in entries])


def test_csrf_token_is_renewed_at_sign_in(app, client, auth):
    auth.create(EMAIL, "viewer")
    before = csrf_token_from(client.get("/login").get_data(as_text=True))
    assert (
        client.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": before}).status_code
        == 302
    )
    after = auth.token()
    assert after != before
    # a token planted before sign-in (say by someone who shared the browser) is not accepted after it
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": after}).status_code == 302


def test_session_binding_ignores_a_forwarded_address_from_an_untrusted_client(app, client, auth):
    """PAYDESK_TRUSTED_PROXIES=0: a stolen cookie replayed with the victim's address in X-Forwarded-For fails."""
    auth.create(EMAIL, "viewer")
    assert post_login(client, addr=OWNER).status_code == 302
    assert client.get("/", environ_base={"REMOTE_ADDR": OWNER}).status_code == 200
    stolen = _saved_session(client)
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    resp = thief.get("/", environ_base={"REMOTE_ADDR": ATTACKER}, headers={"X-Forwarded-For": OWNER})
    assert resp.status_code == 302


def test_trusted_proxy_hops_give_the_client_address(tmp_path):
    """PAYDESK_TRUSTED_PROXIES=1: the address the proxy appended counts (throttle, session, audit); one the
    client put in front of it does not."""
    from conftest import make_app

    proxied = make_app(f"sqlite:///{tmp_path / 'proxy.sqlite3'}", tmp_path, TRUSTED_PROXIES=1)
    with proxied.app_context():
        db.create_all()
        from admin.services.staff.users import create_user

        create_user(EMAIL, PASSWORD, "viewer")
        proxy = {"REMOTE_ADDR": "127.0.0.1"}
        c = proxied.test_client()
        token = csrf_token_from(c.get("/login", environ_base=proxy).get_data(as_text=True))
        # the client claims to be OWNER; the proxy appends the address it really saw
        resp = c.post(
            "/login",
            data={"email": EMAIL, "password": "wrong password!", "csrf_token": token},
            environ_base=proxy,
            headers={"X-Forwarded-For": f"{OWNER}, {ATTACKER}"},
        )
        assert resp.status_code == 422
        assert db.session.get(RateLimit, f"login-ip:{ATTACKER}") is not None
        assert db.session.get(RateLimit, f"login-ip:{OWNER}") is None
        resp = c.post(
            "/login",
            data={"email": EMAIL, "password": PASSWORD, "csrf_token": token},
            environ_base=proxy,
            headers={"X-Forwarded-For": OWNER},
        )
        assert resp.status_code == 302
        assert c.get("/", environ_base=proxy, headers={"X-Forwarded-For": OWNER}).status_code == 200
        assert c.get("/", environ_base=proxy, headers={"X-Forwarded-For": ATTACKER}).status_code == 302
        db.session.remove()
        db.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("email", ["a\x00b@example.org", "x" * 300, "é\u202e\u0007@example.org", " "])
def test_any_email_typed_gets_an_answer_not_a_500(app, client, backend, email):
    """PostgreSQL refuses NUL characters and over-long values; a sign-in form must not pass them on."""
    resp = post_login(client, email=email, password="p\x00ssword")
    assert resp.status_code == 422
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.sign_in_failed"))
    assert entry is None or "\x00" not in entry.parameters["email"]
