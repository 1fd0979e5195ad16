"""``tokens create|list|revoke``: the token printed once, JSON on request, errors on one line."""

from __future__ import annotations

import json

from admin.extensions import db
from admin.models import ApiToken


def test_create_list_revoke(runner, app):
    made = runner.invoke(args=["tokens", "create", "--name", "zapier", "--scope", "read", "--scope", "write"])
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[0]
    assert secret.startswith("pdk_")
    listed = runner.invoke(args=["tokens", "list", "--format", "json"])
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scopes"], r["status"]) for r in rows] == [("zapier", ["read", "write"], "active")]
    assert secret not in listed.stdout
    table = runner.invoke(args=["tokens", "list"])
    assert "zapier" in table.stdout and secret not in table.stdout
    revoked = runner.invoke(args=["tokens", "revoke", "zapier", "--format", "json"])
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    db.session.rollback()
    assert db.session.query(ApiToken).one().revoked_at is not None


def test_json_create_and_one_line_errors(runner, app):
    made = runner.invoke(args=["tokens", "create", "--name", "crm", "--days", "0", "--format", "json"])
    body = json.loads(made.stdout)
    assert body["token"].startswith("pdk_") and body["expires_at"] is None and body["scopes"] == ["read"]
    again = runner.invoke(args=["tokens", "create", "--name", "crm"])
    assert again.exit_code == 1
    assert again.output.strip() == "Error: a token named 'crm' exists already"
    missing = runner.invoke(args=["tokens", "revoke", "404"])
    assert missing.exit_code == 1 and "Traceback" not in missing.output and "no API token" in missing.output
