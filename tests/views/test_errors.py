"""Friendly error pages; JSON for machine paths; fragments for htmx."""

from __future__ import annotations

from conftest import make_app
from flask import abort

from admin.extensions import db


def test_404_page_is_friendly(client):
    resp = client.get("/no/such/page")
    assert resp.status_code == 404
    html = resp.get_data(as_text=True)
    assert "Page not found" in html and "Go to the dashboard" in html
    assert resp.headers["Content-Type"].startswith("text/html")


def test_404_for_webhooks_and_api_is_json(client):
    for path in ("/webhooks/nothing", "/api/v1/nothing"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert resp.is_json and resp.get_json()["status"] == 404


def test_405_on_webhook_is_json(client):
    resp = client.get("/webhooks/stripe/1")
    assert resp.status_code == 405 and resp.is_json


def test_403_page_names_the_role(tmp_path):
    from conftest import Auth

    from admin.security import role_required

    app = make_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path)

    @app.get("/_admin-only")
    @role_required("admin")
    def admin_only():
        return "secret"

    with app.app_context():
        db.create_all()
        client = app.test_client()
        Auth(app, client).login("viewer@example.org", "viewer")
        resp = client.get("/_admin-only")
        assert resp.status_code == 403
        html = resp.get_data(as_text=True)
        assert "Not allowed" in html and "needs the admin role" in html
        frag = client.get("/_admin-only", headers={"HX-Request": "true"})
        assert frag.status_code == 403 and "data-toast" in frag.get_data(as_text=True)
        assert "<html" not in frag.get_data(as_text=True)
        db.session.remove()
        db.engine.dispose()


def test_500_page_is_friendly_and_json_for_api(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path, PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    @app.get("/api/v1/boom")
    def api_boom():
        abort(500)

    with app.app_context():
        db.create_all()
        client = app.test_client()
        resp = client.get("/boom")
        assert resp.status_code == 500
        html = resp.get_data(as_text=True)
        assert "Something went wrong" in html and "kaput" not in html
        frag = client.get("/boom", headers={"HX-Request": "true"})
        assert frag.status_code == 500 and 'data-toast="error"' in frag.get_data(as_text=True)
        api = client.get("/api/v1/boom")
        assert api.status_code == 500 and api.get_json()["error"] == "internal_server_error"
        db.session.remove()
        db.engine.dispose()
