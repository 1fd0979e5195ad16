"""Roles on every state-changing route, CSRF, security headers."""

from __future__ import annotations

import re

import pytest
from conftest import make_app
from flask import Blueprint

from admin.extensions import db
from admin.security import role_required, uses_stripe_js

# Routes that take POSTs from people who are not (yet) signed-in staff; /account/..., where every role
# changes its own password and two-factor sign-in (no account id in those URLs: tests/views/test_account.py);
# /api/v1, which takes tokens, not sessions (tests/api/test_auth.py walks its routes with no token, the wrong
# scope and the right one).
EXEMPT_RULES = {"/login", "/login/code", "/logout"}
EXEMPT_PREFIXES = ("/webhooks/", "/account/", "/api/v1/")
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def _probe_blueprint() -> Blueprint:
    bp = Blueprint("probe", __name__)

    @bp.post("/_probe/operator-action/<int:item_id>")
    @role_required("operator")
    def operator_action(item_id: int):
        return f"done {item_id}"

    @bp.get("/_probe/checkout")
    @role_required("viewer")
    @uses_stripe_js
    def checkout():
        return "stripe page"

    return bp


@pytest.fixture
def probe_app(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'probe.sqlite3'}", tmp_path)
    app.register_blueprint(_probe_blueprint())
    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


def _example_url(rule) -> str:
    """A concrete URL for a rule: every argument filled with a plausible value."""

    def fill(match):
        converter = match.group(1)
        if converter in ("int", "float", "id"):
            return "1"
        if converter == "uuid":
            return "00000000-0000-0000-0000-000000000001"
        return "x"

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", fill, rule.rule)


def _state_changing_rules(app):
    for rule in app.url_map.iter_rules():
        methods = (rule.methods or set()) & UNSAFE
        if not methods or rule.rule in EXEMPT_RULES or rule.rule.startswith(EXEMPT_PREFIXES):
            continue
        if getattr(app.view_functions[rule.endpoint], "public", False):
            continue
        for method in sorted(methods):
            yield rule, method


def test_viewer_gets_403_on_every_state_changing_route(probe_app):
    from conftest import Auth

    client = probe_app.test_client()
    auth = Auth(probe_app, client)
    auth.login("viewer@example.org", "viewer")
    token = auth.token()
    seen = []
    for rule, method in _state_changing_rules(probe_app):
        url = _example_url(rule)
        resp = client.open(url, method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token})
        assert resp.status_code == 403, f"{method} {rule.rule} gave a viewer {resp.status_code}, not 403"
        seen.append(rule.rule)
    # The walk really sees routes (today at least the probe; later issues add theirs).
    assert "/_probe/operator-action/<int:item_id>" in seen


def test_anonymous_is_sent_to_sign_in_on_every_state_changing_route(probe_app):
    client = probe_app.test_client()
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").get_data(as_text=True))[
        1
    ]
    for rule, method in _state_changing_rules(probe_app):
        resp = client.open(_example_url(rule), method=method, headers={"X-CSRFToken": token})
        assert resp.status_code in (302, 401), f"{method} {rule.rule}: {resp.status_code}"


def test_operator_and_admin_pass_the_role_check(probe_app):
    from conftest import Auth

    for role in ("operator", "admin"):
        client = probe_app.test_client()
        auth = Auth(probe_app, client)
        assert auth.login(f"{role}@example.org", role).status_code == 302
        resp = client.post("/_probe/operator-action/7", headers={"X-CSRFToken": auth.token()})
        assert resp.status_code == 200 and resp.get_data(as_text=True) == "done 7"


def test_role_required_rejects_unknown_roles():
    with pytest.raises(ValueError):
        role_required("superuser")


def test_csrf_is_on_in_the_test_config(app):
    assert app.config.get("WTF_CSRF_ENABLED", True) is True


def test_post_without_csrf_token_is_refused(probe_app):
    from conftest import Auth

    client = probe_app.test_client()
    auth = Auth(probe_app, client)
    auth.login("operator@example.org", "operator")
    resp = client.post("/_probe/operator-action/1")
    assert resp.status_code == 400
    assert "security token" in resp.get_data(as_text=True)
    wrong = client.post("/_probe/operator-action/1", headers={"X-CSRFToken": "forged"})
    assert wrong.status_code == 400
    ok = client.post("/_probe/operator-action/1", headers={"X-CSRFToken": auth.token()})
    assert ok.status_code == 200


def test_login_post_without_csrf_token_is_refused(client, auth):
    auth.create("staff@example.org", "viewer")
    resp = client.post("/login", data={"email": "staff@example.org", "password": "correct horse battery"})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302


def test_security_headers(client):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp
    assert "js.stripe.com" not in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] in ("strict-origin-when-cross-origin", "same-origin")
    assert client.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"


def test_stripe_js_allowed_only_where_marked(probe_app):
    from conftest import Auth

    client = probe_app.test_client()
    Auth(probe_app, client).login("viewer@example.org", "viewer")
    marked = client.get("/_probe/checkout").headers["Content-Security-Policy"]
    assert "script-src 'self' https://js.stripe.com" in marked
    assert "frame-src 'self' https://js.stripe.com https://hooks.stripe.com" in marked
    plain = client.get("/").headers["Content-Security-Policy"]
    assert "stripe" not in plain and "frame-src 'none'" in plain


def test_no_inline_script_or_style_in_pages(client, auth):
    pages = [client.get("/login").get_data(as_text=True)]
    auth.login("viewer@example.org", "viewer")
    pages += [client.get("/").get_data(as_text=True), client.get("/nope").get_data(as_text=True)]
    for html in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
        assert "<style" not in html and " style=" not in html
        assert not re.search(r"\son[a-z]+=", html), "inline event handler"


def test_base_layout_carries_csrf_for_htmx(client, auth):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)[1]
    body = re.search(r"<body hx-headers:inherited='([^']+)'", html)[1]
    assert f'"X-CSRFToken": "{token}"' in body
    assert 'src="/static/htmx.min.js"' in html and 'src="/static/app.js"' in html


def test_session_cookie_settings(app):
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
