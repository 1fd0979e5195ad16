"""Friendly error pages; JSON for machine paths; fragments for htmx."""

from __future__ import annotations

import logging
import re
import time

from conftest import make_app
from flask import abort
from sqlalchemy import text

from admin.extensions import db


def test_404_page_is_friendly(client):
    resp = client.get("/no/such/page")
    assert resp.status_code == 404
    html = resp.get_data(as_text=True)
    assert "Page not found" in html and "Go to the dashboard" in html
    assert resp.headers["Content-Type"].startswith("text/html")


def test_404_for_webhooks_and_api_is_json(client):
    resp = client.get("/webhooks/nothing")
    assert resp.status_code == 404
    assert resp.is_json and resp.get_json()["status"] == 404
    resp = client.get("/api/v1/nothing")  # the API's one error shape
    assert resp.status_code == 404
    assert resp.is_json and resp.get_json()["error"]["code"] == "not_found"


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
        assert api.status_code == 500
        assert api.get_json()["error"] == {
            "code": "server_error",
            "message": api.get_json()["error"]["message"],
            "field": None,
        }
        db.session.remove()
        db.engine.dispose()


# -- the database unreachable: 503, one traceback, then a summary line per interval -------------------


def test_database_outage_answers_503_with_retry_after_and_logs_one_traceback_then_summaries(
    app, client, auth, offline_processor, caplog
):
    from conftest import WEBHOOK_SECRET
    from db_faults import DatabaseOutage
    from stripe_objects import event, payment_intent, signed

    app.config.update(OUTAGE_LOG_INTERVAL=0.2)
    auth.login()  # the staff page below is asked for by a signed-in operator
    caplog.set_level(logging.INFO)
    target = f"/webhooks/stripe/{offline_processor.id}"
    with DatabaseOutage(db.engine) as outage:
        outage.down()
        hooks = []
        for _ in range(12):
            body, headers = signed(event("payment_intent.created", payment_intent()), WEBHOOK_SECRET)
            hooks.append(client.post(target, data=body, headers=headers))
        page = client.get("/")
        fragment = client.get("/", headers={"HX-Request": "true"})
        assert wait_until(lambda: refused(caplog) == 14)  # every refusal counted in the summary lines
    assert {(r.status_code, r.headers.get("Retry-After")) for r in hooks} == {(503, "10")}
    assert hooks[0].get_json()["error"] == "service_unavailable"
    assert page.status_code == 503 and page.headers["Retry-After"] == "10"
    assert "database is not reachable" in page.get_data(as_text=True)
    assert fragment.status_code == 503 and 'data-toast="error"' in fragment.get_data(as_text=True)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [
        r.getMessage() for r in tracebacks
    ]  # one per distinct error, not per request
    summary = [r.getMessage() for r in caplog.records if "requests refused" in r.getMessage()]
    assert summary and all(
        re.fullmatch(r"database unavailable: \d+ requests refused in the last [\d.]+ s", line)
        for line in summary
    )
    # the database is back: the same requests succeed
    body, headers = signed(event("payment_intent.created", payment_intent()), WEBHOOK_SECRET)
    assert client.post(target, data=body, headers=headers).status_code == 200
    assert client.get("/").status_code == 200


def test_a_failing_statement_is_a_500_logged_once(tmp_path, caplog):
    """A database error that is not an outage (a wrong statement) is a bug: 500, and its traceback once."""
    app = make_app(f"sqlite:///{tmp_path / 'x.sqlite3'}", tmp_path, PROPAGATE_EXCEPTIONS=False)

    @app.get("/bad-sql")
    def bad_sql():
        db.session.execute(text("SELECT * FROM no_such_table"))

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    with app.app_context():
        client = app.test_client()
        for path in ("/bad-sql", "/boom"):
            caplog.clear()
            resp = client.get(path)
            assert resp.status_code == 500 and "Retry-After" not in resp.headers
            assert len([r for r in caplog.records if r.exc_info]) == 1, path
        db.session.remove()
        db.engine.dispose()


def refused(caplog) -> int:
    return sum(
        int(m.group(1))
        for r in caplog.records
        if (m := re.match(r"database unavailable: (\d+) requests refused", r.getMessage()))
    )


def wait_until(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
