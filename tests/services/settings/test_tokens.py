"""API tokens: shown once, kept as a digest, named, scoped, expiring, revocable, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest

from admin.errors import ServiceError
from admin.extensions import db
from admin.models import ApiToken, AuditLog
from admin.services.settings import tokens
from admin.timeutil import utcnow


def test_a_token_is_kept_only_as_a_digest(app):
    made = tokens.create_token("crm", ["read"])
    row = db.session.get(ApiToken, made.token.id)
    assert made.secret.startswith("pdk_") and len(made.secret) > 40
    assert made.secret not in (row.token_hash, row.prefix) and row.token_hash == tokens.digest(made.secret)
    assert made.secret.startswith(row.prefix)
    assert tokens.authenticate(made.secret)[0].id == row.id
    entry = db.session.query(AuditLog).filter_by(action="token.create").one()
    assert entry.parameters["name"] == "crm" and made.secret not in str(entry.parameters)


def test_scopes_expiry_and_revocation(app):
    made = tokens.create_token("shop", "read,write", days=1)
    assert made.token.scope_list == ["read", "write"]
    assert tokens.authenticate(made.secret, now=utcnow() + timedelta(days=2)) == (None, "expired")
    forever = tokens.create_token("forever", ["write"], days=0)
    assert forever.token.expires_at is None and forever.token.scope_list == ["write"]
    tokens.revoke_token("shop")
    assert tokens.authenticate(made.secret) == (None, "revoked")
    assert (
        db.session.query(AuditLog).filter_by(action="token.revoke", object_id=str(made.token.id)).count() == 1
    )
    assert tokens.authenticate(None) == (None, "missing")
    assert tokens.authenticate("pdk_" + "x" * 40) == (None, "unknown")


@pytest.mark.parametrize(
    "name, scopes, days, field",
    [
        ("", ["read"], 90, "name"),
        ("x" * 101, ["read"], 90, "name"),
        ("bad\x00name", ["read"], 90, "name"),
        ("ok", ["admin"], 90, "scopes"),
        ("ok", ["read"], 5000, "days"),
    ],
)
def test_bad_input_is_refused_naming_the_field(app, name, scopes, days, field):
    with pytest.raises(ServiceError) as err:
        tokens.create_token(name, scopes, days=days)
    assert err.value.field == field
    assert db.session.query(ApiToken).count() == 0


def test_names_are_unique_and_revoking_nothing_says_so(app):
    tokens.create_token("crm")
    with pytest.raises(ServiceError, match="exists already"):
        tokens.create_token("crm")
    with pytest.raises(ServiceError, match="no API token"):
        tokens.revoke_token("nope")
