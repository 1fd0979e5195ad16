"""``flask --app wsgi user role|deactivate|activate|reset-password|sessions|2fa reset``: the users page's
actions from the command line, with the same rules and audit entries."""

from __future__ import annotations

import json

from conftest import PASSWORD, Auth
from sqlalchemy import select
from staff_support import enrol

from admin.extensions import db
from admin.models import AuditLog
from admin.services.staff.users import create_user, find_user

EMAIL = "staff@example.org"


def _run(runner, *args: str):
    result = runner.invoke(args=["user", *args])
    return result.exit_code, result.output + (getattr(result, "stderr", "") or "")


def test_role_and_the_last_admin_rule(app, runner):
    create_user("admin@example.org", PASSWORD, "admin")
    create_user(EMAIL, PASSWORD, "viewer")
    assert _run(runner, "role", "--email", EMAIL, "--role", "operator") == (0, f"{EMAIL} is now operator\n")
    code, out = _run(runner, "role", "--email", "admin@example.org", "--role", "viewer")
    assert code == 1 and out.startswith("Error: role: admin@example.org is the only active admin")
    assert "Traceback" not in out
    code, out = _run(runner, "role", "--email", "nobody@example.org", "--role", "viewer")
    assert code == 1 and "no staff account with email" in out
    entry = db.session.scalar(select(AuditLog).where(AuditLog.action == "user.role"))
    assert entry.actor.startswith("cli:")


def test_deactivate_ends_sessions_and_activate_undoes_it(app, runner):
    client = app.test_client()
    Auth(app, client).login(EMAIL, "operator")
    assert client.get("/").status_code == 200
    code, out = _run(runner, "deactivate", "--email", EMAIL)
    assert code == 0 and "deactivated" in out
    assert client.get("/").status_code == 302 and not find_user(EMAIL).active
    code, out = _run(runner, "deactivate", "--email", EMAIL)
    assert code == 1 and "already deactivated" in out
    assert _run(runner, "activate", "--email", EMAIL)[0] == 0 and find_user(EMAIL).active


def test_2fa_reset(app, runner):
    create_user(EMAIL, PASSWORD, "viewer")
    enrol(EMAIL)
    code, out = _run(runner, "2fa", "reset", "--email", EMAIL)
    assert code == 0 and "is reset" in out and not find_user(EMAIL).two_factor
    rows = json.loads(runner.invoke(args=["user", "list", "--format", "json"]).output)
    assert rows[0]["two_factor"] is False
    assert "user.2fa_reset" in db.session.scalars(select(AuditLog.action)).all()


def test_reset_password_prints_a_temporary_one(app, runner):
    create_user(EMAIL, PASSWORD, "viewer")
    result = runner.invoke(args=["user", "reset-password", "--email", EMAIL, "--format", "json"])
    data = json.loads(result.output)
    user = find_user(EMAIL)
    assert (
        data["email"] == EMAIL
        and user.check_password(data["temporary_password"])
        and user.must_change_password
    )
    code, out = _run(runner, "reset-password", "--email", EMAIL)
    assert code == 0 and "temporary password for staff@example.org: " in out


def test_sessions_lists_open_ones(app, runner):
    client = app.test_client()
    Auth(app, client).login(EMAIL, "viewer")
    rows = json.loads(runner.invoke(args=["user", "sessions", "--email", EMAIL, "--format", "json"]).output)
    assert len(rows) == 1 and rows[0]["address"] == "127.0.0.1"
    code, out = _run(runner, "sessions", "--email", EMAIL)
    assert code == 0 and out.splitlines()[0].split() == [
        "id",
        "browser",
        "address",
        "created",
        "last_seen_at",
    ]
    _run(runner, "revoke-sessions", "--email", EMAIL)
    assert _run(runner, "sessions", "--email", EMAIL) == (0, "(none)\n")
